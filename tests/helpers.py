"""Test helpers: real videos made with the bundled ffmpeg, and a stand-in pose model."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from workers.data import Detections
from workers.ffmpeg import ffmpeg_exe
from workers.infer import PoseModel
from workers.skeleton import STANDING_POSE

SHARED = Path(__file__).resolve().parents[2] / "shared"
VIDEOS = SHARED / "videos"
FIXTURES = SHARED / "fixtures"


def need_shared(*parts: str) -> Path:
    """A path under ../shared, or skip the test when it is absent (a user's fresh clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is only on the team's machines)")
    return path


def make_video(
    path: Path,
    *,
    seconds: float = 1.0,
    fps: str = "10",
    size: str = "160x120",
    audio: bool = False,
    extra: Sequence[str] = (),
) -> Path:
    """Generate a small H.264 test video (moving test pattern, optional sine audio)."""
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra, str(path)]
    subprocess.run(args, check=True)
    return path


def stream_facts(path: Path) -> dict:
    """Frames (counted by decoding), size, rate and audio of a file, read with ffmpeg."""
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )
    lines = result.stderr.replace("\r", "\n").splitlines()
    frames = max(int(line.split("=", 1)[1].split()[0]) for line in lines if line.startswith("frame="))
    video = next(line for line in lines if "Video:" in line and "Stream #0:" in line)
    import re

    width, height = map(int, re.search(r", (\d+)x(\d+)", video).groups())
    fps = re.search(r", ([\d.]+) fps", video).group(1)
    audio = any("Audio:" in line and "Stream #0:" in line for line in lines)
    return {"frames": frames, "width": width, "height": height, "fps": fps, "audio": audio}


def pose(scale: float = 100.0, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """A standing COCO-17 pose, (17, 2) pixels."""
    return np.array(STANDING_POSE) * scale + np.array([dx, dy])


def detections(poses: Sequence[np.ndarray], box_scores: Sequence[float] | None = None,
               keypoint_score: float = 10.0) -> Detections:
    """Detections for the given poses, confident unless told otherwise."""
    n = len(poses)
    keypoints = np.array(poses, dtype=np.float64).reshape(n, 17, 2)
    boxes = np.concatenate([keypoints.min(axis=1), keypoints.max(axis=1)], axis=1) if n else np.zeros((0, 4))
    return Detections(
        boxes=boxes,
        box_scores=np.array(box_scores if box_scores is not None else [0.99 - 0.01 * i for i in range(n)]),
        keypoints=keypoints,
        keypoint_scores=np.full((n, 17), keypoint_score),
    )


class StandInEstimator(PoseModel):
    """A pose model that returns known skeletons: two identical dancers, some frames alone.

    Frame k (counted over calls) has two persons with the same pose when k % 5 != 4, and one
    person otherwise. Optionally raises on the n-th call.
    """

    name = "stand-in"
    device = "cpu"

    def __init__(self, raise_on_call: int | None = None) -> None:
        self.calls = 0
        self.frames = 0
        self.raise_on_call = raise_on_call

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        self.calls += 1
        if self.raise_on_call is not None and self.calls >= self.raise_on_call:
            raise RuntimeError("stand-in model failed on purpose")
        out = []
        for image in images:
            height, width = image.shape[:2]
            scale = height / 5
            left = pose(scale, width * 0.3, height / 2)
            right = pose(scale, width * 0.7, height / 2)
            out.append(detections([left, right] if self.frames % 5 != 4 else [left]))
            self.frames += 1
        return out


def child_processes(parent: int | None = None, commands: bool = True) -> list:
    """The living children (zombies excluded) of `parent` (default: this process): their
    command names and lines for people, or with `commands=False` their process ids."""
    import os

    wanted = str(os.getpid() if parent is None else parent)
    found: list = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        if ppid != wanted or state == "Z":
            continue
        if not commands:
            found.append(int(stat.parent.name))
            continue
        command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        if "multiprocessing.resource_tracker" in command:
            continue  # started by the first worker process of a `--jobs` test; it lives as long as pytest
        found.append(f"{name}: ...{command[-160:]}")
    return found


def read_summary(folder: Path) -> list[dict]:
    """The rows of a folder run's `summary.csv`, its columns and rows checked against the schema."""
    import csv

    from reports.summary import SUMMARY_COLUMNS
    from tests.conftest import validate_summary_rows

    with open(folder / "summary.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == SUMMARY_COLUMNS
        rows = list(reader)
    validate_summary_rows(rows)
    return rows


def partial_files(folder: Path) -> list[Path]:
    """The partial outputs (hidden `.partial` names) under `folder`."""
    return [path for path in folder.rglob("*") if path.name.endswith(".partial")]


def ffmpeg_writing_to(folder: Path) -> list[str]:
    """Command lines of living ffmpeg processes that mention `folder` (any process of this machine)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if words and b"ffmpeg" in words[0] and any(str(folder).encode() in word for word in words):
            found.append(b" ".join(words).decode(errors="replace")[-200:])
    return found
