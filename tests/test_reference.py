"""Known answers for the comparison with a teacher (`workers.reference`), on synthetic dancers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.synthetic_dance import FPS, LIMB_NAMES, Dancer, dance
from workers.motion import mirror_poses
from workers.reference import (
    Alignment,
    TeacherPoses,
    TeacherSetup,
    align_by_poses,
    analyse_against_teacher,
    choose_teacher,
    compare_with_teacher,
)

FRAME_MS = 1000.0 / FPS
ON_TIME = Alignment("manual", 0.0)


def late(frames: float, seconds: float = 20.0, seed: int = 2, choreography: int = 0) -> np.ndarray:
    """A student dancing the choreography `frames` late with every limb (negative: early)."""
    return dance(seconds, Dancer(delays=dict.fromkeys(LIMB_NAMES, frames), seed=seed), choreography)


def source_of(students):
    return lambda start, stop: [student[start:stop] for student in students]


def test_alignment_maps_times_with_offset_and_drift():
    alignment = Alignment("audio", 12.5, 400.0, 0.9)
    assert alignment.reference_seconds(12.5) == pytest.approx(0.0)
    assert alignment.reference_seconds(12.5 + 100 * 1.0004) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="method"):
        Alignment("guess", 0.0)


def test_teacher_poses_are_interpolated_between_frames_and_absent_outside():
    keypoints = np.zeros((5, 17, 2))
    keypoints[:, :, 0] = np.arange(5)[:, None] * 10.0  # x moves 10 px a frame
    teacher = TeacherPoses(keypoints, 10.0, 1)
    found = teacher.at(np.array([-0.05, 0.0, 0.15, 0.4, 0.45]))
    assert np.isnan(found[0]).all() and np.isnan(found[4]).all()
    assert found[1, 0, 0] == 0.0 and found[2, 0, 0] == pytest.approx(15.0) and found[3, 0, 0] == pytest.approx(40.0)
    keypoints[2, 3] = np.nan
    assert np.isnan(TeacherPoses(keypoints, 10.0, 1).at(np.array([0.15]))[0, 3]).all()
    with pytest.raises(ValueError, match=r"shape \(R, 17, 2\)"):
        TeacherPoses(np.zeros((5, 17, 3)), 10.0, 1)


def test_each_student_lag_behind_the_teacher_is_found_within_a_fraction_of_a_frame():
    teacher = TeacherPoses(dance(20.0, Dancer(seed=9)), FPS, 1)
    students = [late(0, seed=2), late(4, seed=3), late(-3, seed=4), late(2.5, seed=5)]
    comparison = compare_with_teacher([1, 2, 3, 4], len(students[0]), source_of(students),
                                      teacher.source(ON_TIME, FPS), FPS)
    assert comparison.mirror is False and comparison.mirror_source == "detected"
    truth = {1: 0.0, 2: 4 * FRAME_MS, 3: -3 * FRAME_MS, 4: 2.5 * FRAME_MS}
    for person_id, expected in truth.items():
        timing = comparison.persons[person_id]
        assert timing.lag_ms == pytest.approx(expected, abs=0.2 * FRAME_MS)
        assert timing.lag_confidence > 0.8
        assert timing.score == pytest.approx(10.0, abs=0.5)
        assert len(timing.windows) == 17 and timing.distances.shape == (len(students[0]),)
    assert comparison.persons[2].timing_score < comparison.persons[1].timing_score


def test_a_student_dancing_something_else_gets_no_lag_and_a_lower_score():
    teacher = TeacherPoses(dance(20.0, Dancer(seed=9)), FPS, 1)
    students = [late(0), late(0, seed=3, choreography=7)]
    comparison = compare_with_teacher([1, 2], len(students[0]), source_of(students), teacher.source(ON_TIME, FPS), FPS)
    assert comparison.persons[2].lag_ms is None and comparison.persons[2].lag_confidence < 0.2
    assert comparison.persons[2].score < comparison.persons[1].score - 1.5
    assert comparison.worst_moments and comparison.worst_moments[0].worst_person == 2


def test_a_teacher_facing_the_class_is_detected_as_a_mirror_image():
    teacher = TeacherPoses(mirror_poses(dance(20.0, Dancer(seed=9))), FPS, 1)
    students = [late(0), late(3, seed=3)]
    comparison = compare_with_teacher([1, 2], len(students[0]), source_of(students), teacher.source(ON_TIME, FPS), FPS)
    assert comparison.mirror is True and comparison.mirror_source == "detected"
    direct, mirrored = comparison.mirror_strength
    assert mirrored > direct + 0.3
    assert comparison.persons[2].lag_ms == pytest.approx(3 * FRAME_MS, abs=0.2 * FRAME_MS)
    assert comparison.persons[1].score == pytest.approx(10.0, abs=0.5)
    forced = compare_with_teacher([1, 2], len(students[0]), source_of(students), teacher.source(ON_TIME, FPS), FPS,
                                  mirror=True)
    assert forced.mirror is True and forced.mirror_source == "--mirror" and forced.mirror_strength is None


@pytest.mark.parametrize("teacher_fps", [25.0, 60.0])
def test_a_teacher_at_another_frame_rate_is_resampled_onto_the_students_frames(teacher_fps):
    # The teacher's recording at its own rate: the same choreography sampled at teacher_fps.
    frames = round(20.0 * teacher_fps)
    delays = dict.fromkeys(LIMB_NAMES, 0.0)
    at_30 = dance(20.0 + 1.0, Dancer(delays=delays, seed=9, jitter_px=0.0, dropout=0.0))
    times = np.arange(frames) / teacher_fps * FPS
    below = np.floor(times).astype(int)
    fraction = (times - below)[:, None, None]
    keypoints = (1 - fraction) * at_30[below] + fraction * at_30[below + 1]
    teacher = TeacherPoses(keypoints, teacher_fps, 1)
    students = [late(0), late(4, seed=3)]
    comparison = compare_with_teacher([1, 2], len(students[0]), source_of(students), teacher.source(ON_TIME, FPS), FPS)
    assert comparison.persons[1].lag_ms == pytest.approx(0.0, abs=0.3 * FRAME_MS)
    assert comparison.persons[2].lag_ms == pytest.approx(4 * FRAME_MS, abs=0.3 * FRAME_MS)


def test_the_offset_is_found_from_the_movement_when_there_is_no_music():
    teacher = TeacherPoses(dance(12.0, Dancer(seed=9)), FPS, 1)
    # The teacher's recording starts 3.3 s (99 frames) into the students' video.
    students = [late(99, seed=2), late(99, seed=3)]
    alignment, detail = align_by_poses(students, teacher, FPS)
    assert alignment is not None and alignment.method == "poses" and alignment.drift_ppm is None
    assert alignment.offset_seconds == pytest.approx(3.3, abs=0.5 / FPS)
    assert alignment.confidence > 0.5 and "similarity" in detail


def test_movement_that_repeats_gets_an_honest_low_confidence():
    phrase = dance(4.0, Dancer(seed=9, jitter_px=0.0, dropout=0.0))
    teacher = TeacherPoses(np.concatenate([phrase] * 4), FPS, 1)  # one 4 s phrase, four times
    students = [np.concatenate([phrase] * 6)[37:37 + 540] + np.random.default_rng(1).normal(0, 1.5, (540, 17, 2))]
    alignment, _ = align_by_poses(students, teacher, FPS)
    assert alignment is not None and alignment.confidence < 0.2


def test_unrelated_movement_is_not_taken_as_an_alignment():
    teacher = TeacherPoses(dance(12.0, Dancer(seed=9)), FPS, 1)
    alignment, detail = align_by_poses([late(0, choreography=5)], teacher, FPS)
    assert alignment is None and "does not match" in detail


def test_the_teacher_is_the_most_prominent_person_unless_chosen():
    present = np.zeros((10, 17, 2))
    present[:, :, 1] = np.linspace(0, 300, 17)
    brief = np.full((10, 17, 2), np.nan)
    brief[:3] = present[:3]
    small = present * 0.3
    person, reason = choose_teacher({1: brief, 2: small, 3: present})
    assert person == 3 and "most prominent of 3" in reason and "--reference-person" in reason
    assert choose_teacher({4: present})[1].startswith("#4, the only person")
    assert choose_teacher({1: brief, 3: present}, wanted=1) == (1, "#1, chosen with --reference-person")
    with pytest.raises(ValueError, match="--reference-person 7 is not in the reference video; its persons are #1, #3"):
        choose_teacher({1: brief, 3: present}, wanted=7)
    with pytest.raises(ValueError, match="no person"):
        choose_teacher({})


def test_the_analysis_says_why_when_the_recordings_barely_overlap():
    teacher = TeacherPoses(dance(12.0, Dancer(seed=9)), FPS, 1)
    students = [late(0)]

    def read_of(ids):
        return source_of(students)

    setup = TeacherSetup(teacher, Alignment("manual", 18.0))  # the teacher starts 2 s before the end
    found = analyse_against_teacher(setup, [1], {1: 600}, 600, read_of, FPS)
    assert found.comparison is None and "overlaps this video for 2.0 s only" in found.reason
    setup = TeacherSetup(teacher, None, "the reference has no audio")
    found = analyse_against_teacher(setup, [1], {1: 600}, 600, lambda ids: source_of([late(0, choreography=4)]), FPS)
    assert found.alignment is None and "could not align the teacher: the reference has no audio" in found.reason
    assert "give --offset SECONDS" in found.reason
    aligned = analyse_against_teacher(TeacherSetup(teacher, None), [1], {1: 600}, 600,
                                      lambda ids: source_of([late(60)]), FPS)
    assert aligned.alignment.method == "poses" and aligned.alignment.offset_seconds == pytest.approx(2.0, abs=0.05)
    assert aligned.comparison.persons[1].lag_ms == pytest.approx(0.0, abs=0.3 * FRAME_MS)
