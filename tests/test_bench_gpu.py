"""The GPU check (`bash bench/gpu_check.sh`): its dry run on the CPU, its parts, and its kit."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bench import gpu_codecs, gpu_kit
from bench.gpu_jobs import fill_rates, goal_met, goal_words, steady_window
from bench.gpu_meters import GpuSampler, steady_rate
from bench.gpu_report import CodecsMeasurement, JobsMeasurement, Measurement, markdown, recorded

ROOT = Path(__file__).resolve().parents[1]


def test_the_dry_run_runs_every_step_on_the_cpu_and_writes_the_table_and_the_json(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "BENCH_GPU_OUT": str(tmp_path / "out"),
           "GPU_KIT": str(tmp_path / "no-kit"), "GPU_KIT_FFMPEG": str(tmp_path / "no-kit"),
           "GPU_SITE": str(tmp_path / "site")}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "out" / "gpu-check.md").read_text()
    assert table in done.stdout
    assert "| model | clip | batch | half | variant | model alone f/s | pipeline f/s (steady) |" in table
    results = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert results["environment"]["device"].endswith("CPU") and results["environment"]["nvenc_works"] is False
    assert "errors" not in results["checks"]
    assert results["skipped"] in ([], ["yolo: no weights in the kit or ../shared"])  # without ../shared
    rows = results["measurements"]
    assert {row["model"] for row in rows} >= {"keypointrcnn"}
    assert all(row["error"] is None and row["pipeline_fps"] > 0 and row["model_fps"] > 0 for row in rows)
    assert all(set(row["stages"]) >= {"decode", "infer", "score"} for row in rows)
    assert {row["variant"] for row in rows} >= {"defaults", "no video", "x264 ultrafast", "encoder libx264"}
    assert results["encoders"][0]["encode_alone_fps"] > 0
    assert results["checks"]["staging_buffer"]["max_keypoint_difference_px"] == 0.0
    diagnosis = results["diagnosis"][0]
    assert all(diagnosis[name]["model_fps"] > 0 for name in (
        "alone", "beside a Python thread", "beside the machinery, a thread", "beside the machinery, a process"))
    # The --jobs rows: the CLI on a folder of 2 x N copies of the 4-frame clip, N = 1 and 2.
    jobs = results["jobs"]
    assert [row["jobs"] for row in jobs] == [1, 2]
    for row in jobs:
        assert row["error"] is None, row["error"]
        assert row["videos"] == 2 * row["jobs"] and row["frames"] == 4 * row["videos"]
        assert row["aggregate_fps"] > 0 and row["steady_fps"] > 0 and row["steady_seconds"] > 0
        assert row["first_video_seconds"] > 0 and row["later_video_seconds"] > 0
        assert row["cpu"]["machine_cores"] > 0 and row["cpu"]["children_cores"] > 0
        assert row["goal_met"] is None  # on the CPU at 320x180: not judged
        assert row["command"].startswith(f"python -m pipeline FOLDER OUT --jobs {row['jobs']} --model ")
        assert "--end-card-seconds 0" in row["command"] and "--no-progress" in row["command"]
    assert "Several videos at once (--jobs)" in table
    assert f"| {jobs[1]['model']} | 320x180 | 2 | 4 x 4 | 2 | no | " in table
    # The codecs rows: ffmpeg and libx264 measure; nvdec by name fails on the CPU, in its own row.
    codecs = results["codecs"]
    assert [(row["decoder_asked"], row["encoder_asked"]) for row in codecs] == [("ffmpeg", "libx264"),
                                                                                ("nvdec", "auto")]
    cpu_codecs, nvdec_row = codecs
    assert cpu_codecs["error"] is None, cpu_codecs["error"]
    assert (cpu_codecs["decoder"], cpu_codecs["encoder"], cpu_codecs["frames"]) == ("ffmpeg", "libx264", 4)
    assert cpu_codecs["pipeline_fps"] > 0 and cpu_codecs["realtime"] > 0 and cpu_codecs["cores"] > 0
    assert set(cpu_codecs["stages"]) >= {"decode", "infer", "encode"} and cpu_codecs["goal_met"] is None
    assert nvdec_row["error"].startswith("DeviceError: --decoder nvdec needs a CUDA device")
    assert nvdec_row["pipeline_fps"] is None and nvdec_row["decoder"] is None
    assert "Decoders and encoders (the codecs step)" in table
    assert f"| {cpu_codecs['model']} | 320x180 | ffmpeg / libx264 | ffmpeg / libx264 | 4 | 2 | no | " in table
    assert f"| {cpu_codecs['model']} | 320x180 | nvdec / auto | -- / -- | 4 | 2 | no | failed: DeviceError" in table


def test_gpu_utilisation_is_sampled_in_the_background_and_summarised_as_mean_and_10th_percentile():
    readings = iter(range(1000))
    with GpuSampler(period=0.001, read=lambda: next(readings)) as sampler:
        while len(sampler.samples) < 5:
            pass
    assert sampler.samples[:5] == [0.0, 1.0, 2.0, 3.0, 4.0]
    sampler.samples = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    assert sampler.summary() == pytest.approx((55.0, 19.0))
    assert GpuSampler(read=lambda: 50.0).summary() == (None, None)  # never entered: nothing sampled


def test_gpu_utilisation_can_be_summarised_over_a_window_of_the_run():
    sampler = GpuSampler(read=lambda: 0.0)
    sampler.samples, sampler.times = [10.0, 90.0, 80.0, 20.0], [1.0, 2.0, 3.0, 4.0]
    assert sampler.summary(2.0, 3.0)[0] == pytest.approx(85.0)
    assert sampler.summary()[0] == pytest.approx(50.0)
    assert sampler.summary(5.0, 6.0) == (None, None)
    assert sampler.peak() == 90.0 and GpuSampler(read=lambda: 0.0).peak() is None


def _jobs_row(**changes):
    settings = dict(model="keypointrcnn", clip="1920x1080", jobs=2, videos=4, batch=8, half=False, clip_fps=30.0,
                    wall_seconds=20.0, goal=goal_words("keypointrcnn"))
    return JobsMeasurement(**{**settings, **changes})


def test_the_jobs_rates_come_from_the_wall_time_and_each_video_after_its_workers_first():
    # 4 videos of 128 frames, 2 at once: the first two took 10 s each (start-up), the others 4 s.
    row = _jobs_row()
    summary = [{"frames": "128", "processing_seconds": seconds} for seconds in ("10.0", "10.0", "4.0", "4.0")]
    fill_rates(row, summary)
    assert row.frames == 512 and row.aggregate_fps == pytest.approx(25.6) and row.realtime == pytest.approx(25.6 / 30)
    assert (row.first_video_seconds, row.later_video_seconds) == (10.0, 4.0)
    assert row.steady_fps == pytest.approx(2 * 128 / 4.0) and row.steady_realtime == pytest.approx(64 / 30)


def test_the_jobs_goal_is_judged_on_the_steady_figures_on_cuda_at_1080p_only():
    fast = dict(steady_realtime=4.2, gpu_util_steady=90.0)
    assert goal_met(_jobs_row(**fast), cuda=True) is True
    assert goal_met(_jobs_row(**{**fast, "gpu_util_steady": 80.0}), cuda=True) is False
    assert goal_met(_jobs_row(**{**fast, "steady_realtime": 3.9}), cuda=True) is False
    assert goal_met(_jobs_row(**{**fast, "gpu_util_steady": None}), cuda=True) is None  # no NVML
    assert goal_met(_jobs_row(**fast), cuda=False) is None
    assert goal_met(_jobs_row(**{**fast, "clip": "1280x720"}), cuda=True) is None
    assert goal_met(_jobs_row(model="yolo", steady_realtime=10.5), cuda=True) is True  # no GPU busy goal
    assert goal_words("keypointrcnn") == ">= 4x real time, GPU >= 85% busy" and goal_words("yolo") == ">= 10x real time"


def test_the_steady_window_runs_from_the_first_videos_end_to_the_last_by_the_clis_log():
    lines = [(1.0, "8 video files under in -> out"), (2.0, "4 at once, 4 CPU threads each, on cuda (--jobs 4)"),
             (9.0, "[1/8] done clip-01.mp4 (pid 12, cuda): 128 frames, 120 scored, score 6.1, 5s"),
             (9.5, "[2/8] FAILED clip-00.mp4 (pid 11, cuda): broken"),
             (14.0, "[8/8] done clip-07.mp4 (pid 13, cuda): 128 frames, 120 scored, score 6.1, 4s")]
    assert steady_window(lines) == (9.0, 14.0)
    assert steady_window(lines[:3]) is None


def test_the_steady_rate_leaves_out_the_start_and_the_end():
    # 100 frames: a slow start (2 s for the first 10), then 50 frames/s, then a slow end.
    progress = [(2.0, 10)] + [(2.0 + i / 50, 10 + i) for i in range(1, 81)] + [(10.0, 100)]
    assert steady_rate(progress, 100) == pytest.approx(50.0)
    assert steady_rate([(1.0, 100)], 100) is None


def test_a_failed_measurement_is_a_row_that_says_why():
    row = Measurement(model="yolo", clip="1920x1080", batch=8, half=True, error="OutOfMemoryError: CUDA out of memory")
    results = {"environment": {"date": "d", "device": "cpu", "cpu_cores": 2, "python": "3", "torch": "t",
                               "torchvision": "v", "cuda": None, "cudnn": None, "ffmpeg": "f", "nvenc_works": False,
                               "encoder_auto": "libx264"},
               "measurements": [row.__dict__], "encoders": [], "checks": {"errors": ["yolo: broke"]},
               "diagnosis": [], "skipped": ["yolo 1280x720 batch 1: past the 300 s deadline"]}
    text = markdown(results)
    assert "| yolo | 1920x1080 | 8 | yes |  | -- | -- (--) |" in text
    assert "failed: OutOfMemoryError: CUDA out of memory" in text
    assert "- error: yolo: broke" in text and "- skipped: yolo 1280x720 batch 1" in text
    assert "Several videos at once" not in text  # no --jobs rows, no table
    met = _jobs_row(frames=512, aggregate_fps=25.6, realtime=0.85, steady_fps=130.0, steady_realtime=4.33,
                    gpu_util_mean=70.0, gpu_util_p10=5.0, gpu_util_steady=91.0, peak_gpu_mib=9000.0,
                    gpu_mib_before=800.0, cpu={"machine_cores": 9.5, "children_cores": 9.1},
                    first_video_seconds=10.0, later_video_seconds=3.9, goal_met=True)
    failed = _jobs_row(model="yolo", jobs=4, videos=8, goal=goal_words("yolo"), error="RuntimeError: exit 1: no")
    text = markdown({**results, "jobs": [met.__dict__, failed.__dict__]})
    assert ("| keypointrcnn | 1920x1080 | 2 | 4 x 128 | 8 | no | 20.0 | 25.6 (130.0) | 0.85 (4.33) | 70 / 5 (91) "
            "| 9000 (800) | 9.5 / 9.1 | 10.0 / 3.9 | >= 4x real time, GPU >= 85% busy: met |") in text
    assert "| yolo | 1920x1080 | 4 | 8 x -- | 8 | no | failed: RuntimeError: exit 1: no |" in text


def test_an_error_inside_a_measurement_is_its_rows_and_the_results_are_saved_anyway():
    row, saved = Measurement(model="yolo", clip="1920x1080", batch=8, half=False), []
    with recorded(row, lambda: saved.append(True)):
        raise ValueError("no weights\nsecond line")
    assert row.error == "ValueError: no weights" and saved == [True]
    with recorded(row, lambda: saved.append(True)):
        row.error = None
    assert row.error is None and saved == [True, True]


def _fake_kit(folder: Path, binary: bytes, sha256: str | None = None) -> Path:
    folder.mkdir()
    with zipfile.ZipFile(folder / "imageio_ffmpeg.zip", "w") as light:
        light.writestr("imageio_ffmpeg/__init__.py", "")
        light.writestr("imageio_ffmpeg/binaries/__init__.py", "")
    path = "imageio_ffmpeg/binaries/ffmpeg-linux-x86_64-v9.0.2"
    (folder / "ffmpeg.xz").write_bytes(lzma.compress(binary, format=lzma.FORMAT_XZ, filters=gpu_kit.XZ_FILTERS))
    (folder / "ffmpeg.json").write_text(json.dumps(
        {"path": path, "sha256": sha256 or hashlib.sha256(binary).hexdigest(), "bytes": len(binary)}))
    return folder


def test_the_kit_puts_ffmpeg_back_where_imageio_ffmpeg_looks_executable(tmp_path):
    binary = b"#!/bin/sh\necho ffmpeg version test\n"
    kit = _fake_kit(tmp_path / "kit", binary)
    gpu_kit.install(kit, tmp_path / "site")
    installed = tmp_path / "site" / "imageio_ffmpeg" / "binaries" / "ffmpeg-linux-x86_64-v9.0.2"
    assert installed.read_bytes() == binary and os.access(installed, os.X_OK)
    assert (tmp_path / "site" / "imageio_ffmpeg" / "__init__.py").is_file()


def _fake_pyav_kit(folder: Path, sha256: str | None = None) -> Path:
    import io
    import tarfile

    folder.mkdir()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, text in (("av/__init__.py", "VERSION = 'kit'\n"), ("av.libs/libavcodec.so", "binary")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    data = archive.getvalue()
    (folder / "av.tar.xz").write_bytes(lzma.compress(data, format=lzma.FORMAT_XZ, filters=gpu_kit.XZ_FILTERS))
    (folder / "av.json").write_text(json.dumps({"sha256": sha256 or hashlib.sha256(data).hexdigest(),
                                                "bytes": len(data)}))
    return folder


def test_the_kit_unpacks_pyav_into_the_site(tmp_path):
    gpu_kit.install(_fake_pyav_kit(tmp_path / "kit"), tmp_path / "site")
    assert (tmp_path / "site" / "av" / "__init__.py").read_text() == "VERSION = 'kit'\n"
    assert (tmp_path / "site" / "av.libs" / "libavcodec.so").is_file()
    with pytest.raises(SystemExit, match="does not unpack to the PyAV wheel"):
        gpu_kit.install(_fake_pyav_kit(tmp_path / "bad", sha256="0" * 64), tmp_path / "site2")


def test_the_check_says_which_kit_is_missing(tmp_path):
    # A python without PyAV or imageio-ffmpeg and no kits: the check stops before measuring.
    env = {**os.environ, "PYTHON": "python3", "GPU_KIT": str(tmp_path / "none"),
           "GPU_KIT_FFMPEG": str(tmp_path / "none"), "GPU_SITE": str(tmp_path / "site"), "PYTHONPATH": ""}
    probe = subprocess.run(["python3", "-c", "import av"], capture_output=True, env=env)
    if probe.returncode == 0:
        pytest.skip("this machine's python3 has PyAV")
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert "carry" in done.stderr and "--install-only" in done.stderr


def test_a_kit_whose_ffmpeg_does_not_match_its_checksum_is_refused(tmp_path):
    kit = _fake_kit(tmp_path / "kit", b"ffmpeg", sha256="0" * 64)
    with pytest.raises(SystemExit, match="does not unpack to the ffmpeg it was made from"):
        gpu_kit.install(kit, tmp_path / "site")


def _codecs_row(**changes):
    settings = dict(model="yolo", clip="1920x1080", decoder_asked="nvdec", encoder_asked="auto", batch=8, half=False,
                    steady_realtime=10.5, cores=1.8)
    return CodecsMeasurement(**{**settings, **changes})


def test_the_codecs_goal_is_judged_on_the_nvdec_rows_on_cuda_at_1080p_only():
    assert gpu_codecs.goal_met(_codecs_row(), cuda=True) is True
    assert gpu_codecs.goal_met(_codecs_row(steady_realtime=9.9), cuda=True) is False
    assert gpu_codecs.goal_met(_codecs_row(cores=2.1), cuda=True) is False  # at most 2 cores a video
    assert gpu_codecs.goal_met(_codecs_row(model="keypointrcnn", steady_realtime=3.1), cuda=True) is True
    assert gpu_codecs.goal_met(_codecs_row(), cuda=False) is None
    assert gpu_codecs.goal_met(_codecs_row(clip="1280x720"), cuda=True) is None
    assert gpu_codecs.goal_met(_codecs_row(decoder_asked="ffmpeg", encoder_asked="libx264"), cuda=True) is None
    assert gpu_codecs.goal_met(_codecs_row(steady_realtime=None), cuda=True) is None
    assert gpu_codecs.goal_words("keypointrcnn") == ">= 3x real time, <= 2 CPU cores"
    results = {"environment": {"date": "d", "device": "cpu", "cpu_cores": 2, "python": "3", "torch": "t",
                               "torchvision": "v", "cuda": None, "cudnn": None, "ffmpeg": "f", "nvenc_works": False,
                               "encoder_auto": "libx264"},
               "measurements": [], "encoders": [], "checks": {}, "diagnosis": [], "skipped": []}
    met = _codecs_row(frames=768, decoder="nvdec", encoder="libx264", pipeline_fps=280.0, steady_fps=315.0,
                      realtime=9.33, gpu_util_mean=40.0, gpu_util_p10=20.0, peak_gpu_mib=900.0,
                      device_peak_gpu_mib=2500.0, cpu={"machine_cores": 3.2, "process_cores": 1.1},
                      goal=gpu_codecs.goal_words("yolo"),
                      stages={"decode": {"busy": 1.0, "waiting": 1.5}, "encode": {"busy": 2.5, "waiting": 0.2}},
                      goal_met=True)
    assert ("| yolo | 1920x1080 | nvdec / auto | nvdec / libx264 | 768 | 8 | no | 280.0 (315.0) | 9.33 (10.50) "
            "| 40 / 20 | 900 / 2500 | 1.0 / 1.5 | 2.5 / 0.2 | 1.8 / 1.1 / 3.2 | >= 10x real time, <= 2 CPU cores: met |"
            ) in markdown({**results, "codecs": [met.__dict__]})
