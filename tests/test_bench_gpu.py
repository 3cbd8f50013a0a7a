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

from bench import gpu_kit
from bench.gpu_meters import GpuSampler, steady_rate
from bench.gpu_report import Measurement, markdown, recorded

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
