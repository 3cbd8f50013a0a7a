"""The GPU check's instruments: GPU utilisation, CPU time, and the model's rate alone.

Each is usable on its own (the tests drive `GpuSampler` with their own readings); the check
in `bench.gpu` puts them around its runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workers.infer import PoseEstimator


class GpuSampler:
    """GPU utilisation (%) sampled through NVML in a background thread, while in a `with`.

    NVML reads the whole device, whichever processes use it. Without NVML (no nvidia-ml-py,
    no NVIDIA driver, the CPU) nothing is sampled and the summary is (None, None).

    Args:
        index: NVML index of the GPU.
        period: Seconds between samples.
        read: Returns one reading; None uses NVML's utilisation (`nvml_reader`; tests pass their own).

    Attributes:
        samples: The readings, in order.
        times: When each was taken (`time.perf_counter`).
    """

    def __init__(self, index: int = 0, period: float = 0.05, read: Callable[[], float] | None = None) -> None:
        self.period = period
        self.samples: list[float] = []
        self.times: list[float] = []
        self._read = read if read is not None else nvml_reader(index)
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
            self.times.append(time.perf_counter())

    def summary(self, start: float | None = None, end: float | None = None) -> tuple[float | None, float | None]:
        """The mean and the 10th percentile of the samples, or (None, None) without any.

        Args:
            start, end: Only the samples taken between these `time.perf_counter` times.
        """
        samples = self.samples
        if start is not None or end is not None:
            low, high = -np.inf if start is None else start, np.inf if end is None else end
            samples = [value for value, when in zip(self.samples, self.times) if low <= when <= high]
        if not samples:
            return None, None
        values = np.array(samples)
        return float(values.mean()), float(np.percentile(values, 10))

    def peak(self) -> float | None:
        """The largest sample, or None without any."""
        return max(self.samples, default=None)


def nvml_reader(index: int = 0, quantity: str = "utilisation") -> Callable[[], float] | None:
    """A function that reads the GPU `index` through NVML, or None where NVML cannot be used.

    Args:
        quantity: "utilisation": % of the last sample period in which a kernel ran;
            "memory": MiB in use on the device, by every process.
    """
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # noqa: BLE001 - no module, no driver, no device: nothing to sample
        return None
    if quantity == "memory":
        return lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
    return lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu


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
    """CPU time while in a `with`: the machine's, this process's, its children's, each Python thread's.

    Figures are in cores (CPU seconds per wall second); Linux only (elsewhere empty). Threads
    are read every `period` seconds, so those that end inside the `with` are counted too. The
    children's are those of child processes that ended and were waited for inside the `with`,
    with their own waited-for children (a command run to its end, with its worker processes).
    """

    def __init__(self, period: float = 0.1) -> None:
        self.period = period
        self.report: dict[str, Any] = {}
        self._threads: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()

    def __enter__(self) -> CpuMeter:
        self._start = (time.monotonic(), _machine_busy(), _process_cpu())
        self._children_before = _children_cpu()
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
            "children_cores": round((_children_cpu() - self._children_before) / wall, 2),
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


def _children_cpu() -> float:
    """CPU seconds of this process's ended and waited-for children (and theirs)."""
    times = os.times()
    return times.children_user + times.children_system


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


def steady_rate(progress: list[tuple[float, int]], frames: int) -> float | None:
    """Frames per second between 20% and 80% of the frames, from (time, frames done) pairs."""
    inside = [(t, n) for t, n in progress if 0.2 * frames <= n <= 0.8 * frames]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
