"""Inference on every K-th frame: which frames go through the model, and the persons between.

Pure logic, no threads: `detect_frames` turns a stream of frames and a batch model call into
the stream of (frame, persons) the score stage needs, in order. The infer stage of
`pipeline.runner` drives it with its queue; the unit tests drive it with lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

import numpy as np

from workers.data import Detections


class _Indexed(Protocol):
    index: int


FrameT = TypeVar("FrameT", bound=_Indexed)


def detect_frames(
    frames: Iterable[FrameT],
    predict: Callable[[Sequence[FrameT]], Sequence[Detections]],
    every: int = 1,
    batch_size: int = 1,
) -> Iterator[tuple[FrameT, Detections]]:
    """Every frame with its persons: model output on key frames, interpolated between.

    Key frames are those whose index is a multiple of `every`, and the video's last frame (so
    that the frames after the last multiple have a key on both sides). `predict` gets up to
    `batch_size` key frames at a time; a round reads frames only up to its `batch_size`-th
    key, so a frame waits for no key beyond the next batch. A frame between two keys gets
    `interpolate_detections` of the two at its place; frames before the first key (a stream
    that does not start at a multiple) take the first key's persons.

    Args:
        frames: The frames in order, each with an `index` (frames of the video from 0).
        predict: Runs the model on a batch of key frames; one `Detections` per frame.
        every: K >= 1: run the model on every K-th frame.
        batch_size: Most key frames per `predict` call, >= 1.

    Yields:
        (frame, persons) for every frame of `frames`, in order.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    source = iter(frames)
    last_key: tuple[FrameT, Detections] | None = None
    finished = False
    while not finished:
        batch: list[FrameT] = []
        keys = 0
        while keys < batch_size:
            frame = next(source, None)
            if frame is None:
                finished = True
                break
            batch.append(frame)
            keys += frame.index % every == 0
        if not batch:
            return
        is_key = [frame.index % every == 0 for frame in batch]
        is_key[-1] = is_key[-1] or finished  # the video's last frame closes the last gap
        found = iter(predict([frame for frame, key in zip(batch, is_key) if key]))
        waiting: list[FrameT] = []
        for frame, key in zip(batch, is_key):
            if not key:
                waiting.append(frame)
                continue
            current = (frame, next(found))
            before = last_key if last_key is not None else current
            span = current[0].index - before[0].index
            for between in waiting:
                fraction = (between.index - before[0].index) / span if span else 0.0
                yield between, interpolate_detections(before[1], current[1], fraction)
            waiting = []
            yield current
            last_key = current


def interpolate_detections(before: Detections, after: Detections, fraction: float) -> Detections:
    """The persons of a frame between two inferred frames, for inference on every k-th frame.

    Persons are paired across the two frames by the distance between their box centres in
    box heights (Hungarian matching; pairs over half a height apart are not paired); a pair's
    boxes, keypoints and scores are blended linearly. A person found in only one of the two
    frames is kept from the nearer one.

    Args:
        before: The persons of the earlier inferred frame.
        after: The persons of the later inferred frame.
        fraction: Where the frame lies between them, 0 (at `before`) to 1 (at `after`).

    Returns:
        The interpolated persons.
    """
    from scipy.optimize import linear_sum_assignment

    pairs: list[tuple[int, int]] = []
    if len(before) and len(after):
        centres_before = (before.boxes[:, :2] + before.boxes[:, 2:]) / 2
        centres_after = (after.boxes[:, :2] + after.boxes[:, 2:]) / 2
        heights = (before.boxes[:, 3] - before.boxes[:, 1])[:, None] + (after.boxes[:, 3] - after.boxes[:, 1])[None]
        gap = np.linalg.norm(centres_before[:, None] - centres_after[None], axis=2) / np.maximum(heights / 2, 1.0)
        rows, cols = linear_sum_assignment(gap)
        pairs = [(r, c) for r, c in zip(rows, cols) if gap[r, c] <= 0.5]
    matched_before = {r for r, _ in pairs}
    matched_after = {c for _, c in pairs}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("boxes", "box_scores", "keypoints", "keypoint_scores")}
    for r, c in pairs:
        for name, values in parts.items():
            values.append((1 - fraction) * getattr(before, name)[r] + fraction * getattr(after, name)[c])
    alone, others = (before, matched_before) if fraction < 0.5 else (after, matched_after)
    for i in range(len(alone)):
        if i not in others:
            for name, values in parts.items():
                values.append(getattr(alone, name)[i])
    if not parts["box_scores"]:
        return Detections.empty()
    return Detections(**{name: np.array(values) for name, values in parts.items()})
