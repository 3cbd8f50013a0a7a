"""Several videos of a folder at once on this machine (`--jobs N|auto`), each in a worker process.

One video's pipeline keeps about two CPU cores and a fraction of a GPU busy (docs/BENCHMARKS.md,
"GPU"); a night of 500 videos wants the whole machine. Worker processes, not threads: on the
GPU machine any CPU-bound Python thread beside the model's thread halved its speed (the GIL),
and a process that dies (killed, out of memory) takes only its own video with it.

The folder run's promises are `pipeline.tasks.run_folder_tasks`'s, shared with the Ray path;
this module is the engine that runs the tasks here:

- Each worker is a spawned Python process that runs `tasks.run_task` for one video at a time
  and keeps its model for the next. It has a slot (1..N): its progress bar's line and, on a
  machine with several GPUs, its GPU (`cuda:<slot-1 mod GPUs>`). On one GPU every worker holds
  its own model there; CUDA time-slices the processes' kernels, which fills the gaps a
  launch-bound model leaves (docs/BENCHMARKS.md, "Several videos at once").
- The cores are split: each worker's model (torch, OpenVINO, ONNX Runtime), OpenCV, and the
  ffmpeg decoder and libx264 encoder of its video get `cores // N` threads
  (`Config.cpu_threads`), so that N jobs do not each start a thread per core.
- A worker talks to the driver through a pipe of its own: its log records (the driver writes
  them, one line per event, each naming its file), its frames done (the progress display), and
  the video's outcome. A worker that dies closes its pipe; the driver sees its process end,
  and the task settles as `WorkerDied` with the signal or exit status, to be retried once.
- Each worker leads a process group of its own, with its ffmpeg processes in it
  (`workers.ffmpeg.stay_in_process_group`): a worker that dies is killed with its group, so no
  encoder of its is left to finish a file nobody wants. Ctrl-C in the terminal reaches the
  driver only, which interrupts every running worker (SIGINT: the run stops its stages, kills
  its ffmpeg and removes its partial outputs), waits for them, and kills what is left of each
  group after `CANCEL_GRACE_SECONDS`.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import Config
from pipeline.folder import FolderRun, Job, this_node
from pipeline.progress import Progress
from pipeline.tasks import Settled, TaskOutcome, WorkerDied, peak_memory_bytes, run_folder_tasks, run_task
from reports.summary import SummaryRow
from workers.ffmpeg import stay_in_process_group
from workers.infer import PoseEstimator
from workers.runtimes import is_exported

log = logging.getLogger("dancingskeletons")

#: CPU cores one video's pipeline keeps busy (decode, the model's thread, score and draw,
#: encode): `auto` plans a job per this many cores.
CORES_PER_VIDEO = 2
#: The share of the available memory (and of a GPU's free memory) that `auto` plans to fill.
MEMORY_HEADROOM = 0.75
#: One video's peak resident memory by model at 1080p on the CPU: its process (Python, torch, the
#: model, the queues, the analysis; `python -m bench.jobs --memory`: YOLO 1.50 GiB, Keypoint R-CNN
#: 3.81 GiB) plus its two ffmpeg processes (0.56 GiB at their peaks), rounded up
#: (docs/BENCHMARKS.md, "Several videos at once").
VIDEO_PEAK_BYTES = {"keypointrcnn": int(4.5 * 2**30), "yolo": int(2.2 * 2**30)}
#: One video's peak GPU memory by model at the default batch (4), 1080p. Measured on an H200
#: (docs/gpu-checks/2026-12-04-h200-1-jobs.md) at batch 8, all processes together: Keypoint
#: R-CNN 7.6-7.8 GiB a job, YOLO 0.95-1.1 GiB a job; at batch 4 the R-CNN model alone peaks
#: 2.2 GiB lower (docs/gpu-checks/2026-11-26-h200-3-after.md).
VIDEO_GPU_BYTES = {"keypointrcnn": int(5.5 * 2**30), "yolo": int(1.2 * 2**30)}
#: Most jobs `auto` puts on one GPU: what the GPU check's `--jobs` rows measure (N = 1, 2, 4).
MAX_AUTO_JOBS_PER_GPU = 4
#: Seconds between two frame counts a worker sends (the bars and lines need no more).
PROGRESS_SECONDS = 0.5
#: Seconds an interrupted worker gets to clean up before its process group is killed.
CANCEL_GRACE_SECONDS = 20.0


@dataclass(frozen=True)
class Machine:
    """What `auto` plans with.

    Attributes:
        cores: CPU cores this process may use.
        memory_bytes: Memory available now (MemAvailable), bytes.
        gpu_free_bytes: Each GPU's free memory, bytes; empty without CUDA (or on the CPU).
    """

    cores: int
    memory_bytes: int
    gpu_free_bytes: tuple[int, ...] = ()


@dataclass(frozen=True)
class JobsPlan:
    """How many videos run at once, and how each worker is set up.

    Attributes:
        jobs: Videos at once (worker processes).
        threads: CPU threads each video may use.
        devices: The device of each slot's worker (slot k: `devices[k - 1]`).
        reason: How it was chosen, for the first log line.
    """

    jobs: int
    threads: int
    devices: tuple[str, ...]
    reason: str


def plan_workers(requested: int | str, files: int, machine: Machine, model: str, device: str) -> JobsPlan:
    """The number of jobs for `--jobs` (a number, or "auto"), and each worker's threads and device.

    A number is taken as asked, clamped to the files (one job per file at most); "auto" takes
    the fewest of: a job per `CORES_PER_VIDEO` cores; what fits `MEMORY_HEADROOM` of the
    available memory at one video's measured peak; on CUDA, what fits each GPU's free memory,
    at most `MAX_AUTO_JOBS_PER_GPU` a GPU; and the files.

    Args:
        requested: `Config.jobs`.
        files: The videos to process (not skipped).
        machine: The cores, memory and GPUs.
        model: The model's name (its measured peaks).
        device: The run's device resolved as far as the machine decides it: "cpu", "cuda" (every
            GPU, spread over the slots) or "cuda:N" (that one).
    """
    files = max(1, files)
    gpus = len(machine.gpu_free_bytes) if device.startswith("cuda") else 0
    if requested != "auto":
        jobs = min(int(requested), files)
        reason = f"--jobs {requested}" + (f", {files} files" if jobs < int(requested) else "")
    else:
        limits = {"cores": max(1, machine.cores // CORES_PER_VIDEO)}
        peak = VIDEO_PEAK_BYTES.get(model, max(VIDEO_PEAK_BYTES.values()))
        limits["memory"] = max(1, int(machine.memory_bytes * MEMORY_HEADROOM // peak))
        if gpus:
            gpu_peak = VIDEO_GPU_BYTES.get(model, max(VIDEO_GPU_BYTES.values()))
            free = machine.gpu_free_bytes if device == "cuda" else (machine.gpu_free_bytes[_gpu_index(device)],)
            limits["GPU memory"] = max(1, sum(min(MAX_AUTO_JOBS_PER_GPU, int(f * MEMORY_HEADROOM // gpu_peak))
                                              for f in free))
        limits["files"] = files
        jobs = min(limits.values())
        words = {
            "cores": f"{machine.cores} cores / {CORES_PER_VIDEO} a video = {limits['cores']}",
            "memory": f"{_gib(machine.memory_bytes)} available x {MEMORY_HEADROOM:g} / {_gib(peak)} a video "
                      f"= {limits['memory']}",
            "files": f"{files} files",
        }
        if "GPU memory" in limits:
            words["GPU memory"] = (f"GPU memory free {'+'.join(_gib(f) for f in machine.gpu_free_bytes)} x "
                                   f"{MEMORY_HEADROOM:g} / {_gib(gpu_peak)} a video, at most "
                                   f"{MAX_AUTO_JOBS_PER_GPU} a GPU = {limits['GPU memory']}")
        reason = "--jobs auto: " + "; ".join(words[name] for name in limits)
    threads = max(1, machine.cores // jobs)
    if device == "cuda" and gpus:
        devices = tuple(f"cuda:{slot % gpus}" for slot in range(jobs))
    else:
        devices = (device,) * jobs
    return JobsPlan(jobs, threads, devices, reason)


def _gpu_index(device: str) -> int:
    return int(device.partition(":")[2] or 0)


def _gib(size: float) -> str:
    return f"{size / 2**30:.1f} GiB"


def this_machine(device: str) -> Machine:
    """The cores this process may use, the memory available now and, for a CUDA `device`, each GPU's
    free memory."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    memory = _available_memory()
    gpus: tuple[int, ...] = ()
    if device.startswith("cuda"):
        import torch

        gpus = tuple(torch.cuda.mem_get_info(index)[0] for index in range(torch.cuda.device_count()))
    return Machine(cores, memory, gpus)


def _available_memory() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def run_device(config: Config) -> str:
    """The device the jobs run on, resolved as far as the machine decides: "cpu", "cuda" or "cuda:N"."""
    if config.device == "cpu" or is_exported(config.runtime):
        return "cpu"
    if config.device.startswith("cuda"):
        return config.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_folder_in_jobs(config: Config, input_folder: Path, output_folder: Path, progress: Progress | None = None,
                       load: Callable[[Config], PoseEstimator] | None = None) -> list[SummaryRow]:
    """`folder.run_folder` with `config.jobs` videos at once, each in a worker process.

    Args:
        load: Builds the pose model in a worker (a module-level function: it is pickled by
            name); None for `workers.models.load_estimator`.

    Returns:
        One row per input, in order (the rows of the summary).

    Raises:
        DancingSkeletonsError: As `folder.run_folder`.
        KeyboardInterrupt: After cancelling every job and writing the summary.
    """
    if load is None:
        from workers.models import load_estimator

        load = load_estimator
    progress = progress or Progress()
    loader = load

    @contextmanager
    def open_engine(run: FolderRun, tasks: int) -> Iterator[LocalEngine]:
        device = run_device(config)
        plan = plan_workers(config.jobs, tasks, this_machine(device), config.model, device)
        log.info("%d at once, %d CPU threads each, on %s (%s)", plan.jobs, plan.threads,
                 ", ".join(sorted(set(plan.devices))), plan.reason)
        engine = LocalEngine(config, plan, run.output_folder, progress, loader)
        try:
            yield engine
        finally:
            engine.close()

    return run_folder_tasks(config, input_folder, output_folder, open_engine, progress)


@dataclass
class _Worker:
    """A worker process as the driver sees it."""

    slot: int
    process: Any  # multiprocessing's SpawnProcess
    connection: multiprocessing.connection.Connection
    device: str
    task: tuple[int, Job] | None = None
    outcome: Settled | None = None


class LocalEngine:
    """Videos in worker processes on this machine (`tasks.Engine`): `plan.jobs` at once.

    Args:
        config: The run's settings (each worker's device and threads are set from `plan`).
        plan: How many workers, their devices and threads.
        output_folder: The run's output folder.
        progress: The display the workers' frame counts go to.
        load: Builds the pose model in a worker.
    """

    def __init__(self, config: Config, plan: JobsPlan, output_folder: Path, progress: Progress,
                 load: Callable[[Config], PoseEstimator]) -> None:
        self.config, self.plan, self.output_folder = config, plan, output_folder
        self.progress, self.load = progress, load
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, _Worker] = {}
        self.peak_memory = 0

    def slots(self) -> int:
        return self.plan.jobs

    def submit(self, index: int, job: Job, position: int, count: int) -> None:
        worker = next((w for w in self.workers.values() if w.task is None), None)
        if worker is None:
            slot = next(slot for slot in range(1, self.plan.jobs + 1) if slot not in self.workers)
            worker = self._start(slot)
        worker.task = (index, job)
        worker.outcome = None
        worker.connection.send((index, job, position, count))

    def _start(self, slot: int) -> _Worker:
        config = self.config.replace(device=self.plan.devices[slot - 1], cpu_threads=self.plan.threads, jobs=1)
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=worker_main, args=(theirs, slot, config, self.output_folder, self.load),
                                       name=f"dancingskeletons job {slot}", daemon=False)
        process.start()
        theirs.close()
        worker = _Worker(slot, process, ours, config.device)
        self.workers[slot] = worker
        return worker

    def wait(self, timeout: float) -> list[tuple[int, Settled]]:
        busy = [w for w in self.workers.values() if w.task is not None]
        if not busy:
            return []
        multiprocessing.connection.wait([w.connection for w in busy] + [w.process.sentinel for w in busy], timeout)
        ended = []
        for worker in busy:
            self._read(worker)
            if worker.outcome is None and not worker.process.is_alive():
                self._read(worker)  # what it sent before it died
                if worker.outcome is None:
                    worker.outcome = WorkerDied(_death(worker.process.exitcode))
                self._discard(worker)
            if worker.outcome is not None and worker.task is not None:
                index = worker.task[0]
                ended.append((index, worker.outcome))
                worker.task, worker.outcome = None, None
        return ended

    def _read(self, worker: _Worker) -> None:
        """Handle what `worker` sent: log records, frame counts, its outcome."""
        try:
            while worker.connection.poll():
                kind, *body = worker.connection.recv()
                if kind == "log":
                    level, text, extra = body
                    log.log(level, "%s", text, extra=extra)
                elif kind == "start":
                    position, label, frames = body
                    self.progress.start_job(worker.slot, position, label, frames)
                elif kind == "frames":
                    self.progress.advance_job(worker.slot, body[0])
                elif kind == "outcome":
                    self.progress.end_job(worker.slot)
                    outcome: TaskOutcome = body[0]
                    self.peak_memory = max(self.peak_memory, outcome.peak_memory_bytes)
                    worker.outcome = outcome
        except (EOFError, OSError):
            pass  # it died: `wait` sees its process end

    def _discard(self, worker: _Worker) -> None:
        self.progress.end_job(worker.slot)
        _kill_group(worker.process.pid)
        worker.process.join(5.0)
        worker.connection.close()
        del self.workers[worker.slot]

    def cancel(self) -> None:
        """Interrupt every running video (each removes its partial outputs), wait for the workers
        to end, and kill what is left of their process groups after the grace period."""
        busy = [w for w in self.workers.values() if w.task is not None]
        for worker in busy:
            _signal(worker.process.pid, signal.SIGINT)
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        try:
            while any(w.process.is_alive() for w in busy) and time.monotonic() < deadline:
                multiprocessing.connection.wait([w.process.sentinel for w in busy], 0.2)
                for worker in busy:
                    self._read(worker)
        except KeyboardInterrupt:  # a second Ctrl-C: no grace
            pass
        left = [w for w in busy if w.process.is_alive()]
        if left:
            log.warning("%d jobs did not stop in %.0f s; killing them", len(left), CANCEL_GRACE_SECONDS)
        for worker in busy:
            worker.task = None
            self._discard(worker)

    def close(self) -> None:
        """End the workers: idle ones are asked to exit; any left are killed with their ffmpeg."""
        for worker in list(self.workers.values()):
            if worker.task is None:
                try:
                    worker.connection.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + 10.0
        for worker in list(self.workers.values()):
            worker.process.join(max(0.1, deadline - time.monotonic()))
            self._discard(worker)
        if self.peak_memory:
            log.info("the largest job took %s of memory at its peak", _gib(self.peak_memory))


def _death(exitcode: int | None) -> str:
    """A dead worker's exit status in words."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        hint = " (out of memory?)" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with status {exitcode}"


def _signal(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def _kill_group(pid: int) -> None:
    """Kill a worker's process group: the worker (if alive) and its ffmpeg processes."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# The worker process's side.


class _PipeProgress(Progress):
    """A job's progress, sent to the driver at most every `PROGRESS_SECONDS`."""

    def __init__(self, connection: multiprocessing.connection.Connection, position: int, label: str) -> None:
        self.connection, self.position, self.label = connection, position, label
        self._unsent = 0
        self._sent = 0.0

    def expect_frames(self, frames: int | None) -> None:
        self.connection.send(("start", self.position, self.label, frames))
        self._sent = time.monotonic()

    def advance(self, frames: int) -> None:
        self._unsent += frames
        now = time.monotonic()
        if now - self._sent >= PROGRESS_SECONDS:
            self.connection.send(("frames", self._unsent))
            self._unsent, self._sent = 0, now


class _PipeHandler(logging.Handler):
    """A worker's log records, sent to the driver as one line each (with the traceback, if any),
    naming the job's file where the message does not."""

    def __init__(self, connection: multiprocessing.connection.Connection) -> None:
        super().__init__(logging.DEBUG)
        self.connection = connection
        self.label = ""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "finish", False):
            return  # the driver writes the file's closing line
        try:
            text = record.getMessage()
            if self.label and self.label not in text:
                text = f"{self.label}: {text}"
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            extra = {"progress": True} if getattr(record, "progress", False) else {}
            self.connection.send(("log", record.levelno, text, extra))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def worker_main(connection: multiprocessing.connection.Connection, slot: int, config: Config, output_folder: Path,
                load: Callable[[Config], PoseEstimator]) -> None:
    """A worker process: run the videos the driver sends, one at a time, until it sends None."""
    os.setpgid(0, 0)  # a group of its own with its ffmpeg: Ctrl-C goes to the driver, which decides
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where the driver's was ignored (nohup, &)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    stay_in_process_group()
    _limit_threads(config.cpu_threads)
    handler = _PipeHandler(connection)
    logger = logging.getLogger("dancingskeletons")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        while True:
            task = connection.recv()
            if task is None:
                return
            index, job, position, count = task
            label = job.relative.as_posix()
            handler.label = label
            row, model_error = run_task(job, config, output_folder, position, count,
                                        _PipeProgress(connection, position, label), load)
            handler.label = ""
            connection.send(("outcome", TaskOutcome(row, this_node(), "", os.getpid(), config.device, model_error,
                                                    peak_memory_bytes())))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return  # interrupted (the run removed its partial outputs), or the driver is gone


def _limit_threads(threads: int | None) -> None:
    """This worker's share of the cores for torch and OpenCV (the model's loader, OpenVINO and
    ONNX Runtime, and ffmpeg take theirs from `Config.cpu_threads`)."""
    if threads is None:
        return
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)

