"""One video through decode -> infer -> score -> draw -> encode, each stage in its own thread.

Only the wiring lives here: what a stage does per item is in `workers/` (`VideoReader`,
`detect_frames`, `Annotator`, `VideoWriter`), testable without threads; `pipeline.stages`
runs the threads and queues.
"""

from __future__ import annotations

import os
import queue
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from config import Config
from pipeline.results import RunResult
from pipeline.stages import END, StageClock, StageGroup
from workers.annotate import Annotator
from workers.data import Detections, Frame, VideoInfo
from workers.decode import VideoReader
from workers.draw import Overlay, end_card, paint
from workers.encode import VideoWriter, choose_encoder
from workers.infer import AdaptiveBatches, PoseEstimator
from workers.input_size import input_size_for
from workers.keyframes import detect_frames
from workers.poses import PoseCacheMeta, PoseLog, poses_path, save_poses
from workers.probe import probe

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
    input_size = input_size_for(info, estimator, config.model_min_size)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    encoder = choose_encoder(config.encoder, estimator.device) if config.video else None
    reader = VideoReader(info, nice=config.ffmpeg_nice)
    writer = None
    if encoder is not None:
        writer = VideoWriter(
            config.output, info.width, info.height, info.fps,
            audio_from=info, encoder=encoder, preset=config.x264_preset, crf=config.crf, nice=config.ffmpeg_nice,
        )
    replaying = estimator.replays_cache
    found_per_frame = PoseLog(config.output.parent) if config.save_poses and not replaying else None
    annotator = Annotator(config, draw=writer is not None, fps=float(info.fps), directory=config.output.parent,
                          frame_size=(info.width, info.height), raw_log=found_per_frame)
    batches = AdaptiveBatches(estimator, config.batch_size)
    group = StageGroup()
    group.on_stop(reader.kill)
    if writer is not None:
        group.on_stop(writer.abort)
    slots = config.queue_slots(info.width, info.height)
    decoded: queue.Queue = queue.Queue(maxsize=slots)
    detected: queue.Queue = queue.Queue(maxsize=slots)
    scored: queue.Queue = queue.Queue(maxsize=slots)
    drawn: queue.Queue = queue.Queue(maxsize=slots)
    bar = tqdm(
        total=info.expected_frames or None, unit="frame", desc=config.input.name,
        disable=on_frames is not None or not config.progress, dynamic_ncols=True, leave=False,
    )
    report_frames = on_frames or bar.update

    def decode(clock: StageClock) -> None:
        reader.start()
        frames = iter(reader)
        while True:
            with clock.working():
                frame = next(frames, END)
            if frame is END:
                break
            clock.finished_item()
            group.put(decoded, frame, clock)
        group.put(decoded, END, clock)

    def infer(clock: StageClock) -> None:
        def predict(frames: Sequence[Frame]) -> list[Detections]:
            with clock.working(long=True):
                return batches.predict([frame.image for frame in frames])

        every = 1 if replaying else config.infer_every
        for frame, found in detect_frames(group.drain(decoded, clock), predict, every, config.batch_size):
            clock.finished_item()
            group.put(detected, (frame, found), clock)
        estimator.check_complete(clock.items)
        group.put(detected, END, clock)

    def score(clock: StageClock) -> None:
        def send(finished: list) -> None:
            for frame, overlay in finished:
                clock.finished_item()
                if writer is not None:
                    group.put(scored, (frame.image, overlay), clock)

        # The annotator holds each frame until its persons' ids are decided (the identity look-ahead).
        for frame, found in group.drain(detected, clock):
            with clock.working():
                finished = annotator.track(frame, found)
            send(finished)
        with clock.working():
            finished = annotator.flush()
        send(finished)
        if writer is None:
            return
        if config.score and config.end_card_seconds > 0:
            # The whole-video analysis, here rather than after the run: the card shows its synchrony.
            with clock.working(long=True):
                annotator.finish()
            card = end_card(info.width, info.height, "\n".join(annotator.end_card_lines()))
            for _ in range(round(config.end_card_seconds * float(info.fps))):
                group.put(scored, (card, None), clock)
        group.put(scored, END, clock)

    def draw(clock: StageClock) -> None:
        # Frames in order, painted by DRAW_THREADS at once (OpenCV draws without the GIL).
        pending: deque[Future] = deque()

        def send_oldest() -> None:
            image, seconds = pending.popleft().result()
            clock.busy += seconds
            clock.finished_item()
            group.put(drawn, image, clock)

        with ThreadPoolExecutor(DRAW_THREADS, thread_name_prefix="draw") as pool:
            for image, overlay in group.drain(scored, clock):
                pending.append(pool.submit(_timed_paint, image, overlay))
                while pending and (len(pending) > 2 * DRAW_THREADS or pending[0].done()):
                    send_oldest()
            while pending:
                send_oldest()
        group.put(drawn, END, clock)

    def encode(clock: StageClock) -> None:
        assert writer is not None
        for image in group.drain(drawn, clock):
            with clock.working():
                writer.write(image)
            clock.finished_item()
        with clock.working():
            writer.finish()

    shown = 0

    def tick() -> None:
        nonlocal shown
        done = min(group.clocks["score"].items, len(annotator.results))
        if done > shown:
            report_frames(done - shown)
            shown = done

    stages = [("decode", decode), ("infer", infer), ("score", score)]
    if writer is not None:
        stages += [("draw", draw), ("encode", encode)]
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
    if found_per_frame is not None:
        settings = config.detection_settings()
        if input_size is not None:
            settings["input_size"] = input_size.pixels
        meta = PoseCacheMeta(
            model=estimator.name, settings=settings, frames=len(found_per_frame),
            fps=str(info.fps), width=info.width, height=info.height, input=info.path.name,
        )
        saved_poses = save_poses(poses_path(config.output), found_per_frame, meta)
    analysis = annotator.analysis()
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
        runtime=estimator.runtime,
        persons=analysis.persons,
        worst_moments=analysis.worst_moments,
        sync=analysis.sync,
        analysis_seconds=annotator.analysis_seconds,
        groups=analysis.groups,
        identity=analysis.identity,
        input_size=input_size,
    )
