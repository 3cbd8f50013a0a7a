"""Typed data that flows between the stages, validated once where it is made."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from workers.skeleton import NUM_KEYPOINTS


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
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    duration: float
    has_audio: bool
    audio_codec: str | None
    video_codec: str

    @property
    def expected_frames(self) -> int:
        """Frame count estimated from duration and rate (the header is an estimate)."""
        return max(0, round(self.duration * float(self.fps)))


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame.

    Attributes:
        index: 0-based position in the video.
        timestamp: Presentation time in seconds (index / fps).
        image: RGB image, uint8, shape (height, width, 3).
    """

    index: int
    timestamp: float
    image: np.ndarray

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
