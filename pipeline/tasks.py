"""A folder run's videos as tasks in worker processes, and the loop that keeps them running.

Two engines run the tasks: worker processes on this machine (`pipeline.jobs`, `--jobs N`) and a
Ray cluster (`pipeline.cluster`, `--cluster ray`). In both, a worker process runs `run_task`
(the local run's `folder.run_job`, with the model kept for the worker's next video), and the
driver runs `run_folder_tasks`, which keeps a folder run's promises in one place: the plan and
its skips, a summary rewritten (rows in plan order) as each video ends, a worker that died
retried at most `config.retries` times and then a failed row with the cause, a model that
cannot be loaded stopping the run, the review index, and on Ctrl-C or SIGTERM every task
cancelled, its partial outputs removed, the summary written ("interrupted", "pending").
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from config import Config
from pipeline.folder import FolderRun, Job, describe_row, plan_folder_run, run_job, skipped_row
from pipeline.progress import Progress, format_duration
from pipeline.resume import remove_outputs
from reports.summary import SummaryRow
from workers.errors import DancingSkeletonsError, one_line
from workers.infer import PoseEstimator

log = logging.getLogger("dancingskeletons")


@dataclass(frozen=True)
class TaskOutcome:
    """What a video's task sends back.

    Attributes:
        row: The file's summary row.
        host: The machine's host name.
        node_id: Ray's id of the node (empty on this machine).
        pid: The worker process (on Ray, its log is `worker-*-<pid>.out` on that node).
        device: The torch device the video ran on.
        model_error: The model could not be loaded there (the run stops, as a local run does).
        peak_memory_bytes: The worker process's peak resident memory so far (0: not measured).
    """

    row: SummaryRow
    host: str = ""
    node_id: str = ""
    pid: int = 0
    device: str = ""
    model_error: str = ""
    peak_memory_bytes: int = 0

    @property
    def where(self) -> str:
        """The node, worker and device for people: "host (node 1a2b3c4d, pid 123, cuda:3)", or
        "(pid 123, cpu)" on this machine."""
        if self.node_id:
            return f"{self.host} (node {self.node_id[:8]}, pid {self.pid}, {self.device})"
        return f"(pid {self.pid}, {self.device})" if self.pid else ""


@dataclass(frozen=True)
class WorkerDied:
    """A task that ended with its worker process (or node), not of its own error: it may run again.

    Attributes:
        cause: What happened, for people: "killed by SIGKILL (out of memory?)".
        what: Who died, for people.
    """

    cause: str
    what: str = "its worker died"


Settled = TaskOutcome | WorkerDied


class Engine(Protocol):
    """What runs the tasks: the running ones are known by their index in the plan."""

    def slots(self) -> int:
        """How many tasks may run at once now (at least 1)."""

    def submit(self, index: int, job: Job, position: int, count: int) -> None:
        """Start the video `job` (number `position` of `count`) in a free slot."""

    def wait(self, timeout: float) -> list[tuple[int, Settled]]:
        """The tasks that ended within `timeout` seconds (may be none), with their outcomes."""

    def cancel(self) -> None:
        """Stop every running task (each removes its partial outputs) and return when they stopped."""


#: Opens an engine for a run: (the run, the number of tasks to run) -> a context manager.
OpenEngine = Callable[[FolderRun, int], AbstractContextManager[Engine]]


_MODEL: dict[str, Any] = {}


def run_task(job: Job, config: Config, output_folder: Path, position: int, count: int, progress: Progress,
             load: Callable[[Config], PoseEstimator]) -> tuple[SummaryRow, str]:
    """One video in this worker process: `folder.run_job`, with the model kept for the next video.

    Args:
        config: The run's settings, with this worker's device and CPU threads.
        load: Builds the pose model from the settings (`workers.models.load_estimator`).

    Returns:
        The file's row, and the model's loading error ("" when it loaded).

    Raises:
        KeyboardInterrupt: After the file's partial outputs were removed.
    """
    import torch

    from workers.device import release_device_memory

    key = repr((config.model, str(config.weights), config.device, config.runtime,
                sorted(config.detection_settings().items()), getattr(load, "__qualname__", repr(load))))

    def model() -> PoseEstimator:
        if key not in _MODEL:
            _MODEL.clear()  # another model or GPU: drop the old one first
            release_device_memory()
            if config.cpu_threads is not None:
                torch.set_num_threads(config.cpu_threads)
            _MODEL[key] = load(config)
        return _MODEL[key]

    try:
        return run_job(job, config, model, progress, output_folder, position, count), ""
    except DancingSkeletonsError as error:  # from the model's (or the teacher's) loading only
        return SummaryRow(input=job.relative.as_posix(), status="failed", error=one_line(error)), one_line(error)
    finally:
        release_device_memory()  # the allocator's free blocks go back; the model stays


def run_folder_tasks(config: Config, input_folder: Path, output_folder: Path, open_engine: OpenEngine,
                     progress: Progress | None = None) -> list[SummaryRow]:
    """`folder.run_folder` with the videos as tasks of an engine: the same plan, skips, rows,
    summary and index.

    Returns:
        One row per input, in order (the rows of the summary).

    Raises:
        DancingSkeletonsError: From planning or opening the engine, or a model that cannot be
            loaded (the summary lists what was done).
        KeyboardInterrupt: After cancelling every task and writing the summary (the files that
            were running "interrupted", the rest "pending").
    """
    progress = progress or Progress()
    started = time.perf_counter()
    run = plan_folder_run(config, input_folder, output_folder)
    rows = [SummaryRow(input=job.relative.as_posix(), status="pending") for job in run.jobs]
    todo = []
    for index, job in enumerate(run.jobs):
        row = skipped_row(job, config, run.output_folder, index + 1, len(run.jobs))
        if row is None:
            todo.append(index)
        else:
            rows[index] = row
    run.write_summary(rows)
    if todo:
        with open_engine(run, len(todo)) as engine:
            run_tasks(engine, run, config, rows, todo, progress)
    run.write_index(rows)
    run.log_totals(rows, time.perf_counter() - started)
    return rows


def run_tasks(engine: Engine, run: FolderRun, config: Config, rows: list[SummaryRow], todo: Sequence[int],
              progress: Progress) -> None:
    """Run the jobs `todo` (indices into `run.jobs`) on `engine`, filling `rows` as they end.

    As many tasks are started as the engine has slots, none queued inside it: Ctrl-C then finds
    the started files running ("interrupted") and the rest never started ("pending").
    """
    waiting = deque(todo)
    running: set[int] = set()
    attempts: dict[int, int] = {}
    finished = len(run.jobs) - len(todo)
    progress.begin(len(todo))
    clock = time.perf_counter()
    try:
        while waiting or running:
            slots = engine.slots()
            while waiting and len(running) < slots:
                index = waiting.popleft()
                engine.submit(index, run.jobs[index], index + 1, len(run.jobs))
                running.add(index)
            for index, settled in engine.wait(1.0):
                running.discard(index)
                job = run.jobs[index]
                if isinstance(settled, WorkerDied):
                    remove_outputs(job.output)
                    tries = attempts.get(index, 0)
                    if tries < config.retries:  # once more, first in line
                        attempts[index] = tries + 1
                        log.warning("%s: %s (%s); starting it again (retry %d of %d)",
                                    job.relative.as_posix(), settled.what, settled.cause, tries + 1, config.retries)
                        waiting.appendleft(index)
                        continue
                    times = f", {tries + 1} times" if tries else ""
                    settled = TaskOutcome(SummaryRow(input=job.relative.as_posix(), status="failed",
                                                     error=f"{job.source}: {settled.what} ({settled.cause}){times}"))
                if settled.model_error:
                    where = f" on {settled.where}" if settled.where else ""
                    raise DancingSkeletonsError(f"the model cannot be loaded{where}: {settled.model_error}")
                rows[index] = settled.row
                finished += 1
                run.write_summary(rows)
                progress.end_file(settled.row)
                _log_finished(settled, finished, len(run.jobs), len(todo) - len(waiting) - len(running),
                              len(waiting) + len(running), time.perf_counter() - clock)
    except BaseException:
        if running:
            engine.cancel()
            for index in running:
                rows[index] = SummaryRow(input=run.jobs[index].relative.as_posix(), status="interrupted")
                remove_outputs(run.jobs[index].output)
        run.write_summary(rows)
        run.write_index(rows, build_pages=False)
        log.info("stopped; the summary is in %s", run.summary)
        raise
    finally:
        progress.close()


def _log_finished(outcome: TaskOutcome, finished: int, total: int, done_here: int, left: int, seconds: float) -> None:
    row = outcome.row
    where = f" {outcome.where}" if outcome.where.startswith("(") else f" on {outcome.where}" if outcome.where else ""
    eta = f"; ETA ~{format_duration(seconds / done_here * left)}" if done_here and left else ""
    if row.status == "failed":
        log.error("[%d/%d] FAILED %s%s: %s%s", finished, total, row.input, where, row.error, eta)
    else:
        log.info("[%d/%d] %s %s%s: %s%s", finished, total, row.status, row.input, where, describe_row(row), eta)


def first_line(error: BaseException) -> str:
    """An exception's type and the first line of its message, for one log line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def peak_memory_bytes() -> int:
    """This process's peak resident memory, in bytes (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

