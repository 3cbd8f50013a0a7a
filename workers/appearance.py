"""What the joiner measures of each person in a frame, for all persons of the frame at once.

Pure math on arrays, no I/O: where each person is (`person_positions`), the body's shape
(`limb_proportions`: limb lengths over the torso length, which do not change as the person
moves), the clothes' colours (`body_colours`: the median CIELAB colour of the torso, thighs and
shins) and how much of the person others hide (`covered_share`, so that an occluder's colours
are not learnt as the person's). `workers.identity` compares them across a gap to decide whether
a tracklet continues a person.
"""

from __future__ import annotations

import numpy as np

from workers.skeleton import KEYPOINT_NAMES, NUM_KEYPOINTS

_INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
_TORSO = [_INDEX[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]
#: The limbs measured for the body shape, as (upper end, lower end) without the side.
_LIMBS = {"upper_arm": ("shoulder", "elbow"), "forearm": ("elbow", "wrist"), "thigh": ("hip", "knee"),
          "shin": ("knee", "ankle")}
SHAPE_NAMES = tuple(_LIMBS)
#: (limbs, 2 sides, 2 ends) keypoint indices.
_LIMB_ENDS = np.array([[[_INDEX[f"{side}_{upper}"], _INDEX[f"{side}_{lower}"]] for side in ("left", "right")]
                       for upper, lower in _LIMBS.values()])
COLOUR_REGIONS = ("torso", "thighs", "shins")


def _point_weights() -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Sample points as linear combinations of keypoints: (points, 17) weights, which keypoints
    each needs, and the points of each colour region."""
    rows: list[np.ndarray] = []
    regions: list[list[int]] = []
    ls, rs, lh, rh = _TORSO
    torso = []
    for v in (0.2, 0.4, 0.6, 0.8):  # shoulders (0) to hips (1)
        for u in (0.25, 0.5, 0.75):  # left (0) to right (1)
            row = np.zeros(NUM_KEYPOINTS)
            row[ls] += (1 - u) * (1 - v)
            row[rs] += u * (1 - v)
            row[lh] += (1 - u) * v
            row[rh] += u * v
            torso.append(len(rows))
            rows.append(row)
    regions.append(torso)
    for upper, lower in (("hip", "knee"), ("knee", "ankle")):
        region = []
        for side in ("left", "right"):
            for t in (0.25, 0.45, 0.65):
                row = np.zeros(NUM_KEYPOINTS)
                row[_INDEX[f"{side}_{upper}"]] = 1 - t
                row[_INDEX[f"{side}_{lower}"]] = t
                region.append(len(rows))
                rows.append(row)
        regions.append(region)
    weights = np.array(rows)
    return weights, weights > 0, regions


_POINT_WEIGHTS, _POINT_NEEDS, _REGIONS = _point_weights()
#: (regions, most points) point indices of each region, padded with the index one past the last point.
_REGION_TABLE = np.array([region + [len(_POINT_WEIGHTS)] * (max(map(len, _REGIONS)) - len(region))
                          for region in _REGIONS])
_REGION_MINIMUM = np.array([max(2, len(region) // 2) for region in _REGIONS])


def person_positions(keypoints: np.ndarray, sure: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Each person's position: the mean of the sure shoulders and hips (a shoulder and a hip
    at least), else the box centre. (n, 2) pixels."""
    torso = np.asarray(sure[:, _TORSO], dtype=bool)
    usable = np.logical_and(torso[:, :2].any(axis=1), torso[:, 2:].any(axis=1))
    points = np.where(torso[..., None], keypoints[:, _TORSO], 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = points / torso.sum(axis=1, keepdims=True)
    box_centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    return np.where(usable[:, None], mean, box_centre)


def limb_proportions(keypoints: np.ndarray, sure: np.ndarray) -> np.ndarray:
    """Limb lengths over the torso length (mid-shoulder to mid-hip), (n, 4), NaN where unsure.

    Left and right of a limb are averaged where both are sure.
    """
    ls, rs, lh, rh = _TORSO
    torso = np.linalg.norm((keypoints[:, ls] + keypoints[:, rs]) / 2 - (keypoints[:, lh] + keypoints[:, rh]) / 2,
                           axis=1)
    torso = np.where(sure[:, _TORSO].all(axis=1) & (torso > 1.0), torso, np.nan)
    first, second = _LIMB_ENDS[:, :, 0], _LIMB_ENDS[:, :, 1]  # (limbs, 2 sides) keypoint indices
    lengths = np.linalg.norm(keypoints[:, first] - keypoints[:, second], axis=-1)  # (n, limbs, 2 sides)
    usable = sure[:, first] & sure[:, second]
    count = usable.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(usable, lengths, 0.0).sum(axis=2) / count
    return np.where(count > 0, mean, np.nan) / torso[:, None]


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours, (..., 3) uint8 -> (..., 3) float64 (L 0..100)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def body_colours(image: np.ndarray, keypoints: np.ndarray, sure: np.ndarray) -> np.ndarray:
    """Median CIELAB colour of the torso, thighs and shins, (n, 3 regions, 3), NaN where unsure.

    Each channel's median on its own, over points spread through the region (a grid in the
    shoulder-hip quadrilateral, points along the thigh and shin bones); a region needs half of
    its points on sure keypoints.

    Args:
        image: The frame, RGB uint8 (h, w, 3).
        keypoints: (n, 17, 2) pixels.
        sure: (n, 17) which keypoints are sure.
    """
    n = len(keypoints)
    if n == 0:
        return np.full((0, len(_REGIONS), 3), np.nan)
    height, width = image.shape[:2]
    points = np.matmul(_POINT_WEIGHTS, np.nan_to_num(keypoints))  # (n, P, 2)
    valid = ~(_POINT_NEEDS[None] & ~sure[:, None, :]).any(axis=2)  # (n, P)
    x = np.clip(np.round(points[..., 0]).astype(np.int64), 0, width - 1)
    y = np.clip(np.round(points[..., 1]).astype(np.int64), 0, height - 1)
    lab = srgb_to_lab(image[y, x])  # (n, P, 3)
    # Every region padded to the largest with an invalid point, medians of all regions at once.
    lab = np.concatenate([lab, np.zeros((n, 1, 3))], axis=1)
    valid = np.concatenate([valid, np.zeros((n, 1), dtype=bool)], axis=1)
    grouped, ok = lab[:, _REGION_TABLE], valid[:, _REGION_TABLE]  # (n, regions, points, 3), (n, regions, points)
    keyed = np.where(ok[..., None], grouped, np.inf)
    keyed.sort(axis=2)  # the invalid ones last
    count = ok.sum(axis=2)  # (n, regions)
    low = np.take_along_axis(keyed, (np.maximum(count - 1, 0) // 2)[..., None, None], axis=2)[:, :, 0]
    high = np.take_along_axis(keyed, (count // 2)[..., None, None], axis=2)[:, :, 0]
    enough = count >= _REGION_MINIMUM[None]
    return np.where(enough[..., None], (low + high) / 2, np.nan)


def covered_share(boxes: np.ndarray) -> np.ndarray:
    """(n,) share of each box's area that other boxes of the frame cover (summed, at most 1)."""
    n = len(boxes)
    if n < 2:
        return np.zeros(n)
    a, b = boxes[:, None, :], boxes[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    overlap = width * height
    np.fill_diagonal(overlap, 0.0)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    return np.minimum(overlap.sum(axis=1) / area, 1.0)
