"""Folder runs on a Ray cluster (`--cluster ray`): one Ray task per video, a folder run's semantics.

The driver (this process) plans the run and skips what is done exactly as a local folder run
does (`pipeline.folder`), checks from every node that takes tasks that the folders are the same
shared storage, and then keeps the cluster busy with one task per video, rewriting the summary
as each result arrives: a driver killed midway leaves a valid summary of what finished, and a
rerun skips that. Each task runs `folder.run_job` in a Ray worker, the code of a local run, with
the model loaded in that worker. Ray is imported here only, and only when a run asks for it.

Faults. A task whose worker process or node died (Ray's WorkerCrashedError, NodeDiedError, ...)
is submitted again by the driver, at most `config.retries` times, after removing its partial
outputs; Ray's own task retries are off so that every retry is logged and bounded in one place.
A bad video is not a fault: its task returns a failed row, as in a local run. Outputs are written
under hidden `.partial` names and renamed when complete, so a dead task leaves nothing under a
final name.

GPU memory and worker reuse. By default Ray runs a task that asks for GPUs in a fresh worker
process (`max_calls=1`, ray-project/ray#29624), so that whatever the process holds on the GPU
ends with the task. That costs a process start, the imports and a model load for every video:
5.5 s here (docs/BENCHMARKS.md, "Ray"), about a quarter of what an H200 spends on a one-minute
clip. So a worker runs up to `WORKER_VIDEOS` videos with its model loaded once, and what it
keeps on the GPU stays bounded: one model, on the GPU its current video was given; the caching
allocator's free blocks are returned after every video; and the process, with its CUDA
context, ends after `WORKER_VIDEOS` videos. One trap: Ray assigns GPUs through
CUDA_VISIBLE_DEVICES per task, but CUDA reads it once per process, so a reused worker would
stay on its first GPU whatever Ray assigned next. Workers therefore see every GPU
(RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES) and each video runs on `cuda:<the id Ray
assigned>` (`task_device`); a worker moved to another GPU drops its model on the old one.

Cancellation (Ctrl-C, SIGTERM). `ray.cancel` without force raises KeyboardInterrupt in the
task's main thread through `_thread.interrupt_main`, which Python acts on between bytecodes
only: a main thread blocked in C, e.g. in `Popen.wait()` on an ffmpeg process, would not see it
until the call returns. A run's main thread never blocks for long (it polls its stages with
short timeouts, `pipeline.stages`), so the interrupt lands within a fraction of a second; the run
then stops its stages, kills its ffmpeg processes and removes its partial outputs, as Ctrl-C does
locally. A task still running `CANCEL_GRACE_SECONDS` later is cancelled with force: Ray ends the
worker, which kills its child processes (ffmpeg) as it exits (Ray's
`RAY_kill_child_processes_on_worker_exit`, on by default; README: also a worker that crashed).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import Config
from pipeline.folder import FolderRun, Job, this_node
from pipeline.progress import Progress
from pipeline.tasks import Settled, TaskOutcome, WorkerDied, first_line, peak_memory_bytes, run_folder_tasks, run_task
from reports.summary import SummaryRow
from workers.errors import DancingSkeletonsError, UsageError
from workers.runtimes import is_exported

log = logging.getLogger("dancingskeletons")

#: The project's checkout; tasks import the code from this path on every node.
ROOT = Path(__file__).resolve().parents[1]
SETUP_HINT = "install it with `make setup-ray` (pip install -r requirements-ray.txt)"
#: Seconds a cancelled task gets to stop by itself before it is cancelled with force.
CANCEL_GRACE_SECONDS = 20.0
#: Seconds between two counts of what the cluster's nodes run at once (nodes come and go).
SLOTS_RECOUNT_SECONDS = 30.0
#: Seconds every node gets to answer the shared-storage check.
CHECK_TIMEOUT_SECONDS = 120.0
#: Videos one worker process runs (its model loaded once) before Ray starts a new one.
WORKER_VIDEOS = 20
#: Environment passed on to the tasks where the driver has it set.
PASSED_ENVIRONMENT = ("TORCH_HOME", "YOLO_OFFLINE", "YOLO_CONFIG_DIR")
#: The project's code and data files, whose digest every node must share.
CODE_FOLDERS = ("config", "pipeline", "reports", "workers")
CODE_SUFFIXES = (".py", ".json", ".j2")


@dataclass(frozen=True)
class TaskResources:
    """What each video's task asks Ray for.

    Attributes:
        gpus: GPUs (fractions share one GPU).
        cpus: CPUs.
    """

    gpus: float
    cpus: float

    def slots(self, nodes: Iterable[dict[str, float]]) -> int:
        """How many videos the nodes (their total resources) run at once."""
        total = 0
        for node in nodes:
            fits = [math.floor(node.get(name, 0.0) / amount + 1e-9)
                    for name, amount in (("GPU", self.gpus), ("CPU", self.cpus)) if amount > 0]
            total += min(fits) if fits else 1_000_000
        return total

    def describe(self) -> str:
        return f"{self.gpus:g} GPU{'' if self.gpus == 1 else 's'} and {self.cpus:g} CPU{'' if self.cpus == 1 else 's'}"


def task_resources(config: Config, cluster_gpus: float) -> TaskResources:
    """The resources of a video's task: `--gpus-per-video` or, by default, one GPU when the cluster
    has GPUs and the device is not the CPU."""
    gpus = config.gpus_per_video
    if gpus is None:
        on_cpu = config.device == "cpu" or is_exported(config.runtime)
        gpus = 1.0 if cluster_gpus > 0 and not on_cpu else 0.0
    return TaskResources(gpus=gpus, cpus=config.cpus_per_video)


def task_device(device: str, gpu_ids: Sequence[int | str], cuda_available: bool) -> str:
    """The device of one video's task: the GPU Ray assigned to it, by its physical id; the CPU
    for a task that was assigned none, even where the node has GPUs (workers see every GPU, and
    using one unasked would oversubscribe it).

    Args:
        device: The run's device: "auto", "cpu" or "cuda" ("cuda:N" pins a GPU: not on a cluster).
        gpu_ids: `ray.get_gpu_ids()` in the task: the GPUs Ray assigned (empty when none).
        cuda_available: Whether CUDA works in this worker.
    """
    if device == "cpu" or not gpu_ids or (device == "auto" and not cuda_available):
        return "cpu" if device == "auto" else device
    return f"cuda:{gpu_ids[0]}"


def code_digest(root: Path = ROOT) -> str:
    """A digest of the project's code (names and contents), the same on nodes that run the same code."""
    digest = hashlib.sha256()
    for folder in CODE_FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            if path.suffix in CODE_SUFFIXES and path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class StorageCheck:
    """What every node must see as the driver does: the check runs on each node (`problems`).

    The driver writes `marker` with `token` into the output folder; a node that reads the same
    token there sees the same folder, and the reply it writes beside it must appear on the
    driver's side, which shows that the node's writes land where the driver reads.

    Attributes:
        input_folder: The folder of the inputs.
        sample: An input's path relative to `input_folder`, and its size in bytes.
        output_folder: The folder of the outputs.
        marker: The check file's name in `output_folder`.
        token: The check file's content.
        files: Other files every node must see (a weights file, the teacher's video).
        code: `code_digest()` of the driver's checkout.
    """

    input_folder: str
    sample: tuple[str, int]
    output_folder: str
    marker: str
    token: str
    files: tuple[str, ...]
    code: str

    def reply_name(self, node_id: str) -> str:
        return f"{self.marker}.{node_id}"

    def problems(self, node_id: str) -> list[str]:
        """What this machine does not see as the driver does (empty when all is well); writes
        the reply file into the output folder."""
        found = []
        inputs, outputs = Path(self.input_folder), Path(self.output_folder)
        sample = inputs / self.sample[0]
        if not inputs.is_dir():
            found.append(f"cannot see the input folder {inputs}")
        else:
            try:
                size = sample.stat().st_size
            except OSError as error:
                found.append(f"cannot read the input {sample} ({error.strerror or error})")
            else:
                if size != self.sample[1]:
                    found.append(f"sees a different input folder at {inputs}: {sample} has {size} bytes, not "
                                 f"{self.sample[1]}")
        marker = outputs / self.marker
        try:
            seen = marker.read_text(encoding="utf-8")
        except OSError:
            seen = None
        if not outputs.is_dir():
            found.append(f"cannot see the output folder {outputs}")
        elif seen != self.token:
            found.append(f"sees a different output folder at {outputs} (the driver's check file {marker.name} "
                         "is not there)")
        else:
            try:
                (outputs / self.reply_name(node_id)).write_text(self.token, encoding="utf-8")
            except OSError as error:
                found.append(f"cannot write to the output folder {outputs} ({error.strerror or error})")
        for name in self.files:
            if not Path(name).is_file():
                found.append(f"cannot see {name}")
        if code_digest() != self.code:
            found.append(f"runs other code from {ROOT} than the driver (digest {code_digest()}, driver {self.code})")
        return found


def here(row: SummaryRow, device: str, model_error: str = "") -> TaskOutcome:
    """`row` as this worker's outcome."""
    import ray

    return TaskOutcome(row, this_node(), ray.get_runtime_context().get_node_id(), os.getpid(), device,
                       model_error, peak_memory_bytes())


def video_task(job: Job, config: Config, output_folder: Path, position: int, count: int) -> TaskOutcome:
    """A video's Ray task: `tasks.run_task` in this worker, on the GPU Ray assigned, with the
    model kept for the worker's next video (see the module's docstring)."""
    import ray
    import torch

    from workers.models import load_estimator

    device = task_device(config.device, ray.get_gpu_ids(), torch.cuda.is_available())
    config = config.replace(device=device, cpu_threads=config.cpu_threads or max(1, int(config.cpus_per_video)))
    row, model_error = run_task(job, config, output_folder, position, count, Progress(), load_estimator)
    return here(row, device, model_error)


def check_task(check: StorageCheck) -> tuple[str, list[str]]:
    """The shared-storage check on one node: the node for people and what it does not see."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    return f"{this_node()} (node {node_id[:8]})", check.problems(node_id)


def import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise UsageError(f"--cluster ray needs Ray, which is not installed ({error}); {SETUP_HINT}") from None
    return ray


def runtime_env() -> dict[str, Any]:
    """The tasks' environment: the project on the path, and the driver's cache locations."""
    variables = {"PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
                 # Every GPU visible to every worker, so that a reused worker can follow Ray's assignment.
                 "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}
    variables.update({name: os.environ[name] for name in PASSED_ENVIRONMENT if os.environ.get(name)})
    if "TORCH_HOME" not in variables:  # where torchvision caches weights: the driver's, on every node
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        variables["TORCH_HOME"] = os.path.join(cache, "torch")
    return {"env_vars": variables}


def connect(ray: Any) -> str:
    """Connect to the cluster that RAY_ADDRESS names, else the one on this machine; return its address.

    Raises:
        DancingSkeletonsError: No cluster could be reached.
    """
    address = os.environ.get("RAY_ADDRESS") or "auto"
    if ray.is_initialized():
        return str(ray.get_runtime_context().gcs_address)
    reachable(address)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if in_main else None
    try:
        context = ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as error:
        raise DancingSkeletonsError(
            f"cannot connect to the Ray cluster at {address} ({first_line(error)}); start one with `ray start "
            "--head` or set RAY_ADDRESS; a cluster with token authentication also needs RAY_AUTH_MODE=token and "
            "its token (RAY_AUTH_TOKEN_PATH) here (README, \"Several machines\")"
        ) from None
    finally:
        if in_main:  # ray.init replaces the SIGTERM handler with one that exits; keep ours (Ctrl-C's cleanup)
            signal.signal(signal.SIGTERM, previous)
    return str(context.address_info.get("gcs_address", address))


def reachable(address: str, seconds: float = 10.0) -> None:
    """Fail at once where a "host:port" address does not answer (Ray itself retries for minutes).

    Raises:
        DancingSkeletonsError: Nothing listens there.
    """
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=seconds).close()
    except OSError as error:
        raise DancingSkeletonsError(
            f"cannot connect to the Ray cluster at {address} ({error.strerror or error}); start it with "
            "`ray start --head` there, or set RAY_ADDRESS to the head's host:port (README, \"Several machines\")"
        ) from None


def working_nodes(ray: Any) -> list[dict[str, Any]]:
    """The living nodes that can take a task (CPUs or GPUs), as `ray.nodes()` lists them."""
    return [node for node in ray.nodes()
            if node.get("Alive") and (node["Resources"].get("CPU", 0) > 0 or node["Resources"].get("GPU", 0) > 0)]


def shared_files(config: Config) -> tuple[str, ...]:
    """The files besides the folders that every node reads: a weights file, the teacher's video
    (or pose cache) of `--reference`; absolute paths."""
    files: list[str] = [] if config.weights in (None, "random") else [str(Path(str(config.weights)).resolve())]
    if config.reference is not None:
        files.append(str(Path(config.reference).resolve()))
    return tuple(files)


def check_storage(ray: Any, run: FolderRun, config: Config, nodes: Sequence[dict[str, Any]]) -> None:
    """Check from every node in `nodes` that it sees the input and output folders (and a weights
    file, and the teacher's video of `--reference`) as this driver does.

    Raises:
        DancingSkeletonsError: One line naming each node that does not, and what it does not see.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    sample = run.jobs[0].source
    files = shared_files(config)
    check = StorageCheck(
        input_folder=str(run.input_folder.resolve()), sample=(str(sample.relative_to(run.input_folder)),
                                                              sample.stat().st_size),
        output_folder=str(run.output_folder.resolve()), marker=f".dancingskeletons-check-{uuid.uuid4().hex[:12]}",
        token=uuid.uuid4().hex, files=files, code=code_digest(),
    )
    marker = run.output_folder / check.marker
    marker.write_text(check.token, encoding="utf-8")
    remote = ray.remote(check_task)
    refs = {
        remote.options(num_cpus=0, max_retries=0, runtime_env=runtime_env(), name="dancingskeletons storage check",
                       scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(check):
        node for node in nodes
    }
    problems = []
    try:
        ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=CHECK_TIMEOUT_SECONDS)
        for ref in late:
            ray.cancel(ref, force=True)
            problems.append(f"node {_describe_node(refs[ref])} did not answer the storage check in "
                            f"{CHECK_TIMEOUT_SECONDS:.0f} s")
        for ref in ready:
            node = refs[ref]
            try:
                label, seen = ray.get(ref)
            except ray.exceptions.RayError as error:
                problems.append(f"node {_describe_node(node)} cannot run the project from {ROOT} (is the checkout "
                                f"and its venv shared at the same path?): {first_line(error)}")
                continue
            reply = run.output_folder / check.reply_name(node["NodeID"])
            if not seen and not reply.is_file():
                seen = [f"writes to the output folder {check.output_folder} do not reach the driver's"]
            problems.extend(f"node {label} {problem}" for problem in seen)
    finally:
        marker.unlink(missing_ok=True)
        for node in nodes:
            (run.output_folder / check.reply_name(node["NodeID"])).unlink(missing_ok=True)
    if problems:
        raise DancingSkeletonsError(
            "; ".join(problems) + ". Inputs, outputs and weights must be at the same paths on every node (a shared "
            "mount); see README, \"Several machines\""
        )


def _describe_node(node: dict[str, Any]) -> str:
    return f"{node.get('NodeManagerHostname') or node.get('NodeManagerAddress')} (node {node['NodeID'][:8]})"


def _system_failure(ray: Any, error: BaseException) -> bool:
    """A task that died with its worker or node, not of its own error: it may be retried."""
    exceptions = ray.exceptions
    return isinstance(error, exceptions.RayError) and not isinstance(
        error, (exceptions.RayTaskError, exceptions.TaskCancelledError, exceptions.RuntimeEnvSetupError))


def run_folder_on_ray(config: Config, input_folder: Path, output_folder: Path,
                      progress: Progress | None = None) -> list[SummaryRow]:
    """`folder.run_folder` on a Ray cluster: the same plan, skips, rows, summary and index
    (`tasks.run_folder_tasks`).

    Returns:
        One row per input, in order (the rows of the summary).

    Raises:
        UsageError: Ray is not installed.
        DancingSkeletonsError: No cluster, a node that does not see the folders, no node that fits a video's
            resources, or a model that cannot be loaded (the summary lists what was done).
        KeyboardInterrupt: After cancelling every task and writing the summary (the files that
            were running "interrupted", the rest "pending").
    """
    ray = import_ray()

    @contextmanager
    def open_engine(run: FolderRun, tasks: int) -> Iterator[RayEngine]:
        connected = not ray.is_initialized()
        address = connect(ray)
        try:
            yield RayEngine(ray, address, run, config)
        finally:
            if connected:
                ray.shutdown()

    return run_folder_tasks(config, input_folder, output_folder, open_engine, progress)


class RayEngine:
    """Videos as Ray tasks (`tasks.Engine`): as many at once as the cluster's nodes fit, recounted
    as nodes come and go.

    Raises (on creation):
        DancingSkeletonsError: No node fits a video's resources, or a node does not see the folders.
    """

    def __init__(self, ray: Any, address: str, run: FolderRun, config: Config) -> None:
        self.ray = ray
        nodes = working_nodes(ray)
        totals = ray.cluster_resources()
        self.resources = task_resources(config, totals.get("GPU", 0.0))
        self._slots = self.resources.slots(node["Resources"] for node in nodes)
        log.info("Ray cluster at %s: %s, %g GPUs, %g CPUs; each video asks for %s, so %s at once",
                 address, "1 node takes tasks" if len(nodes) == 1 else f"{len(nodes)} nodes take tasks",
                 totals.get("GPU", 0.0), totals.get("CPU", 0.0), self.resources.describe(),
                 self._slots if self._slots < 1_000_000 else "all")
        if self._slots == 0:
            raise DancingSkeletonsError(
                f"no node of the Ray cluster at {address} has {self.resources.describe()} for one video; lower "
                "--gpus-per-video or --cpus-per-video, or add nodes"
            )
        check_storage(ray, run, config, nodes)
        self.run, self.config = run, config
        self.remote = ray.remote(max_calls=WORKER_VIDEOS)(video_task)
        self.options = {"num_gpus": self.resources.gpus, "num_cpus": self.resources.cpus, "max_retries": 0,
                        "runtime_env": runtime_env()}
        self.running: dict[Any, int] = {}
        self._counted = time.monotonic()

    def slots(self) -> int:
        if time.monotonic() - self._counted > SLOTS_RECOUNT_SECONDS:  # nodes come and go
            self._slots = max(1, self.resources.slots(node["Resources"] for node in working_nodes(self.ray)))
            self._counted = time.monotonic()
        return self._slots

    def submit(self, index: int, job: Job, position: int, count: int) -> None:
        ref = self.remote.options(name=f"dancingskeletons {job.relative.as_posix()}", **self.options).remote(
            job, self.config, self.run.output_folder, position, count)
        self.running[ref] = index

    def wait(self, timeout: float) -> list[tuple[int, Settled]]:
        if not self.running:
            return []
        ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
        return [self._settled(ref) for ref in ready]

    def _settled(self, ref: Any) -> tuple[int, Settled]:
        index = self.running.pop(ref)
        job = self.run.jobs[index]
        try:
            return index, self.ray.get(ref)
        except self.ray.exceptions.RayError as error:
            if _system_failure(self.ray, error):
                return index, WorkerDied(first_line(error), what="its worker or node died")
            return index, TaskOutcome(SummaryRow(input=job.relative.as_posix(), status="failed",
                                                 error=f"{job.source}: its task failed ({first_line(error)})"))

    def cancel(self) -> None:
        cancel(self.ray, list(self.running))
        self.running.clear()


def cancel(ray: Any, refs: Sequence[Any]) -> None:
    """Cancel running tasks: KeyboardInterrupt in each (its run cleans up), force after a grace period.

    A second Ctrl-C cuts the grace period short.
    """
    for ref in refs:
        ray.cancel(ref)
    pending = list(refs)
    deadline = time.monotonic() + CANCEL_GRACE_SECONDS
    try:
        while pending and time.monotonic() < deadline:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
    except KeyboardInterrupt:
        pass
    if pending:
        log.warning("%d tasks did not stop in %.0f s; ending their workers", len(pending), CANCEL_GRACE_SECONDS)
        for ref in pending:
            ray.cancel(ref, force=True)
        ray.wait(pending, num_returns=len(pending), timeout=10.0)
