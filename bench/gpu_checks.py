"""The GPU check's checks beside its table, and its diagnosis.

Each takes the running `bench.gpu.Check` and records what it finds in the check's results:
the pinned staging buffer against a plain copy, cudnn.benchmark on and off, the batch halving
under a memory cap, libx264 against NVENC, and why the pipeline is slower than the model alone.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from bench.gpu_meters import CpuMeter, time_model, time_model_for
from bench.gpu_report import Measurement
from bench.speed import make_clip
from config import Config
from pipeline.runner import run_video
from workers.decode import VideoReader
from workers.device import is_out_of_memory
from workers.encode import VideoWriter
from workers.infer import AdaptiveBatches, PoseEstimator
from workers.probe import probe


class Check(Protocol):
    """What these checks use of the running check (`bench.gpu.Check`): a protocol, so that
    this module does not import the one that imports it."""

    args: argparse.Namespace
    started: float
    cuda: bool
    device: str
    results: dict[str, Any]
    weights: dict[str, str | None]

    def attempt(self, what: str, action: Callable[[], Any]) -> Any: ...
    def config(self, model: str, clip: Path, output: Path, **changes: Any) -> Config: ...
    def estimator(self, model: str, half: bool, clip: Path, folder: Path) -> PoseEstimator: ...
    def measure(self, model: str, clip: Path, images: Sequence[np.ndarray], batch: int, half: bool,
                folder: Path, variant: str = "", setup: Callable[[], Callable[[], None]] | None = None,
                **changes: Any) -> Measurement: ...
    def save(self) -> None: ...


def diagnose(check: Check, model: str, clip: Path, images: Sequence[np.ndarray], folder: Path) -> None:
    """Why the pipeline is slower than the model alone.

    The model alone, then beside: a pure-Python thread (what the GIL costs it); the
    machinery (decode, score and draw, encode, with an instant stand-in model) in a thread
    of this process; the same machinery in another process (the CPU's cost without the
    GIL's). Then the pipeline with its defaults and with one thing changed at a time.
    """
    batch = 2 if check.args.dry_run else 8
    estimator = check.estimator(model, False, clip, folder)
    seconds = 0.0 if check.args.dry_run else 3.0
    found: dict[str, Any] = {"model": model, "clip": f"{images[0].shape[1]}x{images[0].shape[0]}",
                             "batch": batch}
    check.results["diagnosis"].append(found)
    found["alone"] = _beside(None, estimator, images, batch, seconds)
    found["beside a Python thread"] = _beside(_spin, estimator, images, batch, seconds)
    found["beside the machinery, a thread"] = _beside(
        lambda stop, ready: machinery(stop, ready, clip, folder / "machinery-thread.mp4"),
        estimator, images, batch, seconds)
    found["beside the machinery, a process"] = _beside(
        lambda stop, ready: _machinery_process(stop, ready, clip, folder / "machinery-process"),
        estimator, images, batch, seconds)
    check.save()

    def switch_interval() -> Callable[[], None]:
        before = sys.getswitchinterval()
        sys.setswitchinterval(0.001)
        return lambda: sys.setswitchinterval(before)

    for variant, setup, changes in (("defaults", None, {}), ("no video", None, {"video": False}),
                                    ("x264 ultrafast", None, {"x264_preset": "ultrafast"}),
                                    ("switch interval 1 ms", switch_interval, {})):
        check.attempt(f"diagnose {model} {variant}", partial(
            check.measure, model, clip, images, batch, False, folder, variant=variant, setup=setup, **changes))


def _beside(work: Callable[[threading.Event, threading.Event], None] | None, estimator: PoseEstimator,
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


def check_staging(check: Check, clip: Path, images: Sequence[np.ndarray], folder: Path) -> None:
    """Consecutive batches through the pinned staging buffer against a plain copy each."""
    wrapped = check.estimator("keypointrcnn", False, clip, folder)
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
    check.results["checks"]["staging_buffer"] = {
        "pinned": bool(estimator._staging is not None and estimator._staging.is_pinned()),  # noqa: SLF001
        "frames": len(pinned), "max_keypoint_difference_px": max(differences, default=0.0),
    }


def check_cudnn_benchmark(check: Check, clip: Path, images: Sequence[np.ndarray], folder: Path) -> None:
    """Keypoint R-CNN alone at batch 8 with cudnn.benchmark off (as the model leaves it), then on."""
    if not check.cuda:
        check.results["checks"]["cudnn_benchmark"] = "not on CUDA"
        return
    estimator = check.estimator("keypointrcnn", False, clip, folder)
    batch = min(8, len(images))
    rates = {}
    before = torch.backends.cudnn.benchmark
    try:
        for setting in (False, True):
            torch.backends.cudnn.benchmark = setting
            rates["on" if setting else "off"] = time_model(estimator, images, batch)
    finally:
        torch.backends.cudnn.benchmark = before
    check.results["checks"]["cudnn_benchmark"] = {f"model_fps_{k}": v for k, v in rates.items()}


def check_oom(check: Check, clip: Path, images: Sequence[np.ndarray], folder: Path) -> None:
    """Batch 16 under a memory cap that fits a few frames: the batch halves, no frame is lost."""
    if not check.cuda:
        check.results["checks"]["oom_halving"] = "not on CUDA"
        return
    estimator = check.estimator("keypointrcnn", False, clip, folder)
    frames = list(images[:32])
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(check.device)
    torch.cuda.reset_peak_memory_stats(check.device)
    estimator.predict(frames[:1])
    one_frame = torch.cuda.max_memory_allocated(check.device) - base
    torch.cuda.empty_cache()
    cap = base + 4 * one_frame  # room for four frames at most: batch 16 and 8 cannot fit
    total = torch.cuda.get_device_properties(check.device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), check.device)
    batches = AdaptiveBatches(estimator, 16)
    outcome: dict[str, Any]
    try:
        found = batches.predict(frames)
        outcome = {"frames_in": len(frames), "frames_out": len(found), "error": None}
    except Exception as error:  # noqa: BLE001 - reported
        outcome = {"frames_in": len(frames), "frames_out": 0, "error": str(error)[:300],
                   "out_of_memory": is_out_of_memory(error)}
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, check.device)
        torch.cuda.empty_cache()
    check.results["checks"]["oom_halving"] = {
        "cap_mib": round(cap / 2**20), "one_frame_mib": round(one_frame / 2**20), "start_batch": 16,
        "final_batch": batches.batch_size,
        "halvings": batches.halvings, **outcome,
    }


def compare_encoders(check: Check, source: Path | None, size: tuple[int, int], folder: Path,
                     models: list[str]) -> None:
    """libx264 against NVENC: encoding alone, then the fastest model's pipeline with each."""
    frames = check.args.frames or 256
    clip = make_clip(source, frames, folder / "encoders", size)
    info = probe(clip)
    images = [frame.image for frame in VideoReader(info)]
    encoders = ["libx264"] + (["h264_nvenc"] if check.results["environment"]["nvenc_works"] else [])
    for encoder in encoders:
        with VideoWriter(folder / f"encode-{encoder}.mp4", info.width, info.height, info.fps,
                         encoder=encoder, nice=10) as writer:
            start = time.perf_counter()  # ffmpeg's start-up is not part of the encoding's rate
            for image in images:
                writer.write(image)
            writer.finish()
        entry: dict[str, Any] = {"encoder": encoder, "clip": f"{info.width}x{info.height}",
                                 "encode_alone_fps": len(images) / (time.perf_counter() - start)}
        check.results["encoders"].append(entry)
        model = "yolo" if "yolo" in models and check.weights["yolo"] else (models[0] if models else None)
        if model is not None:
            batch = 8 if not check.args.dry_run else 2
            row = check.measure(model, clip, images, batch, False, folder, variant=f"encoder {encoder}",
                                encoder=encoder)
            entry.update(model=model, batch=batch, pipeline_fps=row.pipeline_fps,
                         encode_busy=row.stages.get("encode", {}).get("busy"), error=row.error)
        check.save()
    if "h264_nvenc" not in encoders:
        check.results["encoders"].append({"encoder": "h264_nvenc", "clip": f"{info.width}x{info.height}",
                                          "error": "does not work here (ffmpeg's test encode failed)"})


def _spin(stop: threading.Event, ready: threading.Event) -> None:
    """Pure Python work that holds the GIL whenever it can get it."""
    ready.set()
    count = 0
    while not stop.is_set():
        count += 1


def machinery(stop: threading.Event, ready: threading.Event, clip: Path, output: Path) -> None:
    """The pipeline with an instant stand-in model on `clip`, over and over until `stop`."""
    from bench.stand_ins import InstantModel

    config = Config(input=clip, output=output, end_card_seconds=0.0, progress=False, save_poses=False)
    ready.set()
    while not stop.is_set():
        run_video(config, InstantModel())


def _machinery_process(stop: threading.Event, ready: threading.Event, clip: Path, folder: Path) -> None:
    """`machinery` in a process of its own (no GIL shared with ours), until `stop`."""
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
