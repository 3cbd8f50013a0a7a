"""`make bench` itself runs (a few frames, the machinery ceiling only)."""

import re

from bench.speed import get_args_parser, main


def test_bench_runs_and_reports_the_ceiling(capsys):
    assert main(get_args_parser().parse_args(["--ceiling-frames", "12", "--models", ""])) == 0
    out = capsys.readouterr().out
    assert "machinery ceiling" in out and "frames/s" in out and "peak memory" in out


def test_the_sequential_baseline_writes_the_same_video(tmp_path):
    from bench.speed import run_sequential
    from config import Config
    from tests.helpers import StandInEstimator, make_video, stream_facts

    source = make_video(tmp_path / "in.mp4", seconds=1, fps="10", audio=True)
    config = Config(input=source, output=tmp_path / "seq.mp4", end_card_seconds=0, progress=False, batch_size=3)
    assert run_sequential(config, StandInEstimator()) > 0
    facts = stream_facts(config.output)
    assert facts["frames"] == 10 and facts["audio"]


def test_the_memory_bench_runs_a_long_video_through_and_finds_the_lag(capsys):
    assert main(get_args_parser().parse_args(["--memory-minutes", "0.2"])) == 0  # 360 frames
    out = capsys.readouterr().out
    assert "memory over a 0.2-minute video (360 frames" in out and "bytes a frame" in out
    assert "#1 -50 ms, #2 +50 ms" in out  # the stand-in's second dancer is 3 frames (100 ms) late
    assert re.search(r"whole-video analysis: tracks [\d.]+ s, timing [\d.]+ s, limbs [\d.]+ s, sync [\d.]+ s, "
                     r"joining [\d.]+ s \([\d.]+% of", out)


def test_the_bench_times_yolo_on_each_runtime_installed(capsys):
    import importlib.util

    import pytest

    from tests.helpers import need_shared

    need_shared("models", "yolo11n-pose.pt")
    if importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("openvino") is None:
        pytest.skip("ultralytics or openvino is not installed (make setup-cpu-fast)")
    args = ["--models", "yolo", "--runtimes", "torch,openvino", "--frames", "8", "--ceiling-frames", "12",
            "--no-video", "--openvino-precision", "f32"]
    assert main(get_args_parser().parse_args(args)) == 0
    out = capsys.readouterr().out
    assert re.search(r"\nyolo \(weights yolo11n-pose.pt\), 8 frames .*encoder None", out)
    assert re.search(r"\nyolo on openvino \(weights yolo11n-pose.pt\), 8 frames", out)
    assert len(re.findall(r"model alone +[\d.]+ frames/s   CPU \d+ ms a frame   loaded in [\d.]+ s", out)) == 2


def test_the_jobs_bench_runs_a_folder_through_worker_processes_on_a_simulated_device(capsys):
    from bench import jobs

    args = ["--jobs", "1,2", "--clips", "2", "--seconds", "1", "--host-ms", "5", "--device-ms", "30"]
    assert jobs.main(jobs.get_args_parser().parse_args(args)) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\| (\d) \| (\d+) \| [\d.]+ \| [\d.]+ \| [\d.]+ \| (\d+)% / (\d+)% \| [\d.]+ \|$", out, re.M)
    assert [(row[0], row[1]) for row in rows] == [("1", "60"), ("2", "60")], out  # 2 clips x 30 frames, each time
    # 15 batches of 30 ms held the device; from the first batch to the last it was busy.
    assert all(0 < int(whole) <= int(running) <= 100 for _, _, whole, running in rows), out


def test_device_use_adds_the_holds(tmp_path):
    from bench.jobs import device_use

    log = tmp_path / "device.log"
    log.write_text("10.0 10.5\n11.0 11.25\n10.5 10.75\n")
    assert device_use(log) == (1.0, 10.0, 11.25)
