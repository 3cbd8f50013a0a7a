"""One video through decode -> infer -> score + draw -> encode, each stage in its own thread."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from config import Config
from pipeline.results import FrameResult, FrameTable
from pipeline.stages import END, StageClock, StageGroup
from workers.data import Detections, Frame, VideoInfo
from workers.decode import VideoReader
from workers.draw import draw_label, draw_person_labels, draw_skeletons, end_card
from workers.encode import VideoWriter, choose_encoder
from workers.ffmpeg import probe
from workers.infer import AdaptiveBatches, PoseEstimator, interpolate_detections
from workers.poses import CachedPoses, PoseCacheMeta, PoseLog, poses_path, save_poses
from workers.score import RunningScore, ScoreParams, distance_to_score, frame_score, persons_above
from workers.sync import SyncParams, SyncResult, SyncScore, analyse_sync
from workers.timing import Moment, TimingParams, WindowLag, analyse_timing_stream, current_lags, worst_moments
from workers.track import TrackSummarizer, Tracker, select_performers


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


@dataclass
class RunResult:
    """Everything a finished run knows.

    Attributes:
        info: The probed input.
        output: The written video, or None when no video was asked for.
        poses: The saved pose cache, or None.
        frames: One FrameResult per decoded frame, in order (a list, or a `FrameTable` on
            disk).
        total: The total score (mean of frame scores), or None.
        total_text: The end card's text ("" with scoring off).
        encoder: The H.264 encoder used, or None without a video.
        device: The model's device.
        seconds: Wall-clock seconds of the whole run (probe to finished file).
        stages: Per stage: busy and waiting seconds and items.
        model: The pose model's name (the cached model's when replaying a pose cache).
        persons: One entry per tracked person, ids ascending (see `PersonResult`).
        worst_moments: The stretches with the lowest group pose score, worst first.
        sync: The group's synchrony calibrated against chance, per performer and over time,
            or None with scoring off or no performer.
        analysis_seconds: Seconds of the whole-video analysis (inside `seconds`) by part:
            "tracks", "timing", "sync" (those that ran).
    """

    info: VideoInfo
    output: Path | None
    poses: Path | None
    frames: Sequence[FrameResult]
    total: float | None
    total_text: str
    encoder: str | None
    device: str
    seconds: float
    stages: dict[str, StageClock] = field(default_factory=dict)
    model: str = ""
    persons: list[PersonResult] = field(default_factory=list)
    worst_moments: list[Moment] = field(default_factory=list)
    sync: SyncResult | None = None
    analysis_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        """Input frames processed per wall-clock second."""
        return len(self.frames) / self.seconds if self.seconds > 0 else 0.0


def score_params(config: Config) -> ScoreParams:
    """The score constants a config asks for."""
    return ScoreParams(
        person_threshold=config.person_min_score,
        distance_offset=config.distance_offset,
        distance_scale=config.distance_scale,
        score_max=config.score_max,
        display_window=config.display_window,
        keypoint_weighting=config.weighting,
    )


def timing_params(config: Config) -> TimingParams:
    """The timing-analysis knobs a config asks for (the score constants included)."""
    return TimingParams(mirror=config.mirror, score=score_params(config))


class Annotator:
    """Tracks, scores and draws frames in order (the score + draw stage without threads).

    Each person gets a track id (colour and "#id" label follow it). With scoring on and
    `fps` given, every `hop_s` the trailing `window_s` of tracked poses is analysed and each
    analysed person's label shows its current lag ("#2 +120 ms") until the next update. After
    the last frame, `finish` analyses the whole video.

    Args:
        config: The run's settings.
        draw: Draw on the frames; False only scores them (no video is made).
        fps: Frames per second of the video; None turns the live lag off (and `finish`
            then needs it).
        directory: Where the per-frame records live on disk (temporary files that no one
            sees); None for the system's temporary folder.
    """

    #: Frames read at a time by the whole-video analysis.
    CHUNK_FRAMES = 4096

    def __init__(self, config: Config, draw: bool = True, fps: float | None = None,
                 directory: Path | None = None) -> None:
        self.config = config
        self.draw = draw
        self.fps = None if fps is None else float(fps)
        self.params = score_params(config)
        self.timing = timing_params(config)
        self.running = RunningScore(self.params)
        self.results = FrameTable(directory)
        # One tracker per Annotator, and one Annotator per video: ids never carry over.
        self.tracker = Tracker(max_missing=max(1, round(self.fps)) if self.fps else 30)
        self.tracked = PoseLog(directory)  # every frame's persons and ids, on disk
        self.live_lags: dict[int, float | None] = {}
        self.sync_params = SyncParams(timing=self.timing)
        self.sync: SyncResult | None = None
        self._finished: tuple[list[PersonResult], list[Moment]] | None = None
        #: Seconds the whole-video analysis spent on each part ("tracks", "timing", "sync").
        self.analysis_seconds: dict[str, float] = {}

    def __call__(self, frame: Frame, detections: Detections) -> None:
        """Track and score `frame`, draw on its image in place, and record the result."""
        persons = persons_above(detections, self.params.person_threshold)
        ids = self.tracker.update(persons)
        self.tracked.append(persons, ids)
        score = text = displayed = None
        if self.config.score:
            score = frame_score(persons, self.params)
            text = self.running.update(len(persons), score)
            displayed = self.running.displayed if len(persons) else None
            self._update_live_lags()
        labels = tuple(self._label(int(person_id)) for person_id in ids)
        if self.draw:
            draw_skeletons(frame.image, persons, self.config.keypoint_min_score, ids)
            draw_person_labels(frame.image, persons, ids, labels)
            if text:
                draw_label(frame.image, text)
        self.results.append(FrameResult(frame.index, frame.timestamp, len(persons), score, displayed, text,
                                        tuple(int(i) for i in ids), labels))

    def _label(self, person_id: int) -> str:
        lag = self.live_lags.get(person_id)
        return f"#{person_id}" if lag is None else f"#{person_id} {lag:+.0f} ms"

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
            synchrony is left in `self.sync`.
        """
        if self.fps is None:
            raise ValueError("finish needs the video's fps: give it to Annotator(fps=...)")
        if self._finished is None:
            self._finished = self._analyse()
        return self._finished

    def _analyse(self) -> tuple[list[PersonResult], list[Moment]]:
        assert self.fps is not None
        started = time.perf_counter()
        summarizer = TrackSummarizer(self.fps)
        for start in range(0, len(self.tracked), self.CHUNK_FRAMES):
            summarizer.add(self.tracked.rows(max(0, start - summarizer.margin), start + self.CHUNK_FRAMES),
                           own_from=start)
        tracks = summarizer.summaries()
        self.analysis_seconds["tracks"] = time.perf_counter() - started
        if not tracks:
            return [], []
        if self.config.score:
            selection = select_performers(tracks, self.config.persons)
        else:
            selection = {person_id: (False, "scoring off (--no-score)") for person_id in tracks}
        performers = [person_id for person_id, (scored, _) in selection.items() if scored]
        timings = {}
        if performers:
            def read(start: int, stop: int) -> list[np.ndarray]:
                poses = self.tracked.rows(start, stop).poses(self.config.keypoint_min_score, only=set(performers))
                return [poses[person_id] for person_id in performers]

            started = time.perf_counter()
            timings = analyse_timing_stream(performers, len(self.tracked), read, self.fps, self.timing,
                                            chunk_frames=self.CHUNK_FRAMES)
            self.analysis_seconds["timing"] = time.perf_counter() - started
            started = time.perf_counter()
            mirrored = {(person_id, other) for person_id, timing in timings.items() for other in timing.mirrored_with}
            self.sync = analyse_sync(performers, len(self.tracked), read, self.fps, None, mirrored,
                                     self.sync_params, chunk_frames=self.CHUNK_FRAMES)
            self.analysis_seconds["sync"] = time.perf_counter() - started
        persons = []
        for person_id, track in tracks.items():
            scored, reason = selection[person_id]
            timing = timings.get(person_id)
            persons.append(PersonResult(
                id=person_id, frames=track.frames_present, first_frame=track.first_frame, last_frame=track.last_frame,
                scored=scored, reason=reason, box=track.box,
                lag_ms=None if timing is None else timing.lag_ms,
                windows=() if timing is None else timing.windows,
                score=None if timing is None else timing.pose_score,
                timing_score=None if timing is None else timing.timing_score,
                mirrored_with=() if timing is None else timing.mirrored_with,
                sync=None if self.sync is None else self.sync.persons.get(person_id),
                lag_confidence=None if timing is None else timing.lag_confidence,
            ))
        return persons, self._worst_moments(timings)

    def _worst_moments(self, timings: dict) -> list[Moment]:
        if len(timings) < 2:
            return []
        distances = np.stack([timing.distances for timing in timings.values()])
        finite = np.isfinite(distances)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(finite, distances, 0.0).sum(axis=0) / finite.sum(axis=0)
        group_scores = np.array([distance_to_score(d, self.params) if np.isfinite(d) else np.nan for d in mean])
        return worst_moments(group_scores, self.fps, {i: t.distances for i, t in timings.items()})

    def end_card_text(self) -> str:
        return self.running.total_text() if self.config.score else ""

    def end_card_lines(self) -> list[str]:
        """The end card: the original's total score, then the group's synchrony once analysed."""
        if not self.config.score:
            return []
        lines = [self.running.total_text()]
        if self.sync is not None and self.sync.group is not None:
            group = self.sync.group
            lines.append(f"Group sync: {group.score:.1f} (chance {group.chance_mean:.1f})")
        return lines


def run_video(
    config: Config,
    estimator: PoseEstimator,
    info: VideoInfo | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> RunResult:
    """Process one video: the annotated video with its audio appears at `config.output`.

    With `config.video` off nothing is drawn or encoded: only the scores (and the pose cache)
    come out.

    Args:
        config: The run's settings.
        estimator: A loaded pose model (loaded once, reused across videos).
        info: The probed input, if already known.
        on_frames: Called from the calling thread with the number of frames newly scored
            since its last call, for a caller's own progress display; None shows a tqdm bar
            when `config.progress` is on.

    Returns:
        The per-frame scores, totals and timings.

    Raises:
        SyncError: for bad input, a failed encode or a stalled stage (nothing is left under
            the output name); KeyboardInterrupt as is, after everything was stopped.
    """
    started = time.perf_counter()
    info = info or probe(config.input)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    encoder = choose_encoder(config.encoder, estimator.device) if config.video else None
    reader = VideoReader(info, nice=config.ffmpeg_nice)
    writer = None
    if encoder is not None:
        writer = VideoWriter(
            config.output, info.width, info.height, info.fps,
            audio_from=info, encoder=encoder, preset=config.x264_preset, crf=config.crf, nice=config.ffmpeg_nice,
        )
    annotator = Annotator(config, draw=writer is not None, fps=float(info.fps), directory=config.output.parent)
    group = StageGroup()
    group.on_stop(reader.kill)
    if writer is not None:
        group.on_stop(writer.abort)
    slots = config.queue_slots(info.width, info.height)
    decoded: queue.Queue = queue.Queue(maxsize=slots)
    detected: queue.Queue = queue.Queue(maxsize=slots)
    drawn: queue.Queue = queue.Queue(maxsize=slots)
    bar = tqdm(
        total=info.expected_frames or None, unit="frame", desc=config.input.name,
        disable=on_frames is not None or not config.progress, dynamic_ncols=True, leave=False,
    )
    report_frames = on_frames or bar.update

    def decode(clock: StageClock) -> None:
        reader.start()
        iterator = iter(reader)
        while True:
            start = time.perf_counter()
            frame = next(iterator, END)
            clock.busy += time.perf_counter() - start
            if frame is END:
                break
            clock.items += 1
            clock.last_progress = time.monotonic()
            group.put(decoded, frame, clock)
        group.put(decoded, END, clock)

    replaying = isinstance(estimator, CachedPoses)
    found_per_frame = PoseLog(config.output.parent)

    batches = AdaptiveBatches(estimator, config.batch_size)

    every = 1 if replaying else config.infer_every

    def infer(clock: StageClock) -> None:
        # Every `every`-th frame goes through the model (in batches of batch_size such key
        # frames); the frames between two keys get their persons interpolated. A round reads
        # up to the batch_size-th key, so only the frames before a key ever wait for it.
        last_key: tuple[Frame, Detections] | None = None
        finished = False
        while not finished:
            frames: list[Frame] = []
            keys = 0
            while keys < config.batch_size:
                item = group.get(decoded, clock)
                if item is END:
                    finished = True
                    break
                frames.append(item)
                keys += item.index % every == 0
            if not frames:
                break
            is_key = [frame.index % every == 0 for frame in frames]
            is_key[-1] = is_key[-1] or finished  # the video's last frame closes the last gap
            start = time.perf_counter()
            clock.computing = True
            try:
                found = iter(batches.predict([f.image for f, key in zip(frames, is_key) if key]))
            finally:
                clock.computing = False
            clock.busy += time.perf_counter() - start
            waiting: list[Frame] = []
            for frame, key in zip(frames, is_key):
                if not key:
                    waiting.append(frame)
                    continue
                current = (frame, next(found))
                for between in waiting:
                    before = last_key if last_key is not None else current
                    span = current[0].index - before[0].index
                    fraction = (between.index - before[0].index) / span if span else 0.0
                    emit(between, interpolate_detections(before[1], current[1], fraction), clock)
                waiting = []
                emit(*current, clock)
                last_key = current
        if replaying:
            estimator.check_complete(clock.items)
        group.put(detected, END, clock)

    def emit(frame: Frame, found: Detections, clock: StageClock) -> None:
        clock.items += 1
        clock.last_progress = time.monotonic()
        if config.save_poses and not replaying:
            found_per_frame.append(found)
        group.put(detected, (frame, found), clock)

    def score_and_draw(clock: StageClock) -> None:
        while (item := group.get(detected, clock)) is not END:
            frame, found = item
            start = time.perf_counter()
            annotator(frame, found)
            clock.busy += time.perf_counter() - start
            clock.items += 1
            clock.last_progress = time.monotonic()
            if writer is not None:
                group.put(drawn, frame.image, clock)
        if writer is None:
            return
        if config.score and config.end_card_seconds > 0:
            # The whole-video analysis, here rather than after the run: the card shows its synchrony.
            clock.computing = True
            try:
                annotator.finish()
            finally:
                clock.computing = False
            card = end_card(info.width, info.height, "\n".join(annotator.end_card_lines()))
            for _ in range(round(config.end_card_seconds * float(info.fps))):
                group.put(drawn, card, clock)
        group.put(drawn, END, clock)

    def encode(clock: StageClock) -> None:
        assert writer is not None
        while (image := group.get(drawn, clock)) is not END:
            start = time.perf_counter()
            writer.write(image)
            clock.busy += time.perf_counter() - start
            clock.items += 1
            clock.last_progress = time.monotonic()
        start = time.perf_counter()
        writer.finish()
        clock.busy += time.perf_counter() - start

    shown = 0

    def tick() -> None:
        nonlocal shown
        done = min(group.clocks["score_draw"].items, len(annotator.results))
        if done > shown:
            report_frames(done - shown)
            shown = done

    stages = [("decode", decode), ("infer", infer), ("score_draw", score_and_draw)]
    if writer is not None:
        stages.append(("encode", encode))
    for name, stage in stages:
        group.spawn(name, stage)
    try:
        group.wait(config.stall_timeout, on_tick=tick)
    finally:
        bar.close()
        reader.kill()
        if group.error is not None and writer is not None:
            writer.abort()
    saved_poses = None
    if config.save_poses and not replaying:
        meta = PoseCacheMeta(
            model=estimator.name, settings=config.detection_settings(), frames=len(found_per_frame),
            fps=str(info.fps), width=info.width, height=info.height, input=info.path.name,
        )
        saved_poses = save_poses(poses_path(config.output), found_per_frame, meta)
    persons, moments = annotator.finish()
    running = annotator.running
    return RunResult(
        info=info,
        output=config.output if writer is not None else None,
        poses=saved_poses,
        frames=annotator.results,
        total=running.total if config.score else None,
        total_text=annotator.end_card_text(),
        encoder=encoder,
        device=estimator.device,
        seconds=time.perf_counter() - started,
        stages=group.clocks,
        model=estimator.name,
        persons=persons,
        worst_moments=moments,
        sync=annotator.sync,
        analysis_seconds=dict(annotator.analysis_seconds),
    )
