"""Synthetic dancers whose limbs each keep their own time: known answers for the limb lags.

A skeleton of plausible proportions (about 300 px tall, torso 90 px) whose joints follow smooth
random angle trajectories, band-limited to 0.5..3 Hz: each limb its own (so that the limbs are
not perfectly correlated with one another), or all of them one shared rhythm. Any limb can be
delayed by a number of frames (fractions allowed: the trajectories are sums of sines, evaluated
at any time) or held still, and the keypoints get the pose model's jitter and a few dropouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from workers.skeleton import KEYPOINT_NAMES

FPS = 30.0
LIMB_NAMES = ("head", "left_arm", "right_arm", "torso", "left_leg", "right_leg")
_K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# Segment lengths, pixels.
TORSO = 90.0
SHOULDER_HALF = 32.0
HIP_HALF = 20.0
UPPER_ARM, FOREARM = 55.0, 50.0
THIGH, SHIN = 75.0, 70.0


@dataclass(frozen=True)
class Rhythm:
    """A smooth random signal: a sum of sines at random frequencies in `low_hz`..`high_hz`,
    amplitudes falling as 1/frequency, scaled to a standard deviation of 1."""

    frequencies: np.ndarray
    phases: np.ndarray
    gains: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, low_hz: float = 0.5, high_hz: float = 3.0, components: int = 8):
        frequencies = rng.uniform(low_hz, high_hz, components)
        phases = rng.uniform(0.0, 2 * np.pi, components)
        gains = rng.uniform(0.5, 1.0, components) / frequencies
        gains = gains / np.sqrt(0.5 * (gains ** 2).sum())
        return cls(frequencies, phases, gains)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return (self.gains[:, None] * np.sin(2 * np.pi * self.frequencies[:, None] * t[None] + self.phases[:, None])
                ).sum(axis=0)


@dataclass(frozen=True)
class Dancer:
    """How one performer departs from the choreography.

    Attributes:
        delays: {limb name: delay in frames}, positive = later; limbs not named are on time.
        still: Limbs held still (fixed joint angles).
        scale: Size factor (1: about 300 px tall).
        place: (x, y) of the hips' midpoint, pixels.
        jitter_px: Standard deviation of the keypoint noise, pixels (at scale 1).
        dropout: Share of keypoints missing (NaN), at random.
        seed: Picks the noise, not the dance.
    """

    delays: Mapping[str, float] = field(default_factory=dict)
    still: tuple[str, ...] = ()
    scale: float = 1.0
    place: tuple[float, float] = (400.0, 300.0)
    jitter_px: float = 1.5
    dropout: float = 0.02
    seed: int = 1


def choreography(seed: int, shared_rhythm: bool = False) -> dict[str, tuple[Rhythm, ...]]:
    """Each limb's joint-angle rhythms (or one rhythm for all of them, `shared_rhythm`)."""
    rng = np.random.default_rng(seed)
    counts = {"head": 2, "left_arm": 2, "right_arm": 2, "torso": 3, "left_leg": 2, "right_leg": 2}
    if shared_rhythm:
        one = Rhythm.random(rng)
        return {name: (one,) * count for name, count in counts.items()}
    return {name: tuple(Rhythm.random(rng) for _ in range(count)) for name, count in counts.items()}


def _rotate(angle: np.ndarray, x: float, y: float) -> np.ndarray:
    """(T,) angles (radians) and an offset -> (T, 2) the offset rotated."""
    return np.stack([x * np.cos(angle) - y * np.sin(angle), x * np.sin(angle) + y * np.cos(angle)], axis=-1)


def _hanging(angle: np.ndarray, length: float) -> np.ndarray:
    """A segment `length` long at `angle` from straight down (y down), (T, 2)."""
    return length * np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def dance(seconds: float, dancer: Dancer = Dancer(), choreography_seed: int = 0, shared_rhythm: bool = False
          ) -> np.ndarray:
    """One performer's keypoints, (T, 17, 2) pixels with NaN where dropped."""
    frames = round(seconds * FPS)
    rhythms = choreography(choreography_seed, shared_rhythm)

    def angles(limb: str) -> list[np.ndarray]:
        t = (np.arange(frames) - dancer.delays.get(limb, 0.0)) / FPS
        if limb in dancer.still:
            t = np.zeros(frames)
        return [rhythm(t) for rhythm in rhythms[limb]]

    points = np.zeros((frames, 17, 2))
    lean, twist, bounce = angles("torso")
    hips = np.array(dancer.place, dtype=np.float64) / dancer.scale + np.stack([np.zeros(frames), 10.0 * bounce], -1)
    width = np.cos(0.35 * twist)[:, None]
    neck = hips + _rotate(0.15 * lean, 0.0, -TORSO)
    across = _rotate(0.15 * lean, SHOULDER_HALF, 0.0) * width
    # Image left is the performer's right (facing the camera).
    points[:, _K["right_shoulder"]] = neck - across
    points[:, _K["left_shoulder"]] = neck + across
    points[:, _K["right_hip"]] = hips - np.array([HIP_HALF, 0.0]) * width
    points[:, _K["left_hip"]] = hips + np.array([HIP_HALF, 0.0]) * width

    nod, tilt = angles("head")
    head = neck + _rotate(0.25 * tilt, 0.0, -30.0) + np.stack([np.zeros(frames), 4.0 * nod], -1)
    for name, (dx, dy) in {"nose": (0, 0), "left_eye": (6, -5), "right_eye": (-6, -5),
                           "left_ear": (12, -2), "right_ear": (-12, -2)}.items():
        points[:, _K[name]] = head + _rotate(0.25 * tilt, dx, dy)

    for side, sign in (("left", 1.0), ("right", -1.0)):
        swing, bend = angles(f"{side}_arm")
        upper = sign * (0.9 + 0.6 * swing)
        elbow = points[:, _K[f"{side}_shoulder"]] + _hanging(upper, UPPER_ARM)
        points[:, _K[f"{side}_elbow"]] = elbow
        points[:, _K[f"{side}_wrist"]] = elbow + _hanging(upper + sign * (0.6 + 0.5 * bend), FOREARM)
        kick, knee_bend = angles(f"{side}_leg")
        thigh = sign * (0.1 + 0.25 * kick)
        knee = points[:, _K[f"{side}_hip"]] + _hanging(thigh, THIGH)
        points[:, _K[f"{side}_knee"]] = knee
        points[:, _K[f"{side}_ankle"]] = knee + _hanging(thigh - sign * 0.3 * (1 + knee_bend), SHIN)

    rng = np.random.default_rng(dancer.seed)
    points = points * dancer.scale + rng.normal(0.0, dancer.jitter_px * dancer.scale, points.shape)
    points[rng.random((frames, 17)) < dancer.dropout] = np.nan
    return points
