"""`make bench`: the model alone against the whole pipeline on the same frames.

Prints model-alone and end-to-end frames per second, their ratio (pipeline efficiency), how
long each stage was busy and how long it waited, the real-time factor, and peak memory.

    python -m pipeline.bench [--clip PATH] [--frames N] [--model M] [--weights W] ...
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from config import Config
from pipeline.runner import run_video
from workers.decode import VideoReader
from workers.ffmpeg import ffmpeg_exe, probe
from workers.infer import build_estimator

SHARED_CLIP = Path(__file__).resolve().parents[2] / "shared" / "videos" / "park_two_people_vp9_audio.mp4"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=None,
                        help="input clip (default: ../shared's park clip if present, else a generated 720p clip)")
    parser.add_argument("--frames", type=int, default=24, help="frames to time (default: 24)")
    parser.add_argument("--model", default="keypointrcnn", help="pose model (default: keypointrcnn)")
    parser.add_argument("--weights", default=None,
                        help="weights (default: the model's own; 'random' where they cannot be downloaded)")
    parser.add_argument("--device", default="auto", help="device (default: auto)")
    parser.add_argument("-b", "--batch-size", type=int, default=4, help="batch size (default: 4)")
    parser.add_argument("--min-size", type=int, default=None, dest="model_min_size",
                        help="model input size (default: the model's)")
    return parser


def make_clip(source: Path | None, frames: int, folder: Path) -> Path:
    """The first `frames` frames of `source` (or of a generated 720p clip with audio), as H.264."""
    clip = folder / "bench.mp4"
    if source is None:
        inputs = ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                  "-f", "lavfi", "-i", "sine=frequency=440"]
    else:
        inputs = ["-i", str(source)]
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *inputs, "-frames:v", str(frames),
         "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-shortest", str(clip)],
        check=True,
    )
    return clip


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as folder:
        source = args.clip or (SHARED_CLIP if SHARED_CLIP.exists() else None)
        clip = make_clip(source, args.frames, Path(folder))
        config = Config(
            input=clip, output=Path(folder) / "out.mp4", model=args.model, weights=args.weights,
            device=args.device, batch_size=args.batch_size, model_min_size=args.model_min_size,
            end_card_seconds=0.0, progress=False,
        )
        info = probe(clip)
        estimator = build_estimator(config)
        frames = [frame.image for frame in VideoReader(info)]
        estimator.predict(frames[: args.batch_size])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(frames), args.batch_size):
            estimator.predict(frames[i : i + args.batch_size])
        if estimator.device.startswith("cuda"):
            torch.cuda.synchronize()
        model_seconds = time.perf_counter() - start
        del frames
        result = run_video(config, estimator, info)
    model_fps = len(result.frames) / model_seconds
    efficiency = result.fps / model_fps
    realtime = result.fps / float(info.fps)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    device_name = torch.cuda.get_device_name(estimator.device) if estimator.device.startswith("cuda") else platform.processor() or platform.machine()
    print(f"date {date.today()}  device {estimator.device} ({device_name}, {torch.get_num_threads()} torch threads)  "
          f"torch {torch.__version__}")
    print(f"clip {source or 'generated 1280x720 testsrc2'}: {len(result.frames)} frames "
          f"{info.width}x{info.height} @ {float(info.fps):g} fps; model {config.model} "
          f"(weights {config.weights or 'default'}), batch {config.batch_size}, encoder {result.encoder}")
    print(f"model alone   {model_fps:8.2f} frames/s")
    print(f"pipeline      {result.fps:8.2f} frames/s   efficiency {efficiency:.3f}   "
          f"real-time factor {realtime:.3f}")
    print(f"{'stage':<12}{'busy s':>9}{'waiting s':>11}{'items':>7}")
    for name, clock in result.stages.items():
        print(f"{name:<12}{clock.busy:9.2f}{clock.waiting:11.2f}{clock.items:7d}")
    print(f"peak memory (max RSS of this process, decoded frames for the model-alone pass included) {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
