"""The whole-video analysis: from every frame's tracked persons to each person's results.

Runs once, after the last frame: the track summaries, who the performers are, their timing
(`workers.timing`), their synchrony against chance (`workers.sync`) and the worst moments.
It reads the recorded frames a chunk at a time, so its memory does not grow with the video.
No threads; the score stage calls it (`workers.annotate.Annotator.finish`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from workers.data import CHUNK_FRAMES
from workers.poses import PoseLog
from workers.score import ScoreParams, distance_to_score
from workers.sync import SyncParams, SyncResult, SyncScore, analyse_sync
from workers.timing import Moment, PersonTiming, TimingParams, WindowLag, analyse_timing_stream, worst_moments
from workers.track import TrackSummarizer, select_performers


@dataclass(frozen=True)
class PersonResult:
    """One tracked person over the whole video, and the timing analysis of the performers.

    Attributes:
        id: Track id, from 1.
        frames: Frames in which the person was found.
        first_frame: Index of the first such frame.
        last_frame: Index of the last such frame.
        scored: Whether the person is a performer (taken into the timing analysis).
        reason: Why the person was or was not scored.
        lag_ms: Median lag behind the group over the windows, milliseconds (negative:
            ahead), or None (not scored, or no window gave a clear lag).
        lag_confidence: How clear the lag is, 0..1 (`workers.timing.lag_confidence`: 0 when
            no window gave one), or None when not scored.
        windows: The per-window lags (empty when not scored).
        score: Pose similarity to the other performers after removing the lags, 0..10, or None.
        timing_score: 0..10 from `lag_ms`, or None.
        mirrored_with: Ids of the performers compared with this one as mirror images.
        box: The median box over the frames the person was found in, (x0, y0, x1, y1)
            pixels, so that a reader can tell who is who; None when unknown.
        sync: Synchrony with the other performers, calibrated against chance
            (`workers.sync`), or None (not scored, or nothing to compare).
    """

    id: int
    frames: int
    first_frame: int
    last_frame: int
    scored: bool
    reason: str
    lag_ms: float | None = None
    windows: tuple[WindowLag, ...] = ()
    score: float | None = None
    timing_score: float | None = None
    mirrored_with: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    sync: SyncScore | None = None
    lag_confidence: float | None = None


@dataclass(frozen=True)
class VideoAnalysis:
    """What the whole-video analysis found.

    Attributes:
        persons: One `PersonResult` per track, ids ascending.
        worst_moments: The stretches with the lowest group pose score, worst first (empty
            with scoring off or fewer than two performers with comparable poses).
        sync: The performers' synchrony, or None with scoring off or no performer.
        seconds: Seconds spent on each part: "tracks", "timing", "sync" (those that ran).
    """

    persons: list[PersonResult] = field(default_factory=list)
    worst_moments: list[Moment] = field(default_factory=list)
    sync: SyncResult | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def analyse_video(
    tracked: PoseLog,
    fps: float,
    *,
    score: bool,
    persons: str | int,
    keypoint_min_score: float,
    timing: TimingParams,
    sync: SyncParams,
    chunk_frames: int = CHUNK_FRAMES,
) -> VideoAnalysis:
    """Every track's summary, the performers' timing and synchrony, the worst moments.

    Args:
        tracked: Every frame's persons with their track ids, in order.
        fps: Frames per second of the video.
        score: Whether scoring is on; off, nobody is a performer and only tracks come out.
        persons: Whom to analyse: "auto", "all" or a count (see `select_performers`).
        keypoint_min_score: Keypoints at or below this score count as absent.
        timing: The timing analysis's knobs (the score constants included).
        sync: The synchrony score's knobs.
        chunk_frames: Frames read at a time.

    Returns:
        The persons, worst moments, synchrony and the seconds each part took.
    """
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    summarizer = TrackSummarizer(fps)
    for start in range(0, len(tracked), chunk_frames):
        summarizer.add(tracked.rows(max(0, start - summarizer.margin), start + chunk_frames), own_from=start)
    tracks = summarizer.summaries()
    seconds["tracks"] = time.perf_counter() - started
    if not tracks:
        return VideoAnalysis(seconds=seconds)
    if score:
        selection = select_performers(tracks, persons)
    else:
        selection = {person_id: (False, "scoring off (--no-score)") for person_id in tracks}
    performers = [person_id for person_id, (scored, _) in selection.items() if scored]
    timings: dict[int, PersonTiming] = {}
    group_sync = None
    if performers:
        def read(start: int, stop: int) -> list[np.ndarray]:
            poses = tracked.rows(start, stop).poses(keypoint_min_score, only=set(performers))
            return [poses[person_id] for person_id in performers]

        started = time.perf_counter()
        timings = analyse_timing_stream(performers, len(tracked), read, fps, timing, chunk_frames=chunk_frames)
        seconds["timing"] = time.perf_counter() - started
        started = time.perf_counter()
        mirrored = {(person_id, other) for person_id, result in timings.items() for other in result.mirrored_with}
        group_sync = analyse_sync(performers, len(tracked), read, fps, None, mirrored, sync, chunk_frames=chunk_frames)
        seconds["sync"] = time.perf_counter() - started
    results = []
    for person_id, track in tracks.items():
        scored, reason = selection[person_id]
        result = timings.get(person_id)
        results.append(PersonResult(
            id=person_id, frames=track.frames_present, first_frame=track.first_frame, last_frame=track.last_frame,
            scored=scored, reason=reason, box=track.box,
            lag_ms=None if result is None else result.lag_ms,
            windows=() if result is None else result.windows,
            score=None if result is None else result.pose_score,
            timing_score=None if result is None else result.timing_score,
            mirrored_with=() if result is None else result.mirrored_with,
            sync=None if group_sync is None else group_sync.persons.get(person_id),
            lag_confidence=None if result is None else result.lag_confidence,
        ))
    moments = group_worst_moments(timings, fps, timing.score)
    return VideoAnalysis(results, moments, group_sync, seconds)


def group_worst_moments(timings: Mapping[int, PersonTiming], fps: float, params: ScoreParams) -> list[Moment]:
    """The worst moments of the group's pose score (mean distance over the performers)."""
    if len(timings) < 2:
        return []
    distances = np.stack([result.distances for result in timings.values()])
    finite = np.isfinite(distances)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, distances, 0.0).sum(axis=0) / finite.sum(axis=0)
    group_scores = np.array([distance_to_score(d, params) if np.isfinite(d) else np.nan for d in mean])
    return worst_moments(group_scores, fps, {i: result.distances for i, result in timings.items()})
