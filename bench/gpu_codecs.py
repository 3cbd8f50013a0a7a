"""The GPU check's `codecs` rows: the whole pipeline with the CPU's decoder and encoder against the GPU's.

For each model and clip size: one video through `pipeline.runner.run_video` in this process,
as the check's other pipeline rows run it (the check's cached model, its settings, no end
card, no pose cache), at batch 8 and the first of `--precisions`, twice: with ffmpeg's decoder
and libx264 (`decoder="ffmpeg"`, `encoder="libx264"`), and with NVDEC and the encoder `auto`
picks (`decoder="nvdec"`, `encoder="auto"`: NVENC where the GPU has it, else libx264; an H200
has none). Each row: the decoder and encoder the run used, its rate end to end and steady,
times real time, NVML GPU busy, peak GPU memory, and the CPU cores the video took (this
process and its ffmpeg processes, over the run's wall time), beside the goal.

A row that fails (no NVDEC here: `decoder="nvdec"` by name is an error where it does not work,
and on the CPU) says why in its own cells; the other rows run.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import torch

from bench.gpu_checks import Check
from bench.gpu_meters import CpuMeter, GpuSampler, nvml_reader, steady_rate
from bench.gpu_report import REAL_TIME_FPS, CodecsMeasurement, figure, recorded
from bench.speed import make_clip
from pipeline.runner import run_video
from workers.nvcodec import choose_decoder, choose_encoder
from workers.probe import probe

#: Frames per clip for each model: about 5 s of work each at 1080p on an H200 (Keypoint R-CNN
#: about 70-85 frames/s at batch 8, YOLO about 125-160 with ffmpeg and libx264), for a steady
#: rate over 60% of them, and the step's eight rows within about two minutes with their clips.
CODECS_FRAMES = {"keypointrcnn": 384, "yolo": 768}
#: The decoder and encoder asked for, in the order measured: the CPU's, then the GPU's.
PAIRS = (("ffmpeg", "libx264"), ("nvdec", "auto"))
#: Each model's goal: times real time (over 30 fps) for one video, in the steady state.
GOALS = {"keypointrcnn": 3.0, "yolo": 10.0}
#: The most CPU cores one video may take (this process and its ffmpeg processes).
MAX_CORES = 2.0


def goal_words(model: str) -> str:
    """A model's goal in words."""
    if model not in GOALS:
        return "none"
    return f">= {GOALS[model]:g}x real time, <= {MAX_CORES:g} CPU cores"


def goal_met(row: CodecsMeasurement, cuda: bool) -> bool | None:
    """Whether the row's steady rate and its cores meet its model's goal; None where it is not
    judged: not an nvdec row, not on CUDA at 1920x1080, no goal, or a figure missing."""
    if (not cuda or row.decoder_asked != "nvdec" or row.clip != "1920x1080" or row.model not in GOALS
            or row.steady_realtime is None or row.cores is None):
        return None
    return row.steady_realtime >= GOALS[row.model] and row.cores <= MAX_CORES


def measure_codecs(check: Check, model: str, clip: Path, decoder: str, encoder: str, folder: Path) -> CodecsMeasurement:
    """One row: `clip` through the whole pipeline with `decoder` and `encoder` asked for."""
    info = probe(clip)
    batch = 2 if check.args.dry_run else 8
    half = check.args.precisions.split(",")[0].strip() == "half"
    row = CodecsMeasurement(model=model, clip=f"{info.width}x{info.height}", decoder_asked=decoder,
                            encoder_asked=encoder, batch=batch, half=half, frames=info.frames or 0,
                            goal=goal_words(model))
    check.results["codecs"].append(row)
    with recorded(row, check.save):
        estimator = check.estimator(model, half, clip, folder)
        # Their one-time checks (each opens the GPU's decoder or encoder on a tiny clip, once a
        # process) outside the timed run, as the model's loading is; where one fails, the same
        # error the run would raise is the row's.
        choose_decoder(decoder, check.device)
        choose_encoder(encoder, check.device)
        config = check.config(model, clip, folder / f"codecs-{model}-{info.height}-{decoder}.mp4", batch_size=batch,
                              half=half, decoder=decoder, encoder=encoder)
        progress: list[tuple[float, int]] = []

        def on_frames(count: int) -> None:
            progress.append((time.perf_counter(), (progress[-1][1] if progress else 0) + count))

        if check.cuda:
            torch.cuda.reset_peak_memory_stats(check.device)
        read_memory = nvml_reader(quantity="memory")
        # Without NVML read_memory is None, and so is the sampler's own reader: nothing sampled.
        with GpuSampler() as busy, GpuSampler(read=read_memory) as memory, CpuMeter() as cpu:
            result = run_video(config, estimator, info, on_frames=on_frames)
        row.decoder, row.encoder = result.decoder, result.encoder
        row.frames = len(result.frames)
        row.pipeline_fps = result.fps
        row.realtime = result.fps / REAL_TIME_FPS
        row.steady_fps = steady_rate(progress, row.frames)
        row.steady_realtime = row.steady_fps / REAL_TIME_FPS if row.steady_fps is not None else None
        row.gpu_util_mean, row.gpu_util_p10 = busy.summary()
        if check.cuda:
            row.peak_gpu_mib = torch.cuda.max_memory_allocated(check.device) / 2**20
        row.device_peak_gpu_mib = memory.peak()
        row.cpu = cpu.report
        if cpu.report:
            row.cores = cpu.report["process_cores"] + cpu.report["children_cores"]
        row.stages = {name: {"busy": clock.busy, "waiting": clock.waiting} for name, clock in result.stages.items()}
        row.goal_met = goal_met(row, check.cuda)
        config.output.unlink(missing_ok=True)
    print(f"{time.monotonic() - check.started:6.0f} s  codecs {decoder}+{encoder}: {model} {row.clip}: "
          f"{figure(row.pipeline_fps)} f/s ({figure(row.steady_fps)} steady), used {row.decoder}+{row.encoder}, "
          f"{figure(row.cores)} cores{', ' + row.error if row.error else ''}", flush=True)
    return row


def codecs_rows(check: Check, model: str, source: Path | None, size: tuple[int, int], folder: Path) -> None:
    """Both pairs of `PAIRS` for `model` at `size`, on a clip of its own (`CODECS_FRAMES`, or `--frames`)."""
    frames = check.args.frames or CODECS_FRAMES.get(model, 384)
    clip = check.attempt(f"codecs {model} {size[0]}x{size[1]} clip", partial(
        make_clip, source, frames, folder / f"codecs-{model}-{size[1]}", size))
    if clip is None:
        return
    for decoder, encoder in PAIRS:
        check.attempt(f"codecs {model} {size[0]}x{size[1]} {decoder}+{encoder}",
                      partial(measure_codecs, check, model, clip, decoder, encoder, folder))
