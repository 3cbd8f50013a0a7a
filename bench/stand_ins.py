"""Stand-in pose models with no inference cost, for the benchmarks and the tests.

Each returns made-up skeletons at once, so that a run times the machinery alone (decode, queues,
track, score, draw, encode): `InstantModel` two still people, `DancingModel` two dancing the
same moves 3 frames apart, `CrowdModel` a class of any size. `class_dancer` is one generated
dancer; `detections_of` wraps poses as confident detections.
"""

from __future__ import annotations

import numpy as np

from workers.data import Detections
from workers.infer import PoseModel
from workers.skeleton import STANDING_POSE


class InstantModel(PoseModel):
    """A stand-in pose model with no inference cost: two fixed skeletons per frame.

    Times the machinery alone (decode, queues, score, draw, encode): the ceiling that keeps
    a fast GPU fed.
    """

    name = "instant"
    device = "cpu"

    def predict(self, images):
        height, width = images[0].shape[:2]
        unit = np.array(STANDING_POSE) * height / 5
        return [_two_people([unit + [width * 0.3, height / 2], unit + [width * 0.7, height / 2]])] * len(images)


def _two_people(poses: list[np.ndarray]) -> Detections:
    """Confident detections of the given (17, 2) poses, boxes around them."""
    keypoints = np.stack(poses)
    return Detections(
        boxes=np.concatenate([keypoints.min(axis=1), keypoints.max(axis=1)], axis=1),
        box_scores=np.array([0.99, 0.98]), keypoints=keypoints, keypoint_scores=np.full((2, 17), 10.0),
    )


class DancingModel(PoseModel):
    """A stand-in pose model with no inference cost: two people dancing the same moves, the
    second 3 frames late, so that tracking and the timing analysis do their real work."""

    name = "dancing"
    device = "cpu"

    def __init__(self) -> None:
        self.frame = 0

    def predict(self, images):
        height, width = images[0].shape[:2]
        found = []
        for _ in images:
            people = []
            for delay, centre in ((0, 0.3), (3, 0.7)):
                t = self.frame - delay
                pose = np.array(STANDING_POSE) * height / 5 + [width * centre, height / 2]
                pose[9:11, 1] += height / 8 * np.sin(2 * np.pi * t / 37)  # wrists
                pose[7:9, 0] += height / 12 * np.cos(2 * np.pi * t / 53 + 0.3 * np.sin(t / 11))  # elbows
                pose[13:15, 1] += height / 25 * np.sin(2 * np.pi * t / 23)  # knees
                people.append(pose)
            found.append(_two_people(people))
            self.frame += 1
        return found


def class_dancer(t: float, x: float, y: float, scale: float) -> np.ndarray:
    """One dancer of a generated class at time `t` seconds: arms and knees on smooth,
    non-periodic curves (as the tests' dancer), (17, 2) pixels."""
    pose = np.array(STANDING_POSE) * scale + [x, y]
    left = np.sin(2 * np.pi * 0.7 * t) + 0.6 * np.sin(2 * np.pi * 1.9 * t + 1.0)
    right = np.sin(2 * np.pi * 1.1 * t + 2.0) + 0.5 * np.sin(2 * np.pi * 0.3 * t)
    pose[[7, 9], 1] -= scale * np.array([0.5, 1.0]) * left
    pose[[8, 10], 1] -= scale * np.array([0.5, 1.0]) * right
    pose[9, 0] += scale * 0.4 * right
    pose[[13, 15], 0] += scale * 0.2 * np.sin(2 * np.pi * 1.3 * t)
    return pose


def detections_of(poses: list[np.ndarray]) -> Detections:
    """Confident detections of any number of (17, 2) poses, boxes around them."""
    keypoints = np.stack(poses)
    return Detections(
        boxes=np.concatenate([keypoints.min(axis=1), keypoints.max(axis=1)], axis=1),
        box_scores=np.full(len(poses), 0.99), keypoints=keypoints, keypoint_scores=np.full((len(poses), 17), 10.0),
    )


class CrowdModel(PoseModel):
    """A stand-in pose model with no inference cost: `count` people dancing in a grid, each a
    few frames later than the last, so that tracking, scoring, the live lag and drawing do
    their real work for a class."""

    name = "crowd"
    device = "cpu"

    def __init__(self, count: int) -> None:
        self.count = count
        self.frame = 0

    def predict(self, images):
        height, width = images[0].shape[:2]
        columns = int(np.ceil(np.sqrt(self.count * width / height)))
        rows = int(np.ceil(self.count / columns))
        scale = 0.8 * height / rows / 3.3  # STANDING_POSE is 3.3 units tall
        found = []
        for _ in images:
            t = self.frame / 30.0
            found.append(detections_of([class_dancer(t - (k % 7) / 30.0, width * (k % columns + 0.5) / columns,
                                                     height * (k // columns + 0.55) / rows, scale)
                                        for k in range(self.count)]))
            self.frame += 1
        return found
