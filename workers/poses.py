"""The pose cache: every frame's raw detections, saved beside the output and reusable.

Format (`<output stem>.poses.npz`, a compressed NumPy archive, readable with `numpy.load`):

| array | shape | meaning |
| --- | --- | --- |
| `counts` | (frames,) int32 | persons detected in each frame |
| `boxes` | (persons, 4) float32 | x1, y1, x2, y2 in pixels, all frames' persons in frame order |
| `box_scores` | (persons,) float32 | person confidence (the model's scale) |
| `keypoints` | (persons, 17, 2) float32 | x, y in pixels, COCO-17 order |
| `keypoint_scores` | (persons, 17) float32 | keypoint confidence (the model's scale) |
| `meta` | () str | JSON: format, model, settings, frames, fps, width, height, input |

Frame k's persons are rows `sum(counts[:k])` to `sum(counts[:k+1])`. Model outputs are
float32, so the archive holds them exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from workers.data import Detections, VideoInfo
from workers.errors import SyncError

FORMAT = "dancingskeletons-poses/1"


class PoseCacheError(SyncError, ValueError):
    """A pose cache that is unreadable or does not match the video or the settings."""


def poses_path(output: Path) -> Path:
    """Where a run's pose cache goes: beside the output video, same stem."""
    return output.with_name(output.stem + ".poses.npz")


@dataclass(frozen=True)
class PoseCacheMeta:
    """What a pose cache was made from.

    Attributes:
        model: Model name.
        settings: The model settings that change detections (weights, input size,
            min_box_score, max_persons).
        frames: Frame count.
        fps: Frame rate as "num/den".
        width: Frame width in pixels.
        height: Frame height in pixels.
        input: The input file's name.
    """

    model: str
    settings: dict
    frames: int
    fps: str
    width: int
    height: int
    input: str


_COLUMNS = {"boxes": (4,), "box_scores": (), "keypoints": (17, 2), "keypoint_scores": (17,)}


class PoseLog:
    """Every frame's persons, kept compact: a few growing float32 arrays, not an object a frame.

    About 230 bytes a person and 12 a frame, against some 1,900 bytes a frame for a list of
    `Detections` with two persons: a two-hour video at 30 fps with two people holds about
    100 MB here instead of 400 MB. Model outputs are float32, so nothing is lost.
    """

    def __init__(self) -> None:
        self._starts: list[int] = [0]
        self._rows = 0
        self._arrays = {name: np.empty((64, *tail), np.float32) for name, tail in _COLUMNS.items()}
        self._ids = np.empty(64, np.int64)

    def __len__(self) -> int:
        return len(self._starts) - 1

    def append(self, persons: Detections, ids: np.ndarray | None = None) -> None:
        """Add one frame's persons (and their track ids, if any)."""
        end = self._rows + len(persons)
        if end > len(self._ids):
            size = max(end, 2 * len(self._ids))
            for name, array in self._arrays.items():
                grown = np.empty((size, *array.shape[1:]), np.float32)
                grown[: self._rows] = array[: self._rows]
                self._arrays[name] = grown
            grown_ids = np.empty(size, np.int64)
            grown_ids[: self._rows] = self._ids[: self._rows]
            self._ids = grown_ids
        for name in _COLUMNS:
            self._arrays[name][self._rows : end] = getattr(persons, name)
        self._ids[self._rows : end] = 0 if ids is None else ids
        self._rows = end
        self._starts.append(end)

    def frame(self, index: int) -> Detections:
        """Frame `index`'s persons (negative indices count from the end)."""
        index = range(len(self))[index]
        start, end = self._starts[index], self._starts[index + 1]
        return Detections(**{name: array[start:end] for name, array in self._arrays.items()})

    def ids(self, index: int) -> np.ndarray:
        """Frame `index`'s track ids."""
        index = range(len(self))[index]
        return self._ids[self._starts[index] : self._starts[index + 1]].copy()

    def frames(self, start: int = 0) -> list[Detections]:
        """The persons of every frame from `start` on."""
        return [self.frame(index) for index in range(start, len(self))]

    def id_lists(self, start: int = 0) -> list[np.ndarray]:
        """The track ids of every frame from `start` on."""
        return [self.ids(index) for index in range(start, len(self))]

    def columns(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Persons per frame (frames,) and the stacked arrays, as the pose cache stores them."""
        counts = np.diff(np.array(self._starts)).astype(np.int32)
        return counts, {name: array[: self._rows] for name, array in self._arrays.items()}


def save_poses(path: Path, detections: Sequence[Detections] | PoseLog, meta: PoseCacheMeta) -> Path:
    """Write the cache atomically (a temporary name, then a rename)."""
    if not isinstance(detections, PoseLog):
        log = PoseLog()
        for found in detections:
            log.append(found)
        detections = log
    counts, arrays = detections.columns()
    header = {"format": FORMAT, **meta.__dict__}
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "wb") as handle:
        np.savez_compressed(handle, counts=counts, **arrays, meta=np.array(json.dumps(header)))
    os.replace(temporary, path)
    return path


def load_poses(path: Path) -> tuple[PoseCacheMeta, list[Detections]]:
    """Read a cache written by `save_poses`.

    Raises:
        PoseCacheError: The file is missing or not a pose cache.
    """
    path = Path(path)
    if not path.is_file():
        raise PoseCacheError(f"{path}: pose cache not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(str(archive["meta"]))
            if header.get("format") != FORMAT:
                raise ValueError(f"format {header.get('format')!r}")
            counts = archive["counts"]
            arrays = {name: archive[name] for name in ("boxes", "box_scores", "keypoints", "keypoint_scores")}
    except (OSError, ValueError, KeyError) as error:
        raise PoseCacheError(f"{path}: not a pose cache of this tool ({error})") from None
    header.pop("format")
    meta = PoseCacheMeta(**header)
    ends = np.cumsum(counts)
    starts = ends - counts
    frames = [
        Detections(**{name: array[start:end] for name, array in arrays.items()})
        for start, end in zip(starts, ends)
    ]
    if len(frames) != meta.frames:
        raise PoseCacheError(f"{path}: holds {len(frames)} frames but says {meta.frames}")
    return meta, frames


def check_matches(path: Path, meta: PoseCacheMeta, info: VideoInfo, model: str, min_box_score: float) -> None:
    """Refuse a cache made from another video or model, or too strict for the threshold.

    Raises:
        PoseCacheError: With what differs.
    """
    if (meta.width, meta.height) != (info.width, info.height):
        raise PoseCacheError(
            f"{path}: made from {meta.width}x{meta.height} frames, but {info.path.name} is {info.width}x{info.height}"
        )
    if Fraction(meta.fps) != info.fps:
        raise PoseCacheError(f"{path}: made at {meta.fps} fps, but {info.path.name} runs at {info.fps} fps")
    if meta.model != model:
        raise PoseCacheError(f"{path}: made with the {meta.model} model, not {model}; pass --model {meta.model}")
    floor = meta.settings.get("min_box_score")
    if floor is not None and min_box_score < floor:
        raise PoseCacheError(
            f"{path}: holds persons above {floor} only; the person threshold {min_box_score} needs a new run"
        )


class CachedPoses:
    """A PoseEstimator that replays a pose cache frame by frame instead of running a model.

    Args:
        path: The cache file (for messages).
        meta: Its header.
        frames: Its detections, one per frame.
    """

    device = "cpu"

    def __init__(self, path: Path, meta: PoseCacheMeta, frames: list[Detections]) -> None:
        self.path = path
        self.meta = meta
        self.name = meta.model
        self._frames = frames
        self.position = 0

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """The cached detections of the next len(images) frames."""
        end = self.position + len(images)
        if end > len(self._frames):
            raise PoseCacheError(f"{self.path}: holds {len(self._frames)} frames, but the video has more")
        out = self._frames[self.position : end]
        self.position = end
        return out

    def check_complete(self, frames_decoded: int) -> None:
        """Refuse a cache with more frames than the video had."""
        if frames_decoded != len(self._frames):
            raise PoseCacheError(f"{self.path}: holds {len(self._frames)} frames, but the video has {frames_decoded}")
