"""Draw stage: skeletons, the on-screen score and the end card, on RGB uint8 images."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from workers.data import Detections
from workers.skeleton import LIMBS

#: Distinct RGB colours, one per person (cycled).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def scale_for(image: np.ndarray) -> float:
    """Drawing scale: 1.0 for a 720-pixel short side, proportional otherwise."""
    return min(image.shape[:2]) / 720.0


def colour_of(person_id: int) -> tuple[int, int, int]:
    """The RGB colour of a tracked person: the same id keeps the same colour all video."""
    return PALETTE[int(person_id) % len(PALETTE)]


def draw_skeletons(
    image: np.ndarray, persons: Detections, keypoint_threshold: float, ids: Sequence[int] | None = None
) -> None:
    """Draw each person's keypoints above the threshold and the limbs between them, in place.

    Args:
        image: RGB uint8 (h, w, 3), drawn on.
        persons: The persons to draw.
        keypoint_threshold: Minimum keypoint score (model scale) for a keypoint to be drawn.
        ids: (n,) track ids, which choose the colours (`colour_of`); None colours the
            persons in their order.
    """
    scale = scale_for(image)
    radius = max(2, round(4 * scale))
    thickness = max(1, round(3 * scale))
    for person in range(len(persons)):
        colour = colour_of(person if ids is None else ids[person])
        points = np.round(persons.keypoints[person]).astype(np.int32)
        visible = persons.keypoint_scores[person] > keypoint_threshold
        for a, b in LIMBS:
            if visible[a] and visible[b]:
                cv2.line(image, tuple(map(int, points[a])), tuple(map(int, points[b])), colour, thickness, cv2.LINE_AA)
        for k in np.flatnonzero(visible):
            cv2.circle(image, tuple(map(int, points[k])), radius, colour, -1, cv2.LINE_AA)


def draw_person_labels(image: np.ndarray, persons: Detections, ids: Sequence[int], texts: Sequence[str]) -> None:
    """Write each person's label (e.g. "#2 +120 ms") above its box, in its colour, in place.

    Args:
        image: RGB uint8 (h, w, 3), drawn on.
        persons: The persons labelled (their boxes place the labels).
        ids: (n,) track ids (colours).
        texts: (n,) one label per person; an empty one is not drawn.
    """
    scale = scale_for(image)
    font_scale = 0.8 * scale
    thickness = max(1, round(2 * scale))
    height_px, width_px = image.shape[:2]
    for person, text in enumerate(texts):
        if not text:
            continue
        (width, height), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
        pad = max(2, round(4 * scale))
        x1, y1 = persons.boxes[person, :2]
        # Above the box when there is room, else just inside its top; always inside the frame.
        x = int(np.clip(x1, pad, max(pad, width_px - width - pad)))
        y = int(y1) - baseline - pad if y1 - height - baseline - 2 * pad >= 0 else int(y1) + height + pad
        y = int(np.clip(y, height + pad, max(height + pad, height_px - baseline - pad)))
        cv2.rectangle(image, (x - pad, y - height - pad), (x + width + pad, y + baseline + pad), (0, 0, 0), -1)
        cv2.putText(image, text, (x, y), FONT, font_scale, colour_of(ids[person]), thickness, cv2.LINE_AA)


def draw_label(image: np.ndarray, text: str) -> None:
    """Write `text` in the top-left corner on a dark band, sized to the frame, in place."""
    if not text:
        return
    scale = scale_for(image)
    font_scale = 1.1 * scale
    thickness = max(1, round(2 * scale))
    (width, height), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
    margin = max(4, round(12 * scale))
    x, y = margin, margin + height
    top_left = (x - margin // 2, y - height - margin // 2)
    bottom_right = (x + width + margin // 2, y + baseline + margin // 2)
    cv2.rectangle(image, top_left, bottom_right, (0, 0, 0), -1)
    cv2.putText(image, text, (x, y), FONT, font_scale, (255, 255, 255), thickness, cv2.LINE_AA)


def end_card(width: int, height: int, text: str) -> np.ndarray:
    """A black RGB frame with `text` centred on it: its first line large, the others smaller
    below it, each shrunk where it would not fit the width."""
    image = np.zeros((height, width, 3), np.uint8)
    scale = min(width, height) / 720.0
    lines = text.split("\n")
    sizes = []
    for number, line in enumerate(lines):
        font_scale = (2.0 if number == 0 else 1.2) * scale
        thickness = max(1, round((4 if number == 0 else 2) * scale))
        (line_width, line_height), _ = cv2.getTextSize(line, FONT, font_scale, thickness)
        if line_width > 0.95 * width:
            font_scale *= 0.95 * width / line_width
            (line_width, line_height), _ = cv2.getTextSize(line, FONT, font_scale, thickness)
        sizes.append((font_scale, thickness, line_width, line_height))
    gap = round(0.6 * sizes[0][3])
    top = (height - sum(size[3] for size in sizes) - gap * (len(lines) - 1)) // 2
    for line, (font_scale, thickness, line_width, line_height) in zip(lines, sizes):
        top += line_height
        cv2.putText(image, line, ((width - line_width) // 2, top), FONT, font_scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
        top += gap
    return image
