"""One id per person for the whole video: tracklets joined over gaps (workers/identity.py).

Synthetic scenes with known answers: stick figures drawn in their clothes' colours on a grey
picture, moving along known paths, hidden, leaving and coming back, through the `Annotator` (the
tracker, the joiner and the drawing, no threads). The same cases on real footage through the
real model are in `tests/test_identity_real_footage.py`.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from config import Config
from tests.helpers import detections, pose
from workers.annotate import Annotator
from workers.appearance import body_colours, covered_share, limb_proportions, srgb_to_lab
from workers.data import Detections, Frame
from workers.identity import IdentityJoiner, IdentityParams
from workers.scenes import scene_change, scene_thumbnail
from workers.track import Tracker

FPS = 25.0
SCALE = 40.0  # pose(SCALE) is 132 px tall
SIZE = (360, 960)  # height, width


def dancing(t: float, x: float, y: float = 180.0, phase: float = 0.0) -> np.ndarray:
    """A dancer centred near (x, y) at time `t` s: arms and a knee on smooth, non-periodic curves."""
    keypoints = pose(SCALE, x, y)
    left = np.sin(2 * np.pi * 0.7 * (t + phase)) + 0.6 * np.sin(2 * np.pi * 1.9 * (t + phase) + 1.0)
    right = np.sin(2 * np.pi * 1.1 * (t + phase) + 2.0) + 0.5 * np.sin(2 * np.pi * 0.3 * (t + phase))
    keypoints[[7, 9], 1] -= SCALE * np.array([0.5, 1.0]) * left
    keypoints[[8, 10], 1] -= SCALE * np.array([0.5, 1.0]) * right
    keypoints[[13, 15], 0] += SCALE * 0.2 * np.sin(2 * np.pi * 1.3 * (t + phase))
    return keypoints


def render(people: list[tuple[np.ndarray, tuple[int, int, int], tuple[int, int, int]]],
           background: tuple[int, int, int] = (128, 128, 128)) -> np.ndarray:
    """A plain picture with each (keypoints, shirt colour, trousers colour) drawn back to front
    (those with NaN keypoints are hidden)."""
    image = np.full((*SIZE, 3), background, np.uint8)
    for keypoints, shirt, trousers in people:
        if not np.isfinite(keypoints).all():
            continue
        k = np.round(keypoints).astype(np.int32)
        cv2.fillConvexPoly(image, k[[5, 6, 12, 11]], shirt)
        for a, b in ((5, 7), (7, 9), (6, 8), (8, 10)):
            cv2.line(image, tuple(k[a]), tuple(k[b]), shirt, 6)
        for a, b in ((11, 13), (13, 15), (12, 14), (14, 16)):
            cv2.line(image, tuple(k[a]), tuple(k[b]), trousers, 9)
        cv2.circle(image, tuple(k[0]), 8, (230, 190, 160), -1)
    return image


RED, BLUE, GREEN, YELLOW = (200, 40, 40), (40, 60, 200), (40, 160, 60), (220, 200, 40)
DARK, LIGHT = (40, 40, 40), (200, 200, 200)


def run(scene, seconds: float, config: Config | None = None, draw: bool = False) -> tuple[Annotator, list]:
    """Feed scene(t) -> [(name, keypoints, shirt, trousers)] (back to front) through an Annotator.

    Returns:
        The annotator (closed) and, per frame, {name: id} of the persons detected.
    """
    config = config or Config(input="in.mp4", output="out.mp4")
    annotator = Annotator(config, draw=draw, fps=FPS, frame_size=(SIZE[1], SIZE[0]))
    named: list[dict[str, int]] = []
    names: list[list[str]] = []
    for index in range(round(seconds * FPS)):
        t = index / FPS
        people = scene(t)
        image = render([(k, shirt, trousers) for _, k, shirt, trousers in people])
        seen = [(name, k) for name, k, _, _ in people if np.isfinite(k).all()]
        names.append([name for name, _ in seen])
        # Equally confident (the order of the detections is kept): a class has more than the
        # nine people that detections()'s falling scores keep above the threshold.
        found = detections([k for _, k in seen], [0.99] * len(seen)) if seen else Detections.empty()
        annotator(Frame(index=index, timestamp=t, image=image), found)
    annotator.close()
    for frame, frame_names in zip(annotator.results, names):
        named.append(dict(zip(frame_names, frame.ids)))
    return annotator, named


def ids_of(named: list[dict[str, int]]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for frame in named:
        for name, person_id in frame.items():
            found.setdefault(name, set()).add(person_id)
    return found


HIDDEN = np.full((17, 2), np.nan)


def test_a_dancer_hidden_behind_another_for_a_second_keeps_the_id():
    # B walks left behind A (who walks right); B is hidden for 1.2 s, longer than the tracker bridges.
    def scene(t):
        a = ("A", dancing(t, 150 + 120 * t), RED, DARK)
        b_hidden = 2.4 <= t < 3.6
        b = ("B", HIDDEN if b_hidden else dancing(t, 810 - 120 * t, phase=0.3), BLUE, LIGHT)
        return [b, a]

    annotator, named = run(scene, 6)
    ids = ids_of(named)
    assert sorted(ids) == ["A", "B"] and all(len(found) == 1 for found in ids.values())
    persons = {p.id: p for p in annotator.finish()[0]}
    (a,), (b,) = ids["A"], ids["B"]
    assert len(persons[b].tracklets) == 2 and persons[b].tracklets[1].join is not None
    assert persons[b].tracklets[1].join.cost < 1.0
    assert persons[b].gaps == ((round(2.4 * FPS), round(3.6 * FPS) - 1),)
    assert len(persons[a].tracklets) == 1 and persons[a].gaps == ()


def test_look_alikes_that_cross_are_told_apart_by_their_motion():
    # The same clothes and poses, crossing at t = 2 s: while they overlap, the tracker cuts the
    # tracklets it cannot tell apart and B, behind, is hidden; the joiner carries each through
    # by where it was heading.
    def scene(t):
        a_x, b_x = 160 + 160 * t, 800 - 160 * t
        b = HIDDEN if abs(a_x - b_x) < 30 else dancing(t, b_x)
        return [("B", b, GREEN, DARK), ("A", dancing(t, a_x), GREEN, DARK)]

    _, named = run(scene, 4)
    ids = ids_of(named)
    assert all(len(found) == 1 for found in ids.values()) and ids["A"] != ids["B"], ids


def test_two_who_hide_together_are_told_apart_by_their_clothes():
    # Both stop behind a screen at the same place for 1 s and come out swapped in depth but at
    # the same spot: only the clothes can tell them apart.
    def scene(t):
        if 2.0 <= t < 3.0:
            return [("A", HIDDEN, RED, DARK), ("B", HIDDEN, BLUE, LIGHT)]
        a_x, b_x = (300, 660) if t < 2.0 else (660, 300)  # they come back on each other's side
        return [("A", dancing(t, a_x), RED, DARK), ("B", dancing(t, b_x, phase=0.5), BLUE, LIGHT)]

    annotator, named = run(scene, 5)
    assert ids_of(named) == {"A": {1}, "B": {2}}
    joins = [span.join for person in annotator.finish()[0] for span in person.tracklets if span.join]
    assert len(joins) == 2 and all(join.terms["colour"] < 0.5 for join in joins)


def test_someone_new_after_a_gap_gets_a_new_id():
    # A leaves on the right; two seconds later C, in other clothes, comes in on the left.
    def scene(t):
        if t < 2.0:
            return [("A", dancing(t, 500 + 200 * t), RED, DARK)]
        if t < 3.0:
            return []
        return [("C", dancing(t, 60 + 100 * (t - 3)), YELLOW, LIGHT)]

    _, named = run(scene, 5)
    assert ids_of(named) == {"A": {1}, "C": {2}}


def test_a_dancer_who_leaves_the_picture_and_comes_back_keeps_the_id():
    def scene(t):
        stay = ("A", dancing(t, 200), RED, DARK)
        if 1.5 <= t < 3.5:
            return [stay]
        x = 700 + 300 * max(0.0, t - 1.0) if t < 1.5 else 900 - 150 * (t - 3.5)  # out right, back from it
        return [stay, ("B", dancing(t, x, phase=0.2), BLUE, LIGHT)]

    annotator, named = run(scene, 5)
    assert ids_of(named) == {"A": {1}, "B": {2}}
    assert annotator.finish()[0][1].gaps == ((round(1.5 * FPS), round(3.5 * FPS) - 1),)


def test_a_person_is_never_in_two_places_at_once():
    # Two people dressed alike at once: whatever the costs, the second is never joined to the first.
    def scene(t):
        people = [("A", dancing(t, 200), RED, DARK)]
        if t >= 1.0:
            people.append(("twin", dancing(t, 260), RED, DARK))
        return people

    annotator, named = run(scene, 3)
    assert ids_of(named) == {"A": {1}, "twin": {2}}
    assert all(span.join is None for person in annotator.finish()[0] for span in person.tracklets)


def test_no_identity_is_carried_across_a_camera_cut():
    # The same two people before and after a cut to another picture: new ids after it, and the
    # report says why.
    def scene(t):
        return [("A", dancing(t, 300), RED, DARK), ("B", dancing(t, 600), BLUE, LIGHT)]

    config = Config(input="in.mp4", output="out.mp4")
    annotator = Annotator(config, draw=False, fps=FPS, frame_size=(SIZE[1], SIZE[0]))
    for index in range(100):
        t = index / FPS
        # The other camera from frame 50: another background.
        image = render([(k, s, tr) for _, k, s, tr in scene(t)], (128, 128, 128) if index < 50 else (90, 160, 220))
        annotator(Frame(index=index, timestamp=t, image=image), detections([k for _, k, _, _ in scene(t)]))
    annotator.close()
    analysis = annotator.analysis()
    assert analysis.identity.scene_cuts == (50,)
    assert {(p.first_frame, p.last_frame) for p in analysis.persons} == {(0, 49), (50, 99)}
    assert len(analysis.persons) == 4


def test_the_ids_drawn_are_the_ids_recorded():
    # B hides and comes back; the colour drawn on its returning skeleton is its id's colour.
    from workers.draw import colour_of

    def scene(t):
        return [("A", dancing(t, 200), RED, DARK),
                ("B", HIDDEN if 1.0 <= t < 2.0 else dancing(t, 700), BLUE, LIGHT)]

    config = Config(input="in.mp4", output="out.mp4", score=False)
    annotator = Annotator(config, draw=True, fps=FPS, frame_size=(SIZE[1], SIZE[0]))
    drawn = []
    for index in range(75):
        t = index / FPS
        people = [(n, k) for n, k, _, _ in scene(t) if np.isfinite(k).all()]
        frame = Frame(index=index, timestamp=t, image=np.zeros((*SIZE, 3), np.uint8))
        drawn += annotator(frame, detections([k for _, k in people]))
    drawn += annotator.close()
    assert [frame.index for frame in drawn] == list(range(75))  # every frame once, in order
    last = drawn[-1]
    ankle = np.round(dancing(last.timestamp, 700)[16]).astype(int)
    record = annotator.results[74]
    assert record.ids == (1, 2)
    assert tuple(last.image[ankle[1], ankle[0]]) == colour_of(2)
    assert annotator.tracked.ids(74).tolist() == [1, 2]


def test_decisions_wait_at_most_the_lookahead():
    joiner = IdentityJoiner(FPS, 0.0, IdentityParams(lookahead_s=0.4))
    assert joiner.lookahead == 10 and joiner.tracker_missing == 9
    for index in range(30):
        joiner.push(detections([pose(SCALE, 200, 180)]), np.array([1]))
        assert joiner.ready() == max(0, index + 1 - 10)
    for _ in range(20):
        assert joiner.pop().tolist() == [1]
    assert joiner.ready() == 0
    joiner.close()
    assert joiner.ready() == 10


def test_the_lookahead_fits_the_memory_given():
    config = Config(input="in.mp4", output="out.mp4", lookahead_megabytes=100)
    assert config.lookahead_frames(1920, 1080, 30) == 16  # 100 MB / 5.9 MB a frame
    assert config.lookahead_frames(640, 360, 30) == 30
    annotator = Annotator(config, fps=30, frame_size=(1920, 1080))
    assert annotator.joiner.lookahead == 16 and annotator.tracker.max_missing == 15


# ---- the features ------------------------------------------------------------------------------

def test_colours_are_those_of_the_clothes():
    keypoints = pose(SCALE, 300, 180)
    image = render([(keypoints, RED, DARK)])
    colours = body_colours(image, keypoints[None], np.ones((1, 17), bool))[0]
    assert colours[0] == pytest.approx(srgb_to_lab(np.array(RED, np.uint8)), abs=1.0)  # torso
    assert colours[1] == pytest.approx(srgb_to_lab(np.array(DARK, np.uint8)), abs=1.0)  # thighs
    assert colours[2] == pytest.approx(srgb_to_lab(np.array(DARK, np.uint8)), abs=1.0)  # shins
    unsure = np.ones((1, 17), bool)
    unsure[0, [11, 12]] = False  # no hips: no torso, no thighs
    partial = body_colours(image, keypoints[None], unsure)[0]
    assert np.isnan(partial[0]).all() and np.isnan(partial[1]).all() and np.isfinite(partial[2]).all()


def test_lab_matches_the_textbook_values():
    assert srgb_to_lab(np.array([255, 255, 255], np.uint8)) == pytest.approx([100.0, 0.0, 0.0], abs=0.01)
    assert srgb_to_lab(np.array([255, 0, 0], np.uint8)) == pytest.approx([53.24, 80.09, 67.20], abs=0.05)


def test_limb_proportions_do_not_depend_on_size_or_place():
    small, large = pose(20, 50, 50), pose(90, 400, 300)
    sure = np.ones((2, 17), bool)
    proportions = limb_proportions(np.stack([small, large]), sure)
    assert proportions[0] == pytest.approx(proportions[1])
    sure[0, 9] = sure[0, 10] = False  # no wrists: no forearm
    assert np.isnan(limb_proportions(np.stack([small, large]), sure)[0, 1])


def test_covered_share():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], float)
    assert covered_share(boxes) == pytest.approx([0.5, 0.5, 0.0])


def test_a_cut_changes_the_picture_a_dance_does_not():
    first = render([(dancing(0.0, 300), RED, DARK)])
    later = render([(dancing(0.04, 300), RED, DARK)])
    assert scene_change(scene_thumbnail(first), scene_thumbnail(later)) < 5.0
    other = render([(dancing(0.04, 300), RED, DARK)], background=(90, 160, 220))
    assert scene_change(scene_thumbnail(first), scene_thumbnail(other)) >= Annotator.SCENE_CUT


@pytest.mark.parametrize("args, message", [
    ({"lookahead_s": 0}, "lookahead_s must be > 0"),
    ({"max_overlap": 2}, "max_overlap must be in 0..1"),
    ({"tracker_missing_s": -1}, "tracker_missing_s must be >= 0"),
])
def test_bad_identity_parameters_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        IdentityParams(**args)


def test_the_tracker_ends_a_track_where_a_match_is_ambiguous():
    tracker = Tracker(ambiguity_margin=0.2)
    a, b = pose(SCALE, 200, 180), pose(SCALE, 600, 180)
    assert tracker.update(detections([a, b])).tolist() == [1, 2]
    assert tracker.update(detections([a + [5, 0], b])).tolist() == [1, 2]
    # Both now stand almost where A stood: either could be A.
    ids = tracker.update(detections([a + [8, 0], a + [10, 0]])).tolist()
    assert 1 not in ids and ids == [3, 4]


# ---- hard and bad input: each gets a clear outcome ----------------------------------------------

def test_thirty_people_get_thirty_ids_and_one_group():
    # A class of 30 in a 10 x 3 grid, 64 px tall each, the same dance with small delays.
    def scene(t):
        people = []
        for k in range(30):
            row, column = divmod(k, 10)
            keypoints = (dancing(t - (k % 4) * 0.04, 0, 0) - pose(SCALE, 0, 0).mean(axis=0)) * 0.5
            keypoints += [48 + 96 * column, 60 + 120 * row]
            people.append((f"d{k}", keypoints, RED if k % 2 else BLUE, DARK))
        return people

    annotator, named = run(scene, 3)
    ids = ids_of(named)
    assert len(ids) == 30 and all(len(found) == 1 for found in ids.values())
    analysis = annotator.analysis()
    assert [len(group.members) for group in analysis.groups] == [30]
    assert all(person.scored and person.lag_ms is not None for person in analysis.persons)
    assert len(analysis.sync.pairs) == 30 * 29 // 2


def test_everybody_leaving_the_picture_ends_their_tracks():
    def scene(t):
        if t >= 3.0:
            return []
        return [("A", dancing(t, 300), RED, DARK), ("B", dancing(t - 0.08, 600), BLUE, LIGHT)]

    annotator, named = run(scene, 5)
    assert ids_of(named) == {"A": {1}, "B": {2}}
    analysis = annotator.analysis()
    assert [(p.first_frame, p.last_frame, p.gaps) for p in analysis.persons] == [(0, 74, ()), (0, 74, ())]
    assert all(p.scored for p in analysis.persons)
    late, early = analysis.persons[1], analysis.persons[0]
    assert late.lag_ms - early.lag_ms == pytest.approx(80, abs=20)
    assert len(annotator.results) == 125 and annotator.results[100].ids == ()


def test_someone_present_for_a_tenth_of_the_video_is_not_a_performer():
    def scene(t):
        people = [("A", dancing(t, 200), RED, DARK), ("B", dancing(t, 500), BLUE, LIGHT)]
        if 2.0 <= t < 2.6:
            people.append(("brief", dancing(t, 800), YELLOW, LIGHT))
        return people

    annotator, _ = run(scene, 6)
    brief = [p for p in annotator.analysis().persons if p.frames == 15]
    assert len(brief) == 1 and not brief[0].scored and brief[0].reason == "present in 10% of frames"


def test_two_people_whose_boxes_overlap_all_along_keep_their_ids():
    # Partners dancing close: their boxes overlap by half all video, their poses differ.
    def scene(t):
        return [("A", dancing(t, 420), RED, DARK), ("B", dancing(t, 470, phase=0.37), BLUE, LIGHT)]

    annotator, named = run(scene, 5)
    assert ids_of(named) == {"A": {1}, "B": {2}}
    assert [len(p.tracklets) for p in annotator.analysis().persons] == [1, 1]


def test_an_absence_longer_than_max_gap_starts_a_new_id():
    def scene(t):
        a = ("A", dancing(t, 200), RED, DARK)
        return [a] if 1.0 <= t < 2.2 else [a, ("B", dancing(t, 700), BLUE, LIGHT)]

    kept = ids_of(run(scene, 3)[1])
    assert len(kept["B"]) == 1  # 1.2 s is within the default 3 s
    config = Config(input="in.mp4", output="out.mp4", max_gap_s=1.0)
    assert len(ids_of(run(scene, 3, config)[1])["B"]) == 2


def test_max_gap_on_the_command_line():
    from pipeline.cli import config_from_args, get_args_parser

    parser = get_args_parser()
    assert config_from_args(parser.parse_args(["in.mp4", "out.mp4", "--max-gap", "1.5"])).max_gap_s == 1.5
    with pytest.raises(ValueError, match="max_gap_s must be in 0.01..600.0"):
        config_from_args(parser.parse_args(["in.mp4", "out.mp4", "--max-gap", "0"]))
