"""Tracking, performer selection and per-person lag wired into the score + draw stage.

Synthetic dancers through `Annotator` (no threads), and the pipeline with a stand-in model.
"""

import re

import numpy as np
import pytest

from config import Config
from pipeline.cli import config_from_args, get_args_parser
from pipeline.runner import run_video
from tests.helpers import StandInEstimator, detections, make_video, pose
from workers.annotate import Annotator
from workers.data import Detections, Frame
from workers.draw import PALETTE, draw_skeletons
from workers.motion import mirror_poses

FPS = 25.0
SCALE = 60.0


def dancer(t: float, dx: float) -> np.ndarray:
    """A dancer at time `t` seconds: arms and knees follow smooth, non-periodic, asymmetric curves."""
    keypoints = pose(SCALE, dx, 150)
    left = np.sin(2 * np.pi * 0.7 * t) + 0.6 * np.sin(2 * np.pi * 1.9 * t + 1.0)
    right = np.sin(2 * np.pi * 1.1 * t + 2.0) + 0.5 * np.sin(2 * np.pi * 0.3 * t)
    keypoints[[7, 9], 1] -= SCALE * np.array([0.5, 1.0]) * left  # left elbow, wrist
    keypoints[[8, 10], 1] -= SCALE * np.array([0.5, 1.0]) * right
    keypoints[9, 0] += SCALE * 0.4 * right
    keypoints[[13, 15], 0] += SCALE * 0.2 * np.sin(2 * np.pi * 1.3 * t)  # left knee, ankle
    return keypoints


def run_annotator(seconds: float, people, config: Config | None = None, draw: bool = False):
    """Feed `people(t)` -> list of (17, 2) poses through an Annotator; return it."""
    config = config or Config(input="in.mp4", output="out.mp4")
    annotator = Annotator(config, draw=draw, fps=FPS)
    for index in range(round(seconds * FPS)):
        t = index / FPS
        image = np.zeros((300, 640, 3), np.uint8)
        annotator(Frame(index=index, timestamp=t, image=image), detections(people(t)))
    return annotator


@pytest.mark.parametrize("delay", [0, 3, 6])
def test_a_delayed_copy_is_behind_by_the_delay(delay):
    annotator = run_annotator(8, lambda t: [dancer(t, 120), dancer(t - delay / FPS, 420)])
    persons, moments = annotator.finish()
    assert [p.id for p in persons] == [1, 2] and all(p.scored for p in persons)
    first, second = persons
    assert second.lag_ms - first.lag_ms == pytest.approx(delay * 1000 / FPS, abs=0.5 * 1000 / FPS)
    assert second.score == pytest.approx(10.0, abs=0.05)  # the same poses once the lag is removed
    assert len(first.windows) == 5  # 4 s windows every second over 8 s
    assert moments
    # Each person's median box tells who is who: the left dancer's lies left of the right one's.
    assert first.box is not None and second.box is not None
    assert first.box[2] < second.box[0] and first.box[0] < 120 < first.box[2]


def test_timing_score_falls_as_the_delay_grows():
    scores = []
    for delay in (0, 3, 6, 12):
        persons, _ = run_annotator(8, lambda t, delay=delay: [dancer(t, 120), dancer(t - delay / FPS, 420)]).finish()
        scores.append(np.mean([p.timing_score for p in persons]))
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4


def test_live_label_shows_the_id_then_the_lag_once_a_window_is_complete():
    annotator = run_annotator(6, lambda t: [dancer(t, 120), dancer(t - 5 / FPS, 420)])
    window = round(4 * FPS)
    assert annotator.results[0].labels == ("#1", "#2")
    assert annotator.results[window - 2].labels == ("#1", "#2")
    label = annotator.results[window - 1].labels[1]
    assert label.startswith("#2 +") and label.endswith(" ms")
    assert float(label.split()[1]) == pytest.approx(5 * 1000 / FPS / 2, abs=1000 / FPS)  # half of 200 ms: group median
    assert annotator.results[-1].labels[0].startswith("#1 -")


def test_ids_stay_with_the_people_when_the_detection_order_changes():
    def people(t):
        pair = [dancer(t, 120), dancer(t, 420)]
        return pair if round(t * FPS) % 2 else pair[::-1]

    annotator = run_annotator(2, people)
    first = annotator.results[0].ids
    for result in annotator.results:
        expected = first if result.index % 2 == 0 else first[::-1]
        assert result.ids == expected


def test_colours_follow_the_id_not_the_order():
    image = np.zeros((200, 300, 3), np.uint8)
    persons = detections([pose(40, 70, 100), pose(40, 220, 100)])
    draw_skeletons(image, persons, keypoint_threshold=0.0, ids=[4, 1])
    left = set(map(tuple, image[:, :150].reshape(-1, 3)))
    right = set(map(tuple, image[:, 150:].reshape(-1, 3)))
    assert PALETTE[4] in left and PALETTE[1] not in left
    assert PALETTE[1] in right and PALETTE[4] not in right


def test_a_small_static_bystander_is_not_scored_and_changes_nothing():
    pair = lambda t: [dancer(t, 120), dancer(t - 3 / FPS, 320)]  # noqa: E731
    alone, _ = run_annotator(6, pair).finish()
    watched, _ = run_annotator(6, lambda t: pair(t) + [pose(SCALE * 0.4, 560, 200)]).finish()
    assert [(p.id, p.scored) for p in watched] == [(1, True), (2, True), (3, False)]
    assert "static" in watched[2].reason and "smaller" in watched[2].reason
    for a, b in zip(alone, watched):
        assert (b.lag_ms, b.score) == pytest.approx((a.lag_ms, a.score))


def test_persons_all_and_a_number_choose_whom_to_score():
    people = lambda t: [dancer(t, 120), dancer(t, 320), pose(SCALE * 0.4, 560, 200)]  # noqa: E731
    config = Config(input="in.mp4", output="out.mp4", persons="all")
    everyone, _ = run_annotator(5, people, config).finish()
    assert all(p.scored for p in everyone)
    config = Config(input="in.mp4", output="out.mp4", persons=1)
    one, _ = run_annotator(5, people, config).finish()
    assert [p.scored for p in one].count(True) == 1 and not one[2].scored
    assert one[0].lag_ms is None  # nobody to compare with


def test_mirror_images_count_as_in_sync_only_with_mirror():
    def people(t):
        left = dancer(t, 150)
        return [left, mirror_poses(left) + np.array([300.0, 0.0])]

    plain, _ = run_annotator(6, people).finish()
    mirrored, _ = run_annotator(6, people, Config(input="in.mp4", output="out.mp4", mirror=True)).finish()
    assert all(p.score > 9.9 for p in mirrored) and mirrored[0].mirrored_with == (2,)
    assert all(p.score < mirrored[0].score - 1.0 for p in plain), [p.score for p in plain]


def test_no_score_tracks_but_scores_nobody():
    annotator = run_annotator(2, lambda t: [dancer(t, 120), dancer(t, 420)],
                              Config(input="in.mp4", output="out.mp4", score=False))
    persons, moments = annotator.finish()
    assert [(p.id, p.scored, p.reason) for p in persons] == [(1, False, "scoring off (--no-score)"),
                                                               (2, False, "scoring off (--no-score)")]
    assert moments == [] and annotator.results[-1].labels == ("#1", "#2")


def test_no_person_at_all():
    annotator = Annotator(Config(input="in.mp4", output="out.mp4"), draw=False, fps=FPS)
    annotator(Frame(0, 0.0, np.zeros((10, 10, 3), np.uint8)), Detections.empty())
    assert annotator.finish() == ([], [])


def test_tracker_state_never_carries_over_to_the_next_video(tmp_path):
    source = make_video(tmp_path / "in.mp4", seconds=1, fps="10", size="96x64")
    config = Config(input=source, output=tmp_path / "a.mp4", progress=False, video=False, save_poses=False)
    estimator = StandInEstimator()
    first = run_video(config, estimator)
    second = run_video(config.replace(output=tmp_path / "b.mp4"), estimator)
    assert first.frames[0].ids == second.frames[0].ids == (1, 2)
    assert [p.id for p in first.persons] == [p.id for p in second.persons] == [1, 2]


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("all", "all"), ("3", 3), (2, 2)])
def test_persons_setting_accepts_auto_all_or_a_number(value, expected):
    assert Config(input="a.mp4", output="b.mp4", persons=value).persons == expected


@pytest.mark.parametrize("value", ["0", "some", -1, True, 1.5])
def test_persons_setting_refuses_anything_else(value):
    with pytest.raises(ValueError, match="persons must be auto, all or a number of persons 1..inf"):
        Config(input="a.mp4", output="b.mp4", persons=value)


def test_cli_fills_persons_and_mirror():
    parser = get_args_parser()
    config = config_from_args(parser.parse_args(["in.mp4", "out.mp4", "--persons", "2", "--mirror"]))
    assert (config.persons, config.mirror) == (2, True)
    config = config_from_args(parser.parse_args(["in.mp4", "out.mp4"]))
    assert (config.persons, config.mirror) == ("auto", False)


def test_the_end_card_adds_the_group_sync_under_the_original_total():
    from workers.draw import end_card

    annotator = run_annotator(8, lambda t: [dancer(t, 120), dancer(t, 420)])
    assert annotator.end_card_lines() == [annotator.end_card_text()]  # before the analysis: the total alone
    persons, _ = annotator.finish()
    total, group, lags = annotator.end_card_lines()
    assert total == "Total score: 10"
    assert re.fullmatch(r"Group sync: 10\.0 \(chance \d\.\d\)", group), group
    assert lags == "#1 +0 ms   #2 +0 ms"
    assert [p.sync.score for p in persons] == [pytest.approx(10.0)] * 2
    card = end_card(640, 360, "\n".join((total, group)))
    lit_rows = np.flatnonzero(card.max(axis=(1, 2)) > 0)
    assert np.diff(lit_rows).max() > 5  # two lines of text with a gap between them


def test_one_line_end_card_without_sync():
    annotator = run_annotator(2, lambda t: [dancer(t, 120)])
    annotator.finish()
    assert annotator.end_card_lines() == [annotator.end_card_text()]
    assert annotator.sync is not None and annotator.sync.group is None


def test_the_end_card_of_a_class_names_the_few_furthest_out_and_sums_up_the_rest():
    from workers.annotate import lag_lines

    lags = [(k, float((k * 7) % 11 - 5)) for k in range(1, 31)]  # 30 dancers within 5 ms...
    lags[12] = (13, 210.0)  # ...but one 210 ms behind
    lags[20] = (21, -150.0)  # and one 150 ms ahead
    assert lag_lines(lags) == ["#13 is 210 ms behind", "#21 is 150 ms ahead", "#3 is 5 ms behind",
                               "The other 27 within ±5 ms"]
    assert lag_lines([(2, 100.0), (1, 0.0), (3, -33.3)]) == ["#1 +0 ms   #2 +100 ms   #3 -33 ms"]
    assert lag_lines([(1, 0.0)]) == []


def test_labels_of_a_class_stay_apart_and_small_people_get_smaller_labels():
    from workers.draw import MIN_LABEL_SCALE, draw_person_labels

    image = np.zeros((1080, 1920, 3), np.uint8)
    poses = [pose(40, 80 + 180 * (k % 10), 160 + 300 * (k // 10)) for k in range(30)]  # 30 people ~130 px tall
    people = detections(poses)
    rects = draw_person_labels(image, people, list(range(1, 31)), [f"#{k} +120 ms" for k in range(1, 31)])
    assert len(rects) == 30
    assert not any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                   for k, a in enumerate(rects) for b in rects[k + 1:])
    widths = [r[2] - r[0] for r in rects]
    boxes = people.boxes
    heads = [(x0, y0, x1, y0 + 0.2 * (y1 - y0)) for x0, y0, x1, y1 in boxes]  # the top fifth: the face
    assert not any(r[0] < h[2] and h[0] < r[2] and r[1] < h[3] and h[1] < r[3] for r in rects for h in heads)
    assert max(widths) <= 1.3 * (boxes[:, 2] - boxes[:, 0]).max() + 20  # about a person wide, not wider
    big = np.zeros((720, 1280, 3), np.uint8)
    (rect,) = draw_person_labels(big, detections([pose(150, 640, 400)]), [1], ["#1 +120 ms"])
    assert rect[2] - rect[0] > max(widths)  # a big person keeps the full-size label
    assert MIN_LABEL_SCALE > 0.3
