"""The teacher/students pairs of tests/teacher_pairs.py: their clocks, their files against the
truth (lags from the pixels, offsets from the sound, no pose model), and the table's reading of
a report. Building needs ../shared's park clip; the rest runs anywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import need_shared
from tests.teacher_pairs import (
    CASES,
    FRAME_MS,
    PairCase,
    check_pair,
    make_pair,
    music,
    score_report,
    student_world,
    table_row,
    teacher_world,
    truth_of,
)


def test_music_is_seeded_bounded_and_not_periodic():
    song = music(12.0, seed=3, rate=8000)
    assert song.shape == (96000,) and song.dtype == np.float32
    assert 0.5 < np.abs(song).max() <= 1.0
    assert np.array_equal(song, music(12.0, seed=3, rate=8000))
    other = music(12.0, seed=4, rate=8000)
    assert abs(np.corrcoef(song, other)[0, 1]) < 0.2
    # The melody never repeats: the song matches itself at no shift of a second or more.
    x = song - song.mean()
    corr = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * len(x))) ** 2)[: len(x) // 2]
    normalised = corr / corr[0] * len(x) / (len(x) - np.arange(len(corr)))
    assert normalised[8000:].max() < 0.9


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_two_clocks_meet_where_the_truth_says(name):
    case = CASES[name]
    truth = truth_of(case)
    moments = np.array([0.0, 1.0, 5.5, case.teacher_seconds])
    assert np.allclose(student_world(case, truth.student_seconds(moments)), teacher_world(case, moments))
    assert student_world(case, np.array([0.0]))[0] >= 0 and teacher_world(case, np.array([0.0]))[0] >= 0
    edges = [x for student in truth.students for x in student.x_range]
    assert edges == sorted(edges) and edges[0] > 0


def test_long_cases_are_over_a_minute_apart_and_marked():
    long = [case for case in CASES.values() if abs(case.offset) > 60]
    assert long and all(case.long for case in long)
    assert {np.sign(case.offset) for case in long} == {-1, 1}


@pytest.mark.parametrize("bad, message", [
    ({"lags": (0,)}, "2 to 4 students"),
    ({"late_arms": (3, 6)}, "late_arms names student 3"),
    ({"audio": "loud"}, "audio must be one of"),
    ({"degradations": ("wind",)}, "unknown degradations"),
    ({"height": 101}, "height must be even"),
])
def test_a_case_refuses_what_it_cannot_build(bad, message):
    with pytest.raises(ValueError, match=message):
        PairCase("bad", **bad)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    need_shared("videos", "park_two_people_vp9_audio.mp4")
    return tmp_path_factory.mktemp("pairs")


@pytest.mark.parametrize("name", ["late_arms", "teacher60_students25", "students_vfr", "street", "mirrored_teacher",
                                  "other_music"])
def test_the_files_show_the_truth(folder, name):
    teacher, students, truth = make_pair(CASES[name], folder)
    found = check_pair(teacher, students, truth)
    legs = np.array([lag for lag, _ in found.lags])
    upper = np.array([lag for _, lag in found.lags])
    true_legs = np.array([s.lag_ms for s in truth.students]) / FRAME_MS
    true_upper = np.array([s.upper_lag_ms for s in truth.students]) / FRAME_MS
    # Each video samples the dance at its own phase: a lag shows to within a frame, the lags
    # against each other exactly.
    assert np.abs(legs - true_legs).max() <= 1 and np.abs(upper - true_upper).max() <= 1
    assert np.array_equal(legs - legs[0], np.round(true_legs - true_legs[0]))
    assert np.array_equal(upper - legs[0], np.round(true_upper - true_legs[0]))
    if truth.audio == "same":
        assert found.audio_offset == pytest.approx(truth.offset_seconds, abs=0.003)
        assert found.audio_correlation > 0.05
    else:
        assert found.audio_correlation < 0.15


def test_the_plain_pair_is_exact_to_the_frame(folder):
    """Offset 3.2 s is a whole number of frames at 30 fps: the pixels give the lags exactly."""
    teacher, students, truth = make_pair(CASES["duo"], folder)
    found = check_pair(teacher, students, truth)
    assert found.lags == ((0, 0), (6, 6))
    assert found.audio_offset == pytest.approx(3.2, abs=0.001) and found.audio_correlation > 0.9


def test_the_silent_teacher_has_no_sound_and_vfr_drops_frames(folder):
    import av

    teacher, _, _ = make_pair(CASES["silent_teacher"], folder)
    with av.open(str(teacher)) as container:
        assert not container.streams.audio
    students = folder / "students_vfr-students.mp4"
    if not students.exists():
        make_pair(CASES["students_vfr"], folder)
    with av.open(str(students)) as container:
        times = np.array([frame.time for frame in container.decode(video=0)])
    steps = np.round(np.diff(times) * 30).astype(int)
    assert set(steps) >= {1, 2} and steps.max() >= 15 and times[-1] > 11.9


def _report(truth, lags_ms, late_limbs, offset=None, drift=0.0) -> dict:
    persons = []
    for student, lag, late in zip(truth.students, lags_ms, late_limbs):
        x0, x1 = student.x_range
        limbs = {limb: {"lag_ms": lag, "reason": None, "late": limb in late, "window_lags_ms": [lag] * 4,
                        "late_windows": [limb in late, limb in late, False, limb in late]}
                 for limb in ("left_arm", "right_arm", "left_leg", "right_leg", "head", "torso")}
        persons.append({"id": len(persons) + 1, "box": [x0 + 10, 5, x1 - 30, 200], "scored": True,
                        "reference": {"lag_ms": lag, "lag_confidence": 0.9, "score": 80, "timing_score": 75,
                                      "windows": [], "limbs": limbs, "late_limbs": sorted(late)}})
    # A bystander outside every student's rectangle is no one's.
    persons.append({"id": 9, "box": [0, 0, 4, 10], "scored": False})
    return {"reference": {"input": "t.mp4", "person": 1, "offset_seconds": offset if offset is not None
                          else truth.offset_seconds + 0.012, "alignment": "audio", "alignment_confidence": 0.8,
                          "drift_ppm": drift, "mirror": False, "mirror_source": "detected"},
            "persons": persons}


def test_a_report_is_read_against_the_truth():
    truth = truth_of(CASES["late_arms"])  # lags 0, 0, 4 frames; the middle one's arms 6 frames late
    report = _report(truth, [10.0, 0.0, 4 * FRAME_MS - 20], [set(), {"left_arm", "head", "left_leg"}, {"torso"}],
                     drift=12.0)
    score = score_report(report, truth)
    assert score.alignment == "audio" and score.confidence == 0.8 and score.mirror is False
    assert score.offset_error_ms == pytest.approx(12.0) and score.drift_error_ppm == pytest.approx(12.0)
    assert score.lag_errors_ms == pytest.approx((10.0, 0.0, -20.0))
    assert score.arms_named is True and score.arms_share == pytest.approx(3 / 8)
    # The middle one's leg, and the right one's torso; his head may go either way.
    assert score.false_late == 2 and score.problems == ()
    assert table_row(CASES["late_arms"], score).count("|") == 10


def test_a_report_without_the_reference_names_what_is_missing():
    truth = truth_of(CASES["duo"])
    score = score_report({"persons": [{"id": 1, "box": [0, 0, 4, 4]}]}, truth)
    assert score.offset_error_ms is None and score.lag_errors_ms == (None, None) and score.arms_named is None
    assert score.problems[0] == "the report has no reference section" and len(score.problems) == 3
    assert table_row(CASES["duo"], score).count("|") == 10
    assert table_row(CASES["duo"], None, "exit 2: no").count("|") == 10
