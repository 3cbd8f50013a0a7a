"""The score stage's work on one frame at a time, and the end of the video.

No threads: `pipeline.runner` feeds an `Annotator` from its queue, the tests feed it plain
frames and persons. What it hands on to be drawn is an `Overlay` per frame (`workers.draw`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from workers.analysis import PersonResult, VideoAnalysis, analyse_video
from workers.data import CHUNK_FRAMES, Detections, Frame
from workers.draw import Overlay, paint
from workers.identity import IdentityJoiner, IdentityParams
from workers.moments import Moment
from workers.poses import PoseLog
from workers.records import FrameResult, FrameTable
from workers.reference import ReferenceAnalysis, TeacherSetup
from workers.scenes import scene_change, scene_thumbnail
from workers.score import RunningScore, ScoreParams, frame_score, order_above, without_duplicates
from workers.sync import SyncParams, SyncResult
from workers.timing import TimingParams, current_lags
from workers.track import Tracker, TrackSummarizer, select_performers

#: What a held frame keeps of its picture when nothing is drawn.
_NO_PICTURE = np.zeros((1, 1, 3), np.uint8)


def _painted(finished: list[tuple[Frame, Overlay | None]]) -> list[Frame]:
    """The frames, each with its overlay drawn on it."""
    for frame, overlay in finished:
        paint(frame.image, overlay)
    return [frame for frame, _ in finished]


class AnnotateSettings(Protocol):
    """What the score stage reads from the run's settings (`config.Config` has all of it).

    A protocol, so that `workers/` needs nothing from `config/`: the config knows the stages,
    the stages do not know the config.
    """

    @property
    def score(self) -> bool: ...
    @property
    def persons(self) -> str | int: ...
    @property
    def mirror(self) -> bool: ...
    @property
    def distance_offset(self) -> float: ...
    @property
    def distance_scale(self) -> float: ...
    @property
    def score_max(self) -> float: ...
    @property
    def display_window(self) -> int: ...
    @property
    def person_threshold_in_effect(self) -> float: ...
    @property
    def keypoint_min_score(self) -> float: ...
    @property
    def weighting(self) -> str: ...
    @property
    def max_gap_s(self) -> float: ...
    @property
    def identity_lookahead_s(self) -> float: ...
    def lookahead_frames(self, width: int, height: int, fps: float) -> int: ...


def score_params(config: AnnotateSettings) -> ScoreParams:
    """The score constants a config asks for."""
    return ScoreParams(
        person_threshold=config.person_threshold_in_effect,
        distance_offset=config.distance_offset,
        distance_scale=config.distance_scale,
        score_max=config.score_max,
        display_window=config.display_window,
        keypoint_weighting=config.weighting,
    )


def timing_params(config: AnnotateSettings) -> TimingParams:
    """The timing-analysis knobs a config asks for (the score constants included)."""
    return TimingParams(mirror=config.mirror, score=score_params(config))


def identity_params(config: AnnotateSettings, fps: float, frame_size: tuple[int, int] | None = None) -> IdentityParams:
    """The joining knobs a config asks for; the look-ahead shortened where holding that many
    frames of `frame_size` (width, height) would pass `config.lookahead_megabytes`."""
    lookahead_s = config.identity_lookahead_s
    if frame_size is not None:
        frames = config.lookahead_frames(*frame_size, fps)
        lookahead_s = min(lookahead_s, frames / fps)
    return IdentityParams(lookahead_s=lookahead_s, max_gap_s=config.max_gap_s)


class Annotator:
    """Tracks, scores and draws frames in order (the score + draw stage without threads).

    Each person gets one id for the whole video (colour and "#id" label follow it): the
    tracker's tracklets are joined by `workers.identity.IdentityJoiner`, which decides a new
    tracklet's identity within its look-ahead. So a frame is drawn, recorded and returned only
    once that many later frames have been seen: `__call__` returns the frames finished by the
    frame it is given (none at first), and `close` the rest after the last frame. The ids drawn
    are the ids recorded, analysed and reported. With scoring on and `fps` given, every `hop_s`
    the trailing `window_s` of tracked poses is analysed and each analysed person's label shows
    its current lag ("#2 +120 ms") until the next update. After `close`, `finish` analyses the
    whole video (`workers.analysis.analyse_video`).

    Args:
        config: The run's settings.
        draw: Draw on the frames; False only scores them (no video is made).
        fps: Frames per second of the video; None turns the live lag off (and `finish`
            then needs it; the joining then assumes 30).
        directory: Where the per-frame records live on disk (temporary files that no one
            sees); None for the system's temporary folder.
        frame_size: (width, height) of the frames, so that the frames held for the look-ahead
            stay within `config.lookahead_megabytes`; None does not limit them.
        raw_log: Where every frame's detections (all of the model's, with the person ids of
            those above the threshold, 0 for the others) are recorded for the pose cache;
            None records nothing.
        teacher: The teacher to compare the performers with at the end (`--reference`), or None.
    """

    #: Frames read at a time by the whole-video analysis.
    CHUNK_FRAMES = CHUNK_FRAMES
    #: A thumbnail change (`workers.scenes.scene_change`) at or above this is a camera cut.
    SCENE_CUT = 30.0

    def __init__(self, config: AnnotateSettings, draw: bool = True, fps: float | None = None,
                 directory: Path | None = None, frame_size: tuple[int, int] | None = None,
                 raw_log: PoseLog | None = None, teacher: TeacherSetup | None = None) -> None:
        self.config = config
        self.teacher = teacher
        self.draw = draw
        self.fps = None if fps is None else float(fps)
        self.params = score_params(config)
        self.timing = timing_params(config)
        self.running = RunningScore(self.params)
        self.results = FrameTable(directory)
        # One tracker and joiner per Annotator, and one Annotator per video: ids never carry over.
        joining_fps = self.fps or 30.0
        self.joiner = IdentityJoiner(joining_fps, config.keypoint_min_score,
                                     identity_params(config, joining_fps, frame_size))
        self.tracker = Tracker(max_missing=self.joiner.tracker_missing,
                               ambiguity_margin=self.joiner.params.tracker_margin)
        self.tracked = PoseLog(directory)  # every frame's persons and person ids, on disk
        self.raw_log = raw_log
        self.live_lags: dict[int, float | None] = {}
        self.sync_params = SyncParams(timing=self.timing)
        self._analysis: VideoAnalysis | None = None
        self._held: deque[tuple[Frame, Detections, np.ndarray]] = deque()
        self._thumbnail: np.ndarray | None = None
        self._joining_seconds = 0.0

    def __call__(self, frame: Frame, detections: Detections) -> list[Frame]:
        """Track `frame`'s persons; score, draw on and record the frames whose ids are decided.

        Returns:
            The frames finished now, oldest first (drawn in place; with `draw` off, their
            index and time only, with a 1x1 picture).
        """
        return _painted(self.track(frame, detections))

    def close(self) -> list[Frame]:
        """After the last frame: score, draw on and record the frames still held."""
        return _painted(self.flush())

    def track(self, frame: Frame, detections: Detections) -> list[tuple[Frame, Overlay | None]]:
        """`__call__` without the drawing: the frames finished now with what to draw on each
        (None with `draw` off), for a draw stage of their own (`workers.draw.paint`)."""
        order = without_duplicates(detections, order_above(detections, self.params.person_threshold))
        persons = detections.select(order)
        started = time.thread_time()  # CPU time: the stage shares the interpreter with the others
        cut = self._camera_cut(frame.image)
        self._joining_seconds += time.thread_time() - started
        if cut:
            self.tracker.reset()
        tracklet_ids = self.tracker.update(persons)
        started = time.thread_time()
        self.joiner.push(persons, tracklet_ids, frame.image, cut=cut)
        self._joining_seconds += time.thread_time() - started
        if not self.draw:  # nothing will be drawn: hold the frame's place, not its picture
            frame = Frame(frame.index, frame.timestamp, _NO_PICTURE)
        self._held.append((frame, detections, order))
        return self._release()

    def flush(self) -> list[tuple[Frame, Overlay | None]]:
        """`close` without the drawing (see `track`)."""
        self.joiner.close()
        return self._release()

    def _camera_cut(self, image: np.ndarray) -> bool:
        thumbnail = scene_thumbnail(image)
        previous, self._thumbnail = self._thumbnail, thumbnail
        return (previous is not None and previous.shape == thumbnail.shape
                and scene_change(previous, thumbnail) >= self.SCENE_CUT)

    def _release(self) -> list[tuple[Frame, Overlay | None]]:
        done = []
        while self.joiner.ready():
            started = time.thread_time()
            person_ids = self.joiner.pop()
            self._joining_seconds += time.thread_time() - started
            frame, detections, order = self._held.popleft()
            overlay = self._finish(frame, detections.select(order), person_ids)
            if self.raw_log is not None:
                raw_ids = np.zeros(len(detections), dtype=np.int64)
                raw_ids[order] = person_ids
                self.raw_log.append(detections, raw_ids)
            done.append((frame, overlay))
        return done

    def _finish(self, frame: Frame, persons: Detections, person_ids: np.ndarray) -> Overlay | None:
        """Score and record one frame whose persons have their final ids; what to draw on it
        (None with `draw` off)."""
        self.tracked.append(persons, person_ids)
        ids = tuple(int(person_id) for person_id in person_ids)
        score = text = displayed = None
        if self.config.score:
            score = frame_score(persons, self.params)
            text = self.running.update(len(persons), score)
            displayed = self.running.displayed if len(persons) else None
            self._update_live_lags()
        labels = tuple(self._label(person_id) for person_id in ids)
        result = FrameResult(frame.index, frame.timestamp, len(persons), score, displayed, text, ids, labels)
        self.results.append(result)
        return Overlay(persons, ids, labels, text, self.config.keypoint_min_score) if self.draw else None

    def _label(self, person_id: int) -> str:
        lag = self.live_lags.get(person_id)
        return f"#{person_id}" if lag is None else f"#{person_id} {round(lag):+d} ms"

    def _update_live_lags(self) -> None:
        """Every hop, once a whole window has been seen: the lags over the trailing window."""
        if self.fps is None:
            return
        length = max(1, round(self.timing.window_s * self.fps))
        hop = max(1, round(self.timing.hop_s * self.fps))
        seen = len(self.tracked)
        if seen < length or (seen - length) % hop:
            return
        rows = self.tracked.rows(seen - length, seen)
        summarizer = TrackSummarizer(self.fps)
        summarizer.add(rows)
        selection = select_performers(summarizer.summaries(), self.config.persons)
        scored = {person_id for person_id, (chosen, _) in selection.items() if chosen}
        self.live_lags = current_lags(rows.poses(self.config.keypoint_min_score, only=scored), self.fps, self.timing)

    def finish(self) -> tuple[list[PersonResult], list[Moment]]:
        """The whole-video analysis: every track, the performers' timing and synchrony, the
        worst moments. Done once: later calls return the same.

        Returns:
            One `PersonResult` per track (ids ascending), and the worst moments (empty with
            scoring off or fewer than two performers with comparable poses). The group's
            synchrony is in `sync`, the seconds by part in `analysis_seconds`.
        """
        analysis = self.analysis()
        return analysis.persons, analysis.worst_moments

    def analysis(self) -> VideoAnalysis:
        """`finish`'s whole result (done once)."""
        if self.fps is None:
            raise ValueError("finish needs the video's fps: give it to Annotator(fps=...)")
        if self._held or not self.joiner.closed:
            self.close()  # records the frames still held; a caller that wants them calls close first
        if self._analysis is None:
            self._analysis = analyse_video(
                self.tracked, self.fps, score=self.config.score, persons=self.config.persons,
                keypoint_min_score=self.config.keypoint_min_score, timing=self.timing, sync=self.sync_params,
                chunk_frames=self.CHUNK_FRAMES, identity=self.joiner, teacher=self.teacher,
            )
        return self._analysis

    @property
    def sync(self) -> SyncResult | None:
        """The performers' synchrony once `finish` has run, else None."""
        return None if self._analysis is None else self._analysis.sync

    @property
    def analysis_seconds(self) -> dict[str, float]:
        """Seconds the whole-video analysis spent on each part ("tracks", "timing", "sync"), and
        the CPU seconds of the joining and the camera-cut check frame by frame ("joining"; the
        tracker itself, which ran before tracklets were joined, is not counted)."""
        return {} if self._analysis is None else {**self._analysis.seconds, "joining": self._joining_seconds}

    def end_card_text(self) -> str:
        """The original's total score text ("" with scoring off)."""
        return self.running.total_text() if self.config.score else ""

    def end_card_lines(self) -> list[str]:
        """The end card: the original's total score, the group's synchrony once analysed, and who
        is out of time: every performer's lag for a few, the furthest out and the rest in one
        line for a class."""
        if not self.config.score:
            return []
        lines = [self.running.total_text()]
        if self.sync is not None and self.sync.group is not None:
            group = self.sync.group
            lines.append(f"Group sync: {group.score:.1f} (chance {group.chance_mean:.1f})")
        if self._analysis is not None and self._analysis.reference is not None:
            lines += teacher_lines(self._analysis.reference)
        elif self._analysis is not None:
            lines += lag_lines([(p.id, p.lag_ms) for p in self._analysis.persons if p.scored and p.lag_ms is not None])
        return lines


def lag_lines(lags: Sequence[tuple[int, float]], named: int = 3, all_up_to: int = 4) -> list[str]:
    """What the end card says of the performers' timing.

    Args:
        lags: (id, lag in ms, positive = behind) of every performer with a lag.
        named: How many of a larger group are named, those furthest from the group's time.
        all_up_to: Groups up to this size are listed whole, on one line.

    Returns:
        Up to `named + 1` lines: "#1 +0 ms   #2 +100 ms" for a few; for more, "#7 is 210 ms behind"
        per named person and "The other 27 within ±40 ms".
    """
    if len(lags) < 2:
        return []
    if len(lags) <= all_up_to:
        return ["   ".join(f"#{i} {round(lag):+d} ms" for i, lag in sorted(lags))]
    ordered = sorted(lags, key=lambda item: (-abs(item[1]), item[0]))
    lines = [f"#{i} is {abs(lag):.0f} ms {'behind' if lag > 0 else 'ahead'}" for i, lag in ordered[:named]]
    rest = ordered[named:]
    lines.append(f"The other {len(rest)} within ±{max(abs(lag) for _, lag in rest):.0f} ms")
    return lines


def teacher_lines(reference: ReferenceAnalysis, named: int = 4) -> list[str]:
    """What the end card says of the performers against the teacher: each one's lag (and late
    limbs) for a few, the furthest from the teacher's time and the rest in one line for a class."""
    comparison = reference.comparison
    if comparison is None:
        return [f"Teacher: {reference.reason}"]
    entries = sorted(((person_id, timing) for person_id, timing in comparison.persons.items()),
                     key=lambda item: (-abs(item[1].lag_ms or 0.0), item[0]))
    lines = []
    for person_id, timing in entries[:named]:
        if timing.lag_ms is None:
            lines.append(f"#{person_id}: no clear lag against the teacher")
            continue
        when = "on time with" if abs(timing.lag_ms) < 20 else \
            f"{abs(timing.lag_ms):.0f} ms {'behind' if timing.lag_ms > 0 else 'ahead of'}"
        late = [name.replace("_", " ") for name in timing.late_limbs]
        lines.append(f"#{person_id} {when} the teacher" + (f" ({', '.join(late)} late)" if late else ""))
    rest = [timing.lag_ms for _, timing in entries[named:] if timing.lag_ms is not None]
    if rest:
        lines.append(f"The other {len(rest)} within ±{max(abs(lag) for lag in rest):.0f} ms of the teacher")
    return lines
