"""Camera cuts: how much the picture changed from one frame to the next.

Pure math on a frame, no I/O. The score stage keeps a small picture of each frame
(`scene_thumbnail`) and marks a cut where the change (`scene_change`) reaches
`workers.annotate.Annotator.SCENE_CUT`; `workers.identity` joins nobody across a cut.
"""

from __future__ import annotations

import cv2
import numpy as np


def scene_thumbnail(image: np.ndarray) -> np.ndarray:
    """A small HSV picture of the frame for `scene_change`: about 32 pixels on the shorter
    side (nearest neighbour, so only those pixels are read), uint8 (hue 0..179)."""
    height, width = image.shape[:2]
    scale = 32.0 / max(1, min(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_NEAREST), cv2.COLOR_RGB2HSV)


def scene_change(previous: np.ndarray, current: np.ndarray) -> float:
    """How much the picture changed between two thumbnails: the mean absolute difference of
    hue, saturation and value (0..255 scale, hue's 0..180 wrapped round), averaged over the
    three, as PySceneDetect's content detector measures a cut."""
    difference = cv2.absdiff(previous, current)
    hue = difference[..., 0].astype(np.int16)
    hue_change = float(np.minimum(hue, 180 - hue).mean()) * (255.0 / 90.0)
    saturation_change, value_change = cv2.mean(difference)[1:3]
    return (hue_change + saturation_change + value_change) / 3.0
