"""The whole-video analysis as a plain function of the recorded frames (no Annotator, no threads)."""

import numpy as np
import pytest

from tests.helpers import detections
from tests.test_annotate import FPS, dancer
from workers.analysis import analyse_video
from workers.poses import PoseLog
from workers.sync import SyncParams
from workers.timing import TimingParams


def recorded(seconds: float, people, directory) -> PoseLog:
    """Every frame's persons with fixed ids 1..n (people(t) -> list of (17, 2) poses)."""
    log = PoseLog(directory)
    for index in range(round(seconds * FPS)):
        poses = people(index / FPS)
        log.append(detections(poses), np.arange(1, len(poses) + 1))
    return log


def analyse(log, **overrides):
    settings = dict(score=True, persons="auto", keypoint_min_score=0.0, timing=TimingParams(),
                    sync=SyncParams(surrogates=9))
    return analyse_video(log, FPS, **(settings | overrides))


def test_a_late_dancer_gets_the_lag_the_sync_and_the_worst_moments(tmp_path):
    log = recorded(8, lambda t: [dancer(t, 120), dancer(t - 6 / FPS, 420)], tmp_path)
    result = analyse(log)
    first, second = result.persons
    assert (first.id, second.id) == (1, 2) and first.scored and second.scored
    assert second.lag_ms - first.lag_ms == pytest.approx(6 * 1000 / FPS, abs=0.5 * 1000 / FPS)
    assert result.sync is not None and result.sync.group is not None
    assert first.sync is not None and first.lag_confidence > 0.5
    assert result.worst_moments
    assert set(result.seconds) == {"tracks", "timing", "limbs", "sync"}
    # Every limb of the late dancer is late with the body: none is late against the rest of it.
    assert [limb.name for limb in second.limbs] == ["head", "left_arm", "right_arm", "torso", "left_leg", "right_leg"]
    assert second.late_limbs == () and result.reference is None


def test_the_chunk_size_does_not_change_the_result(tmp_path):
    log = recorded(8, lambda t: [dancer(t, 120), dancer(t - 3 / FPS, 420)], tmp_path)
    whole, chunked = analyse(log), analyse(log, chunk_frames=37)
    assert [p.lag_ms for p in chunked.persons] == pytest.approx([p.lag_ms for p in whole.persons], abs=1e-9)
    assert [p.score for p in chunked.persons] == pytest.approx([p.score for p in whole.persons], abs=1e-9)
    assert [[limb.lag_ms for limb in p.limbs] for p in chunked.persons] == \
        [[limb.lag_ms for limb in p.limbs] for p in whole.persons]


def test_with_scoring_off_only_the_tracks_come_out(tmp_path):
    log = recorded(3, lambda t: [dancer(t, 120), dancer(t, 420)], tmp_path)
    result = analyse(log, score=False)
    assert [p.scored for p in result.persons] == [False, False]
    assert all(p.reason == "scoring off (--no-score)" and p.lag_ms is None for p in result.persons)
    assert result.sync is None and result.worst_moments == [] and set(result.seconds) == {"tracks"}


def test_an_empty_video_has_no_persons(tmp_path):
    result = analyse(PoseLog(tmp_path))
    assert result.persons == [] and result.sync is None


# Who performs: the groups of people who move together (--persons auto). With 39 surrogates, as
# the tool runs: the smallest p-value of 9 (0.1) never counts as above chance.

def grouped(log, **overrides):
    return analyse(log, sync=SyncParams(), **overrides)


def other_dance(t: float, dx: float) -> np.ndarray:
    """Another choreography: the same body, arms and knees on other curves."""
    return dancer(1.7 * t + 11.3, dx)


def test_two_lines_doing_different_choreography_are_two_groups(tmp_path):
    log = recorded(8, lambda t: [dancer(t, 100), dancer(t - 2 / FPS, 250),
                                 other_dance(t, 400), other_dance(t - 3 / FPS, 550)], tmp_path)
    result = grouped(log)
    assert [g.members for g in result.groups] == [(1, 2), (3, 4)]
    assert all(g.moves_together and g.sync is not None for g in result.groups)
    assert [p.group for p in result.persons] == [1, 1, 2, 2]
    # Each group's lags are against its own members: the late one of each pair by its delay.
    lags = {p.id: p.lag_ms for p in result.persons}
    assert lags[2] - lags[1] == pytest.approx(2 * 1000 / FPS, abs=0.5 * 1000 / FPS)
    assert lags[4] - lags[3] == pytest.approx(3 * 1000 / FPS, abs=0.5 * 1000 / FPS)
    pairs = {pair.ids: pair for pair in result.sync.pairs}
    assert pairs[1, 2].moves_together and pairs[3, 4].moves_together
    assert not any(pairs[a, b].moves_together for a in (1, 2) for b in (3, 4))


def test_a_canon_further_apart_than_the_lag_search_is_two_groups(tmp_path):
    # The second pair dances the same steps 2 s later: beyond the +-500 ms a lag is searched in.
    log = recorded(10, lambda t: [dancer(t, 100), dancer(t, 250), dancer(t - 2, 400), dancer(t - 2, 550)], tmp_path)
    assert [g.members for g in grouped(log).groups] == [(1, 2), (3, 4)]


def test_someone_present_but_not_moving_with_the_group_is_left_out(tmp_path):
    log = recorded(8, lambda t: [dancer(t, 100), dancer(t - 2 / FPS, 250), other_dance(t, 400)], tmp_path)
    result = grouped(log)
    assert [g.members for g in result.groups] == [(1, 2)]
    third = result.persons[2]
    assert not third.scored and third.reason.startswith("not moving with the group") and third.lag_ms is None
    assert result.persons[0].reason.startswith("performer (group 1)") and "moves with #2" in result.persons[0].reason


def test_when_nobody_moves_together_the_people_present_are_analysed_together(tmp_path):
    log = recorded(8, lambda t: [dancer(t, 100), other_dance(t, 400)], tmp_path)
    result = grouped(log)
    assert len(result.groups) == 1 and not result.groups[0].moves_together
    assert [p.scored for p in result.persons] == [True, True]
    assert "nobody moves together above chance" in result.persons[0].reason
    assert result.sync.group is not None and not result.sync.group.above_chance


def test_persons_all_keeps_overriding_the_groups(tmp_path):
    log = recorded(8, lambda t: [dancer(t, 100), dancer(t, 250), other_dance(t, 400)], tmp_path)
    result = grouped(log, persons="all")
    assert [p.scored for p in result.persons] == [True, True, True]
    assert [(g.members, g.reason) for g in result.groups] == [((1, 2, 3), "chosen with --persons all")]
