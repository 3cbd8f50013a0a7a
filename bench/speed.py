"""`make bench`: each model alone against the whole pipeline on the same frames.

For every model available here: model-alone frames per second (after a warm-up batch), the
pipeline's end-to-end frames per second on the same frames, their ratio (pipeline
efficiency), a plain sequential loop (decode a batch, infer, draw, encode, repeat) on the same
frames for comparison, each stage's busy and waiting time, the real-time factor, and peak memory.

    python -m bench [--clip PATH] [--frames N] [--models keypointrcnn,yolo] ...
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.stand_ins import CrowdModel, DancingModel, InstantModel, class_dancer, detections_of
from config import Config
from pipeline.runner import DRAW_THREADS, run_video
from workers.annotate import Annotator
from workers.data import Frame
from workers.decode import VideoReader
from workers.draw import paint
from workers.encode import VideoWriter, choose_encoder
from workers.ffmpeg import ffmpeg_exe
from workers.infer import PoseEstimator
from workers.models import build_estimator, get_model
from workers.models.keypoint_rcnn import cached_weights_path
from workers.probe import probe

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_CLIP = SHARED / "videos" / "park_two_people_vp9_audio.mp4"
SHARED_YOLO = SHARED / "models" / "yolo11n-pose.pt"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=None,
                        help="input clip (default: ../shared's park clip if present, else a generated 720p clip)")
    parser.add_argument("--frames", type=int, default=120, help="frames to time (default: 120)")
    parser.add_argument("--cpu-rcnn-frames", type=int, default=16,
                        help="frames for Keypoint R-CNN on the CPU, where it takes seconds a frame (default: 16)")
    parser.add_argument("--sweep-min-size", default=None, metavar="SIZES",
                        help="instead of the timings: for each model, each input size in this comma-separated "
                             "list on the whole clip without video, frames/s and the mean absolute change of the "
                             "frame score against the model's default size (e.g. 320,480,960)")
    parser.add_argument("--sweep-infer-every", default=None, metavar="KS",
                        help="like --sweep-min-size, for running the model on every k-th frame (e.g. 2,3)")
    parser.add_argument("--memory-minutes", type=float, default=None, metavar="MINUTES",
                        help="instead of the timings: memory over a generated video this long (160x90, 30 fps) "
                             "through the whole pipeline with a dancing stand-in model, and through the reports "
                             "(e.g. 120 for two hours)")
    parser.add_argument("--analysis", default=None, metavar="PERFORMERS",
                        help="instead of the timings: the whole-video analysis alone (tracks, groups, timing, "
                             "synchrony) on generated dancers, for each count in this comma-separated list "
                             "(e.g. 2,5,10,20,30), at each length of --analysis-seconds")
    parser.add_argument("--analysis-seconds", default="10,60,600", metavar="SECONDS",
                        help="comma-separated video lengths for --analysis (default: 10,60,600)")
    parser.add_argument("--analysis-fps", type=float, default=30.0, help="frame rate for --analysis (default: 30)")
    parser.add_argument("--crowd", default=None, metavar="PERSONS",
                        help="instead of the timings: the machinery ceiling at 1920x1080 with a stand-in model that "
                             "returns this many dancing skeletons a frame, for each count in this comma-separated "
                             "list (e.g. 2,30): whether drawing and scoring a class keep up with a fast GPU")
    parser.add_argument("--ceiling-frames", type=int, default=300,
                        help="frames of the generated 720p clip for the machinery ceiling (default: 300)")
    parser.add_argument("--models", default="keypointrcnn,yolo",
                        help="comma-separated models; those that cannot load here are skipped (default: both)")
    parser.add_argument("--keypointrcnn-weights", default=None,
                        help="Keypoint R-CNN weights (default: torchvision's cached file, else random weights)")
    parser.add_argument("--yolo-weights", default=str(SHARED_YOLO),
                        help="YOLO-pose weights (default: ../shared/models/yolo11n-pose.pt)")
    parser.add_argument("--runtimes", default="torch,openvino,onnxruntime",
                        help="comma-separated runtimes for the models that have them (yolo); those not installed "
                             "are skipped (default: torch,openvino,onnxruntime)")
    parser.add_argument("--device", default="auto", help="device (default: auto)")
    parser.add_argument("--openvino-precision", default=None, choices=("f32", "bf16", "f16"),
                        help="OpenVINO's inference precision for this benchmark (default: the tool's, f32)")
    parser.add_argument("--preset", default=Config.x264_preset, dest="x264_preset",
                        help=f"libx264 preset of the timed runs (default: {Config.x264_preset})")
    parser.add_argument("--no-video", action="store_false", dest="video",
                        help="time the model runs without drawing and encoding (default: with video)")
    parser.add_argument("-b", "--batch-size", type=int, default=4, help="batch size (default: 4)")
    parser.add_argument("--min-size", type=int, default=None, dest="model_min_size",
                        help="model input size (default: each model's own, fixed: no automatic size)")
    return parser


def make_clip(source: Path | None, frames: int, folder: Path, size: tuple[int, int] | None = None) -> Path:
    """The first `frames` frames of `source` (or of a generated clip with audio), as H.264 with AAC.

    Args:
        source: A video to take the frames from (looped if it is shorter), or None for
            ffmpeg's moving test pattern with a sine tone.
        frames: Frames the clip has.
        folder: Where the clip is written (as bench.mp4).
        size: (width, height) to scale to; None keeps the source's size (1280x720 generated).
    """
    folder.mkdir(parents=True, exist_ok=True)
    clip = folder / "bench.mp4"
    if source is None:
        width, height = size or (1280, 720)
        inputs = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30",
                  "-f", "lavfi", "-i", "sine=frequency=440"]
    else:
        inputs = ["-stream_loop", "-1", "-i", str(source)]
    scale = ["-vf", f"scale={size[0]}:{size[1]}"] if size and source is not None else []
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *inputs, "-frames:v", str(frames), *scale,
         "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-shortest", str(clip)],
        check=True,
    )
    return clip


def run_sequential(config: Config, estimator: PoseEstimator) -> float:
    """The plain loop the pipeline replaces: decode a batch, infer, draw, encode, repeat.

    Returns:
        Wall-clock seconds.
    """
    start = time.perf_counter()
    info = probe(config.input)
    annotate = Annotator(config, fps=float(info.fps), frame_size=(info.width, info.height))
    with (
        VideoWriter(config.output, info.width, info.height, info.fps, audio_from=info,
                    encoder=choose_encoder(config.encoder, estimator.device), preset=config.x264_preset,
                    crf=config.crf, nice=config.ffmpeg_nice) as writer,
        VideoReader(info, nice=config.ffmpeg_nice) as reader,
    ):
        batch = []
        frames = iter(reader)
        while True:
            frame = next(frames, None)
            if frame is not None:
                batch.append(frame)
            if batch and (frame is None or len(batch) == config.batch_size):
                for item, found in zip(batch, estimator.predict([f.image for f in batch])):
                    for finished in annotate(item, found):
                        writer.write(finished.image)
                batch = []
            if frame is None:
                break
        for finished in annotate.close():
            writer.write(finished.image)
        writer.finish()
    return time.perf_counter() - start


def bench_analysis(performers: list[int], lengths: list[float], fps: float, folder: Path) -> None:
    """The whole-video analysis alone: seconds against performers and video length.

    Each performer is the same dance, delayed by 0-9 frames, with 1% of a torso of keypoint
    jitter, in a grid of 150-pixel dancers; the persons' frames are recorded as the score
    stage records them, then `analyse_video` runs as at the end of a video.
    """
    from workers.analysis import analyse_video
    from workers.poses import PoseLog
    from workers.sync import SyncParams
    from workers.timing import TimingParams

    print(f"\nwhole-video analysis alone, generated dancers at {fps:g} fps ({os.cpu_count()} cores)")
    print("| performers | length | pairs | groups found | tracks s | sync s | timing s | limbs s | total s | "
          "s per minute of video |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    for seconds in lengths:
        for count in performers:
            log = PoseLog(folder)
            columns = int(np.ceil(np.sqrt(count)))
            delays = [(k * 7) % 10 for k in range(count)]
            for index in range(round(seconds * fps)):
                t = index / fps
                poses = [class_dancer(t - delays[k] / fps, 100 + 160 * (k % columns), 200 + 380 * (k // columns),
                                      50.0) + rng.normal(0.0, 0.5, (17, 2)) for k in range(count)]
                log.append(detections_of(poses), np.arange(1, count + 1))
            started = time.perf_counter()
            result = analyse_video(log, fps, score=True, persons="auto", keypoint_min_score=0.0,
                                   timing=TimingParams(), sync=SyncParams())
            total = time.perf_counter() - started
            parts = result.seconds
            print(f"| {count} | {seconds:g} s | {count * (count - 1) // 2} | {len(result.groups)} | "
                  f"{parts.get('tracks', 0):.2f} | {parts.get('sync', 0):.2f} | {parts.get('timing', 0):.2f} | "
                  f"{parts.get('limbs', 0):.2f} | {total:.2f} | {total * 60 / seconds:.1f} |", flush=True)
            log.close()


def bench_crowd(counts: list[int], args: argparse.Namespace, folder: Path) -> None:
    """The machinery ceiling at 1080p with a class: decode, track, score, live lag, draw, encode."""
    clip = make_clip(None, args.ceiling_frames, folder / "crowd", size=(1920, 1080))
    print(f"\nmachinery ceiling with a class (stand-in model, no inference cost), {args.ceiling_frames} frames "
          f"1920x1080 @ 30 fps, libx264 {Config.x264_preset}, {os.cpu_count()} cores")
    print(f"| persons a frame | pipeline frames/s | score stage busy s (ms a frame) | draw stage busy s (ms a frame; "
          f"{DRAW_THREADS} threads) | alone, ms a frame: score / draw | encode busy s | analysis s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for count in counts:
        config = Config(input=clip, output=folder / f"crowd{count}.mp4", end_card_seconds=0.0, progress=False,
                        save_poses=False, batch_size=args.batch_size, max_persons=max(count, 10))
        result = run_video(config, CrowdModel(count))
        score, draw, encode = result.stages["score"], result.stages["draw"], result.stages["encode"]
        frames = len(result.frames)
        analysis = sum(result.analysis_seconds.values())
        alone = _score_and_draw_alone(config, count, folder)
        print(f"| {count} | {result.fps:.1f} | {score.busy:.1f} ({1000 * score.busy / frames:.1f}) | "
              f"{draw.busy:.1f} ({1000 * draw.busy / frames:.1f}) | {alone[0]:.1f} / {alone[1]:.1f} | "
              f"{encode.busy:.1f} | {analysis:.2f} |", flush=True)


def _score_and_draw_alone(config: Config, count: int, folder: Path, frames: int = 150) -> tuple[float, float]:
    """Milliseconds a frame of the score stage's work and of drawing, each alone on one thread with
    nothing else running: what the stages can do on a machine with cores to spare (here, the
    pipeline's own threads and ffmpeg share 2 cores, and its busy times include the waits)."""
    model = CrowdModel(count)
    image = np.zeros((1080, 1920, 3), np.uint8)
    found = [model.predict([image])[0] for _ in range(frames)]
    annotator = Annotator(config, draw=True, fps=30.0, directory=folder, frame_size=(1920, 1080))
    finished = []
    started = time.perf_counter()
    for index, detections in enumerate(found):
        finished += annotator.track(Frame(index, index / 30.0, image), detections)
    finished += annotator.flush()
    scoring = time.perf_counter() - started
    started = time.perf_counter()
    for _, overlay in finished:
        paint(image.copy(), overlay)
    drawing = time.perf_counter() - started - frames * _copy_seconds(image)
    return 1000 * scoring / frames, 1000 * drawing / frames


def _copy_seconds(image: np.ndarray, repeats: int = 20) -> float:
    """Seconds one copy of `image` takes (taken out of the drawing's time)."""
    started = time.perf_counter()
    for _ in range(repeats):
        image.copy()
    return (time.perf_counter() - started) / repeats


def _rss_mb() -> float:
    """This process's resident memory now, MB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def bench_memory(minutes: float, args: argparse.Namespace, folder: Path) -> None:
    """Resident memory along a long video: does it grow with the video's length?"""
    from reports.report import write_reports

    frames = round(minutes * 60 * 30)
    clip = folder / "long.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size=160x90:rate=30:duration={minutes * 60}", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", str(clip)], check=True)
    config = Config(input=clip, output=folder / "long-out.mp4", batch_size=args.batch_size, progress=False)
    samples: list[tuple[int, float]] = []
    done = 0

    def on_frames(count: int) -> None:
        nonlocal done
        done += count
        samples.append((done, _rss_mb()))

    peak = [0.0]
    running = True

    def watch() -> None:
        while running:
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    start_mb = _rss_mb()
    started = time.perf_counter()
    watcher.start()
    result = run_video(config, DancingModel(), on_frames=on_frames)
    pipeline_peak = peak[0]
    after_pipeline = _rss_mb()
    reports_started = time.perf_counter()
    write_reports(result, config)
    reports_seconds = time.perf_counter() - reports_started
    running = False
    watcher.join()
    seconds = time.perf_counter() - started

    def at(fraction: float) -> float:
        return next(rss for count, rss in samples if count >= fraction * frames)

    print(f"\nmemory over a {minutes:g}-minute video ({len(result.frames)} frames 160x90 @ 30 fps, dancing stand-in "
          f"model, 2 persons a frame, video + pose cache + reports), {seconds:.0f} s "
          f"({result.seconds:.0f} s the pipeline and the whole-video analysis, {reports_seconds:.0f} s the reports)")
    print(f"  resident memory before the run      {start_mb:8.1f} MB")
    for fraction in (0.1, 0.5, 1.0):
        print(f"  after {fraction:4.0%} of the frames           {at(fraction):8.1f} MB")
    growth = (at(1.0) - at(0.1)) * 2**20 / (0.9 * frames)
    print(f"  growth from 10% to 100%             {growth:8.1f} bytes a frame "
          f"({growth * 30 * 3600 * 2 / 2**20:.1f} MB for two hours at 30 fps)")
    print(f"  after the pipeline (whole-video analysis done) {after_pipeline:8.1f} MB; "
          f"peak through the pipeline {pipeline_peak:.1f} MB, through the reports {peak[0]:.1f} MB")
    print(f"  lags found: {', '.join(f'#{p.id} {p.lag_ms:+.0f} ms' for p in result.persons if p.lag_ms is not None)}")
    print(f"  identities: {len(result.persons)} persons from {result.identity.tracklets} tracklets, "
          f"{result.identity.joins} joins, {len(result.identity.scene_cuts)} camera cuts")
    print(f"  whole-video analysis: {_analysis(result)}")


def bench_ceiling(args: argparse.Namespace, folder: Path) -> None:
    """The machinery ceiling: a generated 720p 30 fps clip with audio, an instant model."""
    clip = make_clip(None, args.ceiling_frames, folder / "ceiling")
    config = Config(input=clip, output=folder / "ceiling.mp4", end_card_seconds=0.0, progress=False,
                    save_poses=False, batch_size=args.batch_size)
    result = run_video(config, InstantModel())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nmachinery ceiling (instant stand-in model, 2 skeletons a frame), {len(result.frames)} frames "
          f"1280x720 @ 30 fps with audio, libx264 {config.x264_preset}")
    print(f"  pipeline         {result.fps:8.2f} frames/s   real-time factor {result.fps / 30:.3f}   "
          f"peak memory {peak_mb:.0f} MB (max RSS so far)")
    print(f"  {'stage':<12}{'busy s':>9}{'waiting s':>11}{'items':>7}")
    for name, clock in result.stages.items():
        print(f"  {name:<12}{clock.busy:9.2f}{clock.waiting:11.2f}{clock.items:7d}")


def weights_for(model: str, args: argparse.Namespace) -> str | None:
    if model == "yolo":
        return args.yolo_weights
    if args.keypointrcnn_weights:
        return args.keypointrcnn_weights
    return None if cached_weights_path().is_file() else "random"


def stand_in_settings(weights: str | None) -> dict[str, Any]:
    """Config changes that make random Keypoint R-CNN weights do a trained model's work.

    Random weights find nobody above 0.9, so the keypoint head would never run: the two most
    confident boxes are let through, as many as the park clip has people.
    """
    return {"person_threshold": 0.0, "max_persons": 2} if weights == "random" else {}


def bench_model(model: str, source: Path | None, args: argparse.Namespace, folder: Path,
                runtime: str = "torch") -> None:
    weights = weights_for(model, args)
    frames = args.frames
    if model == "keypointrcnn" and not torch.cuda.is_available():
        frames = min(frames, args.cpu_rcnn_frames)
    clip = make_clip(source, frames, folder / model)
    untrained = stand_in_settings(weights)
    label = model if runtime == "torch" else f"{model} on {runtime}"
    try:
        config = Config(
            input=clip, output=folder / f"{model}-{runtime}.mp4", model=model, weights=weights,
            device=args.device, runtime=runtime, batch_size=args.batch_size, model_min_size=args.model_min_size,
            x264_preset=args.x264_preset, video=args.video, end_card_seconds=0.0, progress=False, save_poses=False,
            **untrained,
        )
        load_started = time.perf_counter()
        estimator = build_estimator(config)
        load_seconds = time.perf_counter() - load_started
    except Exception as error:  # noqa: BLE001 - a model that cannot load here is reported and skipped
        print(f"\n{label}: skipped ({error})")
        return
    if config.model_min_size is None:
        # Like for like: the model alone runs at its default size, so the pipeline must too (the
        # run's automatic size would look at the clip first and could raise it; random weights
        # find tiny "people" everywhere, and Keypoint R-CNN ran 5 times slower that way).
        config = config.replace(model_min_size=estimator.default_input_size)
    info = probe(clip)
    images = [frame.image for frame in VideoReader(info)]
    estimator.predict(images[: args.batch_size])  # warm-up
    model_cpu = _cpu_seconds()
    start = time.perf_counter()
    for i in range(0, len(images), args.batch_size):
        estimator.predict(images[i : i + args.batch_size])
    if estimator.device.startswith("cuda"):
        torch.cuda.synchronize()
    model_seconds = time.perf_counter() - start
    model_cpu = (_cpu_seconds() - model_cpu) / max(1, len(images))
    del images
    cpu_before = _cpu_seconds()
    result = run_video(config, estimator, info)
    cpu_per_frame = (_cpu_seconds() - cpu_before) / max(1, len(result.frames))
    sequential_seconds = (
        run_sequential(config.replace(output=folder / f"{model}-{runtime}-sequential.mp4"), estimator)
        if config.video else None
    )
    count = len(result.frames)
    model_fps = count / model_seconds
    shown = Path(weights).name if weights not in (None, "random") else weights or "torchvision's"
    print(f"\n{label} (weights {shown}{', 2 persons a frame' if untrained else ''}), {count} frames "
          f"{info.width}x{info.height} @ {float(info.fps):g} fps, batch {config.batch_size}, "
          f"device {estimator.device}, encoder {result.encoder}{f' {config.x264_preset}' if config.video else ''}")
    print(f"  model alone      {model_fps:8.2f} frames/s   CPU {1000 * model_cpu:.0f} ms a frame   "
          f"loaded in {load_seconds:.2f} s")
    print(f"  pipeline         {result.fps:8.2f} frames/s   efficiency {result.fps / model_fps:.3f}   "
          f"real-time factor {result.fps / float(info.fps):.3f}   CPU {1000 * cpu_per_frame:.0f} ms a frame "
          f"(this process and its ffmpeg)")
    if sequential_seconds is not None:
        print(f"  sequential loop  {count / sequential_seconds:8.2f} frames/s   "
              f"pipeline speed-up {sequential_seconds / result.seconds:.2f}x")
    print(f"  {'stage':<12}{'busy s':>9}{'waiting s':>11}{'items':>7}")
    for name, clock in result.stages.items():
        print(f"  {name:<12}{clock.busy:9.2f}{clock.waiting:11.2f}{clock.items:7d}")
    print(f"  whole-video analysis: {_analysis(result)}")


def _cpu_seconds() -> float:
    """CPU seconds (user and system) of this process and of its finished child processes."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _analysis(result) -> str:
    """The whole-video analysis's seconds by part, and its share of the run."""
    parts = ", ".join(f"{part} {seconds:.2f} s" for part, seconds in result.analysis_seconds.items())
    total = sum(result.analysis_seconds.values())
    return f"{parts} ({100 * total / result.seconds:.1f}% of the run's {result.seconds:.1f} s)" if parts else "none"


def sweep(model: str, source: Path, setting: str, values: list[int], args: argparse.Namespace,
          folder: Path) -> None:
    """Speed against accuracy of one setting: frames/s and the frame scores' change."""
    def run(value: int | None):
        changes: dict[str, Any] = {} if value is None else {setting: value}
        config = Config(input=source, output=folder / f"{model}-{setting}-{value}.mp4", model=model,
                        weights=weights_for(model, args), device=args.device, batch_size=args.batch_size,
                        video=False, progress=False, save_poses=False, **changes)
        result = run_video(config, build_estimator(config))
        return result, np.array([np.nan if f.score is None else f.score for f in result.frames])

    base, base_scores = run(None)
    print(f"\n{model}: {setting} against the default, {len(base.frames)} frames of {source.name}, no video")
    print(f"  {'value':>8}{'frames/s':>10}{'scored':>8}{'mean |change| of frame score':>31}{'total':>8}")
    print(f"  {'default':>8}{base.fps:10.2f}{np.isfinite(base_scores).sum():8d}{0.0:31.3f}{base.total or 0:8.2f}")
    for size in values:
        result, scores = run(size)
        both = np.isfinite(scores) & np.isfinite(base_scores)
        change = float(np.mean(np.abs(scores[both] - base_scores[both]))) if both.any() else float("nan")
        print(f"  {size:>8}{result.fps:10.2f}{np.isfinite(scores).sum():8d}{change:31.3f}{result.total or 0:8.2f}")


def main(args: argparse.Namespace) -> int:
    if args.openvino_precision is not None:
        from workers.models import yolo

        yolo.OPENVINO_CONFIG["INFERENCE_PRECISION_HINT"] = args.openvino_precision
    cuda = torch.cuda.is_available()
    device_name = torch.cuda.get_device_name(0) if cuda else f"{platform.machine()} CPU"
    print(f"date {date.today()}  {device_name}  torch {torch.__version__}  torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as folder:
        source = args.clip or (SHARED_CLIP if SHARED_CLIP.exists() else None)
        if args.crowd is not None:
            bench_crowd([int(v) for v in args.crowd.split(",")], args, Path(folder))
            return 0
        if args.analysis is not None:
            bench_analysis([int(v) for v in args.analysis.split(",")],
                           [float(v) for v in args.analysis_seconds.split(",")], args.analysis_fps, Path(folder))
            return 0
        if args.memory_minutes is not None:
            bench_memory(args.memory_minutes, args, Path(folder))
            return 0
        sweeps = {"model_min_size": args.sweep_min_size, "infer_every": args.sweep_infer_every}
        if any(sweeps.values()):
            clip = source or make_clip(None, args.frames, Path(folder) / "sweep")
            for setting, values in sweeps.items():
                for model in filter(None, (name.strip() for name in args.models.split(",")) if values else ()):
                    sweep(model, clip, setting, [int(v) for v in values.split(",")], args, Path(folder))
            return 0
        print(f"clip: the first frames of {source.name if source else 'a generated 1280x720 testsrc2 clip with audio'}")
        bench_ceiling(args, Path(folder))
        for model in filter(None, (name.strip() for name in args.models.split(","))):
            runtimes = [name.strip() for name in args.runtimes.split(",") if name.strip()]
            for runtime in [r for r in runtimes if r in get_model(model).runtimes] or ["torch"]:
                bench_model(model, source, args, Path(folder), runtime)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory (max RSS of the bench process, all runs and the model-alone frame buffers) {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
