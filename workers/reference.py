"""Each performer against a reference performance (the teacher's video): lag, scores, mirror.

Pure math, no I/O. The students are the performers of this video, read a stretch at a time
through a `workers.motion.PoseSource` (pixels, NaN where absent); the teacher is one person of
another video (`TeacherPoses`), on that video's own clock, which `Alignment` maps onto this
video's.

Definitions:
- Alignment: the reference's time r falls at t = offset_seconds + r * (1 + drift_ppm * 1e-6)
  in this video (seconds). `offset_seconds` is where the reference's time 0 falls here; the
  drift is the two devices' clock difference. Found from the music (`workers.alignment`), from
  the movement (`align_by_poses`) or given by hand.
- The teacher on the students' frames: the teacher's keypoints at the reference time of every
  frame of this video, interpolated linearly between the two nearest frames of the reference
  (NaN where either is missing, or outside the reference). This handles any mix of frame
  rates (25/30/60, and variable rates, which the decoder turns into constant ones).
- Lag against the teacher: in each analysis window (`TimingParams.window_s` every `hop_s`),
  the similarity of the teacher's motion features with each student's at every whole-frame
  shift in +-`max_lag_s` (`workers.correlation`, the same motion-weighted correlation as the
  group's timing), and its clear best peak refined to a fraction of a frame
  (`workers.motion.peak_shifts`). Positive: the student makes the move later than the teacher
  (behind). Where the motion features give no lag the vertical features are searched, as in
  `workers.timing`. A person's lag is the median over the windows, its confidence
  `workers.timing.lag_confidence`.
- Mirror: a teacher filmed facing the class is the students' mirror image. Unless it is given,
  it is detected: both the teacher and its mirror image (`workers.motion.mirror_poses`) are
  compared with every student in every window, and the mirror image is taken when its peaks
  are stronger over all of them by `MIRROR_MARGIN` (a symmetric dance matches both ways).
- Pose score: after removing the person's lag (whole frames), the original score's pose
  distance (`workers.score.pose_distances`, affine alignment, every keypoint weighing 1)
  between the student and the teacher (mirrored where the teacher is) in every frame, mapped
  onto 0..10 as the original score does; the mean over frames. Timing score as the group's
  (`workers.timing.timing_score`).
- Alignment by the movement (`align_by_poses`): the students' motion features against the
  teacher's at every shift over the whole recordings; the shift where they are most alike is
  the offset. Choreography that repeats (8 counts, a chorus) is alike a whole phrase away too:
  the confidence is 1 - second best / best, the second best taken at least
  `POSE_ALIGN_SEPARATION_S` from the best, so a periodic dance gets a confidence near 0. The
  offset comes from the students themselves: lags against the teacher are then relative to the
  class's average timing (a class that is 100 ms late as a whole shows as on time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from workers.correlation import correlate, fft_length, partners, references
from workers.data import CHUNK_FRAMES, VideoInfo
from workers.limbs import LimbParams, LimbTiming, limb_lags_against
from workers.moments import Moment, worst_moments
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
)
from workers.score import distance_to_score, pose_distances
from workers.skeleton import NUM_KEYPOINTS
from workers.timing import (
    StretchFeatures,
    TimingParams,
    WindowLag,
    lag_confidence,
    timing_score,
    window_blocks,
    window_entries,
)

#: The timing knobs when none are given.
DEFAULT_TIMING = TimingParams()
#: The mirror image is taken for the teacher only when its peaks are this much stronger on
#: average: a left-right symmetric dance (jumping jacks) matches both ways nearly equally, and
#: then the teacher is compared as filmed.
MIRROR_MARGIN = 0.05
#: How the offset was found.
ALIGNMENTS = ("audio", "poses", "manual")
#: The best shift of `align_by_poses` must stand above every shift at least this far from it.
POSE_ALIGN_SEPARATION_S = 0.5
#: Smallest similarity accepted as a match by `align_by_poses`.
POSE_ALIGN_MIN_SIMILARITY = 0.25
#: Shortest overlap of the two recordings `align_by_poses` considers, seconds (or half of the
#: shorter recording when that is less).
POSE_ALIGN_MIN_OVERLAP_S = 10.0


@dataclass(frozen=True)
class Alignment:
    """Where the reference's clock falls on this video's.

    Attributes:
        method: "audio", "poses" or "manual".
        offset_seconds: Where the reference's time 0 falls in this video, seconds (negative:
            before this video started).
        drift_ppm: How much faster this video's clock runs than the reference's, parts per
            million; None when not measured (taken as 0).
        confidence: 0..1, how sure the alignment is; None for a manual one.
        detail: What was tried and why this was used, for the log and the report.
    """

    method: str
    offset_seconds: float
    drift_ppm: float | None = None
    confidence: float | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.method not in ALIGNMENTS:
            raise ValueError(f"method must be one of {', '.join(ALIGNMENTS)}, got {self.method!r}")
        if not np.isfinite(self.offset_seconds):
            raise ValueError(f"offset_seconds must be a number, got {self.offset_seconds!r}")

    def reference_seconds(self, seconds: np.ndarray | float) -> np.ndarray:
        """The reference's time at this video's `seconds` (same shape)."""
        rate = 1.0 + (self.drift_ppm or 0.0) * 1e-6
        return (np.asarray(seconds, dtype=np.float64) - self.offset_seconds) / rate


@dataclass(frozen=True, eq=False)
class TeacherPoses:
    """The reference performer's keypoints on the reference video's own frames.

    Attributes:
        keypoints: (R, 17, 2) pixels, NaN where absent.
        fps: The reference video's frame rate.
        person: The teacher's id in the reference video.
        reason: Why this person was taken (`choose_teacher`).
    """

    keypoints: np.ndarray
    fps: float
    person: int
    reason: str = ""

    def __post_init__(self) -> None:
        shape = np.shape(self.keypoints)
        if len(shape) != 3 or shape[1:] != (NUM_KEYPOINTS, 2):
            raise ValueError(f"keypoints must have shape (R, {NUM_KEYPOINTS}, 2), got {shape}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps!r}")

    @property
    def duration(self) -> float:
        """Seconds the reference covers."""
        return len(self.keypoints) / self.fps

    def at(self, reference_seconds: np.ndarray) -> np.ndarray:
        """The keypoints at these reference times, interpolated linearly between frames.

        Args:
            reference_seconds: (k,) times on the reference's clock, seconds.

        Returns:
            (k, 17, 2) pixels; NaN outside the reference or where a neighbouring frame lacks
            the keypoint.
        """
        position = np.asarray(reference_seconds, dtype=np.float64) * self.fps
        out = np.full((len(position), NUM_KEYPOINTS, 2), np.nan)
        inside = (position >= 0) & (position <= len(self.keypoints) - 1)
        below = np.floor(position[inside]).astype(np.int64)
        fraction = (position[inside] - below)[:, None, None]
        above = np.minimum(below + 1, len(self.keypoints) - 1)
        low, high = self.keypoints[below], self.keypoints[above]
        # Within a thousandth of a frame of one, the other is not needed (25 fps on 25 fps).
        blended = np.where(fraction < 1e-3, low, np.where(fraction > 1 - 1e-3, high, (1 - fraction) * low
                                                          + fraction * high))
        out[inside] = blended
        return out

    def on_frames(self, alignment: Alignment, fps: float, start: int, stop: int) -> np.ndarray:
        """The teacher at frames start..stop-1 of a video at `fps` aligned by `alignment`,
        (stop - start, 17, 2) pixels."""
        return self.at(alignment.reference_seconds(np.arange(start, stop) / fps))

    def source(self, alignment: Alignment, fps: float) -> PoseSource:
        """The teacher on this video's frames as a one-person `PoseSource`."""
        return lambda start, stop: [self.on_frames(alignment, fps, start, stop)]


def choose_teacher(poses: Mapping[int, np.ndarray], wanted: int | None = None) -> tuple[int, str]:
    """The reference video's main performer: the most prominent person, or the one asked for.

    Prominence is the frames a person is found in times their median height (keypoints' extent),
    so a teacher present throughout beats a passer-by and a small figure at the back.

    Args:
        poses: {id: (R, 17, 2) keypoints in pixels, NaN where absent} of every person found.
        wanted: The id asked for (`--reference-person`), or None.

    Returns:
        (id, why it was taken).

    Raises:
        ValueError: Nobody was found, or `wanted` is not among the ids.
    """
    if not poses:
        raise ValueError("no person was found in the reference video")
    prominence = {}
    for person_id, keypoints in poses.items():
        present = np.isfinite(keypoints).any(axis=(1, 2))
        heights = np.nanmax(keypoints[present, :, 1], axis=1) - np.nanmin(keypoints[present, :, 1], axis=1) \
            if present.any() else np.zeros(0)
        prominence[person_id] = (int(present.sum()), float(np.median(heights)) if heights.size else 0.0)
    ranked = sorted(prominence, key=lambda i: (-prominence[i][0] * prominence[i][1], i))
    frames = len(next(iter(poses.values())))
    if wanted is not None:
        if wanted not in poses:
            raise ValueError(f"--reference-person {wanted} is not in the reference video; its persons are "
                             + ", ".join(f"#{i}" for i in sorted(poses)))
        return wanted, f"#{wanted}, chosen with --reference-person"
    chosen = ranked[0]
    share = prominence[chosen][0] / max(1, frames)
    if len(ranked) == 1:
        return chosen, f"#{chosen}, the only person in the reference video (present in {share:.0%} of its frames)"
    others = ", ".join(f"#{i}" for i in ranked[1:5]) + (", ..." if len(ranked) > 5 else "")
    return chosen, (f"#{chosen}, the most prominent of {len(ranked)} people in the reference video (present in "
                    f"{share:.0%} of its frames, {prominence[chosen][1]:.0f} px tall; the others: {others}); "
                    "--reference-person ID takes another")


@dataclass(frozen=True, eq=False)
class TeacherTiming:
    """One performer against the teacher.

    Attributes:
        lag_ms: Median of the window lags behind the teacher, milliseconds (negative: ahead),
            or None when no window gave a clear lag.
        lag_confidence: 0..1 (`workers.timing.lag_confidence`).
        score: 0..10, the mean pose score against the teacher after removing the lag, or None.
        timing_score: 0..10 from `lag_ms`, or None.
        windows: The per-window lags behind the teacher.
        distances: (T,) pose distance to the teacher per frame (after removing the lag), NaN
            where not comparable.
        limbs: Each limb's lag behind the teacher (`workers.limbs`), in `LIMBS` order.
        late_limbs: The limbs late against the rest of the body, by name.
    """

    lag_ms: float | None
    lag_confidence: float
    score: float | None
    timing_score: float | None
    windows: tuple[WindowLag, ...]
    distances: np.ndarray
    limbs: tuple[LimbTiming, ...] = ()
    late_limbs: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class TeacherComparison:
    """Every performer against the teacher.

    Attributes:
        persons: {id: TeacherTiming}, ids ascending.
        mirror: Whether the teacher was compared as a mirror image.
        mirror_source: "--mirror" (asked for) or "detected".
        mirror_strength: Mean peak similarity over the windows and performers (a window without
            a peak counting 0) of the teacher as is and mirrored, or None where only one was
            compared.
        worst_moments: The stretches where the performers are furthest from the teacher's
            poses, worst first.
    """

    persons: dict[int, TeacherTiming]
    mirror: bool
    mirror_source: str
    mirror_strength: tuple[float, float] | None
    worst_moments: list[Moment]


def compare_with_teacher(
    ids: Sequence[int],
    frames: int,
    source: PoseSource,
    teacher: PoseSource,
    fps: float,
    params: TimingParams = DEFAULT_TIMING,
    mirror: bool | None = None,
    chunk_frames: int = CHUNK_FRAMES,
    with_limbs: bool = True,
) -> TeacherComparison:
    """Lag, pose score and timing score of every performer against the teacher.

    Args:
        ids: The performers' ids, in the order `source` returns them.
        frames: Frames in the video, T.
        source: Reads a stretch of every performer's poses (see `PoseSource`).
        teacher: Reads the same stretch of the teacher on this video's frames (one array;
            `TeacherPoses.source`).
        fps: This video's frames per second.
        params: The timing knobs (windows, lag search, thresholds, score constants; its
            `mirror` is not used).
        mirror: True or False to compare the teacher mirrored or as is; None to detect it.
        chunk_frames: Frames read at a time, >= 1.
        with_limbs: Also each limb's lag (`workers.limbs.limb_lags_against`).

    Returns:
        The comparison; persons without a clear lag have lag None.
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

    count = len(ids)
    scales = torso_scales(ordered, frames, count, chunk_frames)
    teacher_scale = torso_scales(teacher, frames, 1, chunk_frames)[0]
    windows = analysis_windows(frames, fps, params.window_s, params.hop_s)
    kinds = (False, True) if mirror is None else (mirror,)
    lags = {kind: np.full((len(windows), count), np.nan) for kind in kinds}
    peaks = {kind: np.full((len(windows), count), np.nan) for kind in kinds}
    reach = int(np.ceil(params.max_lag_s * fps)) + 1
    half = max(1, round(params.velocity_span_s * fps / 2))
    w = 0
    for block, low, high in window_blocks(windows, chunk_frames):
        stretches = read_padded(ordered, low - reach - half, high + reach + half, frames, count)
        students = StretchFeatures.of([normalise_poses(s, scale) for s, scale in zip(stretches, scales)],
                                      fps, params, half)
        taught = normalise_poses(read_padded(teacher, low - reach - half, high + reach + half, frames, 1)[0],
                                 teacher_scale)
        features = {kind: StretchFeatures.of([mirror_poses(taught) if kind else taught], fps, params, half)
                    for kind in kinds}
        for start, end in block:
            for kind in kinds:
                lags[kind][w], peaks[kind][w] = _teacher_lags(features[kind], students, start - low, end - start,
                                                              reach, fps, params)
            w += 1
    strength = {kind: float(np.mean(np.nan_to_num(peaks[kind], nan=0.0))) if peaks[kind].size else 0.0
                for kind in kinds}
    chosen = mirror if mirror is not None else strength[True] > strength[False] + MIRROR_MARGIN
    window_lags, window_peaks = lags[chosen], peaks[chosen]
    lags_frames = [median_or_nan(window_lags[:, person]) for person in range(count)]
    distances = _teacher_distances(ordered, teacher, frames, count, lags_frames, chosen, reach, chunk_frames)
    limbs = _teacher_limbs(ordered, teacher, frames, count, fps, params, bool(chosen), chunk_frames) if with_limbs \
        else [() for _ in ids]
    persons = {}
    for person, person_id in enumerate(ids):
        lag_ms = None if np.isnan(lags_frames[person]) else float(lags_frames[person] * 1000.0 / fps)
        person_windows = window_entries(windows, window_lags[:, person], window_peaks[:, person], fps)
        found = distances[person][np.isfinite(distances[person])]
        persons[person_id] = TeacherTiming(
            lag_ms=lag_ms,
            lag_confidence=lag_confidence(person_windows),
            score=float(np.mean([distance_to_score(d, params.score) for d in found])) if found.size else None,
            timing_score=timing_score(lag_ms, params.timing_scale_ms),
            windows=person_windows,
            distances=distances[person],
            limbs=limbs[person],
            late_limbs=tuple(limb.name for limb in limbs[person] if limb.late),
        )
    return TeacherComparison(
        persons=persons, mirror=bool(chosen), mirror_source="detected" if mirror is None else "--mirror",
        mirror_strength=(strength[False], strength[True]) if mirror is None else None,
        worst_moments=_worst_moments(persons, fps, params),
    )


def _teacher_lags(teacher: StretchFeatures, students: StretchFeatures, offset: int, length: int, reach: int,
                  fps: float, params: TimingParams) -> tuple[np.ndarray, np.ndarray]:
    """Every student's lag behind the teacher in one window, frames, and its peak similarity,
    (n,) each, NaN where there is no clear peak.

    Row k of the features is frame (window start - reach + k - offset); the teacher's window is
    the reference of the correlation, each student's stretch a partner."""
    separation = max(1, round(params.min_peak_separation_s * fps))
    min_valid = max(2, int(np.ceil(params.min_valid_fraction * length)))
    size = fft_length(length, reach)

    def search(kind: str, min_channel_std: float, min_correlation: float) -> tuple[np.ndarray, np.ndarray]:
        window = getattr(teacher, kind)[:, offset + reach:offset + reach + length]
        stretch = getattr(students, kind)[:, offset:offset + length + 2 * reach]
        curves = correlate(references(window, size, min_channel_std), partners(stretch, length, size, min_channel_std),
                           min_valid, params.min_channels)
        return peak_shifts(curves[0], min_correlation, params.ambiguity_margin, separation)

    shifts, values = search("motion", params.min_channel_std, params.min_correlation)
    missing = np.isnan(shifts)
    if params.vertical_fallback and missing.any():
        again, again_values = search("vertical", params.vertical_min_channel_std, params.vertical_min_correlation)
        shifts, values = np.where(missing, again, shifts), np.where(missing, again_values, values)
    return shifts, values


def _teacher_distances(source: PoseSource, teacher: PoseSource, frames: int, count: int, lags_frames: list[float],
                       mirrored: bool, reach: int, chunk_frames: int) -> list[np.ndarray]:
    """Each student's pose distance to the teacher per frame: the student's frame t against the
    teacher's frame t - round(lag) (mirrored where `mirrored`); (T,) each, NaN where unknown."""
    shifts = [0 if np.isnan(lag) else int(round(lag)) for lag in lags_frames]
    out = [np.full(frames, np.nan) for _ in range(count)]
    for start in range(0, frames, chunk_frames):
        stop = min(frames, start + chunk_frames)
        students = source(start, stop)
        taught = read_padded(teacher, start - reach, stop + reach, frames, 1)[0]
        if mirrored:
            taught = mirror_poses(taught)
        for person in range(count):
            shift = int(np.clip(shifts[person], -reach, reach))
            out[person][start:stop] = pose_distances(taught[reach - shift:reach - shift + stop - start],
                                                     np.asarray(students[person], dtype=np.float64))
    return out


#: Performers whose whole poses are held at once for the limb lags (memory: 8 x T x 272 bytes).
LIMB_BATCH = 8


def _teacher_limbs(source: PoseSource, teacher: PoseSource, frames: int, count: int, fps: float,
                   params: TimingParams, mirrored: bool, chunk_frames: int) -> list[tuple[LimbTiming, ...]]:
    """Every performer's limb lags behind the teacher's same limbs (`workers.limbs`), the
    performers' whole poses read `LIMB_BATCH` at a time."""
    anchor = np.zeros((0, NUM_KEYPOINTS, 2))
    if frames:
        anchor = np.concatenate([teacher(start, min(frames, start + chunk_frames))[0]
                                 for start in range(0, frames, chunk_frames)])
    limb_params = LimbParams(timing=params)
    found: list[tuple[LimbTiming, ...]] = []
    for first in range(0, count, LIMB_BATCH):
        batch = range(first, min(count, first + LIMB_BATCH))
        parts: list[list[np.ndarray]] = [[] for _ in batch]
        for start in range(0, frames, chunk_frames):
            read = source(start, min(frames, start + chunk_frames))
            for slot, person in enumerate(batch):
                parts[slot].append(np.asarray(read[person], dtype=np.float64))
        for slot in range(len(batch)):
            found.append(limb_lags_against(np.concatenate(parts[slot]), anchor, fps, limb_params, mirror=mirrored))
    return found


def _worst_moments(persons: Mapping[int, TeacherTiming], fps: float, params: TimingParams) -> list[Moment]:
    """The stretches where the performers' mean pose distance to the teacher is largest."""
    if not persons:
        return []
    distances = np.stack([timing.distances for timing in persons.values()])
    finite = np.isfinite(distances)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, distances, 0.0).sum(axis=0) / finite.sum(axis=0)
    scores = np.array([distance_to_score(d, params.score) if np.isfinite(d) else np.nan for d in mean])
    return worst_moments(scores, fps, {i: timing.distances for i, timing in persons.items()})


def align_by_poses(
    students: Sequence[np.ndarray],
    teacher: TeacherPoses,
    fps: float,
    params: TimingParams = DEFAULT_TIMING,
    mirror: bool | None = None,
) -> tuple[Alignment | None, str]:
    """The offset of the reference from the movement: where the students move most like the teacher.

    Args:
        students: (T, 17, 2) keypoints in pixels of a few performers of this video (the most
            present), NaN where absent.
        teacher: The teacher on the reference's own frames.
        fps: This video's frames per second.
        params: `velocity_span_s` is used.
        mirror: Compare the teacher mirrored (True), as is (False) or both, keeping the better
            (None).

    Returns:
        (alignment, detail): the alignment ("poses", no drift) or None when the movement does
        not match well enough, and a sentence saying what was found.
    """
    if not students:
        return None, "no performer to align the teacher with"
    frames = len(students[0])
    teacher_frames = int(np.floor(teacher.duration * fps))
    on_grid = teacher.on_frames(Alignment("manual", 0.0), fps, 0, teacher_frames)
    min_overlap = max(2, round(min(POSE_ALIGN_MIN_OVERLAP_S * fps, 0.5 * min(frames, teacher_frames))))
    student_features = [_motion(student, fps, params) for student in students]
    best: tuple[float, float, float] | None = None  # (similarity, shift in frames, second best)
    kinds = (False, True) if mirror is None else (mirror,)
    for kind in kinds:
        taught = _motion(mirror_poses(on_grid) if kind else on_grid, fps, params)
        curves = np.stack([_full_similarity(s, taught, min_overlap) for s in student_features])
        known = np.isfinite(curves)
        with np.errstate(invalid="ignore", divide="ignore"):
            curve = np.where(known.any(axis=0), np.where(known, curves, 0.0).sum(axis=0) / known.sum(axis=0), np.nan)
        if not np.isfinite(curve).any():
            continue
        peak = int(np.nanargmax(curve))
        separation = max(1, round(POSE_ALIGN_SEPARATION_S * fps))
        rest = curve.copy()
        rest[max(0, peak - separation):peak + separation + 1] = np.nan
        second = float(np.nanmax(rest)) if np.isfinite(rest).any() else 0.0
        shift = peak + _parabola(curve, peak) - (teacher_frames - 1)
        if best is None or curve[peak] > best[0]:
            best = (float(curve[peak]), shift, second)
    if best is None:
        return None, "the movement gives no overlap long enough to align by"
    value, shift, second = best
    if value < POSE_ALIGN_MIN_SIMILARITY:
        return None, f"the movement does not match the teacher's (best similarity {value:.2f})"
    confidence = float(np.clip(1.0 - max(second, 0.0) / value, 0.0, 1.0))
    detail = (f"aligned by the movement: similarity {value:.2f}, the next best {second:.2f} at least "
              f"{POSE_ALIGN_SEPARATION_S:g} s away")
    return Alignment("poses", shift / fps, None, confidence, detail), detail


def _motion(keypoints: np.ndarray, fps: float, params: TimingParams) -> np.ndarray:
    """(T, 24) motion features of one person's whole poses (torso lengths per second)."""
    torso = torso_lengths(keypoints)
    return motion_features(normalise_poses(keypoints, float(np.median(torso)) if torso.size else None), fps,
                           params.velocity_span_s)


def _full_similarity(student: np.ndarray, teacher: np.ndarray, min_overlap: int) -> np.ndarray:
    """The mean over channels of the correlation of the student's features at frame t + s with
    the teacher's at t, for every s from -(len(teacher) - 1) to len(student) - 1 (index
    s + len(teacher) - 1); NaN where fewer than `min_overlap` frames overlap."""
    def prepared(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        finite = np.isfinite(values)
        mean = np.where(finite, values, 0.0).sum(axis=0) / np.maximum(finite.sum(axis=0), 1)
        centred = np.where(finite, values - mean, 0.0)
        spread = np.sqrt((centred ** 2).sum(axis=0) / np.maximum(finite.sum(axis=0), 1))
        return np.where(spread > 0, centred / np.where(spread > 0, spread, 1.0), 0.0), finite & (spread > 0)

    x, x_mask = prepared(student)
    y, y_mask = prepared(teacher)
    products = signal.fftconvolve(x, y[::-1], axes=0)
    overlap = signal.fftconvolve(x_mask.astype(np.float64), y_mask[::-1].astype(np.float64), axes=0)
    x_frames = np.asarray(x_mask.any(axis=1), dtype=np.float64)
    y_frames = np.asarray(y_mask.any(axis=1), dtype=np.float64)
    frames_overlap = signal.fftconvolve(x_frames, y_frames[::-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = products.sum(axis=1) / overlap.sum(axis=1)
    return np.where((np.rint(frames_overlap) >= min_overlap) & (np.rint(overlap.sum(axis=1)) > 0), similarity, np.nan)


def _parabola(curve: np.ndarray, peak: int) -> float:
    """The fraction of a frame by which a parabola through the peak and its neighbours moves it."""
    if peak == 0 or peak == len(curve) - 1 or not np.isfinite(curve[peak - 1:peak + 2]).all():
        return 0.0
    before, value, after = curve[peak - 1], curve[peak], curve[peak + 1]
    bend = before - 2 * value + after
    return float(np.clip(0.5 * (before - after) / bend, -0.5, 0.5)) if bend < 0 else 0.0


@dataclass(frozen=True, eq=False)
class TeacherSetup:
    """What the analysis of a video needs to compare it with the teacher.

    Attributes:
        teacher: The teacher's poses on the reference's own frames.
        alignment: The alignment known before the run (by the music, or by hand), or None to
            align by the movement after it (`align_by_poses`).
        why_not_audio: Why the music was not used ("" when it was, or an offset was given).
        mirror: True to compare the teacher as a mirror image (`--mirror`); None to detect it.
        video: The teacher's video, for the picture-in-picture; None when not at hand.
        input: What `--reference` named, for the report.
        poses_file: The teacher's pose cache, for the report.
        persons_found: Every id found in the reference video.
    """

    teacher: TeacherPoses
    alignment: Alignment | None
    why_not_audio: str = ""
    mirror: bool | None = None
    video: VideoInfo | None = None
    input: str = ""
    poses_file: str = ""
    persons_found: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class ReferenceAnalysis:
    """A video's performers against the teacher.

    Attributes:
        alignment: How the two recordings were aligned, or None when they could not be.
        comparison: Every performer against the teacher, or None (not aligned, no
            performer, no overlap).
        reason: Why there is no comparison ("" when there is one).
        overlap_seconds: Seconds of this video during which the teacher's recording runs.
        why_not_audio: Why the music was not used ("" when it was or an offset was given).
    """

    alignment: Alignment | None
    comparison: TeacherComparison | None
    reason: str = ""
    overlap_seconds: float = 0.0
    why_not_audio: str = ""


#: Most performers whose whole poses `analyse_against_teacher` reads to align by the movement.
POSE_ALIGN_PERFORMERS = 4


def analyse_against_teacher(
    setup: TeacherSetup,
    performers: Sequence[int],
    presence: Mapping[int, int],
    frames: int,
    read_of: Callable[[Sequence[int]], PoseSource],
    fps: float,
    params: TimingParams = DEFAULT_TIMING,
    chunk_frames: int = CHUNK_FRAMES,
) -> ReferenceAnalysis:
    """Align the teacher (by the movement, when not aligned yet) and compare every performer with it.

    Args:
        setup: The teacher and what is known of the alignment.
        performers: The ids to compare.
        presence: {id: frames present}, to pick the performers to align by.
        frames: Frames in this video.
        read_of: Gives a `PoseSource` of the given ids.
        fps: This video's frames per second.
        params: The timing knobs.
        chunk_frames: Frames read at a time.
    """
    alignment = setup.alignment
    if not performers:
        return ReferenceAnalysis(alignment, None, "no performer to compare with the teacher",
                                 why_not_audio=setup.why_not_audio)
    if alignment is None:
        chosen = sorted(performers, key=lambda i: (-presence.get(i, 0), i))[:POSE_ALIGN_PERFORMERS]
        whole = list(read_of(chosen)(0, frames))
        alignment, detail = align_by_poses(whole, setup.teacher, fps, params, setup.mirror)
        if alignment is None:
            return ReferenceAnalysis(None, None, f"could not align the teacher: {setup.why_not_audio or 'no audio'}; "
                                     f"{detail}; give --offset SECONDS", why_not_audio=setup.why_not_audio)
    times = alignment.reference_seconds(np.arange(frames) / fps)
    overlap = float(((times >= 0) & (times <= setup.teacher.duration)).sum() / fps)
    if overlap < params.window_s:
        return ReferenceAnalysis(alignment, None, f"the teacher's recording overlaps this video for {overlap:.1f} s "
                                 f"only, less than one {params.window_s:g} s window", overlap,
                                 setup.why_not_audio)
    comparison = compare_with_teacher(performers, frames, read_of(performers), setup.teacher.source(alignment, fps),
                                      fps, params, setup.mirror, chunk_frames)
    return ReferenceAnalysis(alignment, comparison, "", overlap, setup.why_not_audio)


def alignment_words(setup: TeacherSetup, found: ReferenceAnalysis | None, name: str) -> tuple[bool, str]:
    """The one log line of a video's alignment with the teacher: (is it a warning, the line).

    A warning when the music was not used (the movement aligned it, with its confidence and what
    that means, or nothing did) or the performers could not be compared.
    """
    teacher = Path(setup.input).name
    alignment = setup.alignment if found is None else found.alignment
    if alignment is None:
        reason = found.reason if found is not None and found.reason else setup.why_not_audio
        return True, f"{name}: not compared with {teacher}: {reason}"
    where = f"the teacher's recording starts at {alignment.offset_seconds:.3f} s"
    if alignment.method == "manual":
        line = f"{name}: aligned with {teacher} by hand (--offset): {where}"
    elif alignment.method == "audio":
        line = (f"{name}: aligned with {teacher} by the music: {where}, clock drift "
                f"{alignment.drift_ppm or 0:.0f} ppm, confidence {alignment.confidence or 0:.2f}")
    else:
        return True, (f"{name}: aligned with {teacher} by the movement, not the music ({setup.why_not_audio}): "
                      f"{where}, confidence {alignment.confidence or 0:.2f}; lags against the teacher are relative "
                      "to the class's own average timing, and the video has no picture of the teacher")
    if found is not None and found.comparison is None and found.reason:
        return True, f"{line}; not compared: {found.reason}"
    return False, line
