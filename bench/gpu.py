"""The GPU check: every GPU code path measured in one call (`bash bench/gpu_check.sh`).

For each clip size (1080p and 720p by default), each model (Keypoint R-CNN with random
weights, two boxes a frame let through as in `make bench`; YOLO11n-pose), with and without
`--half`, at batch 1, 4, 8 and 16: the model alone on decoded frames against the whole
pipeline (decode, infer, score and draw, encode with the audio) on the same frames, their
ratio (efficiency), GPU utilisation sampled through NVML during each run, each stage's busy
and waiting time, and peak GPU memory. Then libx264 against NVENC (encoding alone and in the
pipeline), the pinned staging buffer's results against a plain copy, cudnn.benchmark on and
off, and the out-of-memory batch halving under a memory cap. Then, on each clip size, the
whole pipeline with ffmpeg's decoder and libx264 against NVDEC and the encoder `auto` picks
(`bench.gpu_codecs`). Then, on the first clip size, several videos at once through the
command line (`--jobs N`, N = 1 and 4; `bench.gpu_jobs`): frames per second together, GPU
busy and peak GPU memory for the whole device, CPU cores.

It prints one Markdown table (with the checks below it) and writes it, with the raw JSON,
to `--out` (or $BENCH_GPU_OUT), after every measurement, so a run cut short still leaves
what it measured. Measurements that would start after `--deadline` seconds are skipped and
listed. `--dry-run` runs the same code on the CPU in seconds (the test suite does).

Here the command line and the order of the steps; the instruments are in `bench.gpu_meters`,
the checks beside the table and the diagnosis in `bench.gpu_checks`, the decoder and encoder
rows in `bench.gpu_codecs`, the `--jobs` rows in `bench.gpu_jobs`, the rows and the tables in
`bench.gpu_report`.

    python -m bench.gpu [--out DIR] [--kit DIR] [--dry-run] [--deadline S] ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.gpu_checks import (
    check_cudnn_benchmark,
    check_oom,
    check_staging,
    compare_encoders,
    diagnose,
    machinery,
)
from bench.gpu_codecs import CODECS_FRAMES, codecs_rows
from bench.gpu_jobs import jobs_rows
from bench.gpu_meters import CpuMeter, GpuSampler, steady_rate, time_model
from bench.gpu_report import REAL_TIME_FPS, Measurement, environment, error_line, figure, markdown, recorded
from bench.speed import SHARED_CLIP, SHARED_YOLO, make_clip, stand_in_settings
from config import Config
from pipeline.runner import run_video
from workers.decode import VideoReader
from workers.infer import PoseEstimator
from workers.models import build_estimator
from workers.probe import probe

#: The folder `make gpu-kit` fills with what the GPU machine lacks (see bench/gpu_kit.py).
DEFAULT_KIT = Path(".gpu-kit")
#: Frames per clip for each model: enough for a steady rate, few enough for the time box.
DEFAULT_FRAMES = {"keypointrcnn": 128, "yolo": 256}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  bash bench/gpu_check.sh                      # on the GPU machine, after make gpu-kit here\n"
               "  python -m bench.gpu --dry-run                # the same code on the CPU, seconds\n"
               "  python -m bench.gpu --models yolo --sizes 1080 --batches 8\n"
               "  python -m bench.gpu --steps jobs,codecs --deadline 420   # about 5-6 minutes on an H200",
    )
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("BENCH_GPU_OUT", "bench-out/gpu")),
                        help="folder for gpu-check.md and gpu-check.json (default: $BENCH_GPU_OUT or bench-out/gpu)")
    parser.add_argument("--kit", type=Path, default=DEFAULT_KIT,
                        help="folder with the carried clip and YOLO weights (default: .gpu-kit; "
                             "falls back to ../shared, then to a generated clip)")
    parser.add_argument("--device", default="auto", help="device (default: auto)")
    parser.add_argument("--models", default="keypointrcnn,yolo", help="comma-separated models (default: both)")
    parser.add_argument("--sizes", default="1080,720", help="clip heights, 16:9, in this order (default: 1080,720)")
    parser.add_argument("--batches", default="1,4,8,16", help="batch sizes (default: 1,4,8,16)")
    parser.add_argument("--precisions", default="fp32,half", help="fp32 and/or half (default: both)")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames per clip (default: {DEFAULT_FRAMES['keypointrcnn']} for keypointrcnn, "
                             f"{DEFAULT_FRAMES['yolo']} for yolo; the codecs step's: "
                             f"{CODECS_FRAMES['keypointrcnn']} and {CODECS_FRAMES['yolo']})")
    parser.add_argument("--min-size", type=int, default=None, dest="model_min_size",
                        help="model input size (default: each model's)")
    parser.add_argument("--deadline", type=float, default=300.0,
                        help="seconds after which no new measurement starts (default: 300)")
    parser.add_argument("--steps", default="table,checks,encoders,diagnose,codecs,jobs",
                        help="what to run, in this order within each clip size: table (the models at each batch "
                             "size), checks (staging buffer, cudnn.benchmark, out-of-memory halving; first size), "
                             "diagnose (the model beside other work, and pipeline variants; first size), "
                             "encoders (libx264 against NVENC; first size), codecs (the pipeline with ffmpeg and "
                             "libx264 against NVDEC and encoder auto, batch 8, the first of --precisions; every "
                             "size), jobs (several videos at once through the CLI, see --jobs-rows; first size) "
                             "(default: all)")
    parser.add_argument("--jobs-rows", default="1,4", metavar="N,N,...",
                        help="the jobs step: the --jobs N to measure, each with 2 x N copies of the clip, for "
                             "each of --models, at --jobs-batch and the first of --precisions (default: 1,4: with "
                             "600-frame clips, 1,2,4 adds an estimated 1.5 minutes on an H200 and takes "
                             "--steps jobs,codecs past 6 minutes)")
    parser.add_argument("--jobs-frames", type=int, default=600, metavar="N",
                        help="the jobs step: frames of its clip (default: 600, 20 s at 30 fps: long enough that "
                             "a video's fixed costs, its start and its reports, do not hide the shared GPU work)")
    parser.add_argument("--jobs-batch", type=int, default=8, help="the jobs step's batch size (default: 8)")
    parser.add_argument("--machinery-loop", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true",
                        help="the same code on the CPU in seconds: --device cpu --sizes 180 --batches 2 "
                             "--precisions fp32 --frames 4 --min-size 160 --jobs-rows 1,2 --jobs-batch 2 "
                             "--jobs-frames 4 (diagnose, codecs and jobs: one model; codecs at batch 2)")
    return parser


def dry_run(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments of a dry run: every step once, on tiny inputs, on the CPU."""
    return argparse.Namespace(**{**vars(args), "device": "cpu", "sizes": "180", "batches": "2",
                                 "precisions": "fp32", "frames": 4, "model_min_size": 160, "jobs_rows": "1,2",
                                 "jobs_batch": 2, "jobs_frames": 4})


class Check:
    """The whole check: runs the measurements in order of importance and keeps the results.

    Args:
        args: The parsed command line.

    Attributes:
        device, cuda: The device measured on, and whether it is a CUDA one.
        weights: Each model's weights ("random" for Keypoint R-CNN; None where YOLO's are absent).
        results: What `save` writes: environment, measurements, codecs, jobs, encoders, checks, diagnosis,
            skipped.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.monotonic()
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        from workers.device import resolve_device

        self.device = resolve_device(args.device)
        self.cuda = self.device.startswith("cuda")
        self.results: dict[str, Any] = {
            "environment": environment(self.device),
            "arguments": {k: str(v) for k, v in vars(args).items()},
            "measurements": [], "codecs": [], "jobs": [], "encoders": [], "checks": {}, "diagnosis": [], "skipped": [],
        }
        self._estimators: dict[tuple[str, bool], PoseEstimator] = {}
        self.weights = {"keypointrcnn": "random", "yolo": self._yolo_weights()}

    def _yolo_weights(self) -> str | None:
        for path in (self.args.kit / "yolo11n-pose.pt", SHARED_YOLO):
            if path.is_file():
                return str(path)
        return None

    def source_clip(self) -> Path | None:
        for path in (self.args.kit / "clip.mp4", SHARED_CLIP):
            if path.is_file():
                return path
        return None

    def time_left(self) -> bool:
        return time.monotonic() - self.started < self.args.deadline

    def attempt(self, what: str, action: Callable[[], Any]) -> Any:
        """Run one step unless past the deadline; a failure is recorded, not raised."""
        if not self.time_left():
            self.results["skipped"].append(f"{what}: past the {self.args.deadline:g} s deadline")
            return None
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - one broken path must not cost the others
            self.results["checks"].setdefault("errors", []).append(f"{what}: {error_line(error)}")
            traceback.print_exc()
            return None
        finally:
            self.save()

    # -- models -------------------------------------------------------------------------

    def config(self, model: str, clip: Path, output: Path, **changes: Any) -> Config:
        weights = self.weights[model]
        settings: dict[str, Any] = dict(
            input=clip, output=output, model=model, weights=weights, device=self.device,
            model_min_size=self.args.model_min_size, end_card_seconds=0.0, progress=False, save_poses=False,
            **stand_in_settings(weights),
        )
        settings.update(changes)
        return Config(**settings)

    def estimator(self, model: str, half: bool, clip: Path, folder: Path) -> PoseEstimator:
        key = (model, half)
        if key not in self._estimators:
            if model == "yolo" and self.weights["yolo"] is None:
                raise FileNotFoundError("no YOLO weights in the kit or ../shared")
            self._estimators[key] = build_estimator(self.config(model, clip, folder / "x.mp4", half=half))
        return self._estimators[key]

    def measure(self, model: str, clip: Path, images: Sequence[np.ndarray], batch: int, half: bool,
                folder: Path, variant: str = "", setup: Callable[[], Callable[[], None]] | None = None,
                **changes: Any) -> Measurement:
        """The model alone, then the whole pipeline, on one clip at one batch size.

        Args:
            variant: A name for what `setup` and `changes` change, shown in the table.
            setup: Called before the pipeline run; returns what undoes it afterwards.
            changes: Config fields that differ from the defaults.
        """
        info = probe(clip)
        row = Measurement(model=model, clip=f"{info.width}x{info.height}", batch=batch, half=half,
                          frames=len(images), variant=variant)
        self.results["measurements"].append(row)
        with recorded(row, self.save):
            estimator = self.estimator(model, half, clip, folder)
            if self.cuda:
                torch.cuda.reset_peak_memory_stats(self.device)
            with GpuSampler() as sampler:
                row.model_fps = time_model(estimator, images, batch)
            row.model_gpu_util_mean = sampler.summary()[0]
            if self.cuda:
                row.model_peak_gpu_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
            config = self.config(model, clip, folder / f"{model}-{batch}-{half}.mp4", batch_size=batch, half=half,
                                 **changes)
            if self.cuda:
                torch.cuda.reset_peak_memory_stats(self.device)
            progress: list[tuple[float, int]] = []

            def on_frames(count: int) -> None:
                progress.append((time.perf_counter(), (progress[-1][1] if progress else 0) + count))

            undo = setup() if setup is not None else None
            try:
                with GpuSampler() as sampler, CpuMeter() as cpu:
                    result = run_video(config, estimator, info, on_frames=on_frames)
            finally:
                if undo is not None:
                    undo()
            row.gpu_util_mean, row.gpu_util_p10 = sampler.summary()
            row.cpu = cpu.report
            row.steady_fps = steady_rate(progress, len(result.frames))
            if self.cuda:
                row.peak_gpu_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
            row.pipeline_fps = result.fps
            row.efficiency = result.fps / row.model_fps
            row.realtime = result.fps / REAL_TIME_FPS
            row.encoder = result.encoder
            row.stages = {name: {"busy": clock.busy, "waiting": clock.waiting}
                          for name, clock in result.stages.items()}
        print(f"{time.monotonic() - self.started:6.0f} s  {row.variant + ': ' if row.variant else ''}"
              f"{row.model} {row.clip} batch {row.batch}{' half' if row.half else ''}: "
              f"model alone {figure(row.model_fps)} f/s, pipeline {figure(row.pipeline_fps)} f/s, "
              f"encoder {row.encoder}{', ' + row.error if row.error else ''}", flush=True)
        return row

    # -- the steps ----------------------------------------------------------------------

    def run(self) -> None:
        args = self.args
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if args.dry_run and "yolo" in models and self.weights["yolo"] is None:
            # A fresh clone without ../shared or a kit: the dry run checks the code, not YOLO.
            models.remove("yolo")
            self.results["skipped"].append("yolo: no weights in the kit or ../shared")
        batches = [int(b) for b in args.batches.split(",")]
        precisions = [p.strip() == "half" for p in args.precisions.split(",") if p.strip()]
        steps = {step.strip() for step in args.steps.split(",")}
        needs_frames = steps & {"table", "checks", "diagnose"}  # the steps that take the frames in memory
        source = self.source_clip()
        self.results["environment"]["clip_source"] = source.name if source else "generated testsrc2"
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            folder = Path(tmp)
            for position, height in enumerate(int(h) for h in args.sizes.split(",")):
                size = (round(height * 16 / 9 / 2) * 2, height)
                for model in models if needs_frames else ():
                    frames = args.frames or DEFAULT_FRAMES.get(model, 128)
                    clip = self.attempt(f"{model} {size[0]}x{size[1]} clip", partial(
                        make_clip, source, frames, folder / f"{model}-{height}", size))
                    if clip is None:
                        continue
                    images = [frame.image for frame in VideoReader(probe(clip))]
                    for half in precisions if "table" in steps else ():
                        for batch in batches:
                            what = f"{model} {size[0]}x{size[1]} batch {batch}{' half' if half else ''}"
                            self.attempt(what, partial(self.measure, model, clip, images, batch, half, folder))
                    if position == 0 and model == "keypointrcnn" and "checks" in steps:
                        self.attempt("staging buffer", partial(check_staging, self, clip, images, folder))
                        self.attempt("cudnn.benchmark", partial(check_cudnn_benchmark, self, clip, images, folder))
                        self.attempt("out-of-memory halving", partial(check_oom, self, clip, images, folder))
                    if position == 0 and "diagnose" in steps and model in self.quick(models):
                        self.attempt(f"diagnose {model}", partial(diagnose, self, model, clip, images, folder))
                    del images
                if position == 0 and "encoders" in steps:
                    self.attempt("encoders", partial(compare_encoders, self, source, size, folder, models))
                for model in self.quick(models) if "codecs" in steps else ():
                    codecs_rows(self, model, source, size, folder)
                if position == 0 and "jobs" in steps:
                    jobs_rows(self, self.quick(models), source, size, folder)

    def quick(self, models: list[str]) -> list[str]:
        """The models to diagnose, to run with each decoder and encoder, and to run several at once:
        all; in a dry run one, the quicker (YOLO where its weights are here)."""
        if not self.args.dry_run:
            return models
        return ["yolo"] if "yolo" in models and self.weights["yolo"] else models[:1]

    # -- output -------------------------------------------------------------------------

    def save(self) -> None:
        """Write gpu-check.json and gpu-check.md (atomically each), as they stand now."""
        results = {**self.results, "measurements": [asdict(m) for m in self.results["measurements"]],
                   "codecs": [asdict(row) for row in self.results["codecs"]],
                   "jobs": [asdict(row) for row in self.results["jobs"]],
                   "seconds": round(time.monotonic() - self.started, 1)}
        for name, text in (("gpu-check.json", json.dumps(results, indent=1, default=str)),
                           ("gpu-check.md", markdown(results))):
            temporary = self.out / f".{name}.tmp"
            temporary.write_text(text)
            os.replace(temporary, self.out / name)


def main(args: argparse.Namespace) -> int:
    if args.machinery_loop is not None:  # the other process of `bench.gpu_checks.diagnose`
        args.out.mkdir(parents=True, exist_ok=True)
        ready = threading.Event()
        threading.Thread(target=lambda: ready.wait() and print("ready", flush=True), daemon=True).start()
        try:
            machinery(threading.Event(), ready, args.machinery_loop, args.out / "machinery.mp4")
        except KeyboardInterrupt:
            return 130
        return 0
    if args.dry_run:
        args = dry_run(args)
    check = Check(args)
    print(f"GPU check: {check.results['environment']['device']}, results in {check.out}", flush=True)
    check.run()
    check.save()
    print((check.out / "gpu-check.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
