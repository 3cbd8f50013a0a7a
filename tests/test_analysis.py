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
    assert set(result.seconds) == {"tracks", "timing", "sync"}


def test_the_chunk_size_does_not_change_the_result(tmp_path):
    log = recorded(8, lambda t: [dancer(t, 120), dancer(t - 3 / FPS, 420)], tmp_path)
    whole, chunked = analyse(log), analyse(log, chunk_frames=37)
    assert [p.lag_ms for p in chunked.persons] == pytest.approx([p.lag_ms for p in whole.persons], abs=1e-9)
    assert [p.score for p in chunked.persons] == pytest.approx([p.score for p in whole.persons], abs=1e-9)


def test_with_scoring_off_only_the_tracks_come_out(tmp_path):
    log = recorded(3, lambda t: [dancer(t, 120), dancer(t, 420)], tmp_path)
    result = analyse(log, score=False)
    assert [p.scored for p in result.persons] == [False, False]
    assert all(p.reason == "scoring off (--no-score)" and p.lag_ms is None for p in result.persons)
    assert result.sync is None and result.worst_moments == [] and set(result.seconds) == {"tracks"}


def test_an_empty_video_has_no_persons(tmp_path):
    result = analyse(PoseLog(tmp_path))
    assert result.persons == [] and result.sync is None
