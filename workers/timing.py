"""Per-person timing: who dances ahead of or behind the group, and by how many milliseconds.

Pure math, no I/O. The input is each performer's keypoints over the whole video, (T, 17, 2)
pixels with NaN where the person is absent (see `workers.data.PoseRows.poses`), either as whole
arrays (`analyse_timing`) or read a stretch at a time (`analyse_timing_stream`, for videos of
any length: same results). The signals it aligns (normalised poses, motion and vertical
features, similarity at every shift, peaks) are defined in `workers.motion`; the pose
distances to the partners in `workers.moments`.

Definitions:
- Pair lag: on sliding windows (`window_s` long, every `hop_s`), the similarity of person i's
  motion features with person j's at every whole-frame shift in +-`max_lag_s` (plus one
  frame so that the limit itself is inside; computed by `workers.correlation`, tested against
  the one-pair reference in `tests/reference.py`). The best interior peak, refined to a
  fraction of a frame (`workers.motion.peak_shifts`), is the lag of i behind j. No lag when
  the peak is below `min_correlation`, or another peak (or the search limit) at least
  `min_peak_separation_s` away comes within `ambiguity_margin` of it (periodic motion: the lag
  is ambiguous).
- Viewpoint fallback: where the motion features give no lag in a window, the same search
  runs on the vertical features (`workers.motion.vertical_features`), which two views of
  one performance share while their velocities in the image differ. Smooth positions
  correlate by chance more easily than velocities, so this lag must reach
  `vertical_min_correlation` (higher than `min_correlation`).
- Group lag: per window, the pair lags are the differences lag_i - lag_j; a least-squares
  fit weighted by the peak correlations gives one lag per person, shifted so that the
  median person is at 0. Positive = behind the group (makes the same move later),
  negative = ahead. A person's lag is the median over windows.
- Timing score: 10 * exp(-|lag_ms| / timing_scale_ms): 10 in time, 7.2 at 50 ms, 3.7 at
  150 ms, 1.4 at 300 ms.
- Pose score: after removing the lags, the per-frame pose distance to the other performers
  (`workers.moments.partner_distances`: the original score's distance, the median over at
  most `workers.moments.MAX_POSE_PARTNERS` others), mapped onto 0..10 as the original score
  does; the person's pose score is the mean over frames.
- Mirror (`mirror=True`): each pair is also compared with one of them mirrored
  (`workers.motion.mirror_poses`), and per pair whichever of the two matches better over the
  video counts, so two people facing each other and moving as mirror images are in sync.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from workers.correlation import pair_curves
from workers.data import CHUNK_FRAMES
from workers.moments import partner_distances
from workers.motion import (
    PoseSource,
    analysis_windows,
    median_or_nan,
    mirror_poses,
    motion_features,
    normalise_poses,
    peak_shifts,
    read_padded,
    torso_lengths,
    torso_scales,
    vertical_features,
)
from workers.score import ScoreParams, distance_to_score
from workers.skeleton import NUM_KEYPOINTS


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
            `workers.moments.partner_distances`), NaN where not comparable; indexed by this
            person's frames.
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


def window_entries(windows: Sequence[tuple[int, int]], lags: np.ndarray, correlations: np.ndarray, fps: float
                   ) -> tuple[WindowLag, ...]:
    """One person's `WindowLag`s from its (W,) lags in frames and peak correlations (NaN: none)."""
    return tuple(
        WindowLag(start_s=start / fps, end_s=end / fps,
                  lag_ms=None if np.isnan(lag) else float(lag * 1000 / fps),
                  correlation=None if np.isnan(correlation) else float(correlation))
        for (start, end), lag, correlation in zip(windows, lags, correlations)
    )


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

    lags_frames = [median_or_nan(window_lags[:, person]) for person in range(len(ids))]
    all_distances = partner_distances(ordered, frames, len(ids), lags_frames, mirrored_pairs, chunk_frames)
    results = {}
    for person, person_id in enumerate(ids):
        distances = all_distances[person]
        scores = [distance_to_score(d, params.score) for d in distances[np.isfinite(distances)]]
        lag_ms = None if np.isnan(lags_frames[person]) else float(lags_frames[person] * 1000.0 / fps)
        person_windows = window_entries(windows, window_lags[:, person], window_correlations[:, person], fps)
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


@dataclass(frozen=True)
class StretchFeatures:
    """Every person's features over a stretch: motion (n, T, 24) and vertical (n, T, 12)."""

    motion: np.ndarray
    vertical: np.ndarray

    @classmethod
    def of(cls, normalised: Sequence[np.ndarray], fps: float, params: TimingParams, half: int) -> StretchFeatures:
        """Features of normalised stretches, less `half` frames at either end (the velocities'
        reach)."""
        return cls(np.stack([motion_features(n, fps, params.velocity_span_s)[half:-half] for n in normalised]),
                   np.stack([vertical_features(n)[half:-half] for n in normalised]))


def _window_pair_lags(
    references_from: StretchFeatures,
    partners_from: StretchFeatures,
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
        features = StretchFeatures.of(normalised, fps, params, half)
        mirrored = StretchFeatures.of([mirror_poses(n) for n in normalised], fps, params, half) if params.mirror \
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
    scales = [median_or_nan(torso_lengths(array)) for array in arrays]
    lags, _, _ = _window_lags(lambda start, stop: [a[start:stop] for a in arrays], length, scales,
                              [(0, length)], fps, params, length)
    return {person_id: None if np.isnan(lags[0, k]) else float(lags[0, k] * 1000.0 / fps)
            for k, person_id in enumerate(ids)}


def _strength(results: list[tuple[float, float] | None]) -> float:
    """Mean peak correlation over windows, a window without a peak counting 0."""
    return float(np.mean([r[1] if r is not None else 0.0 for r in results])) if results else 0.0
