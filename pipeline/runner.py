"""One video through decode -> infer -> score + draw -> encode, each stage in its own thread."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from config import Config
from pipeline.stages import END, StageClock, StageGroup
from workers.data import Detections, Frame, VideoInfo
from workers.decode import VideoReader
from workers.draw import draw_label, draw_skeletons, end_card
from workers.encode import VideoWriter, choose_encoder
from workers.ffmpeg import probe
from workers.infer import AdaptiveBatches, PoseEstimator
from workers.poses import CachedPoses, PoseCacheMeta, poses_path, save_poses
from workers.score import RunningScore, ScoreParams, frame_score, persons_above


@dataclass(frozen=True)
class FrameResult:
    """What the score stage found in one frame.

    Attributes:
        index: Frame index.
        timestamp: Seconds from the start.
        persons: Persons above the threshold.
        score: The frame score, or None when unscored.
        displayed: The on-screen (moving-average) score, or None.
        text: The text drawn on the frame, or None.
    """

    index: int
    timestamp: float
    persons: int
    score: float | None
    displayed: float | None
    text: str | None


@dataclass
class RunResult:
    """Everything a finished run knows.

    Attributes:
        info: The probed input.
        output: The written video, or None when no video was asked for.
        poses: The saved pose cache, or None.
        frames: One FrameResult per decoded frame, in order.
        total: The total score (mean of frame scores), or None.
        total_text: The end card's text ("" with scoring off).
        encoder: The H.264 encoder used, or None without a video.
        device: The model's device.
        seconds: Wall-clock seconds of the whole run (probe to finished file).
        stages: Per stage: busy and waiting seconds and items.
        model: The pose model's name (the cached model's when replaying a pose cache).
    """

    info: VideoInfo
    output: Path | None
    poses: Path | None
    frames: list[FrameResult]
    total: float | None
    total_text: str
    encoder: str | None
    device: str
    seconds: float
    stages: dict[str, StageClock] = field(default_factory=dict)
    model: str = ""

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


class Annotator:
    """Scores and draws frames in order (the score + draw stage without threads).

    Args:
        config: The run's settings.
        draw: Draw on the frames; False only scores them (no video is made).
    """

    def __init__(self, config: Config, draw: bool = True) -> None:
        self.config = config
        self.draw = draw
        self.params = score_params(config)
        self.running = RunningScore(self.params)
        self.results: list[FrameResult] = []

    def __call__(self, frame: Frame, detections: Detections) -> None:
        """Score `frame`, draw on its image in place, and record the result."""
        persons = persons_above(detections, self.params.person_threshold)
        score = text = displayed = None
        if self.config.score:
            score = frame_score(persons, self.params)
            text = self.running.update(len(persons), score)
            displayed = self.running.displayed if len(persons) else None
        if self.draw:
            draw_skeletons(frame.image, persons, self.config.keypoint_min_score)
            if text:
                draw_label(frame.image, text)
        self.results.append(FrameResult(frame.index, frame.timestamp, len(persons), score, displayed, text))

    def end_card_text(self) -> str:
        return self.running.total_text() if self.config.score else ""


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
    annotator = Annotator(config, draw=writer is not None)
    group = StageGroup()
    group.on_stop(reader.kill)
    if writer is not None:
        group.on_stop(writer.abort)
    decoded: queue.Queue = queue.Queue(maxsize=config.queue_size)
    detected: queue.Queue = queue.Queue(maxsize=config.queue_size)
    drawn: queue.Queue = queue.Queue(maxsize=config.queue_size)
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
    found_per_frame: list[Detections] = []

    batches = AdaptiveBatches(estimator, config.batch_size)

    def infer(clock: StageClock) -> None:
        finished = False
        while not finished:
            batch: list[Frame] = []
            while len(batch) < config.batch_size:
                item = group.get(decoded, clock)
                if item is END:
                    finished = True
                    break
                batch.append(item)
            if batch:
                start = time.perf_counter()
                detections = batches.predict([frame.image for frame in batch])
                clock.busy += time.perf_counter() - start
                clock.items += len(batch)
                clock.last_progress = time.monotonic()
                if config.save_poses and not replaying:
                    found_per_frame.extend(detections)
                for frame, found in zip(batch, detections):
                    group.put(detected, (frame, found), clock)
        if replaying:
            estimator.check_complete(clock.items)
        group.put(detected, END, clock)

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
            card = end_card(info.width, info.height, annotator.end_card_text())
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
    )
