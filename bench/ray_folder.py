"""`make bench-ray`: what running a folder on Ray costs against a local folder run, on this machine.

Starts a real one-machine Ray cluster with `ray start` (head, then one node that takes the
tasks, as on real machines), timing each start; then runs the same folder of clips three ways,
one video at a time so that only the per-video cost differs:

- local: `python -m pipeline IN OUT` (the model loaded once for the folder);
- Ray, CPU tasks: `--cluster ray --cpus-per-video <all>`;
- Ray, GPU-style tasks: the same with `--gpus-per-video 1` on a node that declares one GPU (the
  path a GPU cluster takes: Ray's GPU bookkeeping, every GPU visible to the worker; the model
  itself still runs on this machine's CPU).

Either way a worker keeps its model for up to `pipeline.cluster.WORKER_VIDEOS` videos, so the
per-video cost is scheduling plus, once per worker, a process start, the imports and a model load.

Each way runs `--repeats` times, alternating; the medians give the cost per video, and the share
of a one-minute clip's processing time that it is.

    python -m bench.ray_folder [--clips 4] [--seconds 4] [--repeats 3] [--model yolo]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from bench.speed import SHARED_CLIP, SHARED_YOLO
from workers.ffmpeg import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_folder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4, help="clips in the folder (default: 4)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip (default: 4)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each way, alternating (default: 3)")
    parser.add_argument("--model", default="yolo" if SHARED_YOLO.is_file() else "keypointrcnn",
                        help="yolo (../shared's yolo11n-pose.pt) or keypointrcnn (untrained weights at 320) "
                             "(default: yolo where the weights are present)")
    parser.add_argument("--port", type=int, default=6390, help="the benchmark cluster's port (default: 6390)")
    return parser


def make_clips(folder: Path, count: int, seconds: float) -> None:
    """`count` clips of `seconds` from the park clip (../shared, looped), else generated ones."""
    folder.mkdir(parents=True)
    for index in range(count):
        path = folder / f"clip{index}.mp4"
        if SHARED_CLIP.is_file():  # 7.7 s long: looped, each clip from a later point
            source = ["-stream_loop", "-1", "-i", str(SHARED_CLIP), "-ss", str(index * seconds)]
        else:
            source = ["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440"]
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *source, "-t", str(seconds),
                        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(path)], check=True)


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def main(args: argparse.Namespace) -> int:
    ray_cli = str(Path(sys.executable).with_name("ray"))
    cpus = os.cpu_count() or 1
    model_args = (["--model", "yolo", "--weights", str(SHARED_YOLO)] if args.model == "yolo"
                  else ["--weights", "random", "--min-size", "320"])
    common = [*model_args, "--device", "cpu", "--no-progress"]
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as temporary:
        folder = Path(temporary)
        make_clips(folder / "in", args.clips, args.seconds)
        env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{args.port}", "RAY_USAGE_STATS_ENABLED": "0"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True)
        head = timed([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(args.port),
                      "--num-cpus", "0", "--num-gpus", "0", "--include-dashboard", "false"], env)
        node = timed([ray_cli, "start", "--address", env["RAY_ADDRESS"], "--node-ip-address", "127.0.0.1",
                      "--num-cpus", str(cpus), "--num-gpus", "1"], env)
        ways = {
            "local": [],
            "ray, CPU tasks": ["--cluster", "ray", "--cpus-per-video", str(cpus)],
            "ray, GPU-style tasks": ["--cluster", "ray", "--cpus-per-video", str(cpus), "--gpus-per-video", "1"],
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        try:
            for repeat in range(args.repeats):
                for name, extra in ways.items():
                    out = folder / f"out-{repeat}-{len(times[name])}-{name.split(',')[0].replace(' ', '')}"
                    command = [sys.executable, "-m", "pipeline", str(folder / "in"), str(out), *common, *extra]
                    times[name].append(timed(command, env))
                    shutil.rmtree(out)
        finally:
            subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True)
    local = statistics.median(times["local"])
    minute = local / args.clips / args.seconds * 60
    print(f"# Ray overhead, {date.today()}, {platform.node()}: {cpus} CPUs, Python {platform.python_version()}, "
          f"model {args.model} on the CPU, {args.clips} clips of {args.seconds:g} s, median of {args.repeats}")
    print(f"cluster start: head {head:.1f} s, one node joining {node:.1f} s (`ray start`, wall)")
    print(f"one minute of this video, processed locally: {minute:.1f} s")
    print("| way | folder wall s (runs) | per video vs local | share of a one-minute clip |")
    print("| --- | --- | --- | --- |")
    for name, values in times.items():
        median = statistics.median(values)
        extra = (median - local) / args.clips
        runs = ", ".join(f"{value:.1f}" for value in values)
        share = "" if name == "local" else f"{100 * extra / minute:+.1f}%"
        print(f"| {name} | {median:.1f} ({runs}) | {'' if name == 'local' else f'{extra:+.2f} s'} | {share} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
