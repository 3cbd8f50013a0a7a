"""What the GPU check writes: its rows, the machine it ran on, and the Markdown table.

`Measurement` is one row (`JobsMeasurement` one of the `--jobs` rows, `CodecsMeasurement` one
of the decoder and encoder rows); `environment` says what ran (card, driver, versions, ffmpeg and its
NVENC); `markdown` turns the results (rows, encoders, diagnosis, checks, what was skipped)
into the table with its notes that `bench.gpu` writes as gpu-check.md beside gpu-check.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import torch

from workers.encode import choose_encoder
from workers.ffmpeg import encoder_works, ffmpeg_exe, run_ffmpeg

#: A 30 fps video is processed this many times faster than it plays at `fps / REAL_TIME_FPS`.
REAL_TIME_FPS = 30.0


@dataclass
class Measurement:
    """One model, clip, batch size and precision: the model alone and the whole pipeline.

    Attributes:
        model, clip, batch, half: What was run ("1920x1080", fp16 autocast or not).
        frames: Frames timed.
        model_fps: The model alone on decoded frames in memory (upload, inference, results
            back), after a warm-up batch.
        pipeline_fps: The whole pipeline on the same frames, probe to checked output file.
        efficiency: pipeline_fps / model_fps.
        realtime: pipeline_fps / 30: how many times faster than a 30 fps video plays.
        steady_fps: The pipeline's rate from 20% to 80% of the frames (start and end left out).
        gpu_util_mean, gpu_util_p10: NVML GPU utilisation (%) sampled during the pipeline run.
        model_gpu_util_mean: The same during the model-alone run.
        peak_gpu_mib: Peak GPU memory allocated by torch during the pipeline run.
        model_peak_gpu_mib: The same during the model-alone run.
        stages: Per stage: busy and waiting seconds.
        encoder: The encoder the pipeline used.
        cpu: Cores busy during the pipeline run: the machine's, this process's, per thread.
        variant: What was changed from the defaults, if anything.
        error: Why the measurement failed, if it did.
    """

    model: str
    clip: str
    batch: int
    half: bool
    frames: int = 0
    model_fps: float | None = None
    pipeline_fps: float | None = None
    efficiency: float | None = None
    realtime: float | None = None
    gpu_util_mean: float | None = None
    gpu_util_p10: float | None = None
    model_gpu_util_mean: float | None = None
    peak_gpu_mib: float | None = None
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    encoder: str | None = None
    steady_fps: float | None = None
    model_peak_gpu_mib: float | None = None
    cpu: dict[str, Any] = field(default_factory=dict)
    variant: str = ""
    error: str | None = None


@dataclass
class JobsMeasurement:
    """One model, clip and `--jobs N`: a folder of copies of the clip through the CLI.

    Attributes:
        model, clip, batch, half: What was run ("1920x1080", fp16 autocast or not).
        jobs: N, videos at once (worker processes).
        videos: Copies of the clip in the folder.
        frames: Frames of all the videos together (as the summary counts them).
        clip_fps: The clip's frame rate.
        wall_seconds: The CLI process, started to ended: imports, workers, models, every video.
        aggregate_fps: frames / wall_seconds.
        realtime: aggregate_fps / clip_fps: how many times faster than the videos play, together.
        steady_fps: N x one clip's frames / the mean seconds of a video that was not its
            worker's first (summary.csv's processing time): the rate with every worker warm.
        steady_realtime: steady_fps / clip_fps.
        steady_seconds: From the first video's end to the last's, by the CLI's log (the window
            of gpu_util_steady).
        first_video_seconds: Mean processing time of the first N videos (each worker's first:
            its model's loading and first batches included).
        later_video_seconds: The same of the others.
        gpu_util_mean, gpu_util_p10: NVML utilisation of GPU 0 (%), the whole device, over
            the whole run.
        gpu_util_steady: Its mean over steady_seconds (every worker warm).
        peak_gpu_mib: Peak NVML memory in use on GPU 0, every process (this one's included).
        gpu_mib_before: The same just before the CLI started (this process's models and cache).
        cpu: Cores busy during the run: the machine's, and the run's processes' (children_cores).
        goal: The goal on an H200, in words.
        goal_met: Whether the steady figures meet it; None where not judged (not CUDA at 1080p).
        command: The command line, with FOLDER and OUT for the folders and the weights' file name.
        error: Why the measurement failed, if it did.
    """

    model: str
    clip: str
    jobs: int
    videos: int
    batch: int
    half: bool
    frames: int = 0
    clip_fps: float | None = None
    wall_seconds: float | None = None
    aggregate_fps: float | None = None
    realtime: float | None = None
    steady_fps: float | None = None
    steady_realtime: float | None = None
    steady_seconds: float | None = None
    first_video_seconds: float | None = None
    later_video_seconds: float | None = None
    gpu_util_mean: float | None = None
    gpu_util_p10: float | None = None
    gpu_util_steady: float | None = None
    peak_gpu_mib: float | None = None
    gpu_mib_before: float | None = None
    cpu: dict[str, Any] = field(default_factory=dict)
    goal: str = ""
    goal_met: bool | None = None
    command: str = ""
    error: str | None = None


@dataclass
class CodecsMeasurement:
    """One model, clip, and decoder and encoder asked for: the whole pipeline in this process.

    Attributes:
        model, clip, batch, half: What was run ("1920x1080", fp16 autocast or not).
        decoder_asked, encoder_asked: `Config.decoder` and `Config.encoder` of the run.
        decoder, encoder: What the run used (`RunResult.decoder`, `.encoder`).
        frames: Frames of the clip.
        pipeline_fps: Frames over the run's own time, probe to checked output file.
        steady_fps: The rate from 20% to 80% of the frames (start and end left out).
        realtime, steady_realtime: Those over 30 fps: times faster than a 30 fps video plays.
        gpu_util_mean, gpu_util_p10: NVML utilisation of GPU 0 (%) sampled during the run.
        peak_gpu_mib: Peak GPU memory torch allocated during the run (this process).
        device_peak_gpu_mib: Peak NVML memory in use on GPU 0 (every process; the decoder's
            surfaces too, which torch does not allocate).
        stages: Per stage: busy and waiting seconds.
        cpu: Cores busy during the run: the machine's, this process's, its children's (ffmpeg).
        cores: This process's cores and its children's together: the CPU one video takes.
        goal: The goal, in words.
        goal_met: Whether the steady figures meet it; None where not judged (see
            `bench.gpu_codecs.goal_met`).
        error: Why the measurement failed, if it did.
    """

    model: str
    clip: str
    decoder_asked: str
    encoder_asked: str
    batch: int
    half: bool
    frames: int = 0
    decoder: str | None = None
    encoder: str | None = None
    pipeline_fps: float | None = None
    steady_fps: float | None = None
    realtime: float | None = None
    steady_realtime: float | None = None
    gpu_util_mean: float | None = None
    gpu_util_p10: float | None = None
    peak_gpu_mib: float | None = None
    device_peak_gpu_mib: float | None = None
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    cores: float | None = None
    goal: str = ""
    goal_met: bool | None = None
    error: str | None = None


def error_line(error: BaseException) -> str:
    """An error as one line for a row or a note: its type and its message's first line, cut at 300."""
    return f"{type(error).__name__}: {error}".strip().splitlines()[0][:300]


@contextmanager
def recorded(row: Measurement | JobsMeasurement | CodecsMeasurement, save: Callable[[], None]) -> Iterator[None]:
    """Measure into `row` inside the `with`: an error becomes the row's (its traceback printed), not
    the caller's, so that one broken path does not cost the others; the results are saved either way."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - recorded in the row and the table
        row.error = error_line(error)
        traceback.print_exc()
    finally:
        save()


def environment(device: str) -> dict[str, Any]:
    """What ran: the card, the driver, the versions, the cores, ffmpeg and its NVENC."""
    import torchvision

    cuda = device.startswith("cuda")
    version = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True, timeout=30)
    lines = version.stdout.splitlines()
    facts: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": torch.cuda.get_device_name(device) if cuda else f"{platform.machine()} CPU",
        "gpu_memory_gib": round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1) if cuda else None,
        "driver": _nvml_driver() if cuda else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cpu_cores": os.cpu_count(),
        "ffmpeg": lines[0].split(" Copyright")[0] if version.returncode == 0 and lines else "not runnable",
        "ffmpeg_path": ffmpeg_exe(),
        "packages": _versions("imageio-ffmpeg", "ultralytics", "numpy", "opencv-python-headless", "nvidia-ml-py"),
        "nvenc_works": encoder_works("h264_nvenc"),
        "encoder_auto": choose_encoder("auto", device),
    }
    if not facts["nvenc_works"]:
        _, lines = run_ffmpeg(["-nostdin", "-f", "lavfi", "-i", "color=s=256x256:d=0.1", "-c:v", "h264_nvenc",
                               "-f", "null", "-"], timeout=30)
        why = [line for line in lines if any(w in line.lower() for w in ("nvenc", "cuda", "error", "cannot"))]
        facts["nvenc_error"] = " / ".join((why or lines)[:3])[:400]
    return facts


def _versions(*distributions: str) -> dict[str, str | None]:
    """Each installed distribution's version (read from its metadata, nothing imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in distributions:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _nvml_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else version
    except Exception:  # noqa: BLE001 - the driver version is a nicety
        return None


def figure(value: float | None, digits: int = 1) -> str:
    """`value` with `digits` decimals, or "--" when it was not measured."""
    return "--" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """The check's results as one Markdown table with its environment, checks and diagnosis."""
    env = results["environment"]
    lines = [
        f"{env['date']}: {env['device']}"
        + (f" ({env['gpu_memory_gib']} GiB, driver {env['driver']})" if env.get("gpu_memory_gib") else "")
        + f", {env['cpu_cores']} cores, Python {env['python']}, torch {env['torch']}, torchvision "
        f"{env['torchvision']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}; {env['ffmpeg']}; NVENC works: "
        f"{env['nvenc_works']}, `--encoder auto` takes {env['encoder_auto']}; clip: {env.get('clip_source')}; "
        f"{results.get('seconds', 0):.0f} s in all.",
        "",
        "| model | clip | batch | half | variant | model alone f/s | pipeline f/s (steady) | efficiency "
        "| x real time (30 fps) | GPU util % mean / p10 (model alone) | peak GPU MiB (model alone) "
        "| decode busy/wait s | infer busy/wait s | score busy/wait s | draw busy/wait s | encode busy/wait s "
        "| CPU cores: machine / process / model thread | encoder |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |",
    ]
    for row in results["measurements"]:
        stages = row["stages"]
        cells = [f"{figure(stages[s]['busy'])} / {figure(stages[s]['waiting'])}" if s in stages else "--"
                 for s in ("decode", "infer", "score", "draw", "encode")]
        if row["error"]:
            cells = [f"failed: {row['error']}", "", "", "", ""]
        cpu = row.get("cpu") or {}
        model_thread = sum(v for k, v in cpu.get("threads", {}).items() if k.startswith("model-")) or None
        cpu_cell = (f"{figure(cpu.get('machine_cores'))} / {figure(cpu.get('process_cores'))} / {figure(model_thread)}"
                    if cpu else "--")
        lines.append(
            f"| {row['model']} | {row['clip']} | {row['batch']} | {'yes' if row['half'] else 'no'} "
            f"| {row.get('variant') or ''} | {figure(row['model_fps'])} | {figure(row['pipeline_fps'])} "
            f"({figure(row.get('steady_fps'))}) | {figure(row['efficiency'], 3)} | {figure(row['realtime'], 2)} "
            f"| {figure(row['gpu_util_mean'], 0)} / {figure(row['gpu_util_p10'], 0)} "
            f"({figure(row['model_gpu_util_mean'], 0)}) "
            f"| {figure(row['peak_gpu_mib'], 0)} ({figure(row.get('model_peak_gpu_mib'), 0)}) | " + " | ".join(cells)
            + f" | {cpu_cell} | {row['encoder'] or '--'} |"
        )
    lines.append("")
    lines.extend(codecs_table(results.get("codecs", [])))
    lines.extend(jobs_table(results.get("jobs", [])))
    for entry in results["encoders"]:
        if entry.get("encode_alone_fps") is None:
            lines.append(f"- encoder {entry['encoder']} at {entry['clip']}: {entry.get('error')}")
            continue
        pipeline = (f"; {entry['model']} batch {entry['batch']} pipeline {figure(entry.get('pipeline_fps'))} f/s, "
                    f"encode busy {figure(entry.get('encode_busy'))} s" if entry.get("model") else "")
        lines.append(f"- encoder {entry['encoder']} at {entry['clip']}: encoding alone "
                     f"{figure(entry['encode_alone_fps'])} f/s{pipeline}")
    for found in results.get("diagnosis", []):
        parts = []
        for name, value in found.items():
            if isinstance(value, dict) and "model_fps" in value:
                cpu = value.get("cpu") or {}
                parts.append(f"{name} {figure(value['model_fps'])} f/s (machine "
                             f"{figure(cpu.get('machine_cores'))} cores, this process "
                             f"{figure(cpu.get('process_cores'))})")
        lines.append(f"- diagnosis, {found['model']} {found['clip']} batch {found['batch']}, the model's rate: "
                     + "; ".join(parts))
    for name, value in results["checks"].items():
        if name == "errors":
            lines.extend(f"- error: {message}" for message in value)
        else:
            lines.append(f"- {name}: {json.dumps(value, default=str)}")
    lines.extend(f"- skipped: {what}" for what in results["skipped"])
    return "\n".join(lines) + "\n"


def jobs_table(rows: list[dict[str, Any]]) -> list[str]:
    """The `--jobs` rows as their own table, with a blank line after it; nothing without rows."""
    if not rows:
        return []
    lines = [
        "Several videos at once (--jobs): copies of the clip through `python -m pipeline FOLDER OUT --jobs N`; "
        "steady = with every worker warm (after each one's first video); GPU figures are GPU 0's, every process's; "
        "goals judged on the steady figures, on CUDA at 1920x1080 only.",
        "",
        "| model | clip | jobs | videos x frames | batch | half | wall s | aggregate f/s (steady) "
        "| x real time (steady) | GPU busy % mean / p10 (steady) | peak GPU MiB, all processes (before) "
        "| CPU cores: machine / the run | video s: first / later | goal on an H200 |",
        "| --- | --- | ---: | --- | ---: | --- | ---: | ---: | ---: | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        per_video = row["frames"] // row["videos"] if row["frames"] else "--"
        head = (f"| {row['model']} | {row['clip']} | {row['jobs']} | {row['videos']} x {per_video} | {row['batch']} "
                f"| {'yes' if row['half'] else 'no'} ")
        if row["error"]:
            lines.append(head + f"| failed: {row['error']} |  |  |  |  |  |  | {row['goal']} |")
            continue
        cpu = row.get("cpu") or {}
        verdict = {True: "met", False: "missed", None: "not judged here"}[row["goal_met"]]
        lines.append(
            head + f"| {figure(row['wall_seconds'])} | {figure(row['aggregate_fps'])} ({figure(row['steady_fps'])}) "
            f"| {figure(row['realtime'], 2)} ({figure(row['steady_realtime'], 2)}) "
            f"| {figure(row['gpu_util_mean'], 0)} / {figure(row['gpu_util_p10'], 0)} "
            f"({figure(row['gpu_util_steady'], 0)}) "
            f"| {figure(row['peak_gpu_mib'], 0)} ({figure(row['gpu_mib_before'], 0)}) "
            f"| {figure(cpu.get('machine_cores'))} / {figure(cpu.get('children_cores'))} "
            f"| {figure(row['first_video_seconds'])} / {figure(row['later_video_seconds'])} "
            f"| {row['goal']}: {verdict} |"
        )
    lines.append("")
    return lines


def codecs_table(rows: list[dict[str, Any]]) -> list[str]:
    """The decoder and encoder rows as their own table, with a blank line after it; nothing without rows."""
    if not rows:
        return []
    lines = [
        "Decoders and encoders (the codecs step): the whole pipeline on one video in this process, with the "
        "decoder and encoder asked for, and those used; CPU cores over the run's wall time: the video's (this "
        "process and its ffmpeg processes), this process's, the machine's; goals judged on the steady figures, "
        "for the nvdec rows, on CUDA at 1920x1080 only.",
        "",
        "| model | clip | asked: decoder / encoder | used: decoder / encoder | frames | batch | half "
        "| pipeline f/s (steady) | x real time (steady) | GPU busy % mean / p10 | peak GPU MiB: torch / device "
        "| decode busy/wait s | encode busy/wait s | CPU cores: video / process / machine | goal |",
        "| --- | --- | --- | --- | ---: | ---: | --- | ---: | ---: | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        head = (f"| {row['model']} | {row['clip']} | {row['decoder_asked']} / {row['encoder_asked']} "
                f"| {row['decoder'] or '--'} / {row['encoder'] or '--'} | {row['frames']} | {row['batch']} "
                f"| {'yes' if row['half'] else 'no'} ")
        if row["error"]:
            lines.append(head + f"| failed: {row['error']} |  |  |  |  |  |  | {row['goal']} |")
            continue
        stages = row.get("stages") or {}
        decode, encode = (f"{figure(stages[s]['busy'])} / {figure(stages[s]['waiting'])}" if s in stages else "--"
                          for s in ("decode", "encode"))
        cpu = row.get("cpu") or {}
        verdict = {True: "met", False: "missed", None: "not judged here"}[row["goal_met"]]
        lines.append(
            head + f"| {figure(row['pipeline_fps'])} ({figure(row['steady_fps'])}) "
            f"| {figure(row['realtime'], 2)} ({figure(row['steady_realtime'], 2)}) "
            f"| {figure(row['gpu_util_mean'], 0)} / {figure(row['gpu_util_p10'], 0)} "
            f"| {figure(row['peak_gpu_mib'], 0)} / {figure(row['device_peak_gpu_mib'], 0)} | {decode} | {encode} "
            f"| {figure(row['cores'])} / {figure(cpu.get('process_cores'))} / {figure(cpu.get('machine_cores'))} "
            f"| {row['goal']}: {verdict} |"
        )
    lines.append("")
    return lines
