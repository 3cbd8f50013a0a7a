"""Draw stage: skeletons, the on-screen score and the end card, on RGB uint8 images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
#: Smallest font scale of a person's label (about 11 pixels tall: still readable on 1080p).
MIN_LABEL_SCALE = 0.4


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
    limbs = np.array(LIMBS)
    for person in range(len(persons)):
        colour = colour_of(person if ids is None else ids[person])
        points = np.round(persons.keypoints[person]).astype(np.int32)
        visible = persons.keypoint_scores[person] > keypoint_threshold
        # One call per person for the limbs and one for the dots (a dot is a line of no length
        # with round ends), not one per limb and keypoint: a class of 30 is 1,000 calls a frame.
        shown = limbs[visible[limbs[:, 0]] & visible[limbs[:, 1]]]
        if len(shown):
            cv2.polylines(image, list(points[shown]), False, colour, thickness, cv2.LINE_AA)
        dots = points[visible]
        if len(dots):
            cv2.polylines(image, list(np.repeat(dots[:, None], 2, axis=1)), False, colour, 2 * radius, cv2.LINE_AA)


def draw_person_labels(image: np.ndarray, persons: Detections, ids: Sequence[int],
                       texts: Sequence[str]) -> list[tuple[int, int, int, int]]:
    """Write each person's label (e.g. "#2 +120 ms") by its box, in its colour, in place.

    Made for a class as well as a pair: a label is no wider than about its person's box (the
    font shrinks for small people, down to a readable minimum), and goes above the head where
    that is free, else below the feet, else inside the box's top, never over a label already
    written (people in front, lower in the picture, first). Where no place is free it goes
    above the head anyway.

    Args:
        image: RGB uint8 (h, w, 3), drawn on.
        persons: The persons labelled (their boxes place the labels).
        ids: (n,) track ids (colours).
        texts: (n,) one label per person; an empty one is not drawn.

    Returns:
        The rectangles written, (x0, y0, x1, y1) pixels, in the order written.
    """
    scale = scale_for(image)
    height_px, width_px = image.shape[:2]
    placed: list[tuple[int, int, int, int]] = []
    order = sorted(range(len(texts)), key=lambda k: -float(persons.boxes[k, 3]))  # front (lowest feet) first
    for person in order:
        text = texts[person]
        if not text:
            continue
        x0, y0, x1, y1 = (float(v) for v in persons.boxes[person])
        font_scale = 0.8 * scale
        thickness = max(1, round(2 * scale))
        (width, height), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
        room = max(x1 - x0, 1.0) * 1.3
        if width > room:  # a small person: a smaller label, not smaller than readable
            font_scale = max(MIN_LABEL_SCALE, font_scale * room / width)
            thickness = max(1, round(thickness * font_scale / (0.8 * scale)))
            (width, height), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
        pad = max(2, round(3 * font_scale / 0.8))
        x = int(np.clip((x0 + x1 - width) / 2, pad, max(pad, width_px - width - pad)))
        # Text baselines: clear above the head, clear below the feet, inside the box's top.
        candidates = [int(y0) - baseline - pad - 2, int(y1) + height + pad + 2, int(y0) + height + pad]
        rects = []
        for y in candidates:
            y = int(np.clip(y, height + pad, max(height + pad, height_px - baseline - pad)))
            rects.append((x - pad, y - height - pad, x + width + pad, y + baseline + pad))
        rect = next((r for r in rects if not any(_overlap(r, other) for other in placed)), rects[0])
        placed.append(rect)
        cv2.rectangle(image, rect[:2], rect[2:], (0, 0, 0), -1)
        cv2.putText(image, text, (rect[0] + pad, rect[3] - baseline - pad), FONT, font_scale, colour_of(ids[person]),
                    thickness, cv2.LINE_AA)
    return placed


@dataclass(frozen=True)
class Overlay:
    """What is drawn on one frame, decided by the score stage, drawn by the draw stage.

    Attributes:
        persons: The frame's persons.
        ids: (n,) their track ids (colours).
        labels: (n,) their labels, e.g. "#2 +120 ms".
        text: The on-screen score, or None.
        keypoint_threshold: Minimum keypoint score (model scale) for a keypoint to be drawn.
        inset: The time-aligned teacher to show in a corner (`--reference`), or None.
    """

    persons: Detections
    ids: tuple[int, ...]
    labels: tuple[str, ...]
    text: str | None
    keypoint_threshold: float
    inset: Inset | None = None


@dataclass(frozen=True, eq=False)
class Inset:
    """A small picture drawn in the bottom-right corner of a frame: the teacher at this moment.

    Attributes:
        image: RGB uint8 (h, w, 3), already at its size on the frame.
        keypoints: (17, 2) the teacher's keypoints in the picture's pixels, NaN where absent;
            None draws no skeleton.
        label: A caption, e.g. "Teacher".
    """

    image: np.ndarray
    keypoints: np.ndarray | None
    label: str


#: The colour of the teacher's skeleton in the picture-in-picture.
INSET_COLOUR = (255, 255, 255)


def draw_inset(image: np.ndarray, inset: Inset) -> None:
    """Place `inset` in the bottom-right corner of `image` with a border, its skeleton and its
    caption, in place (cut where it does not fit)."""
    scale = scale_for(image)
    margin = max(4, round(12 * scale))
    height, width = inset.image.shape[:2]
    frame_height, frame_width = image.shape[:2]
    height, width = min(height, frame_height - 2 * margin), min(width, frame_width - 2 * margin)
    if height <= 0 or width <= 0:
        return
    top, left = frame_height - margin - height, frame_width - margin - width
    picture = inset.image[:height, :width].copy()  # the same teacher frame can be shown again
    if inset.keypoints is not None:
        points = np.asarray(inset.keypoints, dtype=np.float64)
        visible = np.asarray(np.isfinite(points).all(axis=1))
        limbs = np.array(LIMBS)
        shown = limbs[visible[limbs[:, 0]] & visible[limbs[:, 1]]]
        thickness = max(1, round(2 * scale * width / frame_width * 2))
        whole = np.round(np.nan_to_num(points)).astype(np.int32)
        if len(shown):
            cv2.polylines(picture, list(whole[shown]), False, INSET_COLOUR, thickness, cv2.LINE_AA)
    image[top:top + height, left:left + width] = picture
    cv2.rectangle(image, (left - 1, top - 1), (left + width, top + height), (255, 255, 255), max(1, round(2 * scale)))
    font_scale = max(MIN_LABEL_SCALE, 0.7 * scale)
    thickness = max(1, round(1.5 * scale))
    (text_width, text_height), baseline = cv2.getTextSize(inset.label, FONT, font_scale, thickness)
    cv2.rectangle(image, (left, top), (left + text_width + 8, top + text_height + baseline + 8), (0, 0, 0), -1)
    cv2.putText(image, inset.label, (left + 4, top + text_height + 4), FONT, font_scale, (255, 255, 255), thickness,
                cv2.LINE_AA)


def paint(image: np.ndarray, overlay: Overlay | None) -> np.ndarray:
    """Draw `overlay` on `image` in place (nothing for None) and return the image.

    OpenCV releases the GIL while it draws, so frames painted on several threads are painted
    at the same time (the draw stage's pool).
    """
    if overlay is not None:
        draw_skeletons(image, overlay.persons, overlay.keypoint_threshold, overlay.ids)
        draw_person_labels(image, overlay.persons, overlay.ids, overlay.labels)
        if overlay.text:
            draw_label(image, overlay.text)
        if overlay.inset is not None:
            draw_inset(image, overlay.inset)
    return image


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


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
