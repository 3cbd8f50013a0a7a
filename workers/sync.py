"""Group synchrony calibrated against chance: how alike the performers move, and when.

Pure math, no I/O. The input is the performers' keypoints, read a stretch at a time through
a `workers.motion.PoseSource` (pixels, NaN where absent), so videos of any length fit in
memory. See docs/SYNC.md for the method, its references and the measurements behind its
constants.

Definitions:
- Movement: the velocities of the 12 body keypoints of the normalised pose (the timing
  analysis's motion features, `workers.motion.motion_features`, here over
  `velocity_span_s`): a pose sequence and its reverse have opposite velocities, so direction
  counts.
- Pair likeness and lag in a window (4 s every 1 s, as the timing analysis): the velocity
  correlation curve over shifts within +-`max_lag_s` (`workers.correlation`, tested against the
  one-pair reference in `tests/reference.py`); its highest value r, and where it lies, the
  pair's lag d in that window.
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

import tempfile
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.correlation import Partners, References, correlate, fft_length, partners, references
from workers.data import CHUNK_FRAMES
from workers.motion import (
    BODY_KEYPOINTS,
    PoseSource,
    analysis_windows,
    mirror_poses,
    motion_features,
    normalise_poses,
    torso_scales,
)
from workers.timing import TimingParams

#: Largest feature store kept in memory; a bigger one goes to a temporary file (`_FeatureStore`).
_IN_MEMORY_BYTES = 256 * 2 ** 20

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
    max_surrogate_windows: int = 20
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


def surrogate_offsets(frames: int, reach: int, count: int, hop: int = 1) -> list[int]:
    """Circular shifts for the surrogates: evenly spread, each more than the lag search away.

    Shifts are kept at least twice the search reach from 0 (both ways round) where the video
    is long enough, else just outside it. They are multiples of the largest divisor of `hop`
    that still gives `count` distinct shifts, so that a window's start plus a shift falls on
    few distinct frames: each person's stretch there is transformed once for every window and
    shift that meets it (`pairwise_sync`).

    Args:
        frames: Frames in the video, T.
        reach: The lag search's reach in frames.
        count: How many shifts are wanted.
        hop: Frames between analysis windows' starts.

    Returns:
        Up to `count` distinct shifts in frames (fewer on short videos, none when even
        `reach + 1` frames cannot fit both ways round).
    """
    for gap in (2 * reach, reach + 1):
        low, high = gap, frames - gap
        if high >= low:
            spacing = (high - low) / max(count - 1, 1)
            step = max((d for d in range(1, hop + 1) if hop % d == 0 and d <= spacing), default=1)
            first, last = -(-low // step) * step, high // step * step
            if last < first:
                first, last, step = low, high, 1
            return sorted({step * int(round(v / step)) for v in np.linspace(first, last, count)})
    return []


def _pieces(start: int, stop: int, frames: int) -> list[tuple[int, int]]:
    """Frames start..stop-1 taken modulo `frames`, as contiguous (low, high) ranges in order."""
    indices = np.arange(start, stop) % frames
    cuts = np.flatnonzero(np.diff(indices) != 1) + 1
    return [(int(piece[0]), int(piece[-1]) + 1) for piece in np.split(indices, cuts)]


def _read_wrapped(source: PoseSource, start: int, stop: int, frames: int, count: int) -> list[np.ndarray]:
    """Frames start..stop-1 of every person, indices taken modulo `frames` (a circular shift)."""
    pieces: list[list[np.ndarray]] = [[] for _ in range(count)]
    for low, high in _pieces(start, stop, frames):
        for person, read in enumerate(source(low, high)):
            pieces[person].append(np.asarray(read, dtype=np.float64))
    return [np.concatenate(parts) for parts in pieces]


def best_of_curves(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The highest value of every similarity curve and its shift from the centre.

    Args:
        curves: (..., 2S + 1) similarity at shifts -S..S frames, NaN where unknown.

    Returns:
        (...) highest values and (...) their shifts in frames, both NaN where fewer than half
        of the shifts could be measured (a person absent for much of the window: the best of
        the few shifts left says nothing about the lag).
    """
    finite = np.isfinite(curves)
    enough = finite.sum(axis=-1) * 2 >= curves.shape[-1]
    filled = np.where(finite, curves, -np.inf)
    best = filled.argmax(axis=-1)
    values = np.take_along_axis(filled, best[..., None], axis=-1)[..., 0]
    shifts = best - (curves.shape[-1] - 1) // 2
    return np.where(enough, values, np.nan), np.where(enough, shifts, np.nan)


class _FeatureStore:
    """Every person's motion features over the whole video, computed once, float64: (n, T, C).

    The observed windows and every surrogate shift read their stretches from here instead of
    reading and transforming the poses again. Past `_IN_MEMORY_BYTES` (e.g. 30 people over 12
    minutes at 30 fps) the array lives in a temporary file that the system pages in, so that
    memory stays bounded on long videos.
    """

    def __init__(self, source: PoseSource, frames: int, count: int, scales: Sequence[float], fps: float,
                 span_s: float, mirrored: bool, chunk_frames: int) -> None:
        half = self.half = max(1, round(span_s * fps / 2))
        channels = len(BODY_KEYPOINTS) * 2
        self.frames = frames
        self._folder: tempfile.TemporaryDirectory | None = None
        self.plain = self._allocate((count, frames, channels), "plain")
        self.mirrored = self._allocate((count, frames, channels), "mirrored") if mirrored else None
        # The video taken as a loop: velocities at its ends see the frames at its other end, as
        # a circular shift does (`read` hides them for the observed windows).
        for start in range(0, frames, chunk_frames):
            stop = min(frames, start + chunk_frames)
            stretches = _read_wrapped(source, start - half, stop + half, frames, count)
            for person, (stretch, scale) in enumerate(zip(stretches, scales)):
                normalised = normalise_poses(stretch, scale)
                self.plain[person, start:stop] = motion_features(normalised, fps, span_s)[half:-half]
                if self.mirrored is not None:
                    self.mirrored[person, start:stop] = motion_features(mirror_poses(normalised), fps,
                                                                        span_s)[half:-half]

    def _allocate(self, shape: tuple[int, int, int], name: str) -> np.ndarray:
        if int(np.prod(shape)) * 8 <= _IN_MEMORY_BYTES:
            return np.empty(shape, np.float64)
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="sync-features-")
        return np.lib.format.open_memmap(Path(self._folder.name) / f"{name}.npy", mode="w+", dtype=np.float64,
                                         shape=shape)

    def read(self, start: int, stop: int, mirrored: bool = False, wrap: bool = False) -> np.ndarray:
        """(n, stop - start, C) features of frames start..stop-1, float64: with `wrap` taken
        modulo the video's length (a circular shift); else NaN outside the video and where the
        velocity would need frames outside it."""
        values = self.mirrored if mirrored and self.mirrored is not None else self.plain
        if wrap:
            return np.concatenate([values[:, low:high] for low, high in _pieces(start, stop, self.frames)],
                                  axis=1).astype(np.float64)
        result = np.full((len(values), stop - start, values.shape[2]), np.nan)
        low, high = max(start, self.half), min(stop, self.frames - self.half)
        if high > low:
            result[:, low - start:high - start] = values[:, low:high]
        return result

    def close(self) -> None:
        """Remove the temporary file, if any."""
        if self._folder is not None:
            self.plain = self.mirrored = None  # type: ignore[assignment]
            self._folder.cleanup()
            self._folder = None


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


class PairwiseSync:
    """Every pair's observed and surrogate results, combined over any set of pairs.

    Made by `pairwise_sync`; the group, per-person and per-window scores of any grouping of the
    ids come from the same pair results (`result`), so splitting performers into groups costs
    nothing more.

    Args:
        ids: The persons' ids; positions in this list index the arrays.
        observed: (r, lag): each (W, n, n), entry [w, a, b] for a < b the pair's best
            correlation and its lag in frames in window w, NaN where there is none.
        surrogate: (r, lag): each (O, Ws, n, n), the same with person a shifted circularly by
            each of the O surrogate offsets, on Ws sampled windows.
        windows: The analysis windows, frames.
        fps: Frames per second.
        params: Knobs.
    """

    def __init__(self, ids: Sequence[int], observed: tuple[np.ndarray, np.ndarray],
                 surrogate: tuple[np.ndarray, np.ndarray], windows: list[tuple[int, int]], fps: float,
                 params: SyncParams) -> None:
        self.ids = list(ids)
        self.windows = windows
        self.fps = fps
        self.params = params
        self._observed = observed
        self._surrogate = surrogate
        self._scale_frames = params.timing.timing_scale_ms * fps / 1000.0
        self._chance: dict[tuple[tuple[int, int], ...], np.ndarray] = {}
        self._pairs: list[PairSync] | None = None

    def _key(self, a: int, b: int) -> tuple[int, int]:
        i, j = self.ids.index(a), self.ids.index(b)
        return (i, j) if i < j else (j, i)

    def _statistics(self, r: np.ndarray, lag: np.ndarray) -> np.ndarray:
        """(..., k) results -> (..., 3): mean r, mean |lag| in frames and mean r * timing factor
        over the results present, NaN where none is."""
        present = np.isfinite(r)
        count = present.sum(axis=-1)
        distance = np.abs(np.where(present, lag, 0.0))
        weighted = np.where(present, r, 0.0) * np.exp(-distance / self._scale_frames)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.stack([np.where(present, r, 0.0).sum(axis=-1) / count, distance.sum(axis=-1) / count,
                             weighted.sum(axis=-1) / count], axis=-1)

    def _score_of(self, r: float, lag: float, chance_r: float) -> float:
        likeness = np.clip((r - chance_r) / max(self.params.full_correlation - chance_r, 1e-9), 0.0, 1.0)
        return float(10.0 * likeness * np.exp(-abs(lag) / self._scale_frames))

    def _nulls(self, members: Sequence[tuple[int, int]]) -> np.ndarray:
        """(k, 3) statistics of the surrogates that have any result over these pairs."""
        key = tuple(members)
        if key not in self._chance:  # the same for every window of the same members
            rows, cols = np.array(members).T
            r, lag = (values[:, :, rows, cols] for values in self._surrogate)  # (O, Ws, P)
            found = self._statistics(r.reshape(len(r), -1 if len(r) else 0), lag.reshape(len(lag), -1 if len(r) else 0))
            self._chance[key] = found[np.isfinite(found[:, 0])]
        return self._chance[key]

    def _seen(self, members: Sequence[tuple[int, int]], window: int | None) -> np.ndarray:
        rows, cols = np.array(members).T
        r, lag = (values[:, rows, cols] if window is None else values[window:window + 1, rows, cols]
                  for values in self._observed)
        return self._statistics(r.ravel(), lag.ravel())

    def combine(self, members: Sequence[tuple[int, int]], window: int | None = None) -> SyncScore | None:
        """The synchrony over these pairs (positions in `ids`), over all windows or one."""
        seen = self._seen(members, window)
        nulls = self._nulls(members)
        if not np.isfinite(seen[0]) or not len(nulls):
            return None
        chance_r = float(nulls[:, 0].mean())
        chance = np.array([self._score_of(r, lag, chance_r) for r, lag, _ in nulls])
        # The statistic the p-value compares: r * timing factor, averaged (direction-aware, lag-aware).
        p_value = (1 + int((nulls[:, 2] >= seen[2]).sum())) / (1 + len(nulls))
        return SyncScore(
            score=self._score_of(float(seen[0]), float(seen[1]), chance_r),
            chance_mean=float(chance.mean()),
            chance_p95=float(np.percentile(chance, 95)),
            p_value=float(p_value),
            above_chance=bool(p_value < self.params.significance),
        )

    def pair(self, a: int, b: int) -> PairSync:
        """The synchrony of ids a and b, and whether they move together."""
        key = self._key(a, b)
        seen = self._seen([key], None)
        nulls = self._nulls([key])
        likeness = p_value = lag_ms = None
        together = False
        if np.isfinite(seen[0]):
            likeness, lag_ms = float(seen[0]), float(seen[1]) * 1000.0 / self.fps
            if len(nulls):
                p_value = (1 + int((nulls[:, 0] >= likeness).sum())) / (1 + len(nulls))
                chance_r = float(nulls[:, 0].mean())
                share = (likeness - chance_r) / max(self.params.full_correlation - chance_r, 1e-9)
                together = p_value < self.params.significance and share >= self.params.together_likeness
        first, second = sorted((a, b))
        return PairSync((first, second), self.combine([key]), likeness, p_value, together, lag_ms)

    def pairs(self) -> list[PairSync]:
        """Every pair, ids ascending (computed once)."""
        if self._pairs is None:
            ids = sorted(self.ids)
            self._pairs = [self.pair(a, b) for k, a in enumerate(ids) for b in ids[k + 1:]]
        return list(self._pairs)

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


def _pair_results(plain: References, mirrored: References | None, partner: Partners, flipped: np.ndarray,
                  min_valid: int, params: TimingParams) -> tuple[np.ndarray, np.ndarray]:
    """(n, n) best correlation and lag of every pair in one window: entry [a, b] compares
    person b's window (the reference, mirrored where `flipped[a, b]`) with person a's stretch."""
    r, lag = best_of_curves(correlate(plain, partner, min_valid, params.min_channels))
    if mirrored is not None:
        r_m, lag_m = best_of_curves(correlate(mirrored, partner, min_valid, params.min_channels))
        r, lag = np.where(flipped.T, r_m, r), np.where(flipped.T, lag_m, lag)
    return r.T, lag.T


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

    All pairs of a window come from one call of `workers.correlation.correlate` (each person's
    features transformed once), and one circular shift of every person serves every pair's
    surrogate, so the cost grows with the persons, not the pairs, until about 50 of them.

    Args:
        ids: The persons' ids, in the order `source` returns them.
        frames: Frames in the video, T.
        source: Reads a stretch of every person's poses (see `workers.motion.PoseSource`).
        fps: Frames per second.
        scales: Each person's torso length over the whole video, pixels (NaN: unknown);
            None reads them (`workers.motion.torso_scales`).
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
    if count < 2 or not windows:
        empty = np.full((0, count, count), np.nan)
        return PairwiseSync(ids, (empty, empty), (empty[None], empty[None]), windows, fps, params)
    if scales is None:
        scales = torso_scales(source, frames, count, chunk_frames)
    reach = int(np.ceil(timing.max_lag_s * fps)) + 1
    mirrored = {tuple(sorted(p)) for p in mirrored_pairs}
    flipped = np.array([[tuple(sorted((ids[a], ids[b]))) in mirrored and a != b for b in range(count)]
                        for a in range(count)])
    any_flipped = bool(flipped.any())
    std = timing.min_channel_std

    store = _FeatureStore(source, frames, count, scales, fps, params.velocity_span_s, any_flipped, chunk_frames)
    try:
        def window_of(start: int, length: int) -> tuple[References, References | None]:
            """Every person's window starting at `start` as references, plain and mirrored
            (None unless needed)."""
            size = fft_length(length, reach)
            return (references(store.read(start, start + length), size, std),
                    references(store.read(start, start + length, mirrored=True), size, std) if any_flipped else None)

        def partner_of(stretch: np.ndarray, length: int) -> Partners:
            return partners(stretch, length, fft_length(length, reach), std)

        def min_valid(length: int) -> int:
            return max(2, int(np.ceil(timing.min_valid_fraction * length)))

        # Observed: per window, every pair's (r, lag in frames).
        observed_r = np.full((len(windows), count, count), np.nan)
        observed_lag = np.full((len(windows), count, count), np.nan)
        for w, (start, end) in enumerate(windows):
            plain, mirror = window_of(start, end - start)
            partner = partner_of(store.read(start - reach, end + reach), end - start)
            observed_r[w], observed_lag[w] = _pair_results(plain, mirror, partner, flipped, min_valid(end - start),
                                                           timing)

        # Surrogates: every person shifted circularly by each offset, on a sample of windows;
        # each shifted stretch (its start modulo the video) transformed once for all that meet it.
        hop = windows[1][0] - windows[0][0] if len(windows) > 1 else 1
        offsets = surrogate_offsets(frames, reach, params.surrogates, hop)
        sample = [windows[k] for k in sorted({int(round(v)) for v in np.linspace(
            0, len(windows) - 1, min(len(windows), params.max_surrogate_windows))})]
        surrogate_r = np.full((len(offsets), len(sample), count, count), np.nan)
        surrogate_lag = np.full((len(offsets), len(sample), count, count), np.nan)
        prepared = [window_of(start, end - start) for start, end in sample]
        meeting: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for s, (start, end) in enumerate(sample):
            for o, offset in enumerate(offsets):
                meeting.setdefault(((start + offset) % frames, end - start), []).append((s, o))
        for (position, length), met in sorted(meeting.items()):
            moved = partner_of(store.read(position - reach, position + length + reach, wrap=True), length)
            for s, o in met:
                plain, mirror = prepared[s]
                surrogate_r[o, s], surrogate_lag[o, s] = _pair_results(plain, mirror, moved, flipped,
                                                                       min_valid(length), timing)
    finally:
        store.close()
    return PairwiseSync(ids, (observed_r, observed_lag), (surrogate_r, surrogate_lag), windows, fps, params)
