"""Typed data that flows between the stages, validated once where it is made."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from workers.skeleton import NUM_KEYPOINTS

#: Which side of a frame a model's input size measures: YOLO the longer, Keypoint R-CNN the shorter.
Side = Literal["long", "short"]

#: Frames read, analysed or buffered at a time wherever a whole video is streamed from disk
#: (per-frame records, the whole-video analysis): memory stays flat however long the video.
CHUNK_FRAMES = 4096


@dataclass(frozen=True)
class VideoInfo:
    """What the probe learned about an input video.

    Attributes:
        path: The input file.
        width: Width of the decoded (upright) frames in pixels.
        height: Height of the decoded (upright) frames in pixels.
        fps: Exact frame rate as a fraction (30000/1001, not 29.97).
        duration: Container duration in seconds (0.0 when unknown).
        has_audio: Whether the file has at least one audio stream.
        audio_codec: Codec name of the first audio stream, or None.
        video_codec: Codec name of the first video stream.
        frames: Frames in the video stream as the container records them, or None when it
            does not (the count actually decoded can differ).
        rotation: Degrees the frames are turned for display (0, 90, 180, 270); width and
            height above are already those of the upright frames.
        audio_codecs: Codec names of every audio stream, in order.
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    duration: float
    has_audio: bool
    audio_codec: str | None
    video_codec: str
    frames: int | None = None
    rotation: int = 0
    audio_codecs: tuple[str, ...] = ()

    @property
    def expected_frames(self) -> int:
        """Frame count for progress displays: the container's count where it has one, else
        estimated from duration and rate (the decoded count can differ either way)."""
        if self.frames:
            return self.frames
        return max(0, round(self.duration * float(self.fps)))


class DeviceImage:
    """A frame's RGB picture in GPU memory (a torch uint8 tensor, (height, width, 3)), which
    the model takes instead of `Frame.image` and then releases, so that the GPU memory is
    held only from the decoder to the model (see `workers.nvcodec`).

    Attributes:
        tensor: The picture, or None once released.
    """

    __slots__ = ("tensor",)

    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor

    def release(self) -> None:
        """Drop the GPU picture (the host one stays in `Frame.image`)."""
        self.tensor = None


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame.

    Attributes:
        index: 0-based position in the video.
        timestamp: Presentation time in seconds (index / fps).
        image: RGB image, uint8, shape (height, width, 3).
        device_image: The same picture in GPU memory, when the GPU decoder read it; else None.
    """

    index: int
    timestamp: float
    image: np.ndarray
    device_image: DeviceImage | None = None

    def __post_init__(self) -> None:
        image = self.image
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"image must be uint8 with shape (h, w, 3), got {image.dtype} {image.shape}"
            )


@dataclass(frozen=True, eq=False)
class Detections:
    """The persons a pose model found in one frame, in pixels of that frame.

    Attributes:
        boxes: (n, 4) float64, x1, y1, x2, y2.
        box_scores: (n,) float64, person confidence (model-specific scale).
        keypoints: (n, 17, 2) float64, x, y in COCO-17 order.
        keypoint_scores: (n, 17) float64, keypoint confidence (model-specific scale:
            Keypoint R-CNN gives logits, YOLO-pose probabilities).
    """

    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.box_scores)
        expected = {
            "boxes": ((n, 4), "(n, 4)"),
            "box_scores": ((n,), "(n,)"),
            "keypoints": ((n, NUM_KEYPOINTS, 2), f"(n, {NUM_KEYPOINTS}, 2)"),
            "keypoint_scores": ((n, NUM_KEYPOINTS), f"(n, {NUM_KEYPOINTS})"),
        }
        for name, (shape, shape_text) in expected.items():
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {shape_text}, got {value.shape}")
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.box_scores)

    @classmethod
    def empty(cls) -> Detections:
        """No person in the frame."""
        return cls(
            boxes=np.zeros((0, 4)),
            box_scores=np.zeros((0,)),
            keypoints=np.zeros((0, NUM_KEYPOINTS, 2)),
            keypoint_scores=np.zeros((0, NUM_KEYPOINTS)),
        )

    def select(self, mask: np.ndarray) -> Detections:
        """The persons where mask (n,) is true, or the given indices, in that order."""
        return Detections(
            boxes=self.boxes[mask],
            box_scores=self.box_scores[mask],
            keypoints=self.keypoints[mask],
            keypoint_scores=self.keypoint_scores[mask],
        )


#: The arrays of a `Detections`, one row a person.
DETECTION_FIELDS = ("boxes", "box_scores", "keypoints", "keypoint_scores")

#: One person of one frame as stored for a whole video: the model's float32 outputs and the
#: person's track id (0 where there is none).
PERSON_RECORD = np.dtype([
    ("boxes", "<f4", (4,)),
    ("box_scores", "<f4"),
    ("keypoints", "<f4", (NUM_KEYPOINTS, 2)),
    ("keypoint_scores", "<f4", (NUM_KEYPOINTS,)),
    ("ids", "<i8"),
])


@dataclass(frozen=True, eq=False)
class PoseRows:
    """The persons of consecutive frames `start`..`start + len(counts) - 1`, in columns.

    Frame `start + k`'s persons are the records `offsets[k]`..`offsets[k + 1] - 1`.

    Attributes:
        start: Index of the first frame.
        counts: (F,) int64, persons in each frame.
        records: (R,) `PERSON_RECORD` array, all frames' persons in frame order.
    """

    start: int
    counts: np.ndarray
    records: np.ndarray

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts, dtype=np.int64).reshape(-1)
        if (counts < 0).any() or counts.sum() != len(self.records):
            raise ValueError(f"counts must be >= 0 and sum to the {len(self.records)} records, got {counts.sum()}")
        if self.records.dtype != PERSON_RECORD:
            raise ValueError(f"records must have dtype PERSON_RECORD, got {self.records.dtype}")
        object.__setattr__(self, "counts", counts)

    def __len__(self) -> int:
        return len(self.counts)

    @classmethod
    def from_frames(cls, frames: list[Detections], ids: list[np.ndarray] | None = None, start: int = 0) -> PoseRows:
        """Columns from one `Detections` (and optionally one id array) per frame."""
        counts = np.array([len(found) for found in frames], dtype=np.int64)
        records = np.zeros(int(counts.sum()), PERSON_RECORD)
        row = 0
        for index, found in enumerate(frames):
            end = row + len(found)
            for name in DETECTION_FIELDS:
                records[name][row:end] = getattr(found, name)
            if ids is not None:
                records["ids"][row:end] = ids[index]
            row = end
        return cls(start, counts, records)

    @property
    def offsets(self) -> np.ndarray:
        """(F + 1,) first record of each frame, and the record count at the end."""
        return np.concatenate([[0], np.cumsum(self.counts)])

    @property
    def frame_of_record(self) -> np.ndarray:
        """(R,) the frame index (absolute, from `start`) of each record."""
        return np.repeat(np.arange(self.start, self.start + len(self.counts)), self.counts)

    def detections(self, k: int) -> Detections:
        """Frame `start + k`'s persons."""
        offsets = self.offsets
        rows = self.records[offsets[k] : offsets[k + 1]]
        return Detections(rows["boxes"], rows["box_scores"], rows["keypoints"], rows["keypoint_scores"])

    def ids(self, k: int) -> np.ndarray:
        """Frame `start + k`'s track ids, (n,) int64."""
        offsets = self.offsets
        return self.records["ids"][offsets[k] : offsets[k + 1]].copy()

    def poses(self, keypoint_threshold: float | None = None, only: set[int] | None = None) -> dict[int, np.ndarray]:
        """Each id's keypoints over these frames, NaN where the person is absent.

        Args:
            keypoint_threshold: Keypoints scoring at or below this (model scale) become NaN;
                None keeps all.
            only: The ids wanted; None for all in these frames.

        Returns:
            {id: (F, 17, 2) float64 keypoints in pixels}, ids ascending; an id in `only`
            that is absent here gets all NaN.
        """
        frame = self.frame_of_record - self.start
        keypoints = self.records["keypoints"].astype(np.float64)
        if keypoint_threshold is not None:
            keypoints[self.records["keypoint_scores"] <= keypoint_threshold] = np.nan
        wanted = sorted(set(np.unique(self.records["ids"]).tolist()) if only is None else only)
        poses = {}
        for person_id in wanted:
            rows = np.flatnonzero(self.records["ids"] == person_id)
            series = np.full((len(self), NUM_KEYPOINTS, 2), np.nan)
            series[frame[rows]] = keypoints[rows]
            poses[int(person_id)] = series
        return poses
