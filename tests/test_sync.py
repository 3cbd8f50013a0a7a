"""Known answers for the group synchrony calibrated against chance (`workers.sync`)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import pose
from tests.test_annotate import FPS, SCALE, dancer
from workers.motion import mirror_poses
from workers.sync import SyncParams, pairwise_sync, surrogate_offsets

SECONDS = 10.0


def other_dancer(t: float, dx: float) -> np.ndarray:
    """Someone else, dancing other moves (other frequencies and phases) beside `dancer`."""
    keypoints = pose(SCALE, dx, 150)
    left = np.sin(2 * np.pi * 0.9 * t + 0.4) + 0.5 * np.sin(2 * np.pi * 1.6 * t)
    right = np.sin(2 * np.pi * 0.5 * t + 1.1) + 0.7 * np.sin(2 * np.pi * 1.4 * t + 2.5)
    keypoints[[7, 9], 1] -= SCALE * np.array([0.5, 1.0]) * left
    keypoints[[8, 10], 1] -= SCALE * np.array([0.5, 1.0]) * right
    keypoints[9, 0] += SCALE * 0.4 * left
    keypoints[[14, 16], 0] += SCALE * 0.2 * np.sin(2 * np.pi * 0.8 * t + 0.3)
    return keypoints


def poses(*movers) -> list[np.ndarray]:
    """(T, 17, 2) per mover, each a function of time in seconds."""
    times = np.arange(round(SECONDS * FPS)) / FPS
    return [np.stack([mover(t) for t in times]) for mover in movers]


def sync(arrays: list[np.ndarray], mirrored=frozenset(), chunk_frames: int = 4096):
    ids = list(range(1, len(arrays) + 1))
    return pairwise_sync(ids, len(arrays[0]), lambda start, stop: [a[start:stop] for a in arrays], FPS,
                         mirrored_pairs=mirrored, chunk_frames=chunk_frames).result()


def delayed(frames: int):
    return sync(poses(lambda t: dancer(t, 120), lambda t: dancer(t - frames / FPS, 420)))


def test_the_same_moves_at_the_same_time_score_10_and_are_above_chance():
    result = delayed(0)
    assert result.group.score == pytest.approx(10.0)
    assert result.group.above_chance and result.group.p_value == pytest.approx(1 / 40)
    assert result.group.chance_mean < 2.0 and result.group.chance_p95 < 5.0
    assert [person.score for person in result.persons.values()] == [pytest.approx(10.0)] * 2
    assert len(result.windows) == 7 and all(score == pytest.approx(10.0) for _, _, score in result.windows)


def test_the_score_falls_steadily_as_one_falls_behind():
    delays = (0, 3, 6, 12)  # frames
    scores = [delayed(frames).group.score for frames in delays]
    assert all(earlier - later >= 0.5 for earlier, later in zip(scores, scores[1:])), scores
    # The likeness stays full; the timing factor exp(-lag / 150 ms) does the falling.
    assert scores == pytest.approx([10 * np.exp(-frames * 1000 / FPS / 150) for frames in delays], abs=0.05)


def test_direction_matters_the_same_poses_in_reverse_order_are_not_in_sync():
    end = SECONDS - 1 / FPS
    reversed_copy = sync(poses(lambda t: dancer(t, 120), lambda t: dancer(end - t, 420))).group
    assert reversed_copy.score <= delayed(12).group.score
    assert not reversed_copy.above_chance


def test_people_dancing_other_moves_score_near_chance():
    unrelated = sync(poses(lambda t: dancer(t, 120), lambda t: other_dancer(t, 420))).group
    assert unrelated.score <= 3.0 and not unrelated.above_chance


def test_mirror_images_are_in_sync_only_when_compared_as_mirror_images():
    left, right = poses(lambda t: dancer(t, 120), lambda t: dancer(t, 420))
    mirrored = mirror_poses(right)
    assert sync([left, mirrored]).group.score <= 4.0
    assert sync([left, mirrored], mirrored={(1, 2)}).group.score >= 9.0


def test_the_one_behind_has_the_lowest_sync_in_a_trio():
    result = sync(poses(lambda t: dancer(t, 100), lambda t: dancer(t - 6 / FPS, 300), lambda t: dancer(t, 500)))
    scores = {person_id: score.score for person_id, score in result.persons.items()}
    assert min(scores, key=scores.get) == 2 and scores[1] > scores[2] + 1.0


def test_reading_the_video_in_chunks_gives_the_same_scores():
    arrays = poses(lambda t: dancer(t, 120), lambda t: dancer(t - 3 / FPS, 420))
    whole, chunked = sync(arrays), sync(arrays, chunk_frames=40)
    assert chunked.group == whole.group and chunked.persons == whole.persons and chunked.windows == whole.windows


def test_one_performer_or_no_motion_has_no_score():
    assert sync(poses(lambda t: dancer(t, 120))).group is None
    still = sync(poses(lambda t: pose(SCALE, 120, 150), lambda t: pose(SCALE, 420, 150)))
    assert still.group is None and still.persons == {1: None, 2: None}


def test_surrogate_shifts_stay_outside_the_lag_search():
    assert surrogate_offsets(300, 16, 39) == sorted({round(v) for v in np.linspace(32, 268, 39)})
    assert surrogate_offsets(40, 16, 39) == list(range(17, 24))  # short: just outside the search
    assert surrogate_offsets(30, 16, 39) == []


def test_surrogate_shifts_fall_on_a_grid_that_divides_the_hop_and_stay_distinct():
    short = surrogate_offsets(300, 16, 39, hop=30)  # 236 frames for 39 shifts: every 6 frames
    assert len(short) == 39 and all(shift % 6 == 0 for shift in short) and short[0] == 36 and short[-1] == 264
    long = surrogate_offsets(5400, 16, 39, hop=30)  # 3 minutes: whole hops
    assert len(long) == 39 and all(shift % 30 == 0 for shift in long)
    assert surrogate_offsets(300, 16, 39, hop=1) == surrogate_offsets(300, 16, 39)


def test_a_class_of_twelve_is_compared_pair_by_pair_in_one_pass():
    """Each of 12 dancers 0-5 frames late: every pair moves together, every pair's lag is the
    difference of the delays, and those furthest from the others' timing score lowest."""
    delays = [0, 2, 5, 1, 3, 4, 0, 2, 5, 1, 3, 4]
    arrays = poses(*[lambda t, d=d, k=k: dancer(t - d / FPS, 120 + 100 * k) for k, d in enumerate(delays)])
    pairwise = pairwise_sync(list(range(1, 13)), len(arrays[0]), lambda start, stop: [a[start:stop] for a in arrays],
                             FPS)
    pairs = pairwise.pairs()
    assert len(pairs) == 66 and all(pair.moves_together for pair in pairs)
    for pair in pairs:
        a, b = pair.ids
        assert pair.lag_ms == pytest.approx(abs(delays[a - 1] - delays[b - 1]) * 1000 / FPS, abs=0.5 * 1000 / FPS)
    persons = pairwise.result().persons
    assert min(persons, key=lambda i: persons[i].score) in (1, 3, 7, 9)  # 0 or 5 frames late: the furthest out


def test_bad_knobs_are_refused():
    with pytest.raises(ValueError, match="full_correlation"):
        SyncParams(full_correlation=0.0)
    with pytest.raises(ValueError, match="significance"):
        SyncParams(significance=1.0)


def test_pairs_say_who_moves_together_whatever_the_lag_and_groups_score_on_their_own():
    arrays = poses(lambda t: dancer(t, 120), lambda t: dancer(t - 12 / FPS, 420),  # 480 ms late
                   lambda t: other_dancer(t, 720), lambda t: other_dancer(t, 1020))
    pairwise = pairwise_sync([1, 2, 3, 4], len(arrays[0]), lambda start, stop: [a[start:stop] for a in arrays], FPS)
    together = {pair.ids: pair.moves_together for pair in pairwise.pairs()}
    assert together == {(1, 2): True, (3, 4): True, (1, 3): False, (1, 4): False, (2, 3): False, (2, 4): False}
    late = pairwise.pair(2, 1)
    assert late.ids == (1, 2) and late.lag_ms == pytest.approx(480, abs=20) and late.likeness > 0.9
    assert not late.score.above_chance  # too late to be in sync, yet the same movement
    split = pairwise.result([[1, 2], [3, 4]])
    assert split.persons[3].score == pytest.approx(10.0) and split.persons[1].score < 1.0
    assert split.group.score == pytest.approx(pairwise.combine([(0, 1), (2, 3)]).score)
    assert len(split.pairs) == 6
