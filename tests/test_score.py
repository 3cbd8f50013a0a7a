"""The original DancingSkeletons score: the original tool's own answers and known answers."""

import json

import numpy as np
import pytest

from tests.helpers import detections, need_shared, pose
from tests.reference import persons_above, pose_distance
from workers.data import Detections
from workers.score import (
    RunningScore,
    ScoreParams,
    fit_affine,
    frame_score,
    keypoint_weights,
)

PARAMS = ScoreParams()


def _case_detections(case: dict) -> Detections:
    n = len(case["box_scores"])
    return Detections(
        boxes=np.zeros((n, 4)),
        box_scores=np.array(case["box_scores"]),
        keypoints=np.array(case["keypoints"]).reshape(n, 17, 2),
        keypoint_scores=np.array(case["keypoint_scores"]).reshape(n, 17),
    )


@pytest.fixture(scope="module")
def original_cases() -> dict:
    return json.loads(need_shared("fixtures", "original_score_cases.json").read_text())


def test_reproduces_every_frame_score_of_the_original(original_cases):
    cases = original_cases["frame_cases"]
    assert len(cases) > 50
    for number, case in enumerate(cases):
        got = frame_score(persons_above(_case_detections(case), PARAMS.person_threshold), PARAMS)
        expected = case["expected_frame_score"]
        if expected is None:
            assert got is None, f"case {number} ({case['kind']}): expected no score, got {got}"
        else:
            assert got == pytest.approx(expected, abs=1e-6), f"case {number} ({case['kind']})"


def test_unscored_where_the_original_returned_zero(original_cases):
    # The one deliberate difference: nobody comparable means no score, not 0.
    cases = [c for c in original_cases["frame_cases"] if "original_tool_returns" in c]
    assert cases
    for case in cases:
        assert case["original_tool_returns"] == 0
        assert frame_score(persons_above(_case_detections(case), 0.9), PARAMS) is None


def test_reproduces_every_on_screen_text_and_end_card(original_cases):
    for sequence in original_cases["sequences"]:
        running = RunningScore(PARAMS)
        for number, frame in enumerate(sequence["frames"]):
            persons = persons_above(_case_detections(frame), PARAMS.person_threshold)
            text = running.update(len(persons), frame_score(persons, PARAMS))
            assert text == frame["expected_text"], f"frame {number}"
        assert running.total_text() == sequence["expected_total_text"]


def _affine(points: np.ndarray, matrix: np.ndarray, shift: np.ndarray) -> np.ndarray:
    return points @ matrix.T + shift


@pytest.mark.parametrize(
    "matrix, shift",
    [
        (np.eye(2), np.zeros(2)),
        (np.eye(2) * 0.37, np.array([500.0, -20.0])),  # scaled and shifted
        (np.array([[np.cos(0.6), -np.sin(0.6)], [np.sin(0.6), np.cos(0.6)]]), np.array([10.0, 3.0])),  # rotated
        (np.array([[1.3, 0.4], [-0.2, 0.8]]), np.array([-40.0, 90.0])),  # general affine
    ],
)
def test_a_pose_and_its_affine_image_score_the_maximum(matrix, shift):
    reference = pose(120, 300, 400)
    persons = detections([reference, _affine(reference, matrix, shift)])
    assert frame_score(persons, PARAMS) == pytest.approx(10.0)


def test_a_visibly_different_pose_scores_clearly_lower():
    reference = pose(120, 300, 400)
    arms_up = reference.copy()
    arms_up[[7, 8, 9, 10], 1] -= 250  # elbows and wrists raised high
    arms_up[13, 0] += 80  # a knee out
    score = frame_score(detections([reference, arms_up]), PARAMS)
    assert score is not None and score < 5


def test_a_keypoint_with_zero_weight_is_excluded():
    reference = pose(120, 300, 400)
    wrong_wrist = reference.copy()
    wrong_wrist[9] += [400, -300]
    persons = detections([reference, wrong_wrist])
    with_wrist = frame_score(persons, PARAMS)
    scores = persons.keypoint_scores.copy()
    scores[1, 9] = -3.0  # a negative logit: weight 0, out of the fit and the distance
    without_wrist = frame_score(Detections(persons.boxes, persons.box_scores, persons.keypoints, scores), PARAMS)
    # The wrist still moves the centroid and the norm (the original normalises all 17
    # points), so the score is not exactly 10, but the wrong wrist no longer counts.
    assert with_wrist < 5
    assert without_wrist > 9.5


def test_fewer_than_two_persons_gives_no_score():
    assert frame_score(detections([]), PARAMS) is None
    assert frame_score(detections([pose()]), PARAMS) is None


def test_persons_at_or_below_the_threshold_are_left_out():
    persons = detections([pose(), pose(), pose()], box_scores=[0.95, 0.9, 0.5])
    kept = persons_above(persons, 0.9)
    assert list(kept.box_scores) == [0.95]


def test_the_reference_is_the_most_confident_person():
    reference, other = pose(100), pose(100)
    other[9] += [300, 0]
    # The same two persons in either order give the same score.
    a = frame_score(detections([reference, other], [0.99, 0.95]), PARAMS)
    b = frame_score(detections([other, reference], [0.95, 0.99]), PARAMS)
    assert a == pytest.approx(b)


def test_fit_affine_recovers_a_known_transform():
    source = pose(50, 10, 20)
    matrix = np.array([[1.2, 0.3], [-0.1, 0.9]])
    target = source @ matrix.T + [5, 7]
    fitted = fit_affine(source, target, np.ones(17))
    assert np.allclose(np.hstack([source, np.ones((17, 1))]) @ fitted, target)


def test_pose_distance_is_none_without_weight():
    assert pose_distance(pose(), pose(), np.zeros(17), np.ones(17)) is None


def test_a_pose_collapsed_to_one_point_cannot_be_compared():
    point = np.zeros((17, 2)) + 5.0
    assert pose_distance(point, pose(), np.ones(17), np.ones(17)) is None
    assert pose_distance(pose(), point, np.ones(17), np.ones(17)) is None
    assert frame_score(detections([point, point]), PARAMS) is None


def test_logit_weighting_turns_probabilities_into_logit_scale():
    weights = keypoint_weights(np.array([0.5, 0.88079708, 0.1]), "logit")
    assert weights == pytest.approx([0.0, 2.0, 0.0], abs=1e-6)


def test_running_score_window_and_texts():
    running = RunningScore(ScoreParams(display_window=2))
    assert running.update(0, None) is None
    assert running.update(2, None) == ""
    assert running.update(2, 8.9) == "Similarity score: 08"
    assert running.update(1, None) == "One person"
    assert running.update(2, 6.0) == "Similarity score: 06"  # 8.9 has left the window
    assert running.total == pytest.approx(7.45)
    assert running.total_text() == "Total score: 07"
    assert RunningScore(PARAMS).total_text() == "Total score: --"


def test_the_same_person_found_twice_is_kept_once():
    from workers.score import order_above, without_duplicates

    dancer = pose(100.0, 200, 100)
    twice = dancer + np.array([[2.0, -1.0]] * 17)
    twice[9] += (30.0, 5.0)  # the second box has a wrist elsewhere: its box is wider
    beside = pose(100.0, 420, 100)  # the same pose one body width away: another person
    found = detections([beside, twice, dancer], box_scores=[0.7, 0.6, 0.9])
    order = order_above(found, 0.5)
    assert order.tolist() == [2, 0, 1]
    assert without_duplicates(found, order).tolist() == [2, 0]  # the less confident copy goes
    assert without_duplicates(found, order[:1]).tolist() == [2]
