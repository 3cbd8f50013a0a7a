"""Several videos of a folder at once (`--jobs`): the plan, the worker processes, their faults,
and the folder run's promises kept (summary, skips, exit codes, Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from config import Config
from pipeline.cli import get_args_parser, main
from pipeline.jobs import (
    CORES_PER_VIDEO,
    MAX_AUTO_JOBS_PER_GPU,
    VIDEO_GPU_BYTES,
    VIDEO_PEAK_BYTES,
    Machine,
    plan_workers,
    run_folder_in_jobs,
)
from pipeline.progress import BarProgress, LogProgress
from tests import job_models
from tests.conftest import validate_report
from tests.helpers import child_processes, ffmpeg_writing_to, make_video, partial_files, read_summary
from workers.errors import DancingSkeletonsError

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
REAL_MODEL_ARGS = ["--weights", "random", "--device", "cpu", "--min-size", "64", "--person-threshold", "0",
                   "--max-persons", "2", "-b", "2"]
#: What may differ between runs of the same files.
TIMING_COLUMNS = ("processing_seconds", "node")


def _main(*argv):
    return main(get_args_parser().parse_args([str(a) for a in argv]))


def comparable(folder: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in read_summary(folder)]


# The plan: how many at once, threads, devices.


@pytest.mark.parametrize("requested, files, machine, device, jobs, threads", [
    (2, 10, Machine(2, 24 * GIB), "cpu", 2, 1),
    (8, 3, Machine(16, 64 * GIB), "cpu", 3, 5),            # more jobs than files: the files
    (1, 5, Machine(16, 64 * GIB), "cpu", 1, 16),
    ("auto", 10, Machine(2, 24 * GIB), "cpu", 1, 2),       # this machine: one video keeps two cores busy
    ("auto", 10, Machine(16, 64 * GIB), "cpu", 8, 2),
    ("auto", 10, Machine(32, 12 * GIB), "cpu", 2, 16),     # the memory decides
    ("auto", 2, Machine(32, 64 * GIB), "cpu", 2, 16),      # the files decide
    ("auto", 50, Machine(16, 128 * GIB, (139 * GIB,)), "cuda", MAX_AUTO_JOBS_PER_GPU, 4),
    ("auto", 50, Machine(16, 128 * GIB, (4 * GIB,)), "cuda", 1, 16),   # a GPU with little free memory
    ("auto", 50, Machine(64, 256 * GIB, (80 * GIB, 80 * GIB)), "cuda", 2 * MAX_AUTO_JOBS_PER_GPU, 8),
    ("auto", 50, Machine(64, 256 * GIB, (80 * GIB, 80 * GIB)), "cuda:1", MAX_AUTO_JOBS_PER_GPU, 16),
])
def test_the_plan_takes_the_fewest_jobs_that_fit(requested, files, machine, device, jobs, threads):
    plan = plan_workers(requested, files, machine, "keypointrcnn", device)
    assert (plan.jobs, plan.threads) == (jobs, threads)
    assert len(plan.devices) == jobs


def test_auto_says_why_it_chose():
    plan = plan_workers("auto", 10, Machine(32, 6 * GIB), "yolo", "cpu")
    peak = VIDEO_PEAK_BYTES["yolo"] / GIB
    assert plan.reason == (f"--jobs auto: 32 cores / {CORES_PER_VIDEO} a video = 16; 6.0 GiB available x 0.75 / "
                           f"{peak:.1f} GiB a video = {int(6 * GIB * 0.75 // VIDEO_PEAK_BYTES['yolo'])}; 10 files")
    gpu = plan_workers("auto", 10, Machine(16, 64 * GIB, (10 * GIB,)), "keypointrcnn", "cuda")
    assert "GPU memory free 10.0 GiB" in gpu.reason and f"{VIDEO_GPU_BYTES['keypointrcnn'] / GIB:.1f} GiB" in gpu.reason
    assert plan_workers(8, 3, Machine(16, 64 * GIB), "yolo", "cpu").reason == "--jobs 8, 3 files"


def test_several_gpus_are_shared_out_by_slot():
    plan = plan_workers(5, 10, Machine(16, 64 * GIB, (GIB, GIB)), "yolo", "cuda")
    assert plan.devices == ("cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0")
    assert plan_workers(3, 10, Machine(16, 64 * GIB, (GIB, GIB)), "yolo", "cuda:1").devices == ("cuda:1",) * 3
    assert plan_workers(2, 10, Machine(16, 64 * GIB), "yolo", "cpu").devices == ("cpu", "cpu")


@pytest.mark.parametrize("value", [0, -1, 257, "many", 2.5, True, ""])
def test_jobs_out_of_range_are_refused_with_the_range(value):
    with pytest.raises(ValueError, match=r"jobs must be auto or a number of videos at once 1\.\.256"):
        Config(input="a", output="b", jobs=value)


def test_jobs_accepts_auto_and_digits():
    assert Config(input="a", output="b", jobs="3").jobs == 3
    assert Config(input="a", output="b", jobs="auto").jobs == "auto"
    with pytest.raises(ValueError, match="with a cluster, Ray decides"):
        Config(input="a", output="b", jobs=2, cluster="ray")


def test_jobs_with_one_file_is_a_usage_error(tmp_path, capsys):
    video = make_video(tmp_path / "a.mp4", seconds=0.2, size="96x64")
    assert _main(video, tmp_path / "out.mp4", "--jobs", "2", *REAL_MODEL_ARGS, "--no-progress") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1] == ("python -m pipeline: error: --jobs 2 runs several videos of a folder at once; INPUT is a "
                         "single file (one video runs as one job)")
    assert not (tmp_path / "out.mp4").exists()
    assert _main(video, tmp_path / "out.mp4", "--jobs", "0", *REAL_MODEL_ARGS) == 2
    assert "jobs must be auto or a number of videos at once 1..256, got 0" in capsys.readouterr().err


def test_a_jobs_share_of_the_cores_reaches_ffmpeg_and_torch(tmp_path):
    import torch

    from workers.decode import VideoReader
    from workers.encode import VideoWriter
    from workers.models import get_model
    from workers.probe import probe

    info = probe(make_video(tmp_path / "a.mp4", seconds=0.2, size="96x64"))
    reader = VideoReader(info, threads=1)
    reader.start()
    try:
        assert "-threads 1 " in " ".join(reader._process.args)
    finally:
        reader.close()
    with VideoWriter(tmp_path / "b.mp4", 96, 64, info.fps, threads=3) as writer:
        assert "-c:v libx264 -preset veryfast -crf 20 -threads 3" in " ".join(writer._process.args)
        writer.abort()
    threads = torch.get_num_threads()
    try:
        get_model("keypointrcnn").load(Config(input="a", output="b", weights="random", device="cpu",
                                              model_min_size=64, cpu_threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


# The progress display of several jobs.


def test_log_lines_of_several_jobs_each_name_their_file(caplog):
    now = [0.0]
    progress = LogProgress(interval=5, clock=lambda: now[0])
    progress.begin(4)
    progress.start_job(1, 1, "a.mp4", 100)
    progress.start_job(2, 3, "sub/c.mp4", None)
    with caplog.at_level("INFO", logger="dancingskeletons"):
        for _ in range(5):
            now[0] += 1
            progress.advance_job(1, 10)
            progress.advance_job(2, 4)
        progress.end_job(1)
        progress.advance_job(1, 10)  # ended: nothing
    assert [record.getMessage() for record in caplog.records] == [
        "[1/4] a.mp4: 50/100 frames (50%), 10.0 frames/s, file ETA 5s",
        "[3/4] sub/c.mp4: 20 frames, 4.0 frames/s",
    ]


def test_bars_of_several_jobs_sit_below_the_files_bar():
    bars = BarProgress()
    bars.begin(5)
    bars.start_job(1, 1, "a.mp4", 10)
    bars.start_job(2, 2, "b.mp4", 20)
    assert {key: abs(bar.pos) for key, bar in bars._frames.items()} == {1: 1, 2: 2}  # tqdm keeps -position
    bars.advance_job(2, 5)
    assert bars._frames[2].n == 5
    bars.end_job(1)
    assert list(bars._frames) == [2]
    bars.close()
    assert bars._frames == {} and bars._files is None


# Whole runs in worker processes.


@pytest.fixture
def clips(tmp_path):
    """in/: three short videos (one with sound, one in a subfolder) and a text file named .mp4."""
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    make_video(source / "a.mp4", seconds=1, fps="10", size="96x64", audio=True)
    make_video(source / "sub" / "b.mov", seconds=0.6, fps="10", size="96x64")
    make_video(source / "c.mp4", seconds=0.8, fps="10", size="96x64")
    (source / "notes.mp4").write_text("not a video")
    return source


@pytest.mark.slow
def test_two_jobs_give_what_one_gives(tmp_path, clips):
    one, two = tmp_path / "one", tmp_path / "two"
    assert _main(clips, one, *REAL_MODEL_ARGS, "--no-progress") == 1  # notes.mp4 fails
    log_file = tmp_path / "night.log"
    assert _main(clips, two, *REAL_MODEL_ARGS, "--jobs", "2", "--log-interval", "0", "--log-file", log_file) == 1
    # Equal but for the score's last digits: one thread per job instead of two changes the order
    # of the model's sums (1.956340 against 1.956342).
    assert [{**row, "score": None} for row in comparable(two)] == [{**row, "score": None} for row in comparable(one)]
    for ours, theirs in zip(comparable(two), comparable(one)):
        assert (ours["score"] == theirs["score"] == "") or float(ours["score"]) == pytest.approx(float(theirs["score"]),
                                                                                                abs=1e-4)
    assert [row["status"] for row in read_summary(two)] == ["done", "done", "failed", "done"]
    for name in ("a", "c", "sub/b"):
        ours, theirs = (json.loads((folder / f"{name}.json").read_text()) for folder in (two, one))
        validate_report(ours)  # written in a worker process, out of the schema fixture's reach
        assert ours["settings"]["cpu_threads"] == 1 and theirs["settings"]["cpu_threads"] is None
        assert ours["frames"] == theirs["frames"]
        assert ours["score"]["mean"] == pytest.approx(theirs["score"]["mean"], abs=1e-3)
        assert (two / f"{name}.mp4").is_file()
    assert (two / "index.html").is_file()
    assert partial_files(two) == []
    lines = log_file.read_text().splitlines()
    assert any("2 at once, 1 CPU threads each, on cpu (--jobs 2)" in line for line in lines)
    progress = [line for line in lines if " frames/s" in line]
    assert progress and all(any(name in line for name in ("a.mp4", "c.mp4", "sub/b.mov")) for line in progress)
    finished = [line for line in lines if "] done " in line or "] FAILED " in line]
    assert len(finished) == 4, "one closing line per file, the job's own left out"

    # Done with the same settings: skipped, by one job or two.
    assert _main(clips, two, *REAL_MODEL_ARGS, "--jobs", "2", "--no-progress") == 1
    assert [row["status"] for row in read_summary(two)] == ["skipped", "skipped", "failed", "skipped"]


def test_a_worker_killed_once_is_retried_in_a_fresh_one(tmp_path, clips):
    make_video(clips / "poison.mp4", seconds=0.5, fps="10", size=f"{job_models.POISON_WIDTH}x64")
    out = tmp_path / "out"
    config = Config(input=clips, output=out, jobs=2, progress=False, model_min_size=64)
    rows = run_folder_in_jobs(config, clips, out, load=job_models.load_dying_once)
    assert [(row.input, row.status) for row in rows] == [
        ("a.mp4", "done"), ("c.mp4", "done"), ("notes.mp4", "failed"), ("poison.mp4", "done"), ("sub/b.mov", "done"),
    ]
    assert (out / ".died-once").exists()
    assert partial_files(out) == []


def test_a_worker_that_dies_every_time_fails_its_video_with_the_cause(tmp_path, clips, caplog):
    make_video(clips / "poison.mp4", seconds=0.5, fps="10", size=f"{job_models.POISON_WIDTH}x64")
    out = tmp_path / "out"
    config = Config(input=clips, output=out, jobs=2, progress=False, model_min_size=64)
    with caplog.at_level("INFO", logger="dancingskeletons"):
        rows = run_folder_in_jobs(config, clips, out, load=job_models.load_always_dying)
    statuses = {row.input: row.status for row in rows}
    assert statuses == {"a.mp4": "done", "c.mp4": "done", "notes.mp4": "failed", "poison.mp4": "failed",
                        "sub/b.mov": "done"}
    poison = next(row for row in rows if row.input == "poison.mp4")
    assert poison.error == f"{clips / 'poison.mp4'}: its worker died (killed by SIGKILL (out of memory?)), 2 times"
    assert "poison.mp4: its worker died (killed by SIGKILL (out of memory?)); starting it again (retry 1 of 1)" \
        in caplog.text
    assert not (out / "poison.mp4").exists() and partial_files(out) == []
    assert ffmpeg_writing_to(out) == [], "the dead worker's encoder was killed with it"


def test_a_model_that_cannot_be_loaded_stops_the_run(tmp_path, clips):
    out = tmp_path / "out"
    config = Config(input=clips, output=out, jobs=2, progress=False, model_min_size=64)
    with pytest.raises(DancingSkeletonsError, match="the model cannot be loaded .*stand-in weights that cannot"):
        run_folder_in_jobs(config, clips, out, load=job_models.load_broken)
    assert {row["status"] for row in read_summary(out)} <= {"failed", "interrupted", "pending"}


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_run_stops_every_job_and_leaves_nothing_half_written(tmp_path, how):
    source = tmp_path / "in"
    source.mkdir()
    for name in ("a", "b", "c"):
        make_video(source / f"{name}.mp4", seconds=4, fps="10", size="96x64", audio=name == "a")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipeline", str(source), str(out), *REAL_MODEL_ARGS, "--jobs", "2",
               "--log-interval", "0"]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    watchdog = threading.Timer(300, process.kill)
    watchdog.start()
    lines, started = [], set()
    try:
        for line in process.stderr:
            lines.append(line)
            if " frames/s" in line:
                started.add(line.split(":")[0])
            if len(started) == 2:  # both jobs are processing frames
                workers = [pid for pid in child_processes(process.pid, commands=False) if _leads_its_group(pid)]
                process.send_signal(how)
                break
        lines.extend(process.stderr)
        process.wait(timeout=120)
    finally:
        watchdog.cancel()
        process.stderr.close()
    assert process.returncode == 130, "".join(lines)
    assert [row["status"] for row in read_summary(out)] == ["interrupted", "interrupted", "pending"]
    assert partial_files(out) == [] and not list(out.glob("*.mp4")) and not list(out.glob("*.json"))
    assert ffmpeg_writing_to(out) == []
    assert len(workers) == 2 and not _alive(workers), "no worker is left"
    assert lines[-1].strip().endswith("interrupted")


def _leads_its_group(pid: int) -> bool:
    """A job's worker leads a process group of its own (multiprocessing's resource tracker does not)."""
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _alive(pids: list[int]) -> list[str]:
    """Which of `pids` still run (zombies, which a container's init may never reap, do not)."""
    alive = []
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if text[text.rindex(")") + 2:].split()[0] != "Z":
            alive.append(text)
    return alive
