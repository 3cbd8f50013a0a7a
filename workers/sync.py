"""Group synchrony calibrated against chance: how alike the performers move, and when.

Pure math, no I/O. The input is the performers' keypoints, read a stretch at a time through
a `workers.timing.PoseSource` (pixels, NaN where absent), so videos of any length fit in
memory. See docs/SYNC.md for the method, its references and the measurements behind its
constants.

Definitions:
- Movement: the velocities of the 12 body keypoints of the normalised pose (the timing
  analysis's motion features, `workers.timing.motion_features`, here over
  `velocity_span_s`): a pose sequence and its reverse have opposite velocities, so direction
  counts.
- Pair likeness and lag in a window (4 s every 1 s, as the timing analysis): the velocity
  correlation curve over shifts within +-`max_lag_s` (`workers.timing.shift_correlations`);
  its highest value r, and where it lies, the pair's lag d in that window.
- Chance: the same with one of the two shifted circularly in time by amounts outside the lag
  search (`surrogate_offsets`): what two people who do not move together reach by searching
  for their best lag. m is the surrogates' mean r.
- Score: 10 * clip((r - m) / (full_correlation - m), 0, 1) * exp(-|d| / timing_scale_ms),
  with r and |d| the means over the windows (and pairs: those a performer is in, or all for
  the group). The first factor is the movement's likeness above chance (`full_correlation`
  or more counts as the same movement: pose models' jitter keeps even identical copies below
  1), the second how close in time (the timing score's curve).
- Chance level: the surrogates' own scores (mean and 95th percentile). p-value: (1 + the
  number of surrogates whose mean r * exp(-|d| / timing_scale_ms) reaches the observed one)
  / (1 + surrogates).
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np

from workers.data import CHUNK_FRAMES
from workers.timing import (
    PoseSource,
    TimingParams,
    analysis_windows,
    mirror_poses,
    motion_features,
    normalise_poses,
    read_padded,
    shift_correlations,
    torso_scales,
    window_blocks,
)

METHOD = "velocity correlation at the best lag within +-max_lag, calibrated against circular-shift surrogates"


@dataclass(frozen=True)
class SyncParams:
    """Knobs of the synchrony score, with units.

    Attributes:
        full_correlation: Velocity correlation that counts as the same movement, 0..1.
            Two exact copies of one dancer through YOLO11n-pose correlate 0.85-0.93
            (their keypoints jitter differently); docs/SYNC.md.
        velocity_span_s: Time over which each velocity is taken, seconds: twice the timing
            analysis's, which halves the pose model's jitter in the velocities (mirror images
            through YOLO11n correlated 0.70 at 0.1 s and 0.82 at 0.2 s; docs/SYNC.md).
        surrogates: Circular shifts that make the chance distribution (p-values down to
            1 / (surrogates + 1)).
        max_surrogate_windows: Windows (evenly spread) that the surrogates are computed on;
            bounds the cost on long videos.
        significance: p-value below which the movement counts as above chance.
        together_likeness: Two people move together when their likeness is above chance and
            covers at least this share of the way from chance to `full_correlation` (a weak
            but steady likeness, such as a dancer's and a passer-by's on the park clip, 0.15 of
            the way, is not a group).
        timing: The timing analysis's knobs: windows, lag search, which channels count,
            timing scale.
    """

    full_correlation: float = 0.8
    velocity_span_s: float = 0.2
    surrogates: int = 39
    max_surrogate_windows: int = 60
    significance: float = 0.05
    together_likeness: float = 0.25
    timing: TimingParams = TimingParams()

    def __post_init__(self) -> None:
        if not 0.0 < self.full_correlation <= 1.0:
            raise ValueError(f"full_correlation must be in (0, 1], got {self.full_correlation!r}")
        if self.surrogates < 1 or self.max_surrogate_windows < 1:
            raise ValueError("surrogates and max_surrogate_windows must be >= 1")
        if not 0.0 < self.significance < 1.0:
            raise ValueError(f"significance must be in (0, 1), got {self.significance!r}")


@dataclass(frozen=True)
class SyncScore:
    """A synchrony score with its chance level.

    Attributes:
        score: 0..10: 10 the same movement at the same time, about 0 no more alike than chance.
        chance_mean: The surrogates' mean score, same scale.
        chance_p95: The surrogates' 95th percentile, same scale.
        p_value: Share of surrogates at least as synchronous (with one added to both counts).
        above_chance: p_value below the significance level.
    """

    score: float
    chance_mean: float
    chance_p95: float
    p_value: float
    above_chance: bool


@dataclass(frozen=True)
class SyncResult:
    """The group's synchrony, each performer's, and the group's over time.

    Attributes:
        group: Over the pairs of performers within a group (all pairs when they are one
            group), or None with fewer than two or no usable window.
        persons: {id: SyncScore or None} for every performer, over the pairs with the others
            of its group.
        windows: (start_s, end_s, group score or None) per analysis window.
        method: A one-line description of the method, for the report.
        pairs: Every pair of the persons compared (`PairSync`), ids ascending.
    """

    group: SyncScore | None
    persons: dict[int, SyncScore | None]
    windows: tuple[tuple[float, float, float | None], ...]
    method: str = METHOD
    pairs: tuple[PairSync, ...] = ()


def surrogate_offsets(frames: int, reach: int, count: int) -> list[int]:
    """Circular shifts for the surrogates: evenly spread, each more than the lag search away.

    Shifts are kept at least twice the search reach from 0 (both ways round) where the video
    is long enough, else just outside it.

    Args:
        frames: Frames in the video, T.
        reach: The lag search's reach in frames.
        count: How many shifts are wanted.

    Returns:
        Up to `count` distinct shifts in frames (fewer on short videos, none when even
        `reach + 1` frames cannot fit both ways round).
    """
    for gap in (2 * reach, reach + 1):
        low, high = gap, frames - gap
        if high >= low:
            return sorted({int(round(v)) for v in np.linspace(low, high, count)})
    return []


def _read_wrapped(source: PoseSource, start: int, stop: int, frames: int, count: int) -> list[np.ndarray]:
    """Frames start..stop-1 of every person, indices taken modulo `frames` (a circular shift)."""
    indices = np.arange(start, stop) % frames
    pieces: list[list[np.ndarray]] = [[] for _ in range(count)]
    begin = 0
    while begin < len(indices):
        end = begin + 1
        while end < len(indices) and indices[end] == indices[end - 1] + 1:
            end += 1
        for person, read in enumerate(source(int(indices[begin]), int(indices[end - 1]) + 1)):
            pieces[person].append(np.asarray(read, dtype=np.float64))
        begin = end
    return [np.concatenate(parts) for parts in pieces]


def _best(curve: np.ndarray) -> tuple[float, float] | None:
    """(highest value, its shift from the centre in frames) of a similarity curve, or None when
    fewer than half of the shifts could be measured (a person absent for much of the window:
    the best of the few shifts left says nothing about the lag)."""
    if np.isfinite(curve).sum() * 2 < len(curve):
        return None
    best = int(np.nanargmax(curve))
    return float(curve[best]), float(best - (len(curve) - 1) // 2)


class _Features:
    """Motion features of a stretch of every performer, mirrored copies on demand."""

    def __init__(self, stretches: list[np.ndarray], scales: Sequence[float], fps: float, span_s: float,
                 half: int) -> None:
        self.normalised = [normalise_poses(s, scale) for s, scale in zip(stretches, scales)]
        self.fps, self.span_s, self.half = fps, span_s, half
        self.plain = [self._motion(n) for n in self.normalised]
        self._mirrored: dict[int, np.ndarray] = {}

    def _motion(self, normalised: np.ndarray) -> np.ndarray:
        return motion_features(normalised, self.fps, self.span_s)[self.half:-self.half]

    def of(self, person: int, mirrored: bool) -> np.ndarray:
        if not mirrored:
            return self.plain[person]
        if person not in self._mirrored:
            self._mirrored[person] = self._motion(mirror_poses(self.normalised[person]))
        return self._mirrored[person]


@dataclass(frozen=True)
class PairSync:
    """Two performers' synchrony, and whether they move together at all.

    Attributes:
        ids: The two ids, ascending.
        score: Their synchrony with its chance level, or None (no usable window).
        likeness: Mean over the windows of their best velocity correlation within the lag
            search (r; the score before the timing factor), or None.
        likeness_p_value: Share of surrogates with at least that likeness (with one added
            to both counts), or None.
        moves_together: Likeness above chance (`likeness_p_value` below the significance
            level) and at least `SyncParams.together_likeness` of the way from chance to the
            same movement: the same movement, whatever the lag within the search.
        lag_ms: Mean over the windows of the absolute lag between the two, milliseconds, or None.
    """

    ids: tuple[int, int]
    score: SyncScore | None
    likeness: float | None
    likeness_p_value: float | None
    moves_together: bool
    lag_ms: float | None


#: Per window or surrogate: (best correlation r, lag in frames), or None where there is none.
_Found = tuple[float, float] | None


class PairwiseSync:
    """Every pair's observed and surrogate results, combined over any set of pairs.

    Made by `pairwise_sync`; the group, per-person and per-window scores of any grouping of the
    ids come from the same pair results (`result`), so splitting performers into groups costs
    nothing more.
    """

    def __init__(self, ids: Sequence[int], observed: dict[tuple[int, int], list[_Found]],
                 surrogate: dict[tuple[int, int], list[list[_Found]]], surrogates: int,
                 windows: list[tuple[int, int]], fps: float, params: SyncParams) -> None:
        self.ids = list(ids)
        self.windows = windows
        self.fps = fps
        self.params = params
        self._observed = observed  # keyed by positions in ids, a < b
        self._surrogate = surrogate
        self._surrogates = surrogates
        self._scale_frames = params.timing.timing_scale_ms * fps / 1000.0
        self._chance: dict[tuple[tuple[int, int], ...], list[tuple[float, float, float]]] = {}

    def _key(self, a: int, b: int) -> tuple[int, int]:
        i, j = self.ids.index(a), self.ids.index(b)
        return (i, j) if i < j else (j, i)

    def _statistic(self, results: Sequence[_Found]) -> tuple[float, float, float] | None:
        """(mean r, mean |lag| in frames, mean r * timing factor) over the results present."""
        present = [r for r in results if r is not None]
        if not present:
            return None
        values = np.array(present)
        factor = np.exp(-np.abs(values[:, 1]) / self._scale_frames)
        return float(values[:, 0].mean()), float(np.abs(values[:, 1]).mean()), float((values[:, 0] * factor).mean())

    def _score_of(self, r: float, lag: float, chance_r: float) -> float:
        likeness = np.clip((r - chance_r) / max(self.params.full_correlation - chance_r, 1e-9), 0.0, 1.0)
        return float(10.0 * likeness * np.exp(-abs(lag) / self._scale_frames))

    def _nulls(self, members: Sequence[tuple[int, int]]) -> list[tuple[float, float, float]]:
        key = tuple(members)
        if key not in self._chance:  # the same for every window of the same members
            found = [self._statistic([r for pair in members for r in self._surrogate[pair][o]])
                     for o in range(self._surrogates)]
            self._chance[key] = [n for n in found if n is not None]
        return self._chance[key]

    def combine(self, members: Sequence[tuple[int, int]], window: int | None = None) -> SyncScore | None:
        """The synchrony over these pairs (positions in `ids`), over all windows or one."""
        seen = self._statistic([r for pair in members for r in (
            self._observed[pair] if window is None else self._observed[pair][window:window + 1])])
        nulls = self._nulls(members)
        if seen is None or not nulls:
            return None
        chance_r = float(np.mean([n[0] for n in nulls]))
        chance = np.array([self._score_of(n[0], n[1], chance_r) for n in nulls])
        # The statistic the p-value compares: r * timing factor, averaged (direction-aware, lag-aware).
        reached = sum(n[2] >= seen[2] for n in nulls)
        p_value = (1 + reached) / (1 + len(nulls))
        return SyncScore(
            score=self._score_of(seen[0], seen[1], chance_r),
            chance_mean=float(chance.mean()),
            chance_p95=float(np.percentile(chance, 95)),
            p_value=float(p_value),
            above_chance=bool(p_value < self.params.significance),
        )

    def pair(self, a: int, b: int) -> PairSync:
        """The synchrony of ids a and b, and whether they move together."""
        key = self._key(a, b)
        seen = self._statistic(self._observed[key])
        nulls = self._nulls([key])
        likeness = p_value = lag_ms = None
        together = False
        if seen is not None:
            likeness, lag_ms = seen[0], seen[1] * 1000.0 / self.fps
            if nulls:
                p_value = (1 + sum(n[0] >= seen[0] for n in nulls)) / (1 + len(nulls))
                chance_r = float(np.mean([n[0] for n in nulls]))
                share = (likeness - chance_r) / max(self.params.full_correlation - chance_r, 1e-9)
                together = p_value < self.params.significance and share >= self.params.together_likeness
        first, second = sorted((a, b))
        return PairSync((first, second), self.combine([key]), likeness, p_value, together, lag_ms)

    def pairs(self) -> list[PairSync]:
        """Every pair, ids ascending."""
        ids = sorted(self.ids)
        return [self.pair(a, b) for k, a in enumerate(ids) for b in ids[k + 1:]]

    def result(self, groups: Sequence[Sequence[int]] | None = None) -> SyncResult:
        """The scores with the performers split into groups (default: one group of all ids):
        a performer's over the pairs of its own group, the group's and each window's over the
        pairs within any group; `pairs` holds every pair of `ids`."""
        groups = [self.ids] if groups is None else groups
        members = [self._key(a, b) for group in groups for k, a in enumerate(group) for b in group[k + 1:]]
        persons: dict[int, SyncScore | None] = {person_id: None for person_id in self.ids}
        for group in groups:
            for person_id in group:
                own = [self._key(person_id, other) for other in group if other != person_id]
                persons[person_id] = self.combine(own) if own else None
        over_time = tuple(
            (start / self.fps, end / self.fps,
             None if not members or (found := self.combine(members, w)) is None else found.score)
            for w, (start, end) in enumerate(self.windows)
        )
        group_score = self.combine(members) if members else None
        return SyncResult(group_score, persons, over_time, pairs=tuple(self.pairs()))


def pairwise_sync(
    ids: Sequence[int],
    frames: int,
    source: PoseSource,
    fps: float,
    scales: Sequence[float] | None = None,
    mirrored_pairs: AbstractSet[tuple[int, int]] = frozenset(),
    params: SyncParams = SyncParams(),
    chunk_frames: int = CHUNK_FRAMES,
) -> PairwiseSync:
    """Every pair's likeness and lag per window, and the same against the surrogates.

    Args:
        ids: The persons' ids, in the order `source` returns them.
        frames: Frames in the video, T.
        source: Reads a stretch of every person's poses (see `workers.timing.PoseSource`).
        fps: Frames per second.
        scales: Each person's torso length over the whole video, pixels (NaN: unknown);
            None reads them (`workers.timing.torso_scales`).
        mirrored_pairs: Pairs of ids compared as mirror images (the timing analysis's choice
            under `--mirror`).
        params: Knobs.
        chunk_frames: Frames of window starts read together.

    Returns:
        The pair results, ready to be combined (no pair with fewer than two ids or no window).
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    count = len(ids)
    timing = params.timing
    windows = analysis_windows(frames, fps, timing.window_s, timing.hop_s)
    pairs = [(a, b) for a in range(count) for b in range(a + 1, count)]
    if not pairs or not windows:
        return PairwiseSync(ids, {pair: [] for pair in pairs}, {pair: [] for pair in pairs}, 0, windows, fps, params)
    if scales is None:
        scales = torso_scales(source, frames, count, chunk_frames)
    reach = int(np.ceil(timing.max_lag_s * fps)) + 1
    half = max(1, round(params.velocity_span_s * fps / 2))
    mirrored = {tuple(sorted(p)) for p in mirrored_pairs}
    flipped = {(a, b): tuple(sorted((ids[a], ids[b]))) in mirrored for a, b in pairs}

    def curve(reference: np.ndarray, partner: np.ndarray, start: int, end: int) -> np.ndarray:
        min_valid = max(2, int(np.ceil(timing.min_valid_fraction * (end - start))))
        return shift_correlations(reference, partner, min_valid, timing.min_channel_std, timing.min_channels)

    # Observed: per window and pair, (r, lag in frames) or None; windows a block at a time.
    observed: dict[tuple[int, int], list[_Found]] = {pair: [] for pair in pairs}
    for block, low, high in window_blocks(windows, chunk_frames):
        stretches = read_padded(source, low - reach - half, high + reach + half, frames, count)
        features = _Features(stretches, scales, fps, params.velocity_span_s, half)  # frames low-reach..high+reach-1
        for start, end in block:
            for a, b in pairs:
                own = features.of(b, flipped[a, b])[start - low + reach:end - low + reach]
                partner = features.of(a, False)[start - low:end - low + 2 * reach]
                observed[a, b].append(_best(curve(own, partner, start, end)))

    # Surrogates: person a's features shifted circularly by each offset, on a sample of windows.
    offsets = surrogate_offsets(frames, reach, params.surrogates)
    sample = [windows[k] for k in sorted({int(round(v)) for v in
                                          np.linspace(0, len(windows) - 1, min(len(windows),
                                                                              params.max_surrogate_windows))})]
    # surrogate[pair][o] = list over sampled windows of (r, lag) or None
    surrogate: dict[tuple[int, int], list[list[_Found]]] = {pair: [[] for _ in offsets] for pair in pairs}
    for start, end in sample:
        own_stretches = read_padded(source, start - reach - half, end + reach + half, frames, count)
        own_features = _Features(own_stretches, scales, fps, params.velocity_span_s, half)
        for o, offset in enumerate(offsets):
            moved = _read_wrapped(source, start + offset - reach - half, end + offset + reach + half, frames, count)
            moved_features = _Features(moved, scales, fps, params.velocity_span_s, half)
            for a, b in pairs:
                own = own_features.of(b, flipped[a, b])[reach:-reach]
                surrogate[a, b][o].append(_best(curve(own, moved_features.of(a, False), start, end)))
    return PairwiseSync(ids, observed, surrogate, len(offsets), windows, fps, params)
