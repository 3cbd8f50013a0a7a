"""The pose cache: every frame's raw detections, saved beside the output and reusable.

Format (`<output stem>.poses.npz`, a compressed NumPy archive, readable with `numpy.load`):

| array | shape | meaning |
| --- | --- | --- |
| `counts` | (frames,) int32 | persons detected in each frame |
| `boxes` | (persons, 4) float32 | x1, y1, x2, y2 in pixels, all frames' persons in frame order |
| `box_scores` | (persons,) float32 | person confidence (the model's scale) |
| `keypoints` | (persons, 17, 2) float32 | x, y in pixels, COCO-17 order |
| `keypoint_scores` | (persons, 17) float32 | keypoint confidence (the model's scale) |
| `ids` | (persons,) int64 | each person's id as drawn and reported; 0 below the person threshold (older caches: none) |
| `meta` | () str | JSON: format, model, settings, frames, fps, width, height, input |

Frame k's persons are rows `sum(counts[:k])` to `sum(counts[:k+1])`. Model outputs are
float32, so the archive holds them exactly.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import numpy as np

from workers.data import CHUNK_FRAMES, DETECTION_FIELDS, PERSON_RECORD, Detections, PoseRows, VideoInfo
from workers.errors import PoseCacheError
from workers.files import write_atomically
from workers.infer import PoseModel
from workers.spool import RecordSpool

FORMAT = "dancingskeletons-poses/1"


def poses_path(output: Path) -> Path:
    """Where a run's pose cache goes: beside the output video, same stem."""
    return output.with_name(output.stem + ".poses.npz")


@dataclass(frozen=True)
class PoseCacheMeta:
    """What a pose cache was made from.

    Attributes:
        model: Model name.
        settings: The model settings that change detections (weights, input size,
            person_threshold, max_persons).
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


class PoseLog:
    """Every frame's persons (and track ids) for a whole video, on disk, not in memory.

    The persons go to a `RecordSpool` of `PERSON_RECORD`s (232 bytes each) and the frames'
    record ends to another, so memory stays the same however long the video: a two-hour
    video at 30 fps with two people writes about 100 MB to a temporary file that the
    operating system removes when the log is closed or the process ends.

    Args:
        directory: Where the temporary files live; None for the system's temporary folder.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._records = RecordSpool(PERSON_RECORD, directory)
        self._ends = RecordSpool(np.dtype(np.int64), directory)  # records up to and including each frame

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> Detections:
        return self.frame(index)

    def __iter__(self) -> Iterator[Detections]:
        for chunk in self.chunks():
            for k in range(len(chunk)):
                yield chunk.detections(k)

    @property
    def records(self) -> int:
        """Persons stored, all frames together."""
        return len(self._records)

    def append(self, persons: Detections, ids: np.ndarray | None = None) -> None:
        """Add one frame's persons (and their track ids, if any)."""
        self.extend(PoseRows.from_frames([persons], None if ids is None else [ids]))

    def extend(self, rows: PoseRows) -> None:
        """Add the frames of `rows` after the last frame (their `start` is not checked)."""
        base = len(self._records)
        self._records.extend(rows.records)
        self._ends.extend(base + np.cumsum(rows.counts))

    def rows(self, start: int = 0, stop: int | None = None) -> PoseRows:
        """Frames start..stop-1 (clipped to the log) in columns."""
        start, stop, _ = slice(start, stop).indices(len(self))
        stop = max(start, stop)
        ends = self._ends.read(start - 1, stop) if start > 0 else np.concatenate([[0], self._ends.read(0, stop)])
        records = self._records.read(int(ends[0]), int(ends[-1]))
        return PoseRows(start, np.diff(ends), records)

    def chunks(self, frames: int = CHUNK_FRAMES) -> Iterator[PoseRows]:
        """Consecutive `rows` of at most `frames` frames, all of them."""
        for first in range(0, len(self), frames):
            yield self.rows(first, first + frames)

    def frame(self, index: int) -> Detections:
        """Frame `index`'s persons (negative indices count from the end)."""
        index = range(len(self))[index]
        return self.rows(index, index + 1).detections(0)

    def ids(self, index: int) -> np.ndarray:
        """Frame `index`'s track ids."""
        index = range(len(self))[index]
        return self.rows(index, index + 1).ids(0)

    def close(self) -> None:
        """Remove the temporary files."""
        self._records.close()
        self._ends.close()


def save_poses(path: Path, detections: Sequence[Detections] | PoseLog, meta: PoseCacheMeta) -> Path:
    """Write the cache atomically (a temporary name, then a rename), a chunk at a time.

    The archive is what `numpy.savez_compressed` would write, but built column by column from
    the log's chunks, so saving a two-hour video does not load it into memory.
    """
    if not isinstance(detections, PoseLog):
        log = PoseLog()
        for found in detections:
            log.append(found)
        detections = log
    header = {"format": FORMAT, **meta.__dict__}
    log = detections

    def write(handle: io.BufferedWriter) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            counts = (np.diff(rows.offsets).astype(np.int32) for rows in log.chunks())
            _write_member(archive, "counts", np.dtype(np.int32), (len(log),), counts)
            for name in (*DETECTION_FIELDS, "ids"):
                field = PERSON_RECORD[name]
                shape = (log.records, *field.shape)
                parts = (rows.records[name] for rows in log.chunks())
                _write_member(archive, name, field.base, shape, parts)
            _write_member(archive, "meta", None, (), [np.array(json.dumps(header))])

    return write_atomically(path, write)


def _write_member(
    archive: zipfile.ZipFile, name: str, dtype: np.dtype | None, shape: tuple[int, ...], parts: Iterable[np.ndarray]
) -> None:
    """One `.npy` member of an archive, written from consecutive parts of the array."""
    parts = iter(parts)
    with archive.open(name + ".npy", "w", force_zip64=True) as member:
        if dtype is None:  # a small array written whole
            np.lib.format.write_array(member, next(parts), allow_pickle=False)
            return
        np.lib.format.write_array_header_2_0(member, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                      "fortran_order": False, "shape": shape})
        for part in parts:
            member.write(np.ascontiguousarray(part, dtype=dtype).tobytes())


def load_poses(path: Path) -> tuple[PoseCacheMeta, PoseLog]:
    """Read a cache written by `save_poses` into a `PoseLog`, a chunk at a time.

    The log's temporary files go to the system's temporary folder: the cache's own folder
    may be read-only.

    Args:
        path: The `.poses.npz` file.

    Raises:
        PoseCacheError: The file is missing or not a pose cache.
    """
    path = Path(path)
    if not path.is_file():
        raise PoseCacheError(f"{path}: pose cache not found")
    log = PoseLog()
    try:
        with zipfile.ZipFile(path) as archive:
            meta = _read_meta(archive)
            optional = ("ids",) if "ids.npy" in archive.namelist() else ()
            streams = {name: archive.open(name + ".npy") for name in ("counts", *DETECTION_FIELDS, *optional)}
            try:
                readers = {name: _NpyReader(stream) for name, stream in streams.items()}
                total = readers["counts"].rows
                if any(readers[name].rows != readers["keypoints"].rows for name in (*DETECTION_FIELDS, *optional)):
                    raise ValueError("the person arrays differ in length")
                for first in range(0, total, CHUNK_FRAMES):
                    counts = readers["counts"].read(min(CHUNK_FRAMES, total - first)).astype(np.int64)
                    if (counts < 0).any() or counts.sum() > readers["keypoints"].left:
                        raise ValueError("person counts that do not match the persons stored")
                    records = np.zeros(int(counts.sum()), PERSON_RECORD)
                    for name in (*DETECTION_FIELDS, *optional):
                        records[name] = readers[name].read(len(records))
                    log.extend(PoseRows(first, counts, records))
                if readers["keypoints"].left:
                    raise ValueError("more persons than the counts say")
            finally:
                for stream in streams.values():
                    stream.close()
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        log.close()
        raise PoseCacheError(f"{path}: not a pose cache of this tool ({error})") from None
    if len(log) != meta.frames:
        log.close()
        raise PoseCacheError(f"{path}: holds {len(log)} frames but says {meta.frames}")
    return meta, log


def read_poses_meta(path: Path) -> PoseCacheMeta:
    """The header of a pose cache alone (which model, video size and rate), without its frames.

    Raises:
        PoseCacheError: The file is missing or not a pose cache.
    """
    path = Path(path)
    if not path.is_file():
        raise PoseCacheError(f"{path}: pose cache not found")
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_meta(archive)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise PoseCacheError(f"{path}: not a pose cache of this tool ({error})") from None


def _read_meta(archive: zipfile.ZipFile) -> PoseCacheMeta:
    with archive.open("meta.npy") as member:
        header = json.loads(str(np.lib.format.read_array(member, allow_pickle=False)))
    found = header.pop("format", None)
    if found != FORMAT:
        raise ValueError(f"format {found!r}")
    return PoseCacheMeta(**header)


class _NpyReader:
    """Consecutive rows of a `.npy` stream (C order), without reading it whole."""

    def __init__(self, stream: IO[bytes]) -> None:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
        if fortran_order or dtype.hasobject or not shape:
            raise ValueError("an array of an unexpected layout")
        self.stream, self.dtype, self.tail = stream, dtype, shape[1:]
        self.rows = shape[0]
        self.left = shape[0]

    def read(self, rows: int) -> np.ndarray:
        """The next `rows` rows."""
        if rows > self.left:
            raise ValueError("fewer rows than needed")
        size = rows * self.dtype.itemsize * int(np.prod(self.tail, dtype=np.int64))
        data = self.stream.read(size)
        if len(data) != size:
            raise ValueError("the archive ends early")
        self.left -= rows
        return np.frombuffer(data, self.dtype).reshape(rows, *self.tail)


def check_matches(path: Path, meta: PoseCacheMeta, info: VideoInfo, model: str, person_threshold: float) -> None:
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
        raise PoseCacheError(f"{path}: made with the {meta.model} model, not {model}; leave out --model (a replay "
                             f"uses the cache's model) or make a new run with --model {model}")
    floor = meta.settings.get("person_threshold", meta.settings.get("min_box_score"))  # the latter: older caches
    if floor is not None and person_threshold < floor:
        raise PoseCacheError(
            f"{path}: holds persons above {floor} only; the person threshold {person_threshold} needs a new run"
        )


class CachedPoses(PoseModel):
    """A PoseEstimator that replays a pose cache frame by frame instead of running a model.

    Args:
        path: The cache file (for messages).
        meta: Its header.
        frames: Its detections, one per frame (a `PoseLog` from `load_poses`).
    """

    device = "cpu"
    runtime: str | None = None
    replays_cache = True

    def __init__(self, path: Path, meta: PoseCacheMeta, frames: Sequence[Detections] | PoseLog) -> None:
        self.path = path
        self.meta = meta
        self.name = meta.model
        self._frames = frames
        self.position = 0

    @classmethod
    def open(cls, path: Path) -> CachedPoses:
        """The replay of the cache at `path` (see `load_poses`)."""
        meta, frames = load_poses(path)
        return cls(Path(path), meta, frames)

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """The cached detections of the next len(images) frames."""
        end = self.position + len(images)
        if end > len(self._frames):
            raise PoseCacheError(f"{self.path}: holds {len(self._frames)} frames, but the video has more")
        out = [self._frames[index] for index in range(self.position, end)]
        self.position = end
        return out

    def check_complete(self, frames_decoded: int) -> None:
        """Refuse a cache with more frames than the video had."""
        if frames_decoded != len(self._frames):
            raise PoseCacheError(f"{self.path}: holds {len(self._frames)} frames, but the video has {frames_decoded}")
