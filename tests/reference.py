"""Slow, obvious reference implementations that the fast code is tested against, and
conveniences only the tests use.

They were once in `workers/`, which now holds only what the product runs:
- `persons_above`, `pose_distance`: one frame's persons above a threshold, one pair of poses
  (the frame score uses `workers.score.order_above` and `workers.score.pose_distances`).
- `track_video`, `track_poses`, `summarize_tracks`: a whole video of detections at once (the
  product tracks a frame at a time and summarises a chunk at a time with
  `workers.track.TrackSummarizer`; `summarize_tracks` is its whole-video reference).
- `shift_correlations`, `peak_shift`: one pair in one window, one curve (the analysis computes
  every pair of a window at once, `workers.correlation`, and every curve at once,
  `workers.motion.peak_shifts`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from workers.data import Detections, PoseRows
from workers.motion import peak_shifts
from workers.score import order_above, pose_distances
from workers.track import Tracker, TrackSummarizer, TrackSummary


def persons_above(detections: Detections, threshold: float) -> Detections:
    """The detections whose box score is above `threshold`, most confident first."""
    return detections.select(order_above(detections, threshold))


def pose_distance(
    reference: np.ndarray,
    other: np.ndarray,
    reference_weights: np.ndarray,
    other_weights: np.ndarray,
) -> float | None:
    """Distance between two poses after aligning `other` onto `reference`: one pair of
    `workers.score.pose_distances`.

    Args:
        reference: (17, 2) keypoints in pixels.
        other: (17, 2) keypoints in pixels.
        reference_weights: (17,) weights >= 0 (see `workers.score.keypoint_weights`).
        other_weights: (17,) weights >= 0.

    Returns:
        The weighted mean distance over the 9 score keypoints between the normalised poses,
        or None when there is nothing to compare (see `workers.score.pose_distances`).
    """
    pair = np.asarray(reference_weights, dtype=np.float64) * np.asarray(other_weights, dtype=np.float64)
    distance = pose_distances(np.asarray(reference)[None], np.asarray(other)[None], pair[None])[0]
    return None if np.isnan(distance) else float(distance)


def track_video(frames: Sequence[Detections], **tracker_args) -> list[np.ndarray]:
    """Ids for every frame of a video, from a fresh `workers.track.Tracker`.

    Args:
        frames: One `Detections` per frame, in order.
        **tracker_args: Passed to `Tracker`.

    Returns:
        One (n_f,) int64 array of ids per frame.
    """
    tracker = Tracker(**tracker_args)
    return [tracker.update(persons) for persons in frames]


def track_poses(
    frames: Sequence[Detections],
    ids: Sequence[np.ndarray],
    keypoint_threshold: float | None = None,
) -> dict[int, np.ndarray]:
    """Each id's keypoints over the whole video, NaN where the person is absent.

    Args:
        frames: One `Detections` per frame (T frames).
        ids: The tracker's (n_f,) ids per frame.
        keypoint_threshold: Keypoints scoring at or below this (model scale) become NaN;
            None keeps all.

    Returns:
        {id: (T, 17, 2) float64 keypoints in pixels, NaN where absent or unsure}.
    """
    if len(frames) != len(ids):
        raise ValueError(f"frames and ids must have the same length, got {len(frames)} and {len(ids)}")
    return PoseRows.from_frames(list(frames), list(ids)).poses(keypoint_threshold)


def summarize_tracks(
    frames: Sequence[Detections],
    ids: Sequence[np.ndarray],
    fps: float,
    interval_s: float = 0.5,
) -> dict[int, TrackSummary]:
    """Presence, size and motion of every id: `workers.track.TrackSummarizer` fed the whole
    video at once, the answer its chunks must add up to.

    Args:
        frames: One `Detections` per frame (T frames).
        ids: The tracker's (n_f,) ids per frame.
        fps: Frames per second.
        interval_s: Time over which displacement is measured, in seconds.

    Returns:
        {id: TrackSummary}, ids ascending.
    """
    summarizer = TrackSummarizer(fps, interval_s)
    summarizer.add(PoseRows.from_frames(list(frames), list(ids)))
    return summarizer.summaries()


def shift_correlations(
    reference: np.ndarray,
    person: np.ndarray,
    min_valid: int,
    min_channel_std: float = 0.0,
    min_channels: int = 1,
    weighted: bool = True,
) -> np.ndarray:
    """Mean per-channel correlation of a window of `person` with `reference` at every shift.

    The one-pair computation, each channel restricted to the frames both have: the reference
    that `workers.correlation` (every pair of a window at once, which the analysis uses) is
    tested against.

    With `weighted`, each channel's correlation is weighted by the product of the two
    standard deviations, which makes the mean the sum of covariances over the sum of
    standard-deviation products: still 1 for identical signals, but dominated by the
    channels that move.

    Args:
        reference: (L, C) the reference's features over the window (NaN allowed).
        person: (L + 2S, C) the person's features from S frames before the window to S
            frames after it (NaN allowed, e.g. padding past the video's ends).
        min_valid: Fewest frames both must have in a channel for it to count at a shift.
        min_channel_std: Channels varying less than this in either input do not count.
        min_channels: Fewest counting channels for a value.
        weighted: Weight channels by their motion (True) or equally (False).

    Returns:
        (2S + 1,) similarity at shifts -S..S frames (index k is shift k - S; shift s pairs
        person frame t + s with reference frame t), NaN where too few channels count.
    """
    reference = np.asarray(reference, dtype=np.float64)
    person = np.asarray(person, dtype=np.float64)
    length = len(reference)
    moving = (_spread(reference) > min_channel_std) & (_spread(person) > min_channel_std)
    windows = sliding_window_view(person[:, moving], length, axis=0).transpose(0, 2, 1)  # (K, L, C)
    ref = reference[None, :, moving]
    both = np.isfinite(ref) & np.isfinite(windows)
    count = both.sum(axis=1)  # (K, C)
    a = np.where(both, ref, 0.0)
    b = np.where(both, windows, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_a = a.sum(axis=1) / count
        mean_b = b.sum(axis=1) / count
        da = np.where(both, a - mean_a[:, None, :], 0.0)
        db = np.where(both, b - mean_b[:, None, :], 0.0)
        covariance = (da * db).sum(axis=1)
        scale = np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
        correlation = covariance / scale
    usable = (count >= min_valid) & (scale > 1e-12)
    counted = usable.sum(axis=1)
    if not weighted:
        weight = usable.astype(np.float64)
    else:
        weight = np.where(usable, scale / np.maximum(count, 1), 0.0)  # sd_a * sd_b
    total = np.where(usable, correlation * weight, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted >= min_channels, total / weight.sum(axis=1), np.nan)


def _spread(values: np.ndarray) -> np.ndarray:
    """(N, C) -> (C,) standard deviation of each column over its finite values, 0 if none."""
    finite = np.isfinite(values)
    count = np.maximum(finite.sum(axis=0), 1)
    mean = np.where(finite, values, 0.0).sum(axis=0) / count
    return np.sqrt((np.where(finite, values - mean, 0.0) ** 2).sum(axis=0) / count)


def peak_shift(
    curve: np.ndarray,
    min_correlation: float = 0.3,
    ambiguity_margin: float = 0.05,
    min_separation: int = 1,
) -> tuple[float, float] | None:
    """`peak_shifts` of one curve: (shift in frames, peak value), or None."""
    shifts, values = peak_shifts(np.asarray(curve, dtype=np.float64)[None], min_correlation, ambiguity_margin,
                                 min_separation)
    return None if np.isnan(shifts[0]) else (float(shifts[0]), float(values[0]))
