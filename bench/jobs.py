"""`make bench-jobs`: several videos at once (`--jobs`), and whether they keep a device busy.

Without a GPU, a stand-in model plays one (`SimulatedDevice`): each batch first holds the
Python interpreter for `--host-ms` (what a launch-bound model such as Keypoint R-CNN spends
launching its kernels, the GIL held), then holds a simulated device for `--device-ms` (a lock
shared by every process of the run, the GIL released, as a CUDA stream runs while the host
waits). Decode, tracking, scoring, drawing and encoding are the real ones, in the real worker
processes of `pipeline.jobs`. One video leaves the device idle while it launches; several keep
it busy until it saturates. For each N the table gives the aggregate frames/s, the device-busy
fraction (the time the lock was held, over the whole run's wall time, which includes starting
the workers, and over the time from the first batch to the last), and the CPU cores the run
used (the workers' and their ffmpeg processes' CPU time over the wall time).

    python -m bench.jobs [--jobs 1,2,3,4] [--clips 6] [--seconds 12] [--host-ms 20] [--device-ms 40]

`--memory` instead measures one video's peak resident memory per model through the whole CLI
(`pipeline.jobs.VIDEO_PEAK_BYTES` comes from it): a 1080p clip, the real model (YOLO with
../shared's weights; Keypoint R-CNN with untrained weights at its default size).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from functools import partial
from pathlib import Path

from bench.speed import SHARED_YOLO
from bench.stand_ins import DancingModel
from config import Config
from pipeline.jobs import run_folder_in_jobs
from workers.ffmpeg import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[1]


class SimulatedDevice(DancingModel):
    """Two dancers (`DancingModel`), each batch costing host time with the GIL held, then
    device time on a lock that every process of the run shares.

    Args:
        host_seconds: Interpreter time per batch (a busy loop: the GIL held).
        device_seconds: Device time per batch (a sleep holding the device lock: the GIL free).
        lock: The device's lock file.
        log: Where each batch appends "start end" of its hold (monotonic seconds).
    """

    name = "simulated-device"

    def __init__(self, host_seconds: float, device_seconds: float, lock: Path, log: Path) -> None:
        super().__init__()
        self.host_seconds, self.device_seconds = host_seconds, device_seconds
        self.lock, self.log = lock, log

    def predict(self, images):
        deadline = time.perf_counter() + self.host_seconds
        while time.perf_counter() < deadline:  # the kernels' launches: Python work, GIL held
            pass
        with open(self.lock, "a") as device:
            fcntl.flock(device, fcntl.LOCK_EX)
            try:
                started = time.monotonic()
                time.sleep(self.device_seconds)
                ended = time.monotonic()
            finally:
                fcntl.flock(device, fcntl.LOCK_UN)
        with open(self.log, "a") as log:
            log.write(f"{started} {ended}\n")
        return super().predict(images)


def load_simulated(host_seconds: float, device_seconds: float, lock: Path, log: Path,
                   config: Config) -> SimulatedDevice:
    """A worker's model (picklable through `functools.partial`)."""
    return SimulatedDevice(host_seconds, device_seconds, lock, log)


def device_use(log: Path) -> tuple[float, float, float]:
    """Seconds the device was held in all (holds never overlap), and the first hold's start and
    the last one's end (monotonic seconds)."""
    holds = [tuple(float(value) for value in line.split()) for line in log.read_text().splitlines()]
    return sum(end - start for start, end in holds), min(h[0] for h in holds), max(h[1] for h in holds)


def make_clips(folder: Path, count: int, seconds: float, size: str) -> None:
    """`count` generated clips (a test pattern with sound) of `seconds` at 30 fps."""
    folder.mkdir(parents=True)
    for index in range(count):
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", f"testsrc=size={size}:rate=30:duration={seconds}",
                        "-f", "lavfi", "-i", f"sine=frequency={300 + 50 * index}:duration={seconds}",
                        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
                        str(folder / f"clip{index}.mp4")], check=True)


def simulate(args: argparse.Namespace, work: Path) -> list[dict]:
    """Each N of `args.jobs` over the same clips; one row each."""
    clips = work / "clips"
    make_clips(clips, args.clips, args.seconds, args.size)
    rows = []
    for jobs in args.jobs:
        lock, log = work / f"device-{jobs}.lock", work / f"device-{jobs}.log"
        log.touch()
        load = partial(load_simulated, args.host_ms / 1000, args.device_ms / 1000, lock, log)
        config = Config(input=clips, output=work / f"out-{jobs}", jobs=jobs, batch_size=args.batch,
                        progress=False, save_poses=False, end_card_seconds=0.0)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        results = run_folder_in_jobs(config, clips, config.output, load=load)
        end = time.monotonic()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        frames = sum(row.frames or 0 for row in results)
        if any(row.status != "done" for row in results):
            raise SystemExit(f"--jobs {jobs}: {[(row.input, row.status, row.error) for row in results]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        wall = end - start
        held, first, last = device_use(log)
        rows.append({"jobs": jobs, "frames": frames, "wall": wall, "fps": frames / wall, "busy": held / wall,
                     "busy_running": held / (last - first), "cores": cpu / wall})
    return rows


def peak_memory(args: argparse.Namespace, work: Path) -> list[tuple[str, float, float]]:
    """One 1080p video through the CLI per model: (model, peak resident GiB, seconds)."""
    clip = work / "clip1080.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"testsrc=size=1920x1080:rate=30:duration={args.seconds}", "-c:v", "libx264",
                    "-preset", "ultrafast", str(clip)], check=True)
    found = []
    for model, extra in (("yolo", ["--weights", str(SHARED_YOLO)]), ("keypointrcnn", ["--weights", "random"])):
        if model == "yolo" and not SHARED_YOLO.is_file():
            continue
        # A process per model, so that each peak is its own (RUSAGE_CHILDREN keeps the largest).
        code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        command = [sys.executable, "-m", "pipeline", str(clip), str(work / f"{model}.mp4"), "--model", model, *extra,
                   "--device", "cpu", "--no-progress"]
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code, *command], cwd=ROOT, capture_output=True, text=True,
                              check=True)
        found.append((model, int(done.stdout.split()[-1]) / 2**20, time.perf_counter() - started))
    return found


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.jobs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=lambda text: [int(n) for n in text.split(",")], default=[1, 2, 3, 4],
                        help="the numbers of jobs to run, comma-separated (default: 1,2,3,4)")
    parser.add_argument("--clips", type=int, default=6, help="clips in the folder (default: 6)")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each clip (default: 12)")
    parser.add_argument("--size", default="320x180", help="the clips' size (default: 320x180)")
    parser.add_argument("--batch", type=int, default=4, help="frames per batch (default: 4)")
    parser.add_argument("--host-ms", type=float, default=20.0,
                        help="interpreter time per batch, the GIL held (default: 20)")
    parser.add_argument("--device-ms", type=float, default=40.0,
                        help="simulated device time per batch, the GIL free (default: 40)")
    parser.add_argument("--memory", action="store_true",
                        help="measure one 1080p video's peak memory per model instead (seconds: --seconds)")
    return parser


def main(args: argparse.Namespace) -> int:
    print(f"date {date.today()}  {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as folder:
        work = Path(folder)
        if args.memory:
            print("| model | peak resident memory, GiB | seconds |\n| --- | ---: | ---: |")
            for model, gib, seconds in peak_memory(args, work):
                print(f"| {model} | {gib:.2f} | {seconds:.0f} |")
            return 0
        print(f"{args.clips} clips of {args.seconds:g} s at {args.size}, 30 fps; batch {args.batch}; "
              f"host {args.host_ms:g} ms + device {args.device_ms:g} ms a batch "
              f"(the device alone: {1000 * args.batch / args.device_ms:.0f} frames/s)")
        print("| jobs | frames | wall s | frames/s | x one job | device busy: whole run / first to last batch "
              "| CPU cores used |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        rows = simulate(args, work)
        for row in rows:
            print(f"| {row['jobs']} | {row['frames']} | {row['wall']:.1f} | {row['fps']:.1f} | "
                  f"{row['fps'] / rows[0]['fps']:.2f} | {100 * row['busy']:.0f}% / {100 * row['busy_running']:.0f}% | "
                  f"{row['cores']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(get_args_parser().parse_args()))
