"""One video through decode -> infer -> score -> draw -> encode, each stage in its own thread.

Only the wiring lives here: what a stage does per item is in `workers/` (`VideoReader`,
`detect_frames`, `Annotator`, `paint`, `VideoWriter`), testable without threads;
`pipeline.stages` runs the threads and queues. `process_video` is one video with its outputs:
the run, then its reports and review page (`reports/`), for a single file and for each file
of a folder run alike.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from config import Config
from pipeline.stages import END, StageClock, StageGroup
from reports.outputs import OutputFiles
from reports.report import write_reports
from reports.results import RunResult, StageTime
from reports.review import build_video_page
from workers.annotate import Annotator
from workers.data import Detections, Frame, VideoInfo
from workers.draw import Overlay, end_card, paint
from workers.encode import VideoWriter
from workers.errors import one_line
from workers.infer import AdaptiveBatches, PoseEstimator
from workers.input_size import InputSize, input_size_for
from workers.inset import TeacherInset
from workers.keyframes import detect_frames
from workers.nvcodec import NvdecReader, NvencWriter, choose_decoder, choose_encoder, open_reader
from workers.poses import PoseCacheMeta, PoseLog, poses_path, save_poses
from workers.probe import probe
from workers.reference import TeacherSetup, alignment_words

log = logging.getLogger("dancingskeletons")

#: Threads of the draw stage: drawing a class of 30 takes longer than scoring it (alone on one
#: thread here, 5.5 against 3.0 ms a frame at 1080p: docs/BENCHMARKS.md), and frames are
#: independent once their ids are decided. One on a small machine, up to 4 with cores to spare.
DRAW_THREADS = max(1, min(4, (os.cpu_count() or 1) // 4))


def _timed_paint(image: np.ndarray, overlay: Overlay | None) -> tuple[np.ndarray, float]:
    """`paint`, and the seconds it took (the draw stage's busy time, summed over its threads)."""
    started = time.perf_counter()
    return paint(image, overlay), time.perf_counter() - started


def run_video(
    config: Config,
    estimator: PoseEstimator,
    info: VideoInfo | None = None,
    on_frames: Callable[[int], None] | None = None,
    teacher: TeacherSetup | None = None,
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
        teacher: The teacher to compare the performers with (`pipeline.reference`), or None.

    Returns:
        The per-frame scores, totals and timings.

    Raises:
        DancingSkeletonsError: for bad input, a failed encode or a stalled stage (nothing is left under
            the output name); KeyboardInterrupt as is, after everything was stopped.
    """
    started = time.perf_counter()
    info = info or probe(config.input)
    input_size = input_size_for(info, estimator, config.model_min_size)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    encoder = choose_encoder(config.encoder, estimator.device) if config.video else None
    if encoder == "nvenc" and (info.width % 2 or info.height % 2):
        log.info("%s: encoding with libx264: NVENC takes even sizes only (%dx%d)", info.path.name, info.width,
                 info.height)
        encoder = "libx264"
    decoder = choose_decoder(config.decoder, estimator.device)
    stages = _Stages(config, estimator, info, encoder, teacher, decoder)
    bar = tqdm(
        total=info.expected_frames or None, unit="frame", desc=config.input.name,
        disable=on_frames is not None or not config.progress, dynamic_ncols=True, leave=False,
    )
    try:
        stages.run(on_frames or bar.update)
    finally:
        bar.close()
    saved_poses = _save_pose_cache(config, estimator, info, stages.found_per_frame, input_size)
    annotator = stages.annotator
    analysis = annotator.analysis()
    return RunResult(
        info=info,
        output=config.output if stages.writer is not None else None,
        poses=saved_poses,
        frames=annotator.results,
        total=annotator.running.total if config.score else None,
        total_text=annotator.end_card_text(),
        encoder=encoder,
        decoder="nvdec" if isinstance(stages.reader, NvdecReader) else "ffmpeg",
        device=estimator.device,
        seconds=time.perf_counter() - started,
        stages={name: StageTime(clock.busy, clock.waiting, clock.items) for name, clock in stages.group.clocks.items()},
        model=estimator.name,
        runtime=estimator.runtime,
        persons=analysis.persons,
        worst_moments=analysis.worst_moments,
        sync=analysis.sync,
        analysis_seconds=annotator.analysis_seconds,
        groups=analysis.groups,
        identity=analysis.identity,
        input_size=input_size,
        teacher=teacher,
        reference=analysis.reference,
    )


def _model_input(frame: Frame, device_frames: bool) -> Any:
    """What the model gets of a frame: its GPU picture where it has one and the model takes it."""
    if device_frames and frame.device_image is not None and frame.device_image.tensor is not None:
        return frame.device_image.tensor
    return frame.image


class _Stages:
    """One run's stages and the bounded queues between them: `run` starts a thread per stage
    (`pipeline.stages.StageGroup`) and waits for them all."""

    def __init__(self, config: Config, estimator: PoseEstimator, info: VideoInfo, encoder: str | None,
                 teacher: TeacherSetup | None = None, decoder: str = "ffmpeg") -> None:
        self.config, self.estimator, self.info = config, estimator, info
        self.reader = open_reader(info, decoder, estimator.device, nice=config.ffmpeg_nice,
                                  threads=config.cpu_threads)
        # The GPU decoder's frames go to the model as they are, where it takes them.
        self.device_frames = getattr(estimator, "accepts_device_frames", False)
        self.writer: VideoWriter | None = None
        if encoder == "nvenc":
            self.writer = NvencWriter(config.output, info.width, info.height, info.fps, audio_from=info,
                                      device=estimator.device, nice=config.ffmpeg_nice)
        elif encoder is not None:
            self.writer = VideoWriter(
                config.output, info.width, info.height, info.fps,
                audio_from=info, encoder=encoder, preset=config.x264_preset, crf=config.crf, nice=config.ffmpeg_nice,
                threads=config.cpu_threads,
            )
        self.replaying = estimator.replays_cache
        self.found_per_frame = PoseLog(config.output.parent) if config.save_poses and not self.replaying else None
        self.annotator = Annotator(config, draw=self.writer is not None, fps=float(info.fps),
                                   directory=config.output.parent, frame_size=(info.width, info.height),
                                   raw_log=self.found_per_frame, teacher=teacher)
        self.batches = AdaptiveBatches(estimator, config.batch_size)
        self.group = StageGroup()
        self.group.on_stop(self.reader.kill)
        self.inset = None
        if (self.writer is not None and config.reference_inset and teacher is not None and teacher.video is not None
                and teacher.alignment is not None):
            self.inset = TeacherInset(teacher.video, teacher.teacher, teacher.alignment, float(info.fps),
                                      (info.width, info.height), nice=config.ffmpeg_nice)
            self.group.on_stop(self.inset.close)
        if self.writer is not None:
            self.group.on_stop(self.writer.abort)
        slots = config.queue_slots(info.width, info.height)
        self.decoded: queue.Queue = queue.Queue(maxsize=slots)
        self.detected: queue.Queue = queue.Queue(maxsize=slots)
        self.scored: queue.Queue = queue.Queue(maxsize=slots)
        self.drawn: queue.Queue = queue.Queue(maxsize=slots)

    def run(self, report_frames: Callable[[int], object]) -> None:
        """Run every stage to the end; `report_frames` gets the frames newly scored, from this thread.

        Raises:
            The first stage's error (after every stage stopped and the output was removed).
        """
        shown = 0

        def tick() -> None:
            nonlocal shown
            done = min(self.group.clocks["score"].items, len(self.annotator.results))
            if done > shown:
                report_frames(done - shown)
                shown = done

        stages = [("decode", self.decode), ("infer", self.infer), ("score", self.score)]
        if self.writer is not None:
            stages += [("draw", self.draw), ("encode", self.encode)]
        for name, stage in stages:
            self.group.spawn(name, stage)
        try:
            self.group.wait(self.config.stall_timeout, on_tick=tick)
        finally:
            self.reader.kill()
            if self.inset is not None:
                self.inset.close()
            if self.group.error is not None and self.writer is not None:
                self.writer.abort()

    def decode(self, clock: StageClock) -> None:
        self.reader.start()
        frames = iter(self.reader)
        while True:
            with clock.working():
                frame = next(frames, END)
            if frame is END:
                break
            clock.finished_item()
            self.group.put(self.decoded, frame, clock)
        self.group.put(self.decoded, END, clock)

    def infer(self, clock: StageClock) -> None:
        def predict(frames: Sequence[Frame]) -> list[Detections]:
            with clock.working(long=True):
                return self.batches.predict([_model_input(frame, self.device_frames) for frame in frames])

        every = 1 if self.replaying else self.config.infer_every
        for frame, found in detect_frames(self.group.drain(self.decoded, clock), predict, every,
                                          self.config.batch_size):
            if frame.device_image is not None:
                frame.device_image.release()  # GPU memory is held from the decoder to here only
            clock.finished_item()
            self.group.put(self.detected, (frame, found), clock)
        self.estimator.check_complete(clock.items)
        self.group.put(self.detected, END, clock)

    def score(self, clock: StageClock) -> None:
        annotator, config = self.annotator, self.config

        def send(finished: list) -> None:
            for frame, overlay in finished:
                clock.finished_item()
                if self.inset is not None and overlay is not None:
                    overlay = replace(overlay, inset=self.inset.at(frame.index))
                if self.writer is not None:
                    self.group.put(self.scored, (frame.image, overlay), clock)

        # The annotator holds each frame until its persons' ids are decided (the identity look-ahead).
        for frame, found in self.group.drain(self.detected, clock):
            with clock.working():
                finished = annotator.track(frame, found)
            send(finished)
        with clock.working():
            finished = annotator.flush()
        send(finished)
        if self.writer is None:
            return
        if config.score and config.end_card_seconds > 0:
            # The whole-video analysis, here rather than after the run: the card shows its synchrony.
            with clock.working(long=True):
                annotator.finish()
            card = end_card(self.info.width, self.info.height, "\n".join(annotator.end_card_lines()))
            for _ in range(round(config.end_card_seconds * float(self.info.fps))):
                self.group.put(self.scored, (card, None), clock)
        self.group.put(self.scored, END, clock)

    def draw(self, clock: StageClock) -> None:
        # Frames in order, painted by DRAW_THREADS at once (OpenCV draws without the GIL).
        pending: deque[Future] = deque()

        def send_oldest() -> None:
            image, seconds = pending.popleft().result()
            clock.busy += seconds
            clock.finished_item()
            self.group.put(self.drawn, image, clock)

        with ThreadPoolExecutor(DRAW_THREADS, thread_name_prefix="draw") as pool:
            for image, overlay in self.group.drain(self.scored, clock):
                pending.append(pool.submit(_timed_paint, image, overlay))
                while pending and (len(pending) > 2 * DRAW_THREADS or pending[0].done()):
                    send_oldest()
            while pending:
                send_oldest()
        self.group.put(self.drawn, END, clock)

    def encode(self, clock: StageClock) -> None:
        assert self.writer is not None
        for image in self.group.drain(self.drawn, clock):
            with clock.working():
                self.writer.write(image)
            clock.finished_item()
        with clock.working():
            self.writer.finish()


def _save_pose_cache(config: Config, estimator: PoseEstimator, info: VideoInfo, found_per_frame: PoseLog | None,
                     input_size: InputSize | None) -> Path | None:
    """Save what the model found beside the output (`<stem>.poses.npz`); None when not asked for."""
    if found_per_frame is None:
        return None
    settings = config.detection_settings()
    if input_size is not None:
        settings["input_size"] = input_size.pixels
    meta = PoseCacheMeta(
        model=estimator.name, settings=settings, frames=len(found_per_frame),
        fps=str(info.fps), width=info.width, height=info.height, input=info.path.name,
    )
    return save_poses(poses_path(config.output), found_per_frame, meta)


def process_video(
    config: Config, estimator: PoseEstimator, info: VideoInfo, on_frames: Callable[[int], None] | None = None,
    probe_seconds: float = 0.0, index: Path | None = None, teacher: TeacherSetup | None = None,
) -> tuple[RunResult, dict]:
    """Run one video and write its reports (the JSON last), then its review page.

    Args:
        on_frames: As for `run_video`.
        probe_seconds: Seconds the caller spent probing `info` (for the report's timings).
        index: The folder run's index page, for the video page to link back to.
        teacher: As for `run_video`.

    Returns:
        The run's result and its report.
    """
    result = run_video(config, estimator, info, on_frames=on_frames, teacher=teacher)
    if teacher is not None:
        warning, line = alignment_words(teacher, result.reference, info.path.name)
        log.log(logging.WARNING if warning else logging.INFO, "%s", line)
    report = write_reports(result, config, probe_seconds)
    write_page(lambda: build_video_page(OutputFiles.of(config.output).json, index))
    return result, report


def write_page(build: Callable[[], object]) -> None:
    """Write a review page; a page that fails is a warning, never a failed video or run."""
    try:
        build()
    except Exception as error:  # noqa: BLE001 - the page is a convenience; the outputs are done
        log.warning("review page not written: %s", one_line(error))
