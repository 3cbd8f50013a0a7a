"""The moments when the group was least in sync, and the pose distances that name who.

Pure math, no I/O. The input is the performers' keypoints, read a stretch at a time through
a `workers.motion.PoseSource` (pixels, NaN where absent), and their lags from the timing
analysis (`workers.timing`).

Definitions:
- Partner distance: after removing the lags (person i's frame t is compared with person j's
  frame t - round(lag_i - lag_j)), the original score's pose distance (affine alignment,
  unit Frobenius norm, mean distance over the 9 score keypoints; `workers.score.
  pose_distances`, every keypoint both poses have weighing 1) to the other performers, one
  of them mirrored where the timing analysis compared the pair as mirror images; the
  per-frame distance is the median over the others (at most `MAX_POSE_PARTNERS` of them,
  spread through the group: `pose_partners`). The timing analysis maps it onto its pose
  score.
- Worst moments: the non-overlapping stretches of `duration_s` with the lowest mean group
  score, each with the person whose mean pose distance there is largest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from workers.motion import PoseSource, mirror_poses, read_padded
from workers.score import pose_distances

#: Most others a person's pose is compared with for its pose score (`partner_distances`).
MAX_POSE_PARTNERS = 8


def pose_partners(count: int, most: int = MAX_POSE_PARTNERS) -> list[list[int]]:
    """Whom each of `count` persons is compared with for the pose score: every other person up
    to `most` of them, else `most` spread evenly through the group (so that the cost grows with
    the persons, not the pairs: the median of 8 distances is as steady as that of 29)."""
    partners = []
    for person in range(count):
        others = [other for other in range(count) if other != person]
        if len(others) > most:
            others = [others[k] for k in np.linspace(0, len(others) - 1, most).round().astype(int)]
        partners.append(others)
    return partners


def partner_distances(
    source: PoseSource,
    frames: int,
    count: int,
    lags_frames: list[float],
    mirrored_pairs: set[tuple[int, int]],
    chunk_frames: int,
) -> list[np.ndarray]:
    """Each person's pose distance to its partners in every frame, after removing the lags.

    Args:
        source: The persons' poses (see `workers.motion.PoseSource`).
        frames: Frames in the video, T.
        count: Persons `source` returns.
        lags_frames: Each person's lag behind the group, frames (NaN: unknown, taken as 0).
        mirrored_pairs: Pairs of person indices (a < b) compared as mirror images.
        chunk_frames: Frames read at a time.

    Returns:
        Per person, (T,) the median over its `pose_partners` of the pose distance (see the
        module docstring), NaN where no partner is comparable; indexed by the person's frames.
    """
    lags = [lag if np.isfinite(lag) else 0.0 for lag in lags_frames]
    compared = pose_partners(count)
    # The person's frame t shows the move the other made at t - (own lag - other lag).
    shifts = {(p, q): round(lags[p] - lags[q]) for p in range(count) for q in compared[p]}
    margin = max((abs(shift) for shift in shifts.values()), default=0)
    distances = [np.full(frames, np.nan) for _ in range(count)]
    for start in range(0, frames, chunk_frames):
        stop = min(frames, start + chunk_frames)
        stretches = read_padded(source, start - margin, stop + margin, frames, count)
        for person in range(count):
            own = stretches[person][margin:margin + stop - start]
            per_other = []
            for other in compared[person]:
                shift = shifts[person, other]
                partner = stretches[other][margin - shift:margin - shift + stop - start]
                if (min(person, other), max(person, other)) in mirrored_pairs:
                    partner = mirror_poses(partner)
                per_other.append(pose_distances(partner, own))
            if not per_other:
                continue
            stacked = np.stack(per_other)
            finite = np.isfinite(stacked).any(axis=0)
            result = distances[person][start:stop]
            result[finite] = np.nanmedian(stacked[:, finite], axis=0)
    return distances


@dataclass(frozen=True)
class Moment:
    """A stretch of the video where the group was least in sync.

    Attributes:
        start_s: Start, seconds from the start of the video.
        end_s: End (exclusive), seconds.
        mean_score: Mean group score over the scored frames of the stretch, 0..10.
        worst_person: Id with the largest mean pose distance there, or None when unknown.
    """

    start_s: float
    end_s: float
    mean_score: float
    worst_person: int | None


def worst_moments(
    frame_scores: np.ndarray,
    fps: float,
    distances: Mapping[int, np.ndarray] | None = None,
    count: int = 3,
    duration_s: float = 1.0,
    min_scored_fraction: float = 0.5,
) -> list[Moment]:
    """The non-overlapping stretches with the lowest mean group score, worst first.

    Args:
        frame_scores: (T,) group score per frame, 0..10, NaN where unscored.
        fps: Frames per second.
        distances: {id: (T,) pose distance per frame, NaN where unknown} (e.g.
            `workers.timing.PersonTiming.distances`), to name the person most out of sync; optional.
        count: Most stretches returned.
        duration_s: Length of every stretch, seconds (rounded to whole frames).
        min_scored_fraction: A stretch needs at least this fraction of scored frames, 0..1.

    Returns:
        Up to `count` `Moment`s, lowest mean score first.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count!r}")
    scores = np.asarray(frame_scores, dtype=np.float64)
    length = max(1, round(duration_s * fps))
    if len(scores) < length:
        return []
    scored = np.isfinite(scores)
    sums = sliding_window_view(np.where(scored, scores, 0.0), length).sum(axis=1)
    counts = sliding_window_view(scored, length).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts >= max(1, np.ceil(min_scored_fraction * length)), sums / counts, np.nan)
    moments: list[Moment] = []
    while len(moments) < count and np.isfinite(means).any():
        start = int(np.nanargmin(means))
        end = start + length
        worst, worst_distance = None, -np.inf
        for person_id, series in sorted((distances or {}).items()):
            stretch = np.asarray(series, dtype=np.float64)[start:end]
            stretch = stretch[np.isfinite(stretch)]
            if stretch.size and stretch.mean() > worst_distance:
                worst, worst_distance = person_id, float(stretch.mean())
        moments.append(Moment(start / fps, end / fps, float(means[start]), worst))
        means[max(0, start - length + 1):end] = np.nan
    return moments
