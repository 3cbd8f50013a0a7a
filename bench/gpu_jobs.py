"""The GPU check's `--jobs` rows: several videos at once, through the command line as users run it.

For each N of `--jobs-rows` (1 and 4 by default) and model: a folder of `VIDEOS_PER_JOB` x N
links to a clip of `--jobs-frames` frames (600 by default, 20 s at 30 fps; made from the kit's
park clip like the check's other clips, at its first size) goes through `python -m pipeline
FOLDER OUT --jobs N` in a process of its own, with the settings of the check's other rows
(weights, batch, precision, input size, no pose cache, no end card). Around it: NVML
utilisation and memory in use of GPU 0, for the whole device (the workers are processes of
their own, which torch's counters in this process do not see), and the machine's CPU time
and the run's own (the CLI and every process it waited for).
From the CLI's log the check takes when each video ended, and from its summary.csv how long
each one took.

Two videos per job: each worker's first video carries its start-up (a spawned process, its
imports, the model's loading, a CUDA context, the first batches), so the second ones give the
rate with every worker warm ("steady"), which a folder of hundreds of videos approaches; a
third would make each row longer without a new kind of figure.

Why 600 frames: with the check's 128-frame clips a video took 6.3 s through the CLI with one
job on an H200 while its pipeline work was about 1.7 s (docs/gpu-checks/2026-12-04-h200-1-jobs.md):
each video's fixed costs (its start, the analysis, the reports, the review page's frame crops)
outweighed the work the jobs share the GPU for.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import torch

from bench.gpu_checks import Check
from bench.gpu_meters import CpuMeter, GpuSampler, nvml_reader
from bench.gpu_report import JobsMeasurement, figure, recorded
from bench.speed import make_clip, stand_in_settings
from reports.summary import SUMMARY_NAME, read_rows
from workers.models.keypoint_rcnn import DEFAULT_MIN_SIZE
from workers.models.yolo import DEFAULT_IMAGE_SIZE
from workers.probe import probe

ROOT = Path(__file__).resolve().parents[1]
#: Each model's own input size (keypointrcnn's shorter side, yolo's longer one).
DEFAULT_INPUT_SIZES = {"keypointrcnn": DEFAULT_MIN_SIZE, "yolo": DEFAULT_IMAGE_SIZE}
#: Videos in the folder per job (see the module's docstring).
VIDEOS_PER_JOB = 2
#: Each model's goal on an H200 at 1080p: times real time together, and the GPU's busy share (%).
GOALS: dict[str, tuple[float, float | None]] = {"keypointrcnn": (4.0, 85.0), "yolo": (10.0, None)}
#: Seconds one row's CLI may take before it is interrupted (then killed 30 s later): a row of
#: 600-frame clips is estimated at 30-100 s on an H200 (its workers' start-up, then each one's
#: two videos), and a stuck one must not take the check's whole time.
ROW_TIMEOUT_SECONDS = 240.0
#: A log line of the CLI that says a video ended ("[3/8] done clip-02.mp4 (pid 123, cuda): ...").
DONE_LINE = re.compile(r"\[\d+/\d+\] done ")


def cli_arguments(check: Check, model: str, folder: Path, output: Path, jobs: int, batch: int,
                  half: bool) -> list[str]:
    """The arguments after `python -m pipeline` for one row: the check's settings for its other rows."""
    weights = check.weights[model]
    if weights is None:
        raise FileNotFoundError("no YOLO weights in the kit or ../shared")
    arguments = [str(folder), str(output), "--jobs", str(jobs), "--model", model, "--weights", weights,
                 "--device", check.device, "--batch-size", str(batch), "--no-progress", "--no-save-poses",
                 "--end-card-seconds", "0"]
    if half:
        arguments.append("--half")
    # Like the check's other rows: the model's own input size unless --min-size says otherwise. The
    # CLI's automatic size looks at the clip first and raises it for small people, which untrained
    # weights find everywhere: on 2026-12-04 Keypoint R-CNN ran its --jobs rows at 19.5 f/s that
    # way against 52-55 in the codecs rows (docs/BENCHMARKS.md).
    arguments += ["--min-size", str(check.args.model_min_size or DEFAULT_INPUT_SIZES[model])]
    for name, value in stand_in_settings(weights).items():
        arguments += [f"--{name.replace('_', '-')}", str(value)]
    return arguments


def shown_command(arguments: list[str]) -> str:
    """`cli_arguments` for the report: the folders as FOLDER and OUT, the weights by file name."""
    shown = ["FOLDER", "OUT", *arguments[2:]]
    weights = shown.index("--weights") + 1
    shown[weights] = Path(shown[weights]).name
    return "python -m pipeline " + " ".join(shown)


def goal_words(model: str) -> str:
    """A model's goal (`GOALS`) in words."""
    if model not in GOALS:
        return "none"
    realtime, busy = GOALS[model]
    return f">= {realtime:g}x real time" + (f", GPU >= {busy:g}% busy" if busy else "")


def goal_met(row: JobsMeasurement, cuda: bool) -> bool | None:
    """Whether the row's steady figures meet its model's goal; None where it is not judged: not
    on CUDA at 1920x1080 (the goals are an H200's), no goal, or a figure missing."""
    if not cuda or row.clip != "1920x1080" or row.model not in GOALS or row.steady_realtime is None:
        return None
    realtime, busy = GOALS[row.model]
    if busy is None:
        return row.steady_realtime >= realtime
    if row.gpu_util_steady is None:
        return None
    return row.steady_realtime >= realtime and row.gpu_util_steady >= busy


def fill_rates(row: JobsMeasurement, summary: list[dict[str, str]]) -> None:
    """The row's frames, rates and video times from its run's wall time and summary.csv's rows.

    Args:
        summary: In plan order, the order the videos were started in: the first `row.jobs`
            are each worker's first.
    """
    assert row.wall_seconds and row.clip_fps
    row.frames = sum(int(r["frames"]) for r in summary)
    row.aggregate_fps = row.frames / row.wall_seconds
    row.realtime = row.aggregate_fps / row.clip_fps
    seconds = [float(r["processing_seconds"]) for r in summary]
    first, later = seconds[: row.jobs], seconds[row.jobs :]
    row.first_video_seconds = sum(first) / len(first) if first else None
    row.later_video_seconds = sum(later) / len(later) if later else None
    if row.later_video_seconds:
        row.steady_fps = row.jobs * (row.frames / len(summary)) / row.later_video_seconds
        row.steady_realtime = row.steady_fps / row.clip_fps


def steady_window(lines: list[tuple[float, str]]) -> tuple[float, float] | None:
    """From the first video's end to the last's, by the CLI's log lines with their times: every
    worker has loaded its model by then. None with fewer than two videos ended."""
    ended = [when for when, line in lines if DONE_LINE.search(line)]
    return (ended[0], ended[-1]) if len(ended) >= 2 else None


def link_copies(clip: Path, folder: Path, count: int) -> Path:
    """A folder of `count` links to `clip` (copies where links cannot be made), named in plan order."""
    folder.mkdir(parents=True)
    for index in range(count):
        target = folder / f"clip-{index:02d}{clip.suffix}"
        try:
            target.symlink_to(clip.resolve())
        except OSError:
            shutil.copyfile(clip, target)
    return folder


def run_cli(arguments: list[str], timeout: float) -> tuple[int, list[tuple[float, str]]]:
    """`python -m pipeline ARGUMENTS` to its end: its exit status and its log lines, each with the
    `time.perf_counter` at which it arrived.

    Past `timeout` seconds it is interrupted (SIGINT: it stops its workers and removes their
    partial outputs), and killed 30 s later.
    """
    process = subprocess.Popen([sys.executable, "-m", "pipeline", *arguments], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def stop() -> None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()

    timer = threading.Timer(timeout, stop)
    timer.start()
    lines: list[tuple[float, str]] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.perf_counter(), line.rstrip()))
        return process.wait(), lines
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()


def measure_jobs(check: Check, model: str, clip: Path, jobs: int, folder: Path) -> JobsMeasurement:
    """One row: `VIDEOS_PER_JOB` x `jobs` copies of `clip` through the CLI with `--jobs jobs`."""
    info = probe(clip)
    batch = check.args.jobs_batch
    half = check.args.precisions.split(",")[0].strip() == "half"
    row = JobsMeasurement(model=model, clip=f"{info.width}x{info.height}", jobs=jobs, videos=VIDEOS_PER_JOB * jobs,
                          batch=batch, half=half, clip_fps=float(info.fps), goal=goal_words(model))
    check.results["jobs"].append(row)
    with recorded(row, check.save):
        inputs, output = folder / f"jobs-{model}-{jobs}", folder / f"jobs-{model}-{jobs}-out"
        arguments = cli_arguments(check, model, link_copies(clip, inputs, row.videos), output, jobs, batch, half)
        row.command = shown_command(arguments)
        if check.cuda:
            torch.cuda.empty_cache()  # what this process's allocator holds would count as the jobs'
        read_memory = nvml_reader(quantity="memory")
        row.gpu_mib_before = read_memory() if read_memory else None
        started = time.perf_counter()
        # Without NVML read_memory is None, and so is the sampler's own reader: nothing sampled.
        with GpuSampler() as busy, GpuSampler(read=read_memory) as memory, CpuMeter() as cpu:
            code, lines = run_cli(arguments, ROW_TIMEOUT_SECONDS)
        row.wall_seconds = time.perf_counter() - started
        row.cpu = cpu.report
        if code != 0:
            late = f" (stopped after {ROW_TIMEOUT_SECONDS:g} s)" if row.wall_seconds >= ROW_TIMEOUT_SECONDS else ""
            raise RuntimeError(f"exit {code}{late}: " + " / ".join(line for _, line in lines[-3:]))
        summary = read_rows(output / SUMMARY_NAME)
        shutil.rmtree(output)  # 2N annotated 1080p videos with their reports
        if [r["status"] for r in summary] != ["done"] * row.videos:
            raise RuntimeError(f"not every video done: {[r['status'] for r in summary]}")
        fill_rates(row, summary)
        row.gpu_util_mean, row.gpu_util_p10 = busy.summary()
        window = steady_window(lines)
        if window is not None:
            row.steady_seconds = window[1] - window[0]
            row.gpu_util_steady = busy.summary(*window)[0]
        row.peak_gpu_mib = memory.peak()
        row.goal_met = goal_met(row, check.cuda)
    print(f"{time.monotonic() - check.started:6.0f} s  --jobs {jobs}: {model} {row.clip}, {row.videos} videos: "
          f"{figure(row.aggregate_fps)} f/s together ({figure(row.steady_fps)} steady), "
          f"GPU busy {figure(row.gpu_util_steady, 0)}%{', ' + row.error if row.error else ''}", flush=True)
    return row


def jobs_rows(check: Check, models: list[str], source: Path | None, size: tuple[int, int], folder: Path) -> None:
    """Every `--jobs-rows` N for every model, model by model, on a clip of `--jobs-frames` frames
    at `size` made from `source` (see `bench.speed.make_clip`)."""
    counts = [int(n) for n in check.args.jobs_rows.split(",") if n.strip()]
    for model in models:
        clip = check.attempt(f"--jobs {model} {size[0]}x{size[1]} clip", partial(
            make_clip, source, check.args.jobs_frames, folder / f"jobs-clip-{model}-{size[1]}", size))
        if clip is None:
            continue
        for jobs in counts:
            check.attempt(f"--jobs {jobs} {model}", partial(measure_jobs, check, model, clip, jobs, folder))
