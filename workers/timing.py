"""Per-person timing: who dances ahead of or behind the group, and by how many milliseconds.

Pure math, no I/O. The input is each performer's keypoints over the whole video, (T, 17, 2)
pixels with NaN where the person is absent (see `workers.track.track_poses`), either as whole
arrays (`analyse_timing`) or read a stretch at a time (`analyse_timing_stream`, for videos of
any length: same results).

Definitions:
- Normalised pose: centred on the torso centre (mean of shoulders and hips) in every frame,
  divided by the person's median torso length (mid-shoulder to mid-hip) over the video.
  Units: torso lengths.
- Motion features: velocities of the 12 body keypoints (shoulders to ankles; the face is
  left out), x and y, of the normalised pose; central differences over `velocity_span_s`.
  24 channels, torso lengths per second.
- Pair lag: on sliding windows (`window_s` long, every `hop_s`), person i's features are
  shifted against person j's by every whole frame in +-`max_lag_s` (plus one frame so that
  the limit itself is inside), and at each shift the similarity is the mean over channels of
  the Pearson correlation (which z-scores each channel within the window, over the frames
  both have), each channel weighted by the product of its standard deviations in the two
  persons, so that limbs at rest, whose velocity is mostly the pose model's jitter, count
  little. The best interior peak, refined by a parabola through it and its neighbours,
  is the lag of i behind j. No lag when the peak is below `min_correlation`, or another
  peak (or the search limit) at least `min_peak_separation_s` away comes within
  `ambiguity_margin` of it (periodic motion: the lag is ambiguous).
- Viewpoint fallback: where the motion features give no lag in a window, the same search
  runs on vertical features: the y coordinates of the 12 body keypoints in the normalised
  pose (12 channels, torso lengths; `vertical_features`). With cameras that are roughly
  level, turning the body (or the camera) about the vertical axis changes every x
  coordinate but leaves the heights relative to the torso as they were, so two views of one
  performance, or dancers facing different ways, share them while their velocities in the
  image differ. Smooth positions correlate by chance more easily than velocities, so this
  lag must reach `vertical_min_correlation` (higher than `min_correlation`).
- Group lag: per window, the pair lags are the differences lag_i - lag_j; a least-squares
  fit weighted by the peak correlations gives one lag per person, shifted so that the
  median person is at 0. Positive = behind the group (makes the same move later),
  negative = ahead. A person's lag is the median over windows.
- Timing score: 10 * exp(-|lag_ms| / timing_scale_ms): 10 in time, 7.2 at 50 ms, 3.7 at
  150 ms, 1.4 at 300 ms.
- Pose score: after removing the lags (person i's frame t is compared with person j's frame
  t - round(lag_i - lag_j)), the original score's pose distance (affine alignment, unit
  Frobenius norm, mean distance over the 9 score keypoints; `workers.score`) to the other
  performers; the per-frame distance is the median over the others (at most
  `MAX_POSE_PARTNERS` of them, spread through the group: `pose_partners`), mapped onto 0..10
  as the original score does; the person's pose score is the mean over frames.
- Mirror (`mirror=True`): each pair is also compared with one of them mirrored (x flipped
  about the torso centre and left/right keypoints swapped), and per pair whichever of the
  two matches better over the video counts, so two people facing each other and moving as
  mirror images are in sync.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from workers.correlation import pair_curves
from workers.data import CHUNK_FRAMES
from workers.score import ScoreParams, distance_to_score
from workers.score import pose_distances as score_pose_distances
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


@dataclass(frozen=True)
class TimingParams:
    """Every knob of the timing analysis, with its unit.

    Attributes:
        window_s: Length of an analysis window, seconds.
        hop_s: Step between window starts, seconds.
        max_lag_s: Largest lag searched, seconds (either sign).
        velocity_span_s: Time over which a velocity is taken (central difference), seconds.
        min_valid_fraction: A channel counts at a shift only when both persons have it in at
            least this fraction of the window's frames, 0..1.
        min_channel_std: A channel counts only when it varies by at least this much in both
            persons' windows, torso lengths per second (leaves out limbs at rest).
        min_channels: Fewest counting channels for a similarity.
        min_correlation: Smallest peak correlation accepted as a lag, -1..1.
        ambiguity_margin: A second peak within this of the best makes the lag ambiguous.
        min_peak_separation_s: How far apart two peaks must be to compete, seconds.
        vertical_fallback: Where the motion features give no lag, search on the vertical
            features (see the module docstring, "Viewpoint fallback").
        vertical_min_correlation: Smallest peak correlation accepted from the vertical
            features, -1..1.
        vertical_min_channel_std: A vertical channel counts only when it varies by at least
            this much in both persons' windows, torso lengths.
        timing_scale_ms: Lag at which the timing score falls to 10/e, milliseconds.
        mirror: Also accept mirror images as in sync (see the module docstring).
        score: Constants of the pose-distance to 0..10 mapping (the original score's).
    """

    window_s: float = 4.0
    hop_s: float = 1.0
    max_lag_s: float = 0.5
    velocity_span_s: float = 0.1
    min_valid_fraction: float = 0.5
    min_channel_std: float = 0.05
    min_channels: int = 3
    min_correlation: float = 0.3
    ambiguity_margin: float = 0.05
    min_peak_separation_s: float = 0.15
    vertical_fallback: bool = True
    vertical_min_correlation: float = 0.4
    vertical_min_channel_std: float = 0.02
    timing_scale_ms: float = 150.0
    mirror: bool = False
    score: ScoreParams = field(default_factory=ScoreParams)

    def __post_init__(self) -> None:
        positive = ("window_s", "hop_s", "max_lag_s", "velocity_span_s", "timing_scale_ms")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 < self.min_valid_fraction <= 1.0:
            raise ValueError(f"min_valid_fraction must be in (0, 1], got {self.min_valid_fraction!r}")
        for name in ("min_correlation", "vertical_min_correlation"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in -1..1, got {getattr(self, name)!r}")
        if self.min_channels < 1:
            raise ValueError(f"min_channels must be >= 1, got {self.min_channels!r}")
        for name in ("min_channel_std", "ambiguity_margin", "min_peak_separation_s", "vertical_min_channel_std"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class WindowLag:
    """One person's lag in one analysis window.

    Attributes:
        start_s: Window start, seconds from the start of the video.
        end_s: Window end (exclusive), seconds.
        lag_ms: Lag behind the group in milliseconds (negative: ahead), or None when the
            window has too little data or no clear peak.
        correlation: Mean peak correlation with the others (-1..1), or None with no lag.
    """

    start_s: float
    end_s: float
    lag_ms: float | None
    correlation: float | None


@dataclass(frozen=True, eq=False)
class PersonTiming:
    """One performer's timing and pose similarity against the group.

    Attributes:
        lag_ms: Median of the window lags in milliseconds (positive: behind), or None.
        timing_score: 0..10 from `lag_ms` (see `timing_score`), or None.
        pose_score: 0..10, the mean per-frame pose score after removing the lags (whole
            frames; a person without a lag is taken as in time), or None.
        windows: One `WindowLag` per analysis window.
        distances: (T,) per-frame pose distance to the group (median over the others,
            `pose_partners`), NaN where not comparable; indexed by this person's frames.
        mirrored_with: Ids of the others compared as mirror images.
        lag_confidence: 0..1, how clear the lag is (see `lag_confidence`).
    """

    lag_ms: float | None
    timing_score: float | None
    pose_score: float | None
    windows: tuple[WindowLag, ...]
    distances: np.ndarray
    mirrored_with: tuple[int, ...] = ()
    lag_confidence: float = 0.0


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


def shift_correlations(
    reference: np.ndarray,
    person: np.ndarray,
    min_valid: int,
    min_channel_std: float = 0.0,
    min_channels: int = 1,
    weighted: bool = True,
) -> np.ndarray:
    """Mean per-channel correlation of a window of `person` with `reference` at every shift.

    The one-pair computation, each channel restricted to the frames both have: the reference
    that `workers.correlation` (every pair of a window at once, which the analysis uses) is
    tested against.

    With `weighted`, each channel's correlation is weighted by the product of the two
    standard deviations, which makes the mean the sum of covariances over the sum of
    standard-deviation products: still 1 for identical signals, but dominated by the
    channels that move.

    Args:
        reference: (L, C) the reference's features over the window (NaN allowed).
        person: (L + 2S, C) the person's features from S frames before the window to S
            frames after it (NaN allowed, e.g. padding past the video's ends).
        min_valid: Fewest frames both must have in a channel for it to count at a shift.
        min_channel_std: Channels varying less than this in either input do not count.
        min_channels: Fewest counting channels for a value.
        weighted: Weight channels by their motion (True) or equally (False).

    Returns:
        (2S + 1,) similarity at shifts -S..S frames (index k is shift k - S; shift s pairs
        person frame t + s with reference frame t), NaN where too few channels count.
    """
    reference = np.asarray(reference, dtype=np.float64)
    person = np.asarray(person, dtype=np.float64)
    length = len(reference)
    moving = (_spread(reference) > min_channel_std) & (_spread(person) > min_channel_std)
    windows = sliding_window_view(person[:, moving], length, axis=0).transpose(0, 2, 1)  # (K, L, C)
    ref = reference[None, :, moving]
    both = np.isfinite(ref) & np.isfinite(windows)
    count = both.sum(axis=1)  # (K, C)
    a = np.where(both, ref, 0.0)
    b = np.where(both, windows, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_a = a.sum(axis=1) / count
        mean_b = b.sum(axis=1) / count
        da = np.where(both, a - mean_a[:, None, :], 0.0)
        db = np.where(both, b - mean_b[:, None, :], 0.0)
        covariance = (da * db).sum(axis=1)
        scale = np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
        correlation = covariance / scale
    usable = (count >= min_valid) & (scale > 1e-12)
    counted = usable.sum(axis=1)
    if not weighted:
        weight = usable.astype(np.float64)
    else:
        weight = np.where(usable, scale / np.maximum(count, 1), 0.0)  # sd_a * sd_b
    total = np.where(usable, correlation * weight, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted >= min_channels, total / weight.sum(axis=1), np.nan)


def _spread(values: np.ndarray) -> np.ndarray:
    """(N, C) -> (C,) standard deviation of each column over its finite values, 0 if none."""
    finite = np.isfinite(values)
    count = np.maximum(finite.sum(axis=0), 1)
    mean = np.where(finite, values, 0.0).sum(axis=0) / count
    return np.sqrt((np.where(finite, values - mean, 0.0) ** 2).sum(axis=0) / count)


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


def peak_shift(
    curve: np.ndarray,
    min_correlation: float = 0.3,
    ambiguity_margin: float = 0.05,
    min_separation: int = 1,
) -> tuple[float, float] | None:
    """`peak_shifts` of one curve: (shift in frames, peak value), or None."""
    shifts, values = peak_shifts(np.asarray(curve, dtype=np.float64)[None], min_correlation, ambiguity_margin,
                                 min_separation)
    return None if np.isnan(shifts[0]) else (float(shifts[0]), float(values[0]))


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


def solve_group_lags(
    count: int, pair_lags: Mapping[tuple[int, int], tuple[float, float]]
) -> np.ndarray:
    """Per-person lags from pairwise lag differences, the median person at zero.

    Args:
        count: Number of persons n.
        pair_lags: {(i, j): (lag of i behind j, weight > 0)} for the pairs measured.

    Returns:
        (n,) lags in the unit of the input, NaN for persons outside the largest connected
        group of measured pairs (the group holding the lowest index among equals).
    """
    lags = np.full(count, np.nan)
    edges = [(i, j, lag, weight) for (i, j), (lag, weight) in pair_lags.items() if weight > 0]
    if not edges:
        return lags
    rows = [i for i, _, _, _ in edges]
    cols = [j for _, j, _, _ in edges]
    graph = coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    linked = sorted({*rows, *cols})
    sizes = {label: sum(labels[k] == label for k in linked) for label in labels[linked]}
    group_label = max(sizes, key=lambda label: (sizes[label], -min(k for k in linked if labels[k] == label)))
    members = [k for k in linked if labels[k] == group_label]
    position = {person: column for column, person in enumerate(members)}
    used = [edge for edge in edges if edge[0] in position]
    design = np.zeros((len(used) + 1, len(members)))
    target = np.zeros(len(used) + 1)
    for row, (i, j, lag, weight) in enumerate(used):
        root = np.sqrt(weight)
        design[row, position[i]] = root
        design[row, position[j]] = -root
        target[row] = root * lag
    design[-1] = 1.0  # fixes the free offset; the median shift below sets the real one
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    lags[members] = solution - np.median(solution)
    return lags


def pose_distances(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The original score's pose distance for every frame at once, NaN-aware: `workers.score.
    pose_distances` with weight 1 for every keypoint that both poses have.

    Args:
        reference: (T, 17, 2) pixels (NaN where absent).
        other: (T, 17, 2) pixels.

    Returns:
        (T,) distances (0 for poses equal up to an affine map), NaN where not comparable.
    """
    reference = np.asarray(reference, dtype=np.float64)
    return score_pose_distances(reference, other, np.ones(reference.shape[:2]))


def lag_confidence(windows: Sequence[WindowLag]) -> float:
    """How clear a person's lag is, 0..1: the share of windows that gave a lag, times the mean
    peak correlation of those windows (negative counted as 0).

    0 means no window gave a clear lag ("no clear lag", not "in time"); 1 a lag in every window
    with perfectly correlated movement.
    """
    found = [max(0.0, window.correlation) for window in windows
             if window.lag_ms is not None and window.correlation is not None]
    if not windows or not found:
        return 0.0
    return min(1.0, len(found) / len(windows) * float(np.mean(found)))


def timing_score(lag_ms: float | None, scale_ms: float = 150.0) -> float | None:
    """10 * exp(-|lag_ms| / scale_ms): 10 in time, falling as the lag grows; None for None."""
    if lag_ms is None:
        return None
    return float(10.0 * np.exp(-abs(lag_ms) / scale_ms))


#: Reads frames start..stop-1 (0 <= start <= stop <= T) of every performer, in one fixed
#: order: one (stop - start, 17, 2) array of pixels each, NaN where absent.
PoseSource = Callable[[int, int], Sequence[np.ndarray]]


def analyse_timing(
    poses: Mapping[int, np.ndarray], fps: float, params: TimingParams = TimingParams()
) -> dict[int, PersonTiming]:
    """Lag, timing score and pose score of every performer against the others.

    Args:
        poses: {id: (T, 17, 2) keypoints in pixels, NaN where absent}, performers only.
        fps: Frames per second.
        params: Timing knobs.

    Returns:
        {id: PersonTiming}, ids ascending. With fewer than two performers every value is None.
    """
    ids = sorted(poses)
    arrays = [np.asarray(poses[i], dtype=np.float64) for i in ids]
    frames = len(arrays[0]) if arrays else 0
    for person_id, array in zip(ids, arrays):
        if array.shape != (frames, NUM_KEYPOINTS, 2):
            raise ValueError(f"poses[{person_id}] must have shape ({frames}, {NUM_KEYPOINTS}, 2), "
                             f"got {array.shape}")
    return analyse_timing_stream(ids, frames, lambda start, stop: [a[start:stop] for a in arrays], fps, params)


def analyse_timing_stream(
    ids: Sequence[int],
    frames: int,
    source: PoseSource,
    fps: float,
    params: TimingParams = TimingParams(),
    chunk_frames: int = CHUNK_FRAMES,
) -> dict[int, PersonTiming]:
    """`analyse_timing` reading the poses a stretch at a time, for videos of any length.

    Three passes over the video, each holding about `chunk_frames` frames of every
    performer: the torso scales, the window lags, the pose distances. What is kept whole is
    small: per window a lag per person, per frame a distance per person (8 bytes).
    The result is the same as `analyse_timing` on the whole arrays.

    Args:
        ids: The performers' ids, in the order `source` returns them.
        frames: Frames in the video, T.
        source: Reads a stretch of every performer's poses (see `PoseSource`).
        fps: Frames per second.
        params: Timing knobs.
        chunk_frames: Frames read at a time, >= 1.

    Returns:
        {id: PersonTiming}, ids ascending.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames!r}")
    order = sorted(range(len(ids)), key=lambda k: ids[k])
    ids = [ids[k] for k in order]

    def ordered(start: int, stop: int) -> list[np.ndarray]:
        read = source(start, stop)
        return [np.asarray(read[k], dtype=np.float64) for k in order]

    scales = torso_scales(ordered, frames, len(ids), chunk_frames)
    windows = analysis_windows(frames, fps, params.window_s, params.hop_s)
    window_lags, window_correlations, mirrored_pairs = _window_lags(
        ordered, frames, scales, windows, fps, params, chunk_frames)

    lags_frames = [_median_or_nan(window_lags[:, person]) for person in range(len(ids))]
    all_distances = _group_distances(ordered, frames, len(ids), lags_frames, mirrored_pairs, chunk_frames)
    results = {}
    for person, person_id in enumerate(ids):
        distances = all_distances[person]
        scores = [distance_to_score(d, params.score) for d in distances[np.isfinite(distances)]]
        lag_ms = None if np.isnan(lags_frames[person]) else float(lags_frames[person] * 1000.0 / fps)
        person_windows = tuple(
            WindowLag(
                start_s=start / fps,
                end_s=end / fps,
                lag_ms=None if np.isnan(window_lags[w, person]) else float(window_lags[w, person] * 1000 / fps),
                correlation=None if np.isnan(window_correlations[w, person])
                else float(window_correlations[w, person]),
            )
            for w, (start, end) in enumerate(windows)
        )
        results[person_id] = PersonTiming(
            lag_ms=lag_ms,
            timing_score=timing_score(lag_ms, params.timing_scale_ms),
            pose_score=float(np.mean(scores)) if scores else None,
            windows=person_windows,
            distances=distances,
            mirrored_with=tuple(ids[b if a == person else a] for a, b in sorted(mirrored_pairs) if person in (a, b)),
            lag_confidence=lag_confidence(person_windows),
        )
    return results


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
    return [_median_or_nan(np.concatenate(parts)) if parts else float("nan") for parts in torso]


def window_blocks(windows: list[tuple[int, int]], chunk_frames: int):
    """The windows in blocks whose starts lie within `chunk_frames` of the block's first.

    Yields:
        (block, low, high): the block's windows, its first start and its last end (frames).
    """
    first = 0
    while first < len(windows):
        block = [w for w in windows[first:] if w[0] < windows[first][0] + chunk_frames]
        first += len(block)
        yield block, block[0][0], max(end for _, end in block)


def read_padded(source: PoseSource, start: int, stop: int, frames: int, count: int) -> list[np.ndarray]:
    """Frames start..stop-1 of every person, NaN for frames outside 0..frames-1."""
    stretches = [np.full((stop - start, NUM_KEYPOINTS, 2), np.nan) for _ in range(count)]
    low, high = max(start, 0), min(stop, frames)
    if high > low:
        for stretch, read in zip(stretches, source(low, high)):
            stretch[low - start:high - start] = read
    return stretches


@dataclass(frozen=True)
class _GroupFeatures:
    """Every person's features over a stretch: motion (n, T, 24) and vertical (n, T, 12)."""

    motion: np.ndarray
    vertical: np.ndarray

    @classmethod
    def of(cls, normalised: Sequence[np.ndarray], fps: float, params: TimingParams, half: int) -> _GroupFeatures:
        """Features of normalised stretches, less `half` frames at either end (the velocities'
        reach)."""
        return cls(np.stack([motion_features(n, fps, params.velocity_span_s)[half:-half] for n in normalised]),
                   np.stack([vertical_features(n)[half:-half] for n in normalised]))


def _window_pair_lags(
    references_from: _GroupFeatures,
    partners_from: _GroupFeatures,
    offset: int,
    length: int,
    reach: int,
    fps: float,
    params: TimingParams,
) -> dict[tuple[int, int], tuple[float, float] | None]:
    """Every pair's lag in one window: {(a, b): (lag of a behind b in frames, peak correlation)
    or None}, a < b.

    Row k of the features is frame (window start - reach + k - offset); b's window is the
    reference (taken from `references_from`, e.g. mirrored), a's stretch the partner. Where the
    motion features give no lag, the vertical features are searched (`params.vertical_fallback`)."""
    count = len(partners_from.motion)
    separation = max(1, round(params.min_peak_separation_s * fps))
    min_valid = max(2, int(np.ceil(params.min_valid_fraction * length)))
    upper = np.triu_indices(count, 1)  # (a, b) with a < b; the curve is [b, a]

    def lags(source: str, min_channel_std: float, min_correlation: float) -> tuple[np.ndarray, np.ndarray]:
        curves, _ = pair_curves(getattr(references_from, source)[:, offset + reach:offset + reach + length],
                                getattr(partners_from, source)[:, offset:offset + length + 2 * reach], min_valid,
                                min_channel_std, params.min_channels)
        return peak_shifts(curves[upper[1], upper[0]], min_correlation, params.ambiguity_margin, separation)

    shifts, values = lags("motion", params.min_channel_std, params.min_correlation)
    missing = np.isnan(shifts)
    if params.vertical_fallback and missing.any():
        again_shifts, again_values = lags("vertical", params.vertical_min_channel_std, params.vertical_min_correlation)
        shifts, values = np.where(missing, again_shifts, shifts), np.where(missing, again_values, values)
    return {(int(a), int(b)): None if np.isnan(shift) else (float(shift), float(value))
            for a, b, shift, value in zip(*upper, shifts, values)}


def _window_lags(
    source: PoseSource,
    frames: int,
    scales: list[float],
    windows: list[tuple[int, int]],
    fps: float,
    params: TimingParams,
    chunk_frames: int,
) -> tuple[np.ndarray, np.ndarray, set[tuple[int, int]]]:
    """Per window and person: lag behind the group in frames and mean peak correlation.

    Args:
        source: The persons' poses (see `PoseSource`).
        frames: Frames in the video.
        scales: Each person's torso length over the whole video, pixels (NaN: unknown).
        windows: From `analysis_windows`.
        fps: Frames per second.
        params: Timing knobs.
        chunk_frames: Frames of window starts handled together.

    Returns:
        (W, n) lags in frames and (W, n) correlations (NaN where unknown), and the pairs of
        person indices (a < b) compared as mirror images.
    """
    count = len(scales)
    reach = int(np.ceil(params.max_lag_s * fps)) + 1
    half = max(1, round(params.velocity_span_s * fps / 2))
    direct: dict[tuple[int, int], list[tuple[float, float] | None]] = {}
    flipped: dict[tuple[int, int], list[tuple[float, float] | None]] = {}
    for block, low, high in window_blocks(windows, chunk_frames):
        # Features of frames low - reach .. high + reach - 1; each needs `half` frames either side.
        stretches = read_padded(source, low - reach - half, high + reach + half, frames, count)
        normalised = [normalise_poses(stretch, scale) for stretch, scale in zip(stretches, scales)]
        features = _GroupFeatures.of(normalised, fps, params, half)
        mirrored = _GroupFeatures.of([mirror_poses(n) for n in normalised], fps, params, half) if params.mirror \
            else None
        for start, end in block:
            for pair, result in _window_pair_lags(features, features, start - low, end - start, reach, fps,
                                                  params).items():
                direct.setdefault(pair, []).append(result)
            if mirrored is not None:
                for pair, result in _window_pair_lags(mirrored, features, start - low, end - start, reach, fps,
                                                      params).items():
                    flipped.setdefault(pair, []).append(result)

    pair_results: dict[tuple[int, int], list[tuple[float, float] | None]] = {}
    mirrored_pairs: set[tuple[int, int]] = set()
    for pair, results in direct.items():
        pair_results[pair] = results
        if params.mirror and _strength(flipped[pair]) > _strength(results):
            pair_results[pair] = flipped[pair]
            mirrored_pairs.add(pair)

    window_lags = np.full((len(windows), count), np.nan)
    window_correlations = np.full((len(windows), count), np.nan)
    for w in range(len(windows)):
        measured = {pair: found for pair, result in pair_results.items() if (found := result[w]) is not None}
        window_lags[w] = solve_group_lags(count, measured)
        for person in range(count):
            peaks = [value for (a, b), (_, value) in measured.items() if person in (a, b)]
            if peaks and np.isfinite(window_lags[w, person]):
                window_correlations[w, person] = np.mean(peaks)
    return window_lags, window_correlations, mirrored_pairs


def current_lags(
    poses: Mapping[int, np.ndarray], fps: float, params: TimingParams = TimingParams()
) -> dict[int, float | None]:
    """Lags behind the group over one stretch taken as a single window (the live label).

    The same lag estimate as `analyse_timing` gives for one window, without the pose scores,
    so it is cheap enough to run every second on the trailing `params.window_s`.

    Args:
        poses: {id: (L, 17, 2) keypoints in pixels, NaN where absent} over the stretch.
        fps: Frames per second.
        params: Timing knobs (`window_s` and `hop_s` are not used: the stretch is the window).

    Returns:
        {id: lag in milliseconds (positive: behind) or None}, ids ascending.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    ids = sorted(poses)
    arrays = [np.asarray(poses[i], dtype=np.float64) for i in ids]
    if len(arrays) < 2 or len(arrays[0]) == 0:
        return {person_id: None for person_id in ids}
    length = len(arrays[0])
    scales = [_median_or_nan(torso_lengths(array)) for array in arrays]
    lags, _, _ = _window_lags(lambda start, stop: [a[start:stop] for a in arrays], length, scales,
                              [(0, length)], fps, params, length)
    return {person_id: None if np.isnan(lags[0, k]) else float(lags[0, k] * 1000.0 / fps)
            for k, person_id in enumerate(ids)}


def _strength(results: list[tuple[float, float] | None]) -> float:
    """Mean peak correlation over windows, a window without a peak counting 0."""
    return float(np.mean([r[1] if r is not None else 0.0 for r in results])) if results else 0.0


def _median_or_nan(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


#: Most others a person's pose is compared with for its pose score (`_group_distances`).
MAX_POSE_PARTNERS = 8


def pose_partners(count: int, most: int = MAX_POSE_PARTNERS) -> list[list[int]]:
    """Whom each of `count` persons is compared with for the pose score: every other person up
    to `most` of them, else `most` spread evenly through the group (so that the cost grows with
    the persons, not the pairs: the median of 8 distances is as steady as that of 29)."""
    partners = []
    for person in range(count):
        others = [other for other in range(count) if other != person]
        if len(others) > most:
            others = [others[k] for k in np.linspace(0, len(others) - 1, most).round().astype(int)]
        partners.append(others)
    return partners


def _group_distances(
    source: PoseSource,
    frames: int,
    count: int,
    lags_frames: list[float],
    mirrored_pairs: set[tuple[int, int]],
    chunk_frames: int,
) -> list[np.ndarray]:
    """Per person, (T,) median over its `pose_partners` of the pose distance after removing the lags."""
    lags = [lag if np.isfinite(lag) else 0.0 for lag in lags_frames]
    compared = pose_partners(count)
    # The person's frame t shows the move the other made at t - (own lag - other lag).
    shifts = {(p, q): round(lags[p] - lags[q]) for p in range(count) for q in compared[p]}
    margin = max((abs(shift) for shift in shifts.values()), default=0)
    distances = [np.full(frames, np.nan) for _ in range(count)]
    for start in range(0, frames, chunk_frames):
        stop = min(frames, start + chunk_frames)
        stretches = read_padded(source, start - margin, stop + margin, frames, count)
        for person in range(count):
            own = stretches[person][margin:margin + stop - start]
            per_other = []
            for other in compared[person]:
                shift = shifts[person, other]
                partner = stretches[other][margin - shift:margin - shift + stop - start]
                if (min(person, other), max(person, other)) in mirrored_pairs:
                    partner = mirror_poses(partner)
                per_other.append(pose_distances(partner, own))
            if not per_other:
                continue
            stacked = np.stack(per_other)
            finite = np.isfinite(stacked).any(axis=0)
            result = distances[person][start:stop]
            result[finite] = np.nanmedian(stacked[:, finite], axis=0)
    return distances


@dataclass(frozen=True)
class Moment:
    """A stretch of the video where the group was least in sync.

    Attributes:
        start_s: Start, seconds from the start of the video.
        end_s: End (exclusive), seconds.
        mean_score: Mean group score over the scored frames of the stretch, 0..10.
        worst_person: Id with the largest mean pose distance there, or None when unknown.
    """

    start_s: float
    end_s: float
    mean_score: float
    worst_person: int | None


def worst_moments(
    frame_scores: np.ndarray,
    fps: float,
    distances: Mapping[int, np.ndarray] | None = None,
    count: int = 3,
    duration_s: float = 1.0,
    min_scored_fraction: float = 0.5,
) -> list[Moment]:
    """The non-overlapping stretches with the lowest mean group score, worst first.

    Args:
        frame_scores: (T,) group score per frame, 0..10, NaN where unscored.
        fps: Frames per second.
        distances: {id: (T,) pose distance per frame, NaN where unknown} (e.g.
            `PersonTiming.distances`), to name the person most out of sync; optional.
        count: Most stretches returned.
        duration_s: Length of every stretch, seconds (rounded to whole frames).
        min_scored_fraction: A stretch needs at least this fraction of scored frames, 0..1.

    Returns:
        Up to `count` `Moment`s, lowest mean score first.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count!r}")
    scores = np.asarray(frame_scores, dtype=np.float64)
    length = max(1, round(duration_s * fps))
    if len(scores) < length:
        return []
    scored = np.isfinite(scores)
    sums = sliding_window_view(np.where(scored, scores, 0.0), length).sum(axis=1)
    counts = sliding_window_view(scored, length).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts >= max(1, np.ceil(min_scored_fraction * length)), sums / counts, np.nan)
    moments: list[Moment] = []
    while len(moments) < count and np.isfinite(means).any():
        start = int(np.nanargmin(means))
        end = start + length
        worst, worst_distance = None, -np.inf
        for person_id, series in sorted((distances or {}).items()):
            stretch = np.asarray(series, dtype=np.float64)[start:end]
            stretch = stretch[np.isfinite(stretch)]
            if stretch.size and stretch.mean() > worst_distance:
                worst, worst_distance = person_id, float(stretch.mean())
        moments.append(Moment(start / fps, end / fps, float(means[start]), worst))
        means[max(0, start - length + 1):end] = np.nan
    return moments
