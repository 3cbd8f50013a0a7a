"""Folder runs on a real local Ray cluster (`--cluster ray`): several nodes on this machine.

One cluster for the module (a head that takes no tasks, two nodes with one CPU and one stand-in
GPU each: Ray counts GPUs it is told a node has), started once; the tests that take a node away
put one back. The driver runs in this process (`main`), or as `python -m pipeline` where a test
interrupts or kills it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from config import Config
from pipeline.cli import get_args_parser, main
from pipeline.cluster import (
    WORKER_VIDEOS,
    StorageCheck,
    TaskResources,
    code_digest,
    runtime_env,
    task_device,
    task_resources,
)
from tests.conftest import validate_report, validate_summary_rows
from tests.helpers import VIDEOS, ffmpeg_writing_to, make_video, partial_files
from workers.ffmpeg import ffmpeg_exe

ray = pytest.importorskip("ray", reason="Ray is an optional extra (make setup-ray)")

ROOT = Path(__file__).resolve().parents[1]
MODEL_ARGS = ["--weights", "random", "--device", "cpu", "--min-size", "64", "--person-threshold", "0",
              "--max-persons", "2", "-b", "2", "--cpus-per-video", "1", "--log-interval", "0"]
#: What may differ between a local and a cluster run of the same files.
TIMING_COLUMNS = ("processing_seconds", "node")


def _main(*argv):
    return main(get_args_parser().parse_args([str(a) for a in argv]))


def read_summary(folder: Path) -> list[dict]:
    with open(folder / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    validate_summary_rows(rows)
    return rows


def comparable(folder: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in read_summary(folder)]


def no_ffmpeg_left(folder: Path, seconds: float = 15.0) -> list[str]:
    """ffmpeg processes still working on `folder` after up to `seconds` (Ray ends workers asynchronously)."""
    deadline = time.monotonic() + seconds
    while (left := ffmpeg_writing_to(folder)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def task_processes(name: str) -> list[int]:
    """Pids of Ray workers running the video task of input `name` (Ray titles them after the task)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text.startswith(f"ray::dancingskeletons {name}"):
            pids.append(int(cmdline.parent.name))
    return pids


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds:.0f} s: {what}")


def cut_clip(source: Path, destination: Path, start: float, seconds: float, width: int) -> Path:
    """`seconds` of `source` from `start`, scaled to `width` pixels wide, with its sound."""
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-ss", str(start), "-i", str(source),
                    "-t", str(seconds), "-vf", f"scale={width}:-2", "-c:v", "libx264", "-preset", "ultrafast",
                    "-c:a", "aac", str(destination)], check=True)
    return destination


@pytest.fixture(scope="module")
def cluster():
    """A head that takes no tasks and two nodes with 1 CPU and 1 stand-in GPU each."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def on_cluster(cluster, monkeypatch):
    """RAY_ADDRESS names the test cluster, for in-process drivers and for subprocesses."""
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    return cluster


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """in/: short clips of the shared videos where present, generated ones, a broken file."""
    folder = tmp_path_factory.mktemp("cluster") / "in"
    (folder / "sub").mkdir(parents=True)
    lab, park = VIDEOS / "lab_three_people_portrait_60fps.mp4", VIDEOS / "park_two_people_vp9_audio.mp4"
    if lab.is_file() and park.is_file():
        cut_clip(lab, folder / "lab.mp4", 0.5, 0.5, 144)
        cut_clip(park, folder / "sub" / "park.mp4", 5.0, 1.0, 160)
    make_video(folder / "a.mp4", seconds=1, fps="10", size="96x64", audio=True)
    make_video(folder / "sub" / "b.mov", seconds=0.5, fps="10", size="96x64")
    (folder / "broken.mp4").write_text("not a video\n" * 50)
    return folder


@pytest.fixture(scope="module")
def local_run(clips, tmp_path_factory):
    """The same folder run here, without a cluster: the reference."""
    out = tmp_path_factory.mktemp("local") / "out"
    assert _local(clips, out) == 1
    return out


def _local(source: Path, out: Path) -> int:
    """The folder run here, its model on the one thread that `--cpus-per-video 1` gives a task:
    on every core its sums come out in another order (a score of 1.956342, not 1.956340)."""
    from pipeline.cli import config_from_args
    from pipeline.folder import exit_code, run_folder
    from workers.models import load_estimator

    args = get_args_parser().parse_args([str(source), str(out), *MODEL_ARGS, "--no-progress"])
    config = config_from_args(args).replace(cpu_threads=1)
    return exit_code(run_folder(config, source, out, lambda: load_estimator(config)))


def test_task_resources_and_the_storage_check_without_a_cluster(tmp_path):
    config = Config(input=tmp_path, output=tmp_path / "o")
    assert task_resources(config, cluster_gpus=4) == TaskResources(gpus=1.0, cpus=2.0)
    assert task_resources(config, cluster_gpus=0) == TaskResources(gpus=0.0, cpus=2.0)
    assert task_resources(config.replace(device="cpu"), cluster_gpus=4).gpus == 0
    assert task_resources(config.replace(gpus_per_video=0.5), cluster_gpus=4).gpus == 0.5
    half = TaskResources(gpus=0.5, cpus=4)
    assert half.slots([{"GPU": 1, "CPU": 16}, {"GPU": 2, "CPU": 4}, {"CPU": 64}]) == 2 + 1 + 0
    # Each video on the GPU Ray assigned, by its physical id (workers see every GPU).
    assert task_device("auto", [3], cuda_available=True) == "cuda:3"
    assert task_device("cuda", ["5"], cuda_available=True) == "cuda:5"
    assert task_device("auto", [3], cuda_available=False) == "cpu"
    assert task_device("cuda", [3], cuda_available=False) == "cuda:3"  # then refused by name, no silent CPU
    assert task_device("cpu", [3], cuda_available=True) == "cpu"
    assert task_device("auto", [], cuda_available=True) == "cpu"
    with pytest.raises(ValueError, match="gpus_per_video is 0"):
        Config(input=tmp_path, output=tmp_path, device="cuda", gpus_per_video=0)
    with pytest.raises(ValueError, match="gpus_per_video must be in 0.0..1.0"):
        Config(input=tmp_path, output=tmp_path, gpus_per_video=2)
    with pytest.raises(ValueError, match="pins one GPU"):
        Config(input=tmp_path, output=tmp_path, cluster="ray", device="cuda:1")

    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    (inputs / "a.mp4").write_bytes(b"x" * 10)
    (outputs / ".check").write_text("token")
    check = StorageCheck(str(inputs), ("a.mp4", 10), str(outputs), ".check", "token", (), code_digest())
    assert check.problems("n1") == [] and (outputs / check.reply_name("n1")).read_text() == "token"
    (outputs / ".check").write_text("another driver's")
    other = StorageCheck(str(inputs), ("a.mp4", 11), str(outputs), ".check", "token", (str(tmp_path / "w.pt"),),
                         "0" * 16)
    problems = other.problems("n1")
    assert [p.split(" ", 2)[:2] for p in problems] == [["sees", "a"], ["sees", "a"], ["cannot", "see"],
                                                        ["runs", "other"]], problems
    assert "a.mp4 has 10 bytes, not 11" in problems[0] and str(outputs) in problems[1]
    from pipeline.cluster import shared_files

    teacher = Config(input=tmp_path, output=tmp_path, weights="w.pt", reference="class/teacher.mp4")
    assert shared_files(teacher) == (str((Path("w.pt")).resolve()), str(Path("class/teacher.mp4").resolve()))
    assert shared_files(Config(input=tmp_path, output=tmp_path, weights="random")) == ()


def test_usage_and_connection_errors_are_one_line(tmp_path, monkeypatch, capsys):
    source = tmp_path / "in"
    source.mkdir()
    video = make_video(source / "a.mp4", seconds=0.3, fps="10", size="64x48")
    assert _main(video, tmp_path / "o.mp4", "--cluster", "ray") == 2
    assert _main(source, tmp_path / "o", "--gpus-per-video", "1") == 2
    assert _main(source, tmp_path / "o", "--cluster", "ray", "--gpus-per-video", "-1") == 2
    capsys.readouterr()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # nothing listens on the discard port
    started = time.monotonic()
    assert _main(source, tmp_path / "o", *MODEL_ARGS, "--cluster", "ray") == 1
    assert time.monotonic() - started < 30
    assert "error: cannot connect to the Ray cluster at 127.0.0.1:9 (Connection refused)" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert _main(source, tmp_path / "o", *MODEL_ARGS, "--cluster", "ray") == 2
    assert "--cluster ray needs Ray, which is not installed" in capsys.readouterr().err
    assert [row["status"] for row in read_summary(tmp_path / "o")] == ["pending"]


def test_a_folder_run_without_cluster_does_not_import_ray(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    make_video(source / "a.mp4", seconds=0.3, fps="10", size="64x48")
    code = (f"import sys; from pipeline.cli import main, get_args_parser; "
            f"code = main(get_args_parser().parse_args({[str(source), str(tmp_path / 'out'), *MODEL_ARGS]!r})); "
            "print('ray' in sys.modules, code)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["False", "0"], done.stderr


def test_a_cluster_run_gives_the_reports_of_a_local_run(on_cluster, clips, local_run, tmp_path, capsys):
    out = tmp_path / "out"
    capsys.readouterr()
    assert _main(clips, out, *MODEL_ARGS, "--cluster", "ray") == 1  # broken.mp4 failed, the others done
    rows = read_summary(out)
    assert comparable(out) == comparable(local_run)
    assert {row["input"]: row["status"] for row in rows}["broken.mp4"] == "failed"
    assert {row["status"] for row in rows if row["input"] != "broken.mp4"} == {"done"}
    for row in rows:
        if row["status"] == "done":
            ours, theirs = (json.loads((folder / row["report"]).read_text()) for folder in (out, local_run))
            validate_report(ours)
            for key in ("frames", "frames_scored", "score", "persons", "sync", "worst_moments"):
                assert ours[key] == theirs[key], (row["input"], key)
            assert ours["settings"]["cluster"] == "ray"
            assert (out / row["report"]).with_suffix(".csv").read_text() == \
                (local_run / row["report"]).with_suffix(".csv").read_text()
    assert (out / "index.html").is_file() and partial_files(out) == []
    text = capsys.readouterr().err
    assert re.search(r"Ray cluster at \S+: 2 nodes take tasks, 2 GPUs, 2 CPUs; each video asks for 0 GPUs and 1 CPU",
                     text), text
    nodes = set(re.findall(r"\] (?:done|FAILED) \S+ on \S+ \(node (\w+), pid \d+, cpu\)", text))
    assert len(nodes) == 2, text  # both nodes took files

    # Run again: everything done is skipped without a task; the broken file is tried again.
    assert _main(clips, out, *MODEL_ARGS, "--cluster", "ray") == 1
    assert [row["status"] for row in read_summary(out) if row["input"] != "broken.mp4"] == ["skipped"] * (len(rows) - 1)


def test_a_gpu_task_sees_every_gpu_and_is_told_its_own(on_cluster):
    """Ray would set CUDA_VISIBLE_DEVICES per task, which a reused worker's CUDA would not follow."""
    def probe():
        return os.environ.get("CUDA_VISIBLE_DEVICES"), [str(i) for i in ray.get_gpu_ids()]

    ray.init(address=on_cluster.address)
    try:
        task = ray.remote(probe).options(num_gpus=1, num_cpus=0, runtime_env=runtime_env())
        assert ray.get(task.remote()) == (None, ["0"])
        plain = ray.remote(probe).options(num_gpus=1, num_cpus=0)
        assert ray.get(plain.remote()) == ("0", ["0"])  # what our runtime_env switches off
    finally:
        ray.shutdown()


def test_workers_keep_their_model_for_the_next_video(on_cluster, tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    for name in "abcdef":
        make_video(source / f"{name}.mp4", seconds=0.3, fps="10", size="64x48")
    assert _main(source, tmp_path / "out", *MODEL_ARGS, "--cluster", "ray", "--gpus-per-video", "1") == 0
    text = capsys.readouterr().err
    assert "each video asks for 1 GPU and 1 CPU, so 2 at once" in text
    pids = re.findall(r"\] done \S+ on .*pid (\d+), cpu\)", text)
    assert len(pids) == 6 and len(set(pids)) < 6, text  # at most 2 at once: workers were reused
    assert WORKER_VIDEOS > 1


def test_a_killed_worker_and_a_removed_node_have_their_video_redone(on_cluster, tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    make_video(source / "long1.mp4", seconds=4, fps="10", size="160x120", audio=True)
    make_video(source / "long2.mp4", seconds=4, fps="10", size="160x120")
    out = tmp_path / "out"
    capsys.readouterr()
    result = {}
    driver = threading.Thread(target=lambda: result.setdefault("code", _main(source, out, *MODEL_ARGS, "--cluster",
                                                                             "ray", "--retries", "2")))
    driver.start()
    try:
        # Both videos are being processed (their partial video files exist) ...
        wait_for(lambda: len(partial_files(out)) >= 2 and task_processes("long1") and task_processes("long2"),
                 120, "both videos started")
        # ... when the worker of long1 is killed, and the node that runs long2 is taken away.
        os.kill(task_processes("long1")[0], signal.SIGKILL)
        worker = task_processes("long2")[0]
        raylet = int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[1])
        node = next(node for node in on_cluster.worker_nodes
                    if any(p.process.pid == raylet for p in node.all_processes["raylet"]))
        on_cluster.remove_node(node, allow_graceful=False)
        on_cluster.add_node(num_cpus=1, num_gpus=1)  # for the tests after this one
    finally:
        driver.join(timeout=600)
    text = capsys.readouterr().err
    assert result.get("code") == 0, text
    assert [row["status"] for row in read_summary(out)] == ["done", "done"]
    assert text.count("starting it again (retry 1 of 2)") == 2, text
    assert partial_files(out) == [] and no_ffmpeg_left(out) == []

    reference = tmp_path / "reference"
    assert _local(source, reference) == 0
    assert comparable(out) == comparable(reference)


def _driver(source: Path, out: Path) -> subprocess.Popen:
    # SIGINT as a terminal gives it, even where this suite was started in the background
    # (`make test &`), which makes the shell ignore SIGINT in everything it starts.
    return subprocess.Popen([sys.executable, "-m", "pipeline", str(source), str(out), *MODEL_ARGS, "--cluster", "ray"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_cancels_every_task_leaves_no_ffmpeg_and_exits_130(on_cluster, tmp_path, signum):
    source = tmp_path / "in"
    source.mkdir()
    for name in ("x", "y", "z"):
        make_video(source / f"{name}.mp4", seconds=30, fps="10", size="160x120", audio=True)
    out = tmp_path / "out"
    driver = _driver(source, out)
    try:
        wait_for(lambda: len(ffmpeg_writing_to(out)) >= 2 and len(partial_files(out)) >= 2, 120,
                 "two videos being processed")
        driver.send_signal(signum)  # ray.init replaces the SIGTERM handler; ours must be back
        pressed = time.monotonic()
        assert driver.wait(timeout=60) == 130
        assert time.monotonic() - pressed < 30
    finally:
        driver.kill()
        log = driver.stderr.read()
        driver.stderr.close()
    statuses = sorted(row["status"] for row in read_summary(out))
    assert statuses == ["interrupted", "interrupted", "pending"], log
    assert partial_files(out) == [] and no_ffmpeg_left(out) == [], log
    assert not list(out.glob("*.json"))


def test_a_rerun_after_the_driver_was_killed_resumes(on_cluster, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    make_video(source / "a.mp4", seconds=0.5, fps="10", size="96x64", audio=True)
    make_video(source / "b.mp4", seconds=40, fps="10", size="160x120")
    make_video(source / "c.mp4", seconds=40, fps="10", size="160x120")
    out = tmp_path / "out"
    driver = _driver(source, out)
    try:
        wait_for(lambda: (out / "summary.csv").is_file() and "done" in [r["status"] for r in read_summary(out)],
                 120, "a.mp4 done")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        driver.kill()
        driver.stderr.close()
    assert [row["status"] for row in read_summary(out)] == ["done", "pending", "pending"]
    assert no_ffmpeg_left(out, seconds=30) == []  # Ray ends a dead driver's tasks
    (source / "b.mp4").unlink()
    (source / "c.mp4").unlink()
    make_video(source / "b.mp4", seconds=0.5, fps="10", size="96x64")
    assert _main(source, out, *MODEL_ARGS, "--cluster", "ray") == 0
    assert [row["status"] for row in read_summary(out)] == ["skipped", "done"]
    assert partial_files(out) == []


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                    reason="a node that cannot see a folder is made with a mount namespace (root, unshare)")
def test_a_node_that_cannot_see_the_output_folder_stops_the_run_with_its_name(on_cluster, tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    make_video(source / "a.mp4", seconds=0.5, fps="10", size="96x64")
    hidden = tmp_path / "shared"
    hidden.mkdir()
    out = hidden / "out"
    # A node in its own mount namespace, with an empty folder mounted over `hidden`: like a machine
    # where the shared storage is not mounted.
    ray_cli = Path(sys.executable).with_name("ray")
    node = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount -t tmpfs none '{hidden}' && exec '{ray_cli}' start --address '{on_cluster.address}' --num-cpus 1 "
         "--block --disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        ray.init(address=on_cluster.address)
        try:
            wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 4, 60, "the fourth node joined")
        finally:
            ray.shutdown()
        assert _main(source, out, *MODEL_ARGS, "--cluster", "ray") == 1
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)
    error = capsys.readouterr().err
    line = next(line for line in error.splitlines() if line.startswith("error:"))
    assert re.search(rf"node \S+ \(node \w+\) cannot see the output folder {re.escape(str(out))}", line), error
    assert "same paths on every node" in line
    assert len(re.findall(r"node \S+ \(node \w+\)", line)) == 1  # that node, once; the others see it
    assert [row["status"] for row in read_summary(out)] == ["pending"]
