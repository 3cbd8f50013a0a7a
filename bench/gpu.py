"""The GPU check: every GPU code path measured in one call (`bash bench/gpu_check.sh`).

For each clip size (1080p and 720p by default), each model (Keypoint R-CNN with random
weights, two boxes a frame let through as in `make bench`; YOLO11n-pose), with and without
`--half`, at batch 1, 4, 8 and 16: the model alone on decoded frames against the whole
pipeline (decode, infer, score and draw, encode with the audio) on the same frames, their
ratio (efficiency), GPU utilisation sampled through NVML during each run, each stage's busy
and waiting time, and peak GPU memory. Then libx264 against NVENC (encoding alone and in the
pipeline), the pinned staging buffer's results against a plain copy, cudnn.benchmark on and
off, and the out-of-memory batch halving under a memory cap.

It prints one Markdown table (with the checks below it) and writes it, with the raw JSON,
to `--out` (or $BENCH_GPU_OUT), after every measurement, so a run cut short still leaves
what it measured. Measurements that would start after `--deadline` seconds are skipped and
listed. `--dry-run` runs the same code on the CPU in seconds (the test suite does).

    python -m bench.gpu [--out DIR] [--kit DIR] [--dry-run] [--deadline S] ...
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.speed import SHARED_CLIP, SHARED_YOLO, make_clip, stand_in_settings
from config import Config
from pipeline.runner import run_video
from workers.decode import VideoReader
from workers.device import is_out_of_memory
from workers.encode import VideoWriter, choose_encoder
from workers.ffmpeg import encoder_works, ffmpeg_exe, run_ffmpeg
from workers.infer import AdaptiveBatches, PoseEstimator
from workers.models import build_estimator
from workers.probe import probe

#: The folder `make gpu-kit` fills with what the GPU machine lacks (see bench/gpu_kit.py).
DEFAULT_KIT = Path(".gpu-kit")
#: Frames per clip for each model: enough for a steady rate, few enough for the time box.
DEFAULT_FRAMES = {"keypointrcnn": 128, "yolo": 256}
#: A 30 fps video is processed this many times faster than it plays at `fps / REAL_TIME_FPS`.
REAL_TIME_FPS = 30.0


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  bash bench/gpu_check.sh                      # on the GPU machine, after make gpu-kit here\n"
               "  python -m bench.gpu --dry-run                # the same code on the CPU, seconds\n"
               "  python -m bench.gpu --models yolo --sizes 1080 --batches 8",
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
                             f"{DEFAULT_FRAMES['yolo']} for yolo)")
    parser.add_argument("--min-size", type=int, default=None, dest="model_min_size",
                        help="model input size (default: each model's)")
    parser.add_argument("--deadline", type=float, default=300.0,
                        help="seconds after which no new measurement starts (default: 300)")
    parser.add_argument("--steps", default="table,checks,encoders,diagnose",
                        help="what to run, in this order within each clip size: table (the models at each batch "
                             "size), checks (staging buffer, cudnn.benchmark, out-of-memory halving; first size), "
                             "encoders (libx264 against NVENC; first size), diagnose (the model beside other "
                             "work, and pipeline variants; first size) (default: all)")
    parser.add_argument("--machinery-loop", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true",
                        help="the same code on the CPU in seconds: --device cpu --sizes 180 --batches 2 "
                             "--precisions fp32 --frames 4 --min-size 160")
    return parser


def dry_run(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments of a dry run: every step once, on tiny inputs, on the CPU."""
    return argparse.Namespace(**{**vars(args), "device": "cpu", "sizes": "180", "batches": "2",
                                 "precisions": "fp32", "frames": 4, "model_min_size": 160})


@dataclass
class Measurement:
    """One model, clip, batch size and precision: the model alone and the whole pipeline.

    Attributes:
        model, clip, batch, half: What was run ("1920x1080", fp16 autocast or not).
        frames: Frames timed.
        model_fps: The model alone on decoded frames in memory (upload, inference, results
            back), after a warm-up batch.
        pipeline_fps: The whole pipeline on the same frames, probe to checked output file.
        efficiency: pipeline_fps / model_fps.
        realtime: pipeline_fps / 30: how many times faster than a 30 fps video plays.
        steady_fps: The pipeline's rate from 20% to 80% of the frames (start and end left out).
        gpu_util_mean, gpu_util_p10: NVML GPU utilisation (%) sampled during the pipeline run.
        model_gpu_util_mean: The same during the model-alone run.
        peak_gpu_mib: Peak GPU memory allocated by torch during the pipeline run.
        model_peak_gpu_mib: The same during the model-alone run.
        stages: Per stage: busy and waiting seconds.
        encoder: The encoder the pipeline used.
        cpu: Cores busy during the pipeline run: the machine's, this process's, per thread.
        variant: What was changed from the defaults, if anything.
        error: Why the measurement failed, if it did.
    """

    model: str
    clip: str
    batch: int
    half: bool
    frames: int = 0
    model_fps: float | None = None
    pipeline_fps: float | None = None
    efficiency: float | None = None
    realtime: float | None = None
    gpu_util_mean: float | None = None
    gpu_util_p10: float | None = None
    model_gpu_util_mean: float | None = None
    peak_gpu_mib: float | None = None
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    encoder: str | None = None
    steady_fps: float | None = None
    model_peak_gpu_mib: float | None = None
    cpu: dict[str, Any] = field(default_factory=dict)
    variant: str = ""
    error: str | None = None


class GpuSampler:
    """GPU utilisation (%) sampled through NVML in a background thread, while in a `with`.

    Without NVML (no nvidia-ml-py, no NVIDIA driver, the CPU) nothing is sampled and the
    summary is (None, None).

    Args:
        index: NVML index of the GPU.
        period: Seconds between samples.
        read: Returns one utilisation reading; None uses NVML (tests pass their own).
    """

    def __init__(self, index: int = 0, period: float = 0.05, read: Callable[[], float] | None = None) -> None:
        self.period = period
        self.samples: list[float] = []
        self._read = read if read is not None else _nvml_reader(index)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if self._read is not None:
            self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        assert self._read is not None
        while not self._stop.wait(self.period):
            self.samples.append(float(self._read()))

    def summary(self) -> tuple[float | None, float | None]:
        """The mean and the 10th percentile of the samples, or (None, None) without any."""
        if not self.samples:
            return None, None
        values = np.array(self.samples)
        return float(values.mean()), float(np.percentile(values, 10))


def _nvml_reader(index: int) -> Callable[[], float] | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # noqa: BLE001 - no module, no driver, no device: nothing to sample
        return None
    return lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu


def environment(device: str) -> dict[str, Any]:
    """What ran: the card, the driver, the versions, the cores, ffmpeg and its NVENC."""
    import torchvision

    cuda = device.startswith("cuda")
    version = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True, timeout=30)
    lines = version.stdout.splitlines()
    facts: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": torch.cuda.get_device_name(device) if cuda else f"{platform.machine()} CPU",
        "gpu_memory_gib": round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1) if cuda else None,
        "driver": _nvml_driver() if cuda else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cpu_cores": os.cpu_count(),
        "ffmpeg": lines[0].split(" Copyright")[0] if version.returncode == 0 and lines else "not runnable",
        "ffmpeg_path": ffmpeg_exe(),
        "packages": _versions("imageio-ffmpeg", "ultralytics", "numpy", "opencv-python-headless", "nvidia-ml-py"),
        "nvenc_works": encoder_works("h264_nvenc"),
        "encoder_auto": choose_encoder("auto", device),
    }
    if not facts["nvenc_works"]:
        _, lines = run_ffmpeg(["-nostdin", "-f", "lavfi", "-i", "color=s=256x256:d=0.1", "-c:v", "h264_nvenc",
                               "-f", "null", "-"], timeout=30)
        why = [line for line in lines if any(w in line.lower() for w in ("nvenc", "cuda", "error", "cannot"))]
        facts["nvenc_error"] = " / ".join((why or lines)[:3])[:400]
    return facts


def _versions(*distributions: str) -> dict[str, str | None]:
    """Each installed distribution's version (read from its metadata, nothing imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in distributions:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _nvml_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else version
    except Exception:  # noqa: BLE001 - the driver version is a nicety
        return None


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def time_model(estimator: PoseEstimator, images: Sequence[np.ndarray], batch: int) -> float:
    """Frames per second of the model alone on frames in memory, after one warm-up batch."""
    estimator.predict(images[:batch])
    _synchronize(estimator.device)
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        estimator.predict(images[i : i + batch])
    _synchronize(estimator.device)
    return len(images) / (time.perf_counter() - start)


def time_model_for(estimator: PoseEstimator, images: Sequence[np.ndarray], batch: int, seconds: float) -> float:
    """Frames per second of the model alone, batch after batch (cycling) for about `seconds` (at least one)."""
    estimator.predict(images[:batch])
    _synchronize(estimator.device)
    start = time.perf_counter()
    done = 0
    while done == 0 or time.perf_counter() - start < seconds:
        first = done % len(images)
        chunk = images[first : first + batch]
        estimator.predict(chunk)
        done += len(chunk)
        if estimator.device.startswith("cuda") and time.perf_counter() - start >= seconds:
            _synchronize(estimator.device)
    _synchronize(estimator.device)
    return done / (time.perf_counter() - start)


class CpuMeter:
    """CPU time while in a `with`: the machine's, this process's, and each Python thread's.

    Figures are in cores (CPU seconds per wall second); Linux only (elsewhere empty). Threads
    are read every `period` seconds, so those that end inside the `with` are counted too.
    """

    def __init__(self, period: float = 0.1) -> None:
        self.period = period
        self.report: dict[str, Any] = {}
        self._threads: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()

    def __enter__(self) -> CpuMeter:
        self._start = (time.monotonic(), _machine_busy(), _process_cpu())
        self._before = {tid: seconds for tid, (_, seconds) in _thread_cpu().items()}
        self._sampler = threading.Thread(target=self._sample, name="cpu-meter", daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while True:
            self._threads.update(_thread_cpu())
            if self._stop.wait(self.period):
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join()
        wall = time.monotonic() - self._start[0]
        machine, process = _machine_busy(), _process_cpu()
        machine_before, process_before = self._start[1], self._start[2]
        if machine is None or process is None or machine_before is None or process_before is None or wall <= 0:
            return
        threads: dict[str, float] = {}
        for tid, (name, seconds) in self._threads.items():
            used = seconds - self._before.get(tid, 0.0)
            threads[name] = threads.get(name, 0.0) + used
        self.report = {
            "machine_cores": round((machine - machine_before) / wall, 2),
            "process_cores": round((process - process_before) / wall, 2),
            "threads": {name: round(used / wall, 2) for name, used in sorted(threads.items())
                        if used > 0.01 * wall},
        }


def _machine_busy() -> float | None:
    """CPU seconds the whole machine has been busy (all cores, not idle or waiting on I/O)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _process_cpu() -> float | None:
    try:
        return sum(os.times()[:2])
    except OSError:
        return None


def _thread_cpu() -> dict[int, tuple[str, float]]:
    """Each live Python thread's name and CPU seconds, by native thread id."""
    found: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for thread in threading.enumerate():
        if thread.native_id is None:  # not started yet
            continue
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except (OSError, TypeError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[thread.native_id] = (thread.name, (int(fields[11]) + int(fields[12])) / tick)
    return found


class Check:
    """The whole check: runs the measurements in order of importance and keeps the results.

    Args:
        args: The parsed command line.
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
            "measurements": [], "encoders": [], "checks": {}, "diagnosis": [], "skipped": [],
        }
        self._estimators: dict[tuple[str, bool], PoseEstimator] = {}
        self._weights = {"keypointrcnn": "random", "yolo": self._yolo_weights()}

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
            message = f"{type(error).__name__}: {error}".strip().splitlines()[0][:300]
            self.results["checks"].setdefault("errors", []).append(f"{what}: {message}")
            traceback.print_exc()
            return None
        finally:
            self.save()

    # -- models -------------------------------------------------------------------------

    def config(self, model: str, clip: Path, output: Path, **changes: Any) -> Config:
        weights = self._weights[model]
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
            if model == "yolo" and self._weights["yolo"] is None:
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
        try:
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
            row.steady_fps = _steady_rate(progress, len(result.frames))
            if self.cuda:
                row.peak_gpu_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
            row.pipeline_fps = result.fps
            row.efficiency = result.fps / row.model_fps
            row.realtime = result.fps / REAL_TIME_FPS
            row.encoder = result.encoder
            row.stages = {name: {"busy": clock.busy, "waiting": clock.waiting}
                          for name, clock in result.stages.items()}
        except Exception as error:  # noqa: BLE001 - recorded in the row and the table
            row.error = f"{type(error).__name__}: {error}".strip().splitlines()[0][:300]
            traceback.print_exc()
        finally:
            self.save()
        print(f"{time.monotonic() - self.started:6.0f} s  {row.variant + ': ' if row.variant else ''}"
              f"{row.model} {row.clip} batch {row.batch}"
              f"{' half' if row.half else ''}: model alone {_f(row.model_fps)} f/s, pipeline {_f(row.pipeline_fps)} "
              f"f/s, encoder {row.encoder}{', ' + row.error if row.error else ''}", flush=True)
        return row

    # -- the steps ----------------------------------------------------------------------

    def run(self) -> None:
        args = self.args
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if args.dry_run and "yolo" in models and self._weights["yolo"] is None:
            # A fresh clone without ../shared or a kit: the dry run checks the code, not YOLO.
            models.remove("yolo")
            self.results["skipped"].append("yolo: no weights in the kit or ../shared")
        batches = [int(b) for b in args.batches.split(",")]
        precisions = [p.strip() == "half" for p in args.precisions.split(",") if p.strip()]
        steps = {step.strip() for step in args.steps.split(",")}
        source = self.source_clip()
        self.results["environment"]["clip_source"] = source.name if source else "generated testsrc2"
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            folder = Path(tmp)
            for position, height in enumerate(int(h) for h in args.sizes.split(",")):
                size = (round(height * 16 / 9 / 2) * 2, height)
                for model in models:
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
                        self.attempt("staging buffer", partial(self.check_staging, clip, images, folder))
                        self.attempt("cudnn.benchmark", partial(self.check_cudnn_benchmark, clip, images, folder))
                        self.attempt("out-of-memory halving", partial(self.check_oom, clip, images, folder))
                    if position == 0 and "diagnose" in steps and model in self.diagnosed(models):
                        self.attempt(f"diagnose {model}", partial(self.diagnose, model, clip, images, folder))
                    del images
                if position == 0 and "encoders" in steps:
                    self.attempt("encoders", partial(self.compare_encoders, source, size, folder, models))

    def diagnosed(self, models: list[str]) -> list[str]:
        """The models to diagnose: all; in a dry run one, the quicker (YOLO where its weights are here)."""
        if not self.args.dry_run:
            return models
        return ["yolo"] if "yolo" in models and self._weights["yolo"] else models[:1]

    def diagnose(self, model: str, clip: Path, images: Sequence[np.ndarray], folder: Path) -> None:
        """Why the pipeline is slower than the model alone.

        The model alone, then beside: a pure-Python thread (what the GIL costs it); the
        machinery (decode, score and draw, encode, with an instant stand-in model) in a thread
        of this process; the same machinery in another process (the CPU's cost without the
        GIL's). Then the pipeline with its defaults and with one thing changed at a time.
        """
        batch = 2 if self.args.dry_run else 8
        estimator = self.estimator(model, False, clip, folder)
        seconds = 0.0 if self.args.dry_run else 3.0
        found: dict[str, Any] = {"model": model, "clip": f"{images[0].shape[1]}x{images[0].shape[0]}",
                                 "batch": batch}
        self.results["diagnosis"].append(found)
        found["alone"] = self._beside(None, estimator, images, batch, seconds)
        found["beside a Python thread"] = self._beside(_spin, estimator, images, batch, seconds)
        found["beside the machinery, a thread"] = self._beside(
            lambda stop, ready: _machinery(stop, ready, clip, folder / "machinery-thread.mp4"),
            estimator, images, batch, seconds)
        found["beside the machinery, a process"] = self._beside(
            lambda stop, ready: _machinery_process(stop, ready, clip, folder / "machinery-process"),
            estimator, images, batch, seconds)
        self.save()

        def switch_interval() -> Callable[[], None]:
            before = sys.getswitchinterval()
            sys.setswitchinterval(0.001)
            return lambda: sys.setswitchinterval(before)

        for variant, setup, changes in (("defaults", None, {}), ("no video", None, {"video": False}),
                                        ("x264 ultrafast", None, {"x264_preset": "ultrafast"}),
                                        ("switch interval 1 ms", switch_interval, {})):
            self.attempt(f"diagnose {model} {variant}", partial(
                self.measure, model, clip, images, batch, False, folder, variant=variant, setup=setup, **changes))

    def _beside(self, work: Callable[[threading.Event, threading.Event], None] | None, estimator: PoseEstimator,
                images: Sequence[np.ndarray], batch: int, seconds: float) -> dict[str, Any]:
        """The model alone's rate for about `seconds` while `work(stop, ready)` runs in a thread.

        Timing starts 1 s after `work` has set `ready` (a process takes seconds to import torch).
        """
        stop, ready = threading.Event(), threading.Event()
        thread = threading.Thread(target=work, args=(stop, ready), name="beside", daemon=True) if work else None
        if thread is not None:
            thread.start()
            if not ready.wait(120):
                stop.set()
                raise TimeoutError("the work beside the model did not start within 120 s")
            time.sleep(min(1.0, seconds))
        try:
            with CpuMeter() as cpu:
                rate = time_model_for(estimator, images, batch, seconds)
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=60)
        return {"model_fps": rate, "cpu": cpu.report}

    def check_staging(self, clip: Path, images: Sequence[np.ndarray], folder: Path) -> None:
        """Consecutive batches through the pinned staging buffer against a plain copy each."""
        wrapped = self.estimator("keypointrcnn", False, clip, folder)
        estimator: Any = getattr(wrapped, "estimator", wrapped)  # the model itself, past its ModelThread
        batch = min(8, max(1, len(images) // 2))
        first, second = images[:batch], images[batch : 2 * batch] or images[:batch]
        pinned = estimator.predict(first) + estimator.predict(second)
        upload = estimator._upload  # noqa: SLF001 - the check compares the two upload paths
        estimator._upload = lambda frames: torch.from_numpy(np.stack(frames)).to(estimator.device)  # noqa: SLF001
        try:
            plain = estimator.predict(first) + estimator.predict(second)
        finally:
            estimator._upload = upload  # noqa: SLF001
        differences = [float(np.abs(a.keypoints - b.keypoints).max()) if len(a) == len(b) and len(a) else
                       (0.0 if len(a) == len(b) else float("inf")) for a, b in zip(pinned, plain)]
        self.results["checks"]["staging_buffer"] = {
            "pinned": bool(estimator._staging is not None and estimator._staging.is_pinned()),  # noqa: SLF001
            "frames": len(pinned), "max_keypoint_difference_px": max(differences, default=0.0),
        }

    def check_cudnn_benchmark(self, clip: Path, images: Sequence[np.ndarray], folder: Path) -> None:
        """Keypoint R-CNN alone at batch 8 with cudnn.benchmark off (as the model leaves it), then on."""
        if not self.cuda:
            self.results["checks"]["cudnn_benchmark"] = "not on CUDA"
            return
        estimator = self.estimator("keypointrcnn", False, clip, folder)
        batch = min(8, len(images))
        rates = {}
        before = torch.backends.cudnn.benchmark
        try:
            for setting in (False, True):
                torch.backends.cudnn.benchmark = setting
                rates["on" if setting else "off"] = time_model(estimator, images, batch)
        finally:
            torch.backends.cudnn.benchmark = before
        self.results["checks"]["cudnn_benchmark"] = {f"model_fps_{k}": v for k, v in rates.items()}

    def check_oom(self, clip: Path, images: Sequence[np.ndarray], folder: Path) -> None:
        """Batch 16 under a memory cap that fits a few frames: the batch halves, no frame is lost."""
        if not self.cuda:
            self.results["checks"]["oom_halving"] = "not on CUDA"
            return
        estimator = self.estimator("keypointrcnn", False, clip, folder)
        frames = list(images[:32])
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        estimator.predict(frames[:1])
        one_frame = torch.cuda.max_memory_allocated(self.device) - base
        torch.cuda.empty_cache()
        cap = base + 4 * one_frame  # room for four frames at most: batch 16 and 8 cannot fit
        total = torch.cuda.get_device_properties(self.device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), self.device)
        batches = AdaptiveBatches(estimator, 16)
        outcome: dict[str, Any]
        try:
            found = batches.predict(frames)
            outcome = {"frames_in": len(frames), "frames_out": len(found), "error": None}
        except Exception as error:  # noqa: BLE001 - reported
            outcome = {"frames_in": len(frames), "frames_out": 0, "error": str(error)[:300],
                       "out_of_memory": is_out_of_memory(error)}
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, self.device)
            torch.cuda.empty_cache()
        self.results["checks"]["oom_halving"] = {
            "cap_mib": round(cap / 2**20), "one_frame_mib": round(one_frame / 2**20), "start_batch": 16,
            "final_batch": batches.batch_size,
            "halvings": batches.halvings, **outcome,
        }

    def compare_encoders(self, source: Path | None, size: tuple[int, int], folder: Path, models: list[str]) -> None:
        """libx264 against NVENC: encoding alone, then the fastest model's pipeline with each."""
        frames = self.args.frames or 256
        clip = make_clip(source, frames, folder / "encoders", size)
        info = probe(clip)
        images = [frame.image for frame in VideoReader(info)]
        encoders = ["libx264"] + (["h264_nvenc"] if self.results["environment"]["nvenc_works"] else [])
        for encoder in encoders:
            writer = VideoWriter(folder / f"encode-{encoder}.mp4", info.width, info.height, info.fps,
                                 encoder=encoder, nice=10)
            start = time.perf_counter()
            for image in images:
                writer.write(image)
            writer.finish()
            entry: dict[str, Any] = {"encoder": encoder, "clip": f"{info.width}x{info.height}",
                                     "encode_alone_fps": len(images) / (time.perf_counter() - start)}
            self.results["encoders"].append(entry)
            model = "yolo" if "yolo" in models and self._weights["yolo"] else (models[0] if models else None)
            if model is not None:
                batch = 8 if not self.args.dry_run else 2
                row = self.measure(model, clip, images, batch, False, folder, variant=f"encoder {encoder}",
                                   encoder=encoder)
                entry.update(model=model, batch=batch, pipeline_fps=row.pipeline_fps,
                             encode_busy=row.stages.get("encode", {}).get("busy"), error=row.error)
            self.save()
        if "h264_nvenc" not in encoders:
            self.results["encoders"].append({"encoder": "h264_nvenc", "clip": f"{info.width}x{info.height}",
                                             "error": "does not work here (ffmpeg's test encode failed)"})

    # -- output -------------------------------------------------------------------------

    def save(self) -> None:
        """Write gpu-check.json and gpu-check.md (atomically each), as they stand now."""
        results = {**self.results, "measurements": [asdict(m) for m in self.results["measurements"]],
                   "seconds": round(time.monotonic() - self.started, 1)}
        for name, text in (("gpu-check.json", json.dumps(results, indent=1, default=str)),
                           ("gpu-check.md", markdown(results))):
            temporary = self.out / f".{name}.tmp"
            temporary.write_text(text)
            os.replace(temporary, self.out / name)


def _spin(stop: threading.Event, ready: threading.Event) -> None:
    """Pure Python work that holds the GIL whenever it can get it."""
    ready.set()
    count = 0
    while not stop.is_set():
        count += 1


def _machinery(stop: threading.Event, ready: threading.Event, clip: Path, output: Path) -> None:
    """The pipeline with an instant stand-in model on `clip`, over and over until `stop`."""
    from bench.speed import InstantModel

    config = Config(input=clip, output=output, end_card_seconds=0.0, progress=False, save_poses=False)
    ready.set()
    while not stop.is_set():
        run_video(config, InstantModel())


def _machinery_process(stop: threading.Event, ready: threading.Event, clip: Path, folder: Path) -> None:
    """`_machinery` in a process of its own (no GIL shared with ours), until `stop`."""
    import signal

    child = subprocess.Popen([sys.executable, "-m", "bench.gpu", "--machinery-loop", str(clip),
                              "--out", str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() == "ready":
            ready.set()
        stop.wait()
    finally:
        child.send_signal(signal.SIGINT)  # the pipeline stops its ffmpeg processes on Ctrl-C
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


def _steady_rate(progress: list[tuple[float, int]], frames: int) -> float | None:
    """Frames per second between 20% and 80% of the frames, from (time, frames done) pairs."""
    inside = [(t, n) for t, n in progress if 0.2 * frames <= n <= 0.8 * frames]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def _f(value: float | None, digits: int = 1) -> str:
    return "--" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """The check's results as one Markdown table with its environment, checks and diagnosis."""
    env = results["environment"]
    lines = [
        f"{env['date']}: {env['device']}"
        + (f" ({env['gpu_memory_gib']} GiB, driver {env['driver']})" if env.get("gpu_memory_gib") else "")
        + f", {env['cpu_cores']} cores, Python {env['python']}, torch {env['torch']}, torchvision "
        f"{env['torchvision']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}; {env['ffmpeg']}; NVENC works: "
        f"{env['nvenc_works']}, `--encoder auto` takes {env['encoder_auto']}; clip: {env.get('clip_source')}; "
        f"{results.get('seconds', 0):.0f} s in all.",
        "",
        "| model | clip | batch | half | variant | model alone f/s | pipeline f/s (steady) | efficiency "
        "| x real time (30 fps) | GPU util % mean / p10 (model alone) | peak GPU MiB (model alone) "
        "| decode busy/wait s | infer busy/wait s | score busy/wait s | draw busy/wait s | encode busy/wait s "
        "| CPU cores: machine / process / model thread | encoder |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |",
    ]
    for row in results["measurements"]:
        stages = row["stages"]
        cells = [f"{_f(stages[s]['busy'])} / {_f(stages[s]['waiting'])}" if s in stages else "--"
                 for s in ("decode", "infer", "score", "draw", "encode")]
        if row["error"]:
            cells = [f"failed: {row['error']}", "", "", "", ""]
        cpu = row.get("cpu") or {}
        model_thread = sum(v for k, v in cpu.get("threads", {}).items() if k.startswith("model-")) or None
        cpu_cell = (f"{_f(cpu.get('machine_cores'))} / {_f(cpu.get('process_cores'))} / {_f(model_thread)}"
                    if cpu else "--")
        lines.append(
            f"| {row['model']} | {row['clip']} | {row['batch']} | {'yes' if row['half'] else 'no'} "
            f"| {row.get('variant') or ''} | {_f(row['model_fps'])} | {_f(row['pipeline_fps'])} "
            f"({_f(row.get('steady_fps'))}) | {_f(row['efficiency'], 3)} | {_f(row['realtime'], 2)} "
            f"| {_f(row['gpu_util_mean'], 0)} / {_f(row['gpu_util_p10'], 0)} ({_f(row['model_gpu_util_mean'], 0)}) "
            f"| {_f(row['peak_gpu_mib'], 0)} ({_f(row.get('model_peak_gpu_mib'), 0)}) | " + " | ".join(cells)
            + f" | {cpu_cell} | {row['encoder'] or '--'} |"
        )
    lines.append("")
    for entry in results["encoders"]:
        if entry.get("encode_alone_fps") is None:
            lines.append(f"- encoder {entry['encoder']} at {entry['clip']}: {entry.get('error')}")
            continue
        pipeline = (f"; {entry['model']} batch {entry['batch']} pipeline {_f(entry.get('pipeline_fps'))} f/s, "
                    f"encode busy {_f(entry.get('encode_busy'))} s" if entry.get("model") else "")
        lines.append(f"- encoder {entry['encoder']} at {entry['clip']}: encoding alone "
                     f"{_f(entry['encode_alone_fps'])} f/s{pipeline}")
    for found in results.get("diagnosis", []):
        parts = []
        for name, value in found.items():
            if isinstance(value, dict) and "model_fps" in value:
                cpu = value.get("cpu") or {}
                parts.append(f"{name} {_f(value['model_fps'])} f/s (machine {_f(cpu.get('machine_cores'))} cores, "
                             f"this process {_f(cpu.get('process_cores'))})")
        lines.append(f"- diagnosis, {found['model']} {found['clip']} batch {found['batch']}, the model's rate: "
                     + "; ".join(parts))
    for name, value in results["checks"].items():
        if name == "errors":
            lines.extend(f"- error: {message}" for message in value)
        else:
            lines.append(f"- {name}: {json.dumps(value, default=str)}")
    lines.extend(f"- skipped: {what}" for what in results["skipped"])
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    if args.machinery_loop is not None:  # the other process of `Check.diagnose`
        args.out.mkdir(parents=True, exist_ok=True)
        ready = threading.Event()
        threading.Thread(target=lambda: ready.wait() and print("ready", flush=True), daemon=True).start()
        try:
            _machinery(threading.Event(), ready, args.machinery_loop, args.out / "machinery.mp4")
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
