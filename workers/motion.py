"""Motion features of poses over time, and the similarity of two persons' motion at every shift.

Pure math, no I/O: the signals that the timing analysis (`workers.timing`) and the synchrony
score (`workers.sync`) align people on, and the windows they are aligned in. The input is each
performer's keypoints over the video, (T, 17, 2) pixels with NaN where the person is absent
(see `workers.data.PoseRows.poses`), whole or read a stretch at a time through a `PoseSource`.

Definitions:
- Normalised pose: centred on the torso centre (mean of shoulders and hips) in every frame,
  divided by the person's median torso length (mid-shoulder to mid-hip) over the video
  (`torso_scales` reads it a stretch at a time). Units: torso lengths.
- Motion features: velocities of the 12 body keypoints (shoulders to ankles; the face is
  left out), x and y, of the normalised pose; central differences over `velocity_span_s`.
  24 channels, torso lengths per second.
- Vertical features: the y coordinates of the 12 body keypoints in the normalised pose
  (12 channels, torso lengths). With cameras that are roughly level, turning the body (or
  the camera) about the vertical axis changes every x coordinate but leaves the heights
  relative to the torso as they were, so two views of one performance, or dancers facing
  different ways, share them while their velocities in the image differ.
- Mirror image: x flipped about the torso centre and left/right keypoints swapped, so that
  two people facing each other and moving as mirror images can be compared.
- Similarity at a shift: person i's features are shifted against
  person j's by every whole frame in +-S, and at each shift the similarity is the mean over
  channels of the Pearson correlation (which z-scores each channel within the window, over
  the frames both have), each channel weighted by the product of its standard deviations in
  the two persons, so that limbs at rest, whose velocity is mostly the pose model's jitter,
  count little. `workers.correlation` computes it for every pair of a window at once, tested
  against the one-pair reference in `tests/reference.py`.
- Peak (`peak_shifts`): the best interior peak of a similarity curve, refined by a parabola
  through it and its neighbours; none when it is below a threshold, or another peak (or the
  end of the curve) far enough away comes within a margin of it (periodic motion: the shift
  is ambiguous).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from workers.data import CHUNK_FRAMES
from workers.skeleton import KEYPOINT_NAMES, NUM_KEYPOINTS


def _mirror_permutation(names: tuple[str, ...]) -> tuple[int, ...]:
    index = {name: i for i, name in enumerate(names)}
    swapped = {"left_": "right_", "right_": "left_"}
    permutation = []
    for name in names:
        prefix = next((p for p in swapped if name.startswith(p)), None)
        partner = swapped[prefix] + name[len(prefix):] if prefix else name
        permutation.append(index[partner])
    return tuple(permutation)


#: MIRROR_PERMUTATION[k] is the keypoint that keypoint k becomes in a mirror image
#: (left_* <-> right_*, the nose stays), derived from the names in `workers.skeleton`.
MIRROR_PERMUTATION: tuple[int, ...] = _mirror_permutation(KEYPOINT_NAMES)

_INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
_SHOULDERS = [_INDEX["left_shoulder"], _INDEX["right_shoulder"]]
_HIPS = [_INDEX["left_hip"], _INDEX["right_hip"]]
_FACE = {"nose", "left_eye", "right_eye", "left_ear", "right_ear"}
#: The 12 keypoints whose velocities are the motion features: shoulders to ankles.
BODY_KEYPOINTS: tuple[int, ...] = tuple(i for i, name in enumerate(KEYPOINT_NAMES) if name not in _FACE)


def torso_centres(keypoints: np.ndarray) -> np.ndarray:
    """Mean of the shoulders and hips present, (..., 17, 2) -> (..., 2); NaN when none is."""
    torso = np.asarray(keypoints, dtype=np.float64)[..., _SHOULDERS + _HIPS, :]
    present = np.isfinite(torso).all(axis=-1, keepdims=True)
    count = present.sum(axis=-2)
    total = np.where(present, torso, 0.0).sum(axis=-2)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def mirror_poses(keypoints: np.ndarray) -> np.ndarray:
    """Mirror images of poses: x flipped about each torso centre, left and right swapped.

    Args:
        keypoints: (..., 17, 2) pixels (NaN allowed).

    Returns:
        (..., 17, 2) the poses a mirror image of each person would have, same centres.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    mirrored = keypoints[..., list(MIRROR_PERMUTATION), :].copy()
    centre_x = torso_centres(keypoints)[..., None, 0]
    mirrored[..., 0] = 2 * centre_x - mirrored[..., 0]
    return mirrored


def torso_lengths(keypoints: np.ndarray) -> np.ndarray:
    """Mid-shoulder to mid-hip distances of the frames that show them, (T, 17, 2) -> (k,) pixels."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    torso = np.linalg.norm(keypoints[:, _SHOULDERS].mean(axis=1) - keypoints[:, _HIPS].mean(axis=1), axis=-1)
    return torso[np.isfinite(torso) & (torso > 0)]


def normalise_poses(keypoints: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Poses centred on the torso centre and divided by the median torso length.

    Args:
        keypoints: (T, 17, 2) one person's keypoints in pixels, NaN where absent.
        scale: The torso length to divide by, pixels; None for the median of these frames'
            (`torso_lengths`). A stretch of a longer video passes the whole video's.

    Returns:
        (T, 17, 2) in torso lengths; all NaN when the scale is unknown (no frame shows
        shoulders and hips).
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape (T, {NUM_KEYPOINTS}, 2), got {keypoints.shape}")
    if scale is None:
        torso = torso_lengths(keypoints)
        scale = float(np.median(torso)) if torso.size else float("nan")
    if not np.isfinite(scale):
        return np.full(keypoints.shape, np.nan)
    return (keypoints - torso_centres(keypoints)[:, None, :]) / scale


def motion_features(normalised: np.ndarray, fps: float, velocity_span_s: float = 0.1) -> np.ndarray:
    """Velocities of the body keypoints, the signal that timing is aligned on.

    Args:
        normalised: (T, 17, 2) from `normalise_poses`, torso lengths.
        fps: Frames per second.
        velocity_span_s: Time over which each central difference is taken, seconds.

    Returns:
        (T, 24) x and y velocities of `BODY_KEYPOINTS` in torso lengths per second; NaN at
        the ends and next to missing frames.
    """
    half = max(1, round(velocity_span_s * fps / 2))
    body = np.asarray(normalised, dtype=np.float64)[:, list(BODY_KEYPOINTS)]
    velocity = np.full(body.shape, np.nan)
    velocity[half:-half] = (body[2 * half:] - body[:-2 * half]) * fps / (2 * half)
    return velocity.reshape(len(body), -1)


def vertical_features(normalised: np.ndarray) -> np.ndarray:
    """Heights of the body keypoints relative to the torso, the viewpoint fallback's signal.

    Args:
        normalised: (T, 17, 2) from `normalise_poses`, torso lengths.

    Returns:
        (T, 12) y coordinates of `BODY_KEYPOINTS` in torso lengths (down is positive, as in
        the image), NaN where absent.
    """
    return np.asarray(normalised, dtype=np.float64)[:, list(BODY_KEYPOINTS), 1].copy()


def peak_shifts(
    curves: np.ndarray,
    min_correlation: float = 0.3,
    ambiguity_margin: float = 0.05,
    min_separation: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The shift of the clear best peak of every similarity curve, to a fraction of a frame.

    Args:
        curves: (P, 2S + 1) similarity at shifts -S..S frames (NaN where unknown).
        min_correlation: Smallest accepted peak value.
        ambiguity_margin: Another peak (or an end of the curve) at least `min_separation`
            away and within this of the best makes the result unknown.
        min_separation: Frames, see `ambiguity_margin`.

    Returns:
        (P,) shifts in frames, refined by a parabola through the peak and its two neighbours,
        and (P,) peak values; both NaN where there is no interior peak, it is too low, or it is
        ambiguous.
    """
    curves = np.asarray(curves, dtype=np.float64)
    rows, length = curves.shape
    half = (length - 1) // 2
    left, middle, right = curves[:, :-2], curves[:, 1:-1], curves[:, 2:]
    with np.errstate(invalid="ignore"):
        inner = np.isfinite(left) & np.isfinite(middle) & np.isfinite(right) & (middle >= left) & (middle > right)
    is_peak = np.zeros(curves.shape, dtype=bool)
    is_peak[:, 1:-1] = inner
    best = np.where(is_peak, curves, -np.inf).argmax(axis=1)
    index = np.arange(rows)
    value = curves[index, best]
    with np.errstate(invalid="ignore"):
        accepted = is_peak.any(axis=1) & (value >= min_correlation)
        rival = is_peak.copy()
        rival[:, [0, -1]] = True
        rival &= np.abs(np.arange(length)[None, :] - best[:, None]) >= min_separation
        rival &= np.isfinite(curves) & (curves >= (value - ambiguity_margin)[:, None])
    accepted &= ~rival.any(axis=1)
    before = curves[index, np.clip(best - 1, 0, length - 1)]
    after = curves[index, np.clip(best + 1, 0, length - 1)]
    bend = before - 2 * value + after
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = np.where(bend < 0, 0.5 * (before - after) / np.where(bend < 0, bend, -1.0), 0.0)
    shifts = best - half + np.clip(offset, -0.5, 0.5)
    return np.where(accepted, shifts, np.nan), np.where(accepted, value, np.nan)


def analysis_windows(frames: int, fps: float, window_s: float, hop_s: float) -> list[tuple[int, int]]:
    """Start and end frames (end exclusive) of the sliding windows over a video.

    Args:
        frames: Number of frames T.
        fps: Frames per second.
        window_s: Window length, seconds.
        hop_s: Step between starts, seconds.

    Returns:
        [(start, end), ...]; one window of the whole video when it is shorter than a window.
    """
    length = max(1, round(window_s * fps))
    hop = max(1, round(hop_s * fps))
    if frames <= length:
        return [(0, frames)] if frames > 0 else []
    return [(start, start + length) for start in range(0, frames - length + 1, hop)]


#: Reads frames start..stop-1 (0 <= start <= stop <= T) of every performer, in one fixed
#: order: one (stop - start, 17, 2) array of pixels each, NaN where absent.
PoseSource = Callable[[int, int], Sequence[np.ndarray]]


def torso_scales(source: PoseSource, frames: int, count: int, chunk_frames: int = CHUNK_FRAMES) -> list[float]:
    """Each person's median torso length over the whole video, pixels (NaN: never seen).

    Args:
        source: The persons' poses (see `PoseSource`).
        frames: Frames in the video.
        count: Persons `source` returns.
        chunk_frames: Frames read at a time.
    """
    torso: list[list[np.ndarray]] = [[] for _ in range(count)]
    for start in range(0, frames, chunk_frames):
        for person, stretch in enumerate(source(start, min(frames, start + chunk_frames))):
            torso[person].append(torso_lengths(np.asarray(stretch, dtype=np.float64)))
    return [median_or_nan(np.concatenate(parts)) if parts else float("nan") for parts in torso]


def read_padded(source: PoseSource, start: int, stop: int, frames: int, count: int) -> list[np.ndarray]:
    """Frames start..stop-1 of every person, NaN for frames outside 0..frames-1."""
    stretches = [np.full((stop - start, NUM_KEYPOINTS, 2), np.nan) for _ in range(count)]
    low, high = max(start, 0), min(stop, frames)
    if high > low:
        for stretch, read in zip(stretches, source(low, high)):
            stretch[low - start:high - start] = read
    return stretches


def median_or_nan(values: np.ndarray) -> float:
    """The median of the finite values, NaN when there is none."""
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")
