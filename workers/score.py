"""Score stage: the original DancingSkeletons pose-similarity score. Pure math, no I/O.

Per frame: keep the persons above the person threshold; the most confident one is the
reference; every other person's 17 keypoints are mapped onto the reference's by a weighted
least-squares affine transform; both are centred and scaled to unit Frobenius norm; the
distance is the confidence-weighted mean distance over 9 keypoints; the frame score maps the
mean distance over persons onto 0..10. The on-screen value averages the last frames' scores.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from workers.data import Detections
from workers.skeleton import SCORE_KEYPOINTS


@dataclass(frozen=True)
class ScoreParams:
    """The constants of the original score, and their defaults (the one place they are set;
    `config.Config` takes its defaults from here).

    Attributes:
        person_threshold: Box score above which a detection is a person.
        distance_offset: Mean pose distance that still scores the maximum.
        distance_scale: Mean distance range over which the score falls from max to 0.
        score_max: The best score.
        display_window: Frames (with persons) averaged for the on-screen score.
        keypoint_weighting: "relu" (logits) or "logit" (probabilities): see `keypoint_weights`.
    """

    person_threshold: float = 0.9
    distance_offset: float = 0.05
    distance_scale: float = 0.1
    score_max: float = 10.0
    display_window: int = 10
    keypoint_weighting: str = "relu"


def keypoint_weights(keypoint_scores: np.ndarray, weighting: str = "relu") -> np.ndarray:
    """Turn a model's keypoint scores into non-negative weights.

    Args:
        keypoint_scores: (..., 17) scores on the model's scale.
        weighting: "relu" for logits (negatives become 0, the original method); "logit" for
            probabilities, turned into logits first so weights are on the same scale.

    Returns:
        (..., 17) float64 weights >= 0.
    """
    scores = np.asarray(keypoint_scores, dtype=np.float64)
    if weighting == "logit":
        p = np.clip(scores, 1e-6, 1 - 1e-6)
        scores = np.log(p / (1 - p))
    elif weighting != "relu":
        raise ValueError(f"weighting must be relu or logit, got {weighting!r}")
    return np.maximum(scores, 0.0)


def fit_affine(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares affine transform mapping source points onto target points.

    Args:
        source: (k, 2) points, or (T, k, 2) for T fits at once.
        target: Points of the same shape.
        weights: (k,) or (T, k) non-negative weight of each point pair.

    Returns:
        (3, 2) matrix A, or (T, 3, 2), such that [x, y, 1] @ A approximates the target point
        (minimum-norm solution when the points do not determine it).
    """
    source, target, weights = (np.asarray(v, dtype=np.float64) for v in (source, target, weights))
    single = source.ndim == 2
    if single:
        source, target, weights = source[None], target[None], weights[None]
    homogeneous = np.concatenate([source, np.ones(source.shape[:-1] + (1,))], axis=-1)
    root = np.sqrt(weights)[..., None]
    design, goal = homogeneous * root, target * root
    # The normal equations where they are well conditioned (a 3x3 solve, several times faster
    # than the SVD over many frames); the pseudo-inverse's minimum-norm answer elsewhere.
    gram = np.swapaxes(design, -1, -2) @ design
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        size = np.trace(gram, axis1=-2, axis2=-1) / 3.0  # scale-free: det / size^3 is 1 for a multiple of I
        conditioned = np.linalg.det(gram) > 1e-12 * size ** 3
    solution = np.empty(source.shape[:-2] + (3, 2))
    if conditioned.any():
        solution[conditioned] = np.linalg.solve(gram[conditioned], np.swapaxes(design[conditioned], -1, -2)
                                                @ goal[conditioned])
    if not conditioned.all():
        solution[~conditioned] = np.linalg.pinv(design[~conditioned]) @ goal[~conditioned]
    return solution[0] if single else solution


def pose_distances(reference: np.ndarray, other: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The original score's pose distance for many pose pairs at once.

    `other` is mapped onto `reference` by a weighted least-squares affine transform (the
    minimum-norm one when the points do not determine it); both are centred and scaled to unit
    Frobenius norm over the keypoints they have; the distance is the mean over the 9 score
    keypoints of the gaps between them, each weighted by the square root of its pair weight.
    A keypoint that is NaN in either pose is absent: weight 0, and left out of the centring and
    scaling. The frame score (`frame_score`) uses it with the model's keypoint weights, the
    timing analysis without weights (`workers.moments.partner_distances`).

    Args:
        reference: (T, 17, 2) keypoints in pixels (NaN where absent).
        other: (T, 17, 2) keypoints in pixels.
        weights: (T, 17) pair weights >= 0, e.g. the product of the two poses' keypoint weights;
            None for weight 1 on every keypoint that both poses have.

    Returns:
        (T,) distances (0 for poses equal up to an affine map), NaN where the score keypoints
        have no weight or either pose collapses to a single point (nothing to compare; the
        original divided by zero there).
    """
    reference = np.asarray(reference, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if weights is None:
        weights = np.ones(reference.shape[:2])
    present = np.isfinite(reference).all(axis=-1) & np.isfinite(other).all(axis=-1)  # (T, 17)
    weights = np.where(present, np.asarray(weights, dtype=np.float64), 0.0)
    source = np.where(present[..., None], other, 0.0)
    target = np.where(present[..., None], reference, 0.0)
    affine = fit_affine(source, target, weights)  # (T, 3, 2)
    transformed = np.concatenate([source, np.ones(present.shape + (1,))], axis=-1) @ affine
    mask = present[..., None].astype(np.float64)
    count = np.maximum(present.sum(axis=-1), 1)[:, None, None]

    def unit(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centred = (points - (points * mask).sum(axis=1, keepdims=True) / count) * mask
        norm = np.linalg.norm(centred, axis=(1, 2))
        ok = np.isfinite(norm) & (norm >= 1e-9)
        return centred / np.where(ok, norm, np.nan)[:, None, None], ok

    aligned, aligned_ok = unit(transformed)
    goal, goal_ok = unit(target)
    score_points = list(SCORE_KEYPOINTS)
    mass = np.sqrt(weights[:, score_points])
    gaps = np.linalg.norm(aligned[:, score_points] - goal[:, score_points], axis=-1)
    total = mass.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = np.where(mass > 0, mass * gaps, 0.0).sum(axis=-1) / total
    return np.where((total > 0) & aligned_ok & goal_ok, distance, np.nan)


def distance_to_score(distance: float, params: ScoreParams) -> float:
    """Map a mean pose distance onto 0..score_max (score_max at distance_offset or less)."""
    score = (1.0 - (distance - params.distance_offset) / params.distance_scale) * params.score_max
    return float(np.clip(score, 0.0, params.score_max))


def order_above(detections: Detections, threshold: float) -> np.ndarray:
    """Indices of the detections whose box score is above `threshold`, most confident first."""
    keep = np.flatnonzero(detections.box_scores > threshold)
    return keep[np.argsort(-detections.box_scores[keep], kind="stable")]


#: Two detections whose keypoints lie this close (median distance over the 17, as a share of the
#: taller box's height) are one person found twice.
DUPLICATE_DISTANCE = 0.05


def without_duplicates(detections: Detections, order: np.ndarray) -> np.ndarray:
    """`order` without the detections that repeat a more confident one: the same person found
    twice.

    YOLO's NMS keeps two boxes of one person when they overlap less than its IoU of 0.7, e.g.
    one with the outstretched arms and one without (seen on a small dancer of a class: a
    second id for 12 frames). Their keypoints coincide (a median distance of 3 px on a
    180-px person); two people's never do, even side by side in the same pose.

    Args:
        detections: A frame's detections.
        order: Indices into them, most confident first (`order_above`).

    Returns:
        The indices kept, in their order.
    """
    if len(order) < 2:
        return order
    keypoints = detections.keypoints[order].astype(np.float64)
    heights = detections.boxes[order, 3] - detections.boxes[order, 1]
    apart = np.median(np.linalg.norm(keypoints[:, None] - keypoints[None], axis=-1), axis=-1)
    same = apart < DUPLICATE_DISTANCE * np.maximum(heights[:, None], heights[None])
    kept: list[int] = []
    for k in range(len(order)):
        if not any(same[k, j] for j in kept):
            kept.append(k)
    return order[kept]


def frame_score(persons: Detections, params: ScoreParams) -> float | None:
    """The original frame score of persons already above the threshold.

    Args:
        persons: The frame's persons, any order; the most confident is the reference.
        params: Score constants.

    Returns:
        The score in 0..score_max, or None when fewer than two persons can be compared.
    """
    if len(persons) < 2:
        return None
    weights = keypoint_weights(persons.keypoint_scores, params.keypoint_weighting)
    reference = int(np.argmax(persons.box_scores))
    others = [i for i in range(len(persons)) if i != reference]
    distances = pose_distances(
        np.repeat(persons.keypoints[reference][None], len(others), axis=0),
        persons.keypoints[others],
        weights[reference][None] * weights[others],
    )
    distances = distances[np.isfinite(distances)]
    if not distances.size:
        return None
    return distance_to_score(float(np.mean(distances)), params)


def format_score(value: float) -> str:
    """Two-digit integer, truncated as the original does: 7.9 -> "07"."""
    return f"{int(value):02d}"


class RunningScore:
    """The on-screen score: the mean of recent frame scores, and the total.

    Follows the original tool: only frames with at least one person enter the window of the
    last `display_window` frames; one-person frames enter it without a value.
    """

    def __init__(self, params: ScoreParams) -> None:
        self._params = params
        self._window: deque[float | None] = deque(maxlen=params.display_window)
        self._sum = 0.0  # of all frame scores: a running sum, not a list that grows with the video
        self._count = 0

    def update(self, person_count: int, score: float | None) -> str | None:
        """Add one frame and return the text to show on it.

        Args:
            person_count: Persons above the threshold in the frame.
            score: The frame's score, or None.

        Returns:
            None for a frame without persons (nothing to show), "One person", "" when there
            is no score to show yet, or "Similarity score: NN".
        """
        if score is not None:
            self._sum += score
            self._count += 1
        if person_count == 0:
            return None
        self._window.append(score)
        if person_count == 1:
            return "One person"
        values = [value for value in self._window if value is not None]
        if not values:
            return ""
        return f"Similarity score: {format_score(float(np.mean(values)))}"

    @property
    def displayed(self) -> float | None:
        """The current window mean, or None when the window holds no score."""
        values = [value for value in self._window if value is not None]
        return float(np.mean(values)) if values else None

    @property
    def total(self) -> float | None:
        """Mean of all frame scores so far, or None when no frame was scored."""
        return self._sum / self._count if self._count else None

    def total_text(self) -> str:
        """The end card's text, e.g. "Total score: 07" ("Total score: --" with no score)."""
        total = self.total
        return "Total score: --" if total is None else f"Total score: {format_score(total)}"
