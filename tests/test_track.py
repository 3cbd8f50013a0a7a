"""Tracking and performer selection: known answers on synthetic scenes."""

import numpy as np
import pytest

from tests.helpers import detections, pose
from tests.reference import summarize_tracks, track_poses, track_video
from workers.data import Detections
from workers.track import Tracker, TrackSummary, box_iou, select_performers

# pose(scale) is 3.3 * scale pixels tall (eyes to ankles) and 1.4 * scale wide.
SCALE = 60.0


def _arms_up(scale: float, dx: float, dy: float) -> np.ndarray:
    keypoints = pose(scale, dx, dy)
    keypoints[[9, 10], 1] -= 1.5 * scale
    return keypoints


def _crossing_scene(frames: int = 80, hidden: range = range(0)) -> list[list[tuple[str, np.ndarray]]]:
    """A walks right, B walks left at the same height; B is hidden in the given frames."""
    rng = np.random.default_rng(7)
    scene = []
    for t in range(frames):
        people = [("A", pose(SCALE, 100 + 8 * t, 300))]
        if t not in hidden:
            people.append(("B", _arms_up(SCALE, 740 - 8 * t, 300)))
        scene.append([(name, kp + rng.normal(0, 1.0, kp.shape)) for name, kp in people])
    return scene


def _run(scene, seed: int = 0, **tracker_args) -> list[dict[str, int]]:
    """Track a scene, feeding each frame's persons in a random order; {name: id} per frame."""
    rng = np.random.default_rng(seed)
    tracker = Tracker(**tracker_args)
    named = []
    for people in scene:
        order = rng.permutation(len(people))
        shuffled = [people[k] for k in order]
        ids = tracker.update(detections([kp for _, kp in shuffled]) if shuffled else Detections.empty())
        assert ids.shape == (len(shuffled),) and ids.dtype == np.int64
        named.append({name: int(i) for (name, _), i in zip(shuffled, ids)})
    return named


def _consistent(named: list[dict[str, int]]) -> dict[str, set[int]]:
    ids: dict[str, set[int]] = {}
    for frame in named:
        for name, person_id in frame.items():
            ids.setdefault(name, set()).add(person_id)
    return ids


def test_iou_known_answers():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=float)
    iou = box_iou(boxes, boxes)
    assert np.allclose(np.diag(iou), 1.0)
    assert iou[0, 1] == pytest.approx(50 / 150)
    assert iou[0, 2] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ids_survive_crossing_in_any_detection_order(seed):
    ids = _consistent(_run(_crossing_scene(), seed=seed))
    assert ids == {"A": {1}, "B": {2}} or ids == {"A": {2}, "B": {1}}


def test_id_survives_being_hidden_while_crossing():
    # B vanishes behind A for 12 frames around the crossing (frame 40) and comes out the other side.
    named = _run(_crossing_scene(hidden=range(34, 46)))
    ids = _consistent(named)
    assert len(ids["A"]) == 1 and len(ids["B"]) == 1 and ids["A"] != ids["B"]


def test_identical_poses_crossing_keep_their_ids():
    # Same pose for both: only the motion tells them apart when their boxes overlap.
    rng = np.random.default_rng(3)
    scene = [[("A", pose(SCALE, 100 + 8 * t, 300) + rng.normal(0, 1, (17, 2))),
              ("B", pose(SCALE, 744 - 8 * t, 300) + rng.normal(0, 1, (17, 2)))] for t in range(80)]
    ids = _consistent(_run(scene))
    assert len(ids["A"]) == 1 and len(ids["B"]) == 1 and ids["A"] != ids["B"]


def test_newcomers_get_new_ids_and_ids_are_never_reused():
    scene = []
    for t in range(120):
        people = [("A", pose(SCALE, 200, 300))]
        if 10 <= t < 40 or t >= 80:  # C leaves for 40 frames, longer than max_missing
            people.append(("C", pose(SCALE, 600, 300)))
        if t >= 50:
            people.append(("D", _arms_up(SCALE, 400, 300)))
        scene.append(people)
    named = _run(scene, max_missing=30)
    assert named[0] == {"A": 1}
    assert named[10]["C"] == 2
    assert named[50]["D"] == 3
    assert named[80]["C"] == 4  # a new person as far as the tracker can tell
    assert _consistent(named) == {"A": {1}, "C": {2, 4}, "D": {3}}


def test_hidden_up_to_max_missing_keeps_the_id_and_one_more_frame_does_not():
    def scene(gap):
        return [[("A", pose(SCALE, 300, 300))] if not 10 <= t < 10 + gap else [] for t in range(40)]

    assert _consistent(_run(scene(5), max_missing=5)) == {"A": {1}}
    assert _consistent(_run(scene(6), max_missing=5)) == {"A": {1, 2}}


def test_a_far_jump_is_a_new_person():
    scene = [[("A", pose(SCALE, 100 if t < 5 else 900, 300))] for t in range(10)]
    assert _consistent(_run(scene)) == {"A": {1, 2}}


def test_same_input_same_ids():
    scene = _crossing_scene(hidden=range(34, 46))
    assert _run(scene, seed=4) == _run(scene, seed=4)


def test_trackers_do_not_share_state():
    first, second = Tracker(), Tracker()
    first.update(detections([pose(SCALE, 100, 300)]))
    assert second.update(detections([pose(SCALE, 500, 300)])).tolist() == [1]


@pytest.mark.parametrize("args, message", [
    ({"max_missing": -1}, "max_missing must be an integer >= 0"),
    ({"iou_weight": 1.5}, "iou_weight must be in 0..1"),
    ({"max_distance": 0}, "max_distance must be > 0"),
    ({"velocity_smoothing": 0}, r"velocity_smoothing must be in \(0, 1\]"),
])
def test_bad_tracker_arguments_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        Tracker(**args)


def test_track_poses_and_summaries():
    fps = 10.0
    frames, t_total = [], 40
    for t in range(t_total):
        people = [_arms_up(SCALE, 300, 300) if t % 10 < 5 else pose(SCALE, 300, 300),  # dancer
                  pose(SCALE / 3, 900, 100)]  # small, still
        if t < 4:
            people.append(pose(SCALE, 600, 300))  # brief
        frames.append(detections(people))
    ids = track_video(frames)
    poses = track_poses(frames, ids)
    assert sorted(poses) == [1, 2, 3]
    assert poses[1].shape == (t_total, 17, 2)
    assert np.isnan(poses[3][4:]).all() and np.isfinite(poses[3][:4]).all()
    summaries = summarize_tracks(frames, ids, fps)
    assert summaries[1].frames_present == t_total and summaries[3].frames_present == 4
    assert summaries[3].presence == pytest.approx(0.1)
    assert summaries[1].median_height == pytest.approx(3.3 * SCALE)  # raised wrists reach the eyes
    assert summaries[2].median_height == pytest.approx(3.3 * SCALE / 3)
    assert summaries[2].motion == 0.0
    assert summaries[1].motion > 0.1
    # The median box: the still person's own; the dancer's between arms up (5 frames in 10) and down.
    assert summaries[2].box == pytest.approx(tuple(frames[0].boxes[1]))
    up, down = frames[0].boxes[0], frames[5].boxes[0]
    assert summaries[1].box == pytest.approx(tuple((up + down) / 2))


def test_track_poses_drops_unsure_keypoints():
    frame = detections([pose(SCALE)], keypoint_score=-1.0)
    poses = track_poses([frame], [np.array([1])], keypoint_threshold=0.0)
    assert np.isnan(poses[1]).all()


def _summary(presence=1.0, height=300.0, motion=1.0, total=100):
    return TrackSummary(frames_present=round(presence * total), total_frames=total,
                        median_height=height, motion=motion)


GROUP = {
    1: _summary(),
    2: _summary(height=280, motion=0.8),
    3: _summary(height=320, motion=1.2),
    4: _summary(height=100, motion=0.01),  # small, static bystander
    5: _summary(presence=0.1),  # walks through
    6: _summary(motion=0.05),  # a tall person standing still
}


def test_auto_keeps_the_group_and_says_why_not_the_others():
    verdicts = select_performers(GROUP)
    assert {i for i, (scored, _) in verdicts.items() if scored} == {1, 2, 3}
    assert "smaller than 0.5 of the group's median height" in verdicts[4][1]
    assert "static" in verdicts[4][1]
    assert verdicts[5][1] == "present in 10% of frames"
    assert verdicts[6][1].startswith("static")
    assert verdicts[1][1].startswith("performer")


def test_all_and_a_number():
    assert all(scored for scored, _ in select_performers(GROUP, "all").values())
    chosen = {i for i, (scored, _) in select_performers(GROUP, 2).items() if scored}
    assert chosen == {1, 3}  # performers first, then most prominent (frames x height)
    five = {i for i, (scored, _) in select_performers(GROUP, 5).items() if scored}
    assert five == {1, 2, 3, 6, 4}


def test_a_number_prefers_a_tall_dancer_missed_in_some_frames_to_a_small_person_always_there():
    tracks = {1: _summary(), 2: _summary(presence=0.9), 3: _summary(presence=0.99, height=180)}
    chosen = {i for i, (scored, _) in select_performers(tracks, 2).items() if scored}
    assert chosen == {1, 2}


def test_calm_group_is_not_static():
    calm = {i: _summary(motion=0.02 + 0.001 * i) for i in range(1, 4)}
    assert all(scored for scored, _ in select_performers(calm).values())


@pytest.mark.parametrize("mode", ["some", 0, -2, True, 1.5])
def test_bad_mode_is_refused(mode):
    with pytest.raises(ValueError, match="mode must be 'auto', 'all' or a number of persons >= 1"):
        select_performers(GROUP, mode)
