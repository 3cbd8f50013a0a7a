"""Per-limb timing: which limb of a performer is late, against a teacher or against the group.

Pure math, no I/O. The input is keypoints over the video, (T, 17, 2) pixels with NaN where
absent, as for `workers.timing`; windows, similarity curves and peaks are those of
`workers.motion` and `workers.correlation`, and the group solve is `workers.timing`'s.

Definitions:
- Limbs (`LIMB_DEFINITIONS`): head (nose, eyes, ears), left and right arm (shoulder, elbow,
  wrist), torso (shoulders and hips), left and right leg (hip, knee, ankle).
- Limb positions: each limb's keypoints relative to its root, in torso lengths (the person's
  median torso length over the video, as `workers.motion.normalise_poses`): the arms' elbow
  and wrist relative to the shoulder, the legs' knee and ankle relative to the hip, the head's
  keypoints relative to the mid-shoulder point, the torso's shoulders and hips relative to the
  torso centre. Relative to its own root, so that a limb's signal is its own articulation: an
  arm held still while the torso bends does not move, and a late torso does not make the arms
  late. The torso's positions relative to its centre carry its bends and twists; it also has
  the vertical position of the centre itself (the bounce, un-centred: horizontal travel over
  the floor and camera pans are left out, and a mirror image leaves the height as it is).
- Limb features: the limb positions themselves, one channel per coordinate, torso lengths;
  their velocities (central differences over `TimingParams.velocity_span_s`, torso lengths per
  second) only decide whether the limb moves. Positions, not velocities as for the whole body:
  a limb has 2 to 9 channels, not 24, and the pose model drops the keypoints of fast limbs (a
  third of the teacher's wrists on the known-answer footage of `tests/teacher_pairs.py`), which
  removes a velocity from two frames on each side. On that footage the velocities gave arm lags
  of -60 and -78 ms for arms 200 ms late and -83 ms for an arm on time; the positions 75 to
  136 ms and -31 ms, and every limb of a student late all over within 15 ms of the truth.
- Jitter: the standard deviation of the keypoint noise of a limb in a window, estimated from
  the fourth differences of its positions (for white noise of deviation s their variance is
  70 s^2, while motion at 3 Hz and 30 fps is divided by about 7 in them): the RMS of those
  within 4 deviations of a first, robust estimate (median absolute value). Its velocity
  noise follows: s * sqrt(2) / (2 * half frames) * fps. White noise is assumed: jitter that
  wanders slowly over many frames looks like movement to this test.
- Movement (`movement_ratio`): the RMS of the limb's velocity after removing the noise's
  share, over the velocity noise. A limb moves in a window when this reaches
  `LimbParams.min_movement`, in the person and in whoever it is compared with; otherwise the
  window has no lag for it. Without this, a still limb's jitter gives lags of +-200 ms.
- Limb lag: per window (those of `TimingParams`) and limb, the similarity of the limb
  features at every shift in +-`max_lag_s` (motion-weighted correlation,
  `workers.correlation`) and its peak (`workers.motion.peak_shifts`). Against an anchor
  (`limb_lags_against`): the lag of the person's limb behind the anchor's same limb; with
  `mirror`, the anchor is mirrored first (`workers.motion.mirror_poses`, which swaps left and
  right), so the person's left arm is compared with the mirror image of the anchor's right
  arm. In a group (`limb_lags_in_group`): every pair's lag on that limb, then
  `workers.timing.solve_group_lags` per window (median person at 0). Positive = behind
  (the same move made later), milliseconds.
- Relative lag: in a window, the limb's lag minus the rest of the body's: the median of the
  lags of the person's arms and legs other than this limb in that window (`MAIN_LIMBS`; the
  other limbs when none of them has one), the lower of the middle two when their count is
  even (`lower_median`), or the whole-body lag when given. The head and the torso are left out
  of that reference: a dancer whose upper body is late has a late head and a late top of the
  torso too, and with them counted the arms would be compared with a late majority and the
  legs, on time, would look early instead of the arms late.
- Uncertainty: per window, the standard deviation of the limb's relative lags over the
  neighbouring windows (`LimbParams.spread_windows` either side), at least
  `LimbParams.uncertainty_floor_frames`; over the video, 1.4826 * the median absolute
  deviation of its window relative lags, with the same floor.
- Late: the relative lag exceeds `LimbParams.late_sigmas` uncertainties, per window and
  over the video (median relative lag). Late means behind only; a limb ahead of the rest has
  a negative relative lag and is not flagged (the other limbs may then be, when they are the
  fewer). With half the limbs behind the other half, the later half is named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from workers.correlation import correlate, fft_length, pair_curves, partners, references
from workers.data import CHUNK_FRAMES
from workers.motion import (
    PoseSource,
    analysis_windows,
    median_or_nan,
    mirror_poses,
    peak_shifts,
    read_padded,
    torso_centres,
    torso_lengths,
    torso_scales,
)
from workers.skeleton import KEYPOINT_NAMES, NUM_KEYPOINTS
from workers.timing import TimingParams, solve_group_lags, window_blocks

_INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
#: Variance of the fourth difference of unit white noise: 1 + 16 + 36 + 16 + 1.
_FOURTH_DIFFERENCE_GAIN = 70.0
#: Median absolute value of a standard normal variable.
_NORMAL_MAD = 0.6744897501960817
#: Fourth differences beyond this many deviations of the rough estimate are motion, not noise.
_OUTLIER_DEVIATIONS = 4.0
#: Frames either side that a fourth difference needs.
_JITTER_REACH = 2


@dataclass(frozen=True)
class LimbDefinition:
    """A limb: the keypoints whose positions relative to a root are its signal.

    Attributes:
        name: e.g. "left_arm".
        keypoints: Indices into `KEYPOINT_NAMES` of the keypoints that move.
        root: Indices of the keypoints whose mean is subtracted; empty for the torso centre.
        bounce: Also the vertical position of the torso centre (the torso's bounce).
    """

    name: str
    keypoints: tuple[int, ...]
    root: tuple[int, ...] = ()
    bounce: bool = False

    @property
    def channels(self) -> int:
        """Feature channels: x and y of every keypoint, plus the bounce."""
        return 2 * len(self.keypoints) + int(self.bounce)


def _limb(name: str, keypoints: Sequence[str], root: Sequence[str] = (), bounce: bool = False) -> LimbDefinition:
    return LimbDefinition(name, tuple(_INDEX[k] for k in keypoints), tuple(_INDEX[k] for k in root), bounce)


#: The limbs, in report order.
LIMB_DEFINITIONS: tuple[LimbDefinition, ...] = (
    _limb("head", ("nose", "left_eye", "right_eye", "left_ear", "right_ear"), ("left_shoulder", "right_shoulder")),
    _limb("left_arm", ("left_elbow", "left_wrist"), ("left_shoulder",)),
    _limb("right_arm", ("right_elbow", "right_wrist"), ("right_shoulder",)),
    _limb("torso", ("left_shoulder", "right_shoulder", "left_hip", "right_hip"), bounce=True),
    _limb("left_leg", ("left_knee", "left_ankle"), ("left_hip",)),
    _limb("right_leg", ("right_knee", "right_ankle"), ("right_hip",)),
)
LIMB_NAMES: tuple[str, ...] = tuple(limb.name for limb in LIMB_DEFINITIONS)

#: The limbs whose lags make the rest of the body's (see the module docstring, "Relative lag").
MAIN_LIMBS = ("left_arm", "right_arm", "left_leg", "right_leg")
_MAIN_INDICES = tuple(LIMB_NAMES.index(name) for name in MAIN_LIMBS)

NOT_ENOUGH_MOVEMENT = "not enough movement"
NO_CLEAR_LAG = "no clear lag"


@dataclass(frozen=True)
class LimbParams:
    """Every knob of the limb timing, with its unit.

    Attributes:
        timing: Windows, search range, velocity span, channel and peak thresholds
            (`workers.timing.TimingParams`; its `min_channels`, `vertical_*`, `mirror` and
            score knobs are not used here).
        min_channels: Fewest moving channels of a limb for a similarity.
        min_movement: Smallest ratio of the limb's velocity RMS (noise removed) to its
            velocity noise for the limb to count as moving in a window.
        late_sigmas: A limb is late when its relative lag exceeds this many uncertainties.
        uncertainty_floor_frames: Smallest uncertainty, frames.
        spread_windows: Neighbouring windows either side whose spread makes a window's
            uncertainty.
    """

    timing: TimingParams = field(default_factory=TimingParams)
    min_channels: int = 2
    min_movement: float = 1.0
    late_sigmas: float = 2.0
    uncertainty_floor_frames: float = 1.0
    spread_windows: int = 2

    def __post_init__(self) -> None:
        if self.min_channels < 1:
            raise ValueError(f"min_channels must be >= 1, got {self.min_channels!r}")
        for name in ("min_movement", "late_sigmas", "uncertainty_floor_frames"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.spread_windows < 1:
            raise ValueError(f"spread_windows must be >= 1, got {self.spread_windows!r}")


@dataclass(frozen=True)
class LimbTiming:
    """One limb's timing over the video.

    Attributes:
        name: The limb (`LIMB_NAMES`).
        lag_ms: Median of the window lags, milliseconds; positive = behind the anchor's (or the
            group's) same limb. None with a `reason`.
        relative_ms: Median over windows of the lag minus the rest of the body's, milliseconds
            (positive: this limb is later than the rest), or None.
        uncertainty_ms: One standard deviation of `relative_ms` (see the module docstring),
            milliseconds, or None.
        reason: Why `lag_ms` is None: "not enough movement" (the limb moved, compared with
            its keypoint jitter, in no window) or "no clear lag" (no window gave a peak).
        window_lags_ms: Per window, the lag in milliseconds, or None.
        window_relative_ms: Per window, the relative lag in milliseconds, or None.
        window_uncertainty_ms: Per window, the uncertainty of the relative lag, or None.
        moving: Per window, whether the limb moved enough (in both of a comparison).
        late: Whether `relative_ms` exceeds `late_sigmas` times `uncertainty_ms`.
        late_windows: Per window, the same test on the window's values.
    """

    name: str
    lag_ms: float | None
    relative_ms: float | None
    uncertainty_ms: float | None
    reason: str | None
    window_lags_ms: tuple[float | None, ...]
    window_relative_ms: tuple[float | None, ...]
    window_uncertainty_ms: tuple[float | None, ...]
    moving: tuple[bool, ...]
    late: bool
    late_windows: tuple[bool, ...]


def limb_positions(keypoints: np.ndarray, scale: float) -> list[np.ndarray]:
    """Every limb's positions relative to its root (see the module docstring).

    Args:
        keypoints: (T, 17, 2) one person's keypoints, pixels, NaN where absent.
        scale: The person's torso length, pixels (e.g. the median of `torso_lengths`).

    Returns:
        Per limb of `LIMB_DEFINITIONS`, (T, C) torso lengths, C = `channels`: x and y of each
        keypoint, then the centre's y for the torso; NaN where a keypoint or root is absent,
        all NaN for an unknown scale.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape (T, {NUM_KEYPOINTS}, 2), got {keypoints.shape}")
    frames = len(keypoints)
    if not (np.isfinite(scale) and scale > 0):
        return [np.full((frames, limb.channels), np.nan) for limb in LIMB_DEFINITIONS]
    centres = torso_centres(keypoints)
    result = []
    for limb in LIMB_DEFINITIONS:
        root = keypoints[:, list(limb.root)].mean(axis=1) if limb.root else centres
        relative = (keypoints[:, list(limb.keypoints)] - root[:, None, :]).reshape(frames, -1)
        if limb.bounce:
            relative = np.concatenate([relative, centres[:, 1:]], axis=1)
        result.append(relative / scale)
    return result


def velocity_half(fps: float, velocity_span_s: float) -> int:
    """Frames either side of a central difference over `velocity_span_s` (as
    `workers.motion.motion_features`), at least 1."""
    return max(1, round(velocity_span_s * fps / 2))


def velocities(positions: np.ndarray, fps: float, half: int) -> np.ndarray:
    """(T, C) positions -> (T, C) central differences over 2 * `half` frames, per second; NaN at
    the ends and next to missing frames."""
    positions = np.asarray(positions, dtype=np.float64)
    result = np.full(positions.shape, np.nan)
    if len(positions) > 2 * half:
        result[half:-half] = (positions[2 * half:] - positions[:-2 * half]) * fps / (2 * half)
    return result


def jitter(positions: np.ndarray) -> np.ndarray:
    """Standard deviation of white keypoint noise in positions, from their fourth differences.

    Args:
        positions: (..., T, C) positions of limbs over a stretch (any unit), NaN where absent.

    Returns:
        (...) the noise's standard deviation in the positions' unit, pooled over frames and
        channels; NaN with fewer than 8 finite fourth differences. Smooth motion adds little
        (its fourth difference is small at the frame rate), so the estimate is of the noise.
    """
    positions = np.asarray(positions, dtype=np.float64)
    fourth = np.abs(np.diff(positions, n=4, axis=-2))
    fourth = fourth.reshape(*fourth.shape[:-2], -1)
    enough = np.isfinite(fourth).sum(axis=-1) >= 8
    fourth = np.where(enough[..., None], fourth, 0.0)
    with np.errstate(invalid="ignore"):
        # The median gives a first estimate that the peaks of fast moves cannot pull up; the
        # RMS of the differences within 4 of its deviations is then about twice as precise.
        rough = np.nanmedian(fourth, axis=-1) / _NORMAL_MAD
        typical = np.isfinite(fourth) & (fourth <= _OUTLIER_DEVIATIONS * rough[..., None])
        squares = np.where(typical, fourth, 0.0) ** 2
        spread = np.sqrt(squares.sum(axis=-1) / np.maximum(typical.sum(axis=-1), 1) / _FOURTH_DIFFERENCE_GAIN)
    return np.where(enough, spread, np.nan)


def movement_ratio(positions: np.ndarray, velocity: np.ndarray, fps: float, half: int) -> np.ndarray:
    """How much limbs move compared with their keypoint noise, in one window.

    Args:
        positions: (..., L + 4, C) the limbs' positions over the window and 2 frames either side.
        velocity: (..., L, C) their velocities over the window (`velocities` with `half`).
        fps: Frames per second.
        half: Frames either side of the velocities' central differences.

    Returns:
        (...) sqrt(max(0, mean over channels of var(velocity) / noise^2 - 1)): the RMS velocity
        of the motion over that of the noise (`jitter` through the central difference); 0
        without a channel of two finite velocities or without a jitter estimate, inf with no
        noise and some motion.
    """
    velocity = np.asarray(velocity, dtype=np.float64)
    finite = np.isfinite(velocity)
    counts = finite.sum(axis=-2)
    usable = counts >= 2
    mean = np.where(finite, velocity, 0.0).sum(axis=-2) / np.maximum(counts, 1)
    deviations = np.where(finite, velocity - mean[..., None, :], 0.0)
    channel_variance = np.where(usable, (deviations ** 2).sum(axis=-2) / np.maximum(counts, 1), 0.0)
    variance = channel_variance.sum(axis=-1) / np.maximum(usable.sum(axis=-1), 1)
    noise = jitter(positions) * np.sqrt(2.0) * fps / (2 * half)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sqrt(np.maximum(0.0, variance / noise ** 2 - 1.0))
    ratio = np.where(noise == 0, np.where(variance > 0, np.inf, 0.0), ratio)
    return np.where(usable.any(axis=-1) & np.isfinite(noise), ratio, 0.0)


@dataclass(frozen=True)
class _Stretch:
    """Every person's limb positions and velocities over a stretch of frames.

    Attributes:
        positions: Per limb, (n, N, C) torso lengths.
        velocity: Per limb, (n, N, C) torso lengths per second.
        first: The frame of row 0.
    """

    positions: tuple[np.ndarray, ...]
    velocity: tuple[np.ndarray, ...]
    first: int

    @classmethod
    def of(cls, stretches: Sequence[np.ndarray], scales: Sequence[float], first: int, fps: float, half: int
           ) -> _Stretch:
        per_person = [limb_positions(stretch, scale) for stretch, scale in zip(stretches, scales)]
        positions = tuple(np.stack([person[k] for person in per_person]) for k in range(len(LIMB_DEFINITIONS)))
        velocity = tuple(np.stack([velocities(p, fps, half) for p in limb]) for limb in positions)
        return cls(positions, velocity, first)

    def moving(self, limb: int, start: int, end: int, fps: float, half: int, threshold: float) -> np.ndarray:
        """(n,) whether each person's limb moves in frames start..end-1."""
        low, high = start - self.first, end - self.first
        ratios = movement_ratio(self.positions[limb][:, low - _JITTER_REACH:high + _JITTER_REACH],
                                self.velocity[limb][:, low:high], fps, half)
        return np.asarray(ratios >= threshold)


def _peaks(curves: np.ndarray, fps: float, params: LimbParams) -> tuple[np.ndarray, np.ndarray]:
    timing = params.timing
    separation = max(1, round(timing.min_peak_separation_s * fps))
    return peak_shifts(curves, timing.min_correlation, timing.ambiguity_margin, separation)


def limb_lags_against(
    poses: np.ndarray,
    anchor: np.ndarray,
    fps: float,
    params: LimbParams = LimbParams(),
    mirror: bool = False,
    body_lags: Sequence[float | None] | None = None,
) -> tuple[LimbTiming, ...]:
    """Each limb's lag behind the anchor's (a teacher's) same limb, per window and overall.

    Args:
        poses: (T, 17, 2) the person's keypoints, pixels, NaN where absent.
        anchor: (T, 17, 2) the anchor's keypoints on the same frames (resampled to them).
        fps: Frames per second.
        params: Knobs (`LimbParams`).
        mirror: Compare with the anchor's mirror image (facing each other): the person's left
            arm with the anchor's right arm mirrored.
        body_lags: Per window (`analysis_windows` with `params.timing`'s window and hop), the
            person's whole-body lag in milliseconds or None; the reference for the relative
            lags instead of the other limbs' median.

    Returns:
        One `LimbTiming` per limb, in the order of `LIMB_DEFINITIONS`.
    """
    poses = np.asarray(poses, dtype=np.float64)
    anchor = np.asarray(anchor, dtype=np.float64)
    for name, array in (("poses", poses), ("anchor", anchor)):
        if array.ndim != 3 or array.shape[1:] != (NUM_KEYPOINTS, 2):
            raise ValueError(f"{name} must have shape (T, {NUM_KEYPOINTS}, 2), got {array.shape}")
    if anchor.shape != poses.shape:
        raise ValueError(f"anchor must have the shape of poses {poses.shape} (resample it to the same frames), "
                         f"got {anchor.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if mirror:
        anchor = mirror_poses(anchor)
    timing = params.timing
    frames = len(poses)
    windows = analysis_windows(frames, fps, timing.window_s, timing.hop_s)
    if body_lags is not None and len(body_lags) != len(windows):
        raise ValueError(f"body_lags must have one value per window ({len(windows)}), got {len(body_lags)}")
    reach = int(np.ceil(timing.max_lag_s * fps)) + 1
    half = velocity_half(fps, timing.velocity_span_s)
    margin = reach + half
    scales = [median_or_nan(torso_lengths(array)) for array in (poses, anchor)]
    arrays = (poses, anchor)
    stretch = _Stretch.of(read_padded(lambda a, b: [x[a:b] for x in arrays], -margin, frames + margin, frames, 2),
                          scales, -margin, fps, half)

    lags = np.full((len(windows), len(LIMB_DEFINITIONS)), np.nan)
    moving = np.zeros(lags.shape, dtype=bool)
    for w, (start, end) in enumerate(windows):
        length = end - start
        size = fft_length(length, reach)
        min_valid = max(2, int(np.ceil(timing.min_valid_fraction * length)))
        low = start - stretch.first
        for k in range(len(LIMB_DEFINITIONS)):
            moving[w, k] = bool(stretch.moving(k, start, end, fps, half, params.min_movement).all())
            if not moving[w, k]:
                continue
            person, teacher = stretch.positions[k]
            # The anchor's window is the reference and the person's stretch the partner: the
            # peak's shift is then how much later the person makes the anchor's move.
            curve = correlate(references(teacher[None, low:low + length], size, timing.min_channel_std),
                              partners(person[None, low - reach:low + length + reach], length, size,
                                       timing.min_channel_std),
                              min_valid, params.min_channels)[0]
            lags[w, k] = _peaks(curve, fps, params)[0][0]
    body = None if body_lags is None else np.array([np.nan if v is None else v * fps / 1000.0 for v in body_lags])
    return summarise(lags, moving, fps, params, body)


def limb_lags_in_group(
    ids: Sequence[int],
    frames: int,
    source: PoseSource,
    fps: float,
    params: LimbParams = LimbParams(),
    chunk_frames: int = CHUNK_FRAMES,
    body_lags: Mapping[int, Sequence[float | None]] | None = None,
) -> dict[int, tuple[LimbTiming, ...]]:
    """Each performer's limb lags behind the group's same limb, reading a stretch at a time.

    Per window and limb, every pair's lag on that limb's features (all pairs at once,
    `workers.correlation.pair_curves`), then one lag per person (`solve_group_lags`, median
    person at 0), as `workers.timing` does for the whole body. Holds about `chunk_frames`
    frames of every performer at a time.

    Args:
        ids: The performers' ids, in the order `source` returns them.
        frames: Frames in the video, T.
        source: Reads a stretch of every performer's poses (see `workers.motion.PoseSource`).
        fps: Frames per second.
        params: Knobs (`LimbParams`).
        chunk_frames: Frames of window starts handled together, >= 1.
        body_lags: {id: per window, the whole-body lag behind the group in milliseconds or
            None} (e.g. from `workers.timing.PersonTiming.windows`), the reference for the
            relative lags instead of the other limbs' median; ids left out use the limbs.

    Returns:
        {id: one `LimbTiming` per limb in the order of `LIMB_DEFINITIONS`}, ids ascending.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames!r}")
    timing = params.timing
    order = sorted(range(len(ids)), key=lambda k: ids[k])
    ids = [ids[k] for k in order]
    count = len(ids)

    def ordered(start: int, stop: int) -> list[np.ndarray]:
        read = source(start, stop)
        return [np.asarray(read[k], dtype=np.float64) for k in order]

    scales = torso_scales(ordered, frames, count, chunk_frames)
    windows = analysis_windows(frames, fps, timing.window_s, timing.hop_s)
    reach = int(np.ceil(timing.max_lag_s * fps)) + 1
    half = velocity_half(fps, timing.velocity_span_s)
    upper = np.triu_indices(count, 1)  # (a, b) with a < b; the curve is [b, a]
    lags = np.full((count, len(windows), len(LIMB_DEFINITIONS)), np.nan)
    moving = np.zeros(lags.shape, dtype=bool)
    w = 0
    for block, low, high in window_blocks(windows, chunk_frames):
        first = low - reach - half
        stretch = _Stretch.of(read_padded(ordered, first, high + reach + half, frames, count), scales, first,
                              fps, half)
        for start, end in block:
            length = end - start
            min_valid = max(2, int(np.ceil(timing.min_valid_fraction * length)))
            row = start - first
            for k in range(len(LIMB_DEFINITIONS)):
                moves = stretch.moving(k, start, end, fps, half, params.min_movement)
                moving[:, w, k] = moves
                if moves.sum() < 2:
                    continue
                features = np.where(moves[:, None, None], stretch.positions[k], np.nan)
                curves, _ = pair_curves(features[:, row:row + length], features[:, row - reach:row + length + reach],
                                        min_valid, timing.min_channel_std, params.min_channels)
                shifts, values = _peaks(curves[upper[1], upper[0]], fps, params)
                measured = {(int(a), int(b)): (float(shift), float(value))
                            for a, b, shift, value in zip(*upper, shifts, values) if np.isfinite(shift)}
                lags[:, w, k] = solve_group_lags(count, measured)
            w += 1

    results = {}
    for person, person_id in enumerate(ids):
        given = None if body_lags is None else body_lags.get(person_id)
        body = None if given is None else np.array([np.nan if v is None else v * fps / 1000.0 for v in given])
        if body is not None and len(body) != len(windows):
            raise ValueError(f"body_lags[{person_id}] must have one value per window ({len(windows)}), "
                             f"got {len(body)}")
        results[person_id] = summarise(lags[person], moving[person], fps, params, body)
    return results


def lower_median(values: np.ndarray) -> float:
    """The median of the finite values, the lower of the middle two when their count is even;
    NaN when there is none. With half the other limbs late and half on time, a limb is then
    compared with the earlier half: late means behind at least half of the others."""
    values = np.sort(values[np.isfinite(values)])
    return float(values[(len(values) - 1) // 2]) if values.size else float("nan")


def summarise(
    lags: np.ndarray, moving: np.ndarray, fps: float, params: LimbParams = LimbParams(),
    body: np.ndarray | None = None,
) -> tuple[LimbTiming, ...]:
    """Relative lags, uncertainties and late calls from one person's window lags.

    Args:
        lags: (W, len(LIMB_DEFINITIONS)) each limb's lag per window, frames, NaN where none.
        moving: (W, len(LIMB_DEFINITIONS)) whether the limb moved enough in the window.
        fps: Frames per second.
        params: Knobs (`LimbParams`).
        body: (W,) the whole-body lag per window, frames (NaN: unknown), the reference for
            the relative lags; None for the median of the other limbs' lags.

    Returns:
        One `LimbTiming` per limb (see the module docstring for the rules).
    """
    lags = np.asarray(lags, dtype=np.float64)
    windows, limbs = lags.shape
    relative = np.full(lags.shape, np.nan)
    for w in range(windows):
        for k in range(limbs):
            if body is not None:
                reference = body[w]
            else:
                main = lags[w, [m for m in _MAIN_INDICES if m != k]]
                reference = lower_median(main if np.isfinite(main).any() else np.delete(lags[w], k))
            relative[w, k] = lags[w, k] - reference
    floor = params.uncertainty_floor_frames
    reach = params.spread_windows
    to_ms = 1000.0 / fps

    def ms(value: float) -> float | None:
        return None if not np.isfinite(value) else float(value * to_ms)

    results = []
    for k, limb in enumerate(LIMB_DEFINITIONS):
        spread = np.full(windows, np.nan)
        for w in range(windows):
            if np.isfinite(relative[w, k]):
                near = relative[max(0, w - reach):w + reach + 1, k]
                near = near[np.isfinite(near)]
                spread[w] = max(floor, float(np.std(near, ddof=1)) if near.size > 1 else floor)
        with np.errstate(invalid="ignore"):
            late_windows = relative[:, k] > params.late_sigmas * spread
        finite = relative[np.isfinite(relative[:, k]), k]
        overall = float(np.median(finite)) if finite.size else float("nan")
        uncertainty = max(floor, 1.4826 * float(np.median(np.abs(finite - overall)))) if finite.size \
            else float("nan")
        lag = median_or_nan(lags[:, k])
        reason = None
        if not moving[:, k].any():
            reason = NOT_ENOUGH_MOVEMENT
        elif not np.isfinite(lag):
            reason = NO_CLEAR_LAG
        results.append(LimbTiming(
            name=limb.name,
            lag_ms=ms(lag),
            relative_ms=ms(overall),
            uncertainty_ms=ms(uncertainty),
            reason=reason,
            window_lags_ms=tuple(ms(v) for v in lags[:, k]),
            window_relative_ms=tuple(ms(v) for v in relative[:, k]),
            window_uncertainty_ms=tuple(ms(v) for v in spread),
            moving=tuple(bool(v) for v in moving[:, k]),
            late=bool(np.isfinite(overall) and overall > params.late_sigmas * uncertainty),
            late_windows=tuple(bool(v) for v in late_windows),
        ))
    return tuple(results)
