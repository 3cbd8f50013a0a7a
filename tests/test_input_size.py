"""The model's input size from the people's size (workers/input_size.py): the arithmetic with
known answers, the scout on real video files with a stand-in model, and the CLI's `auto`."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import detections, make_video
from workers.data import Detections
from workers.decode import frame_at, keyframe_near
from workers.infer import ModelThread, PoseModel
from workers.input_size import (
    MIN_PERSON_PIXELS,
    choose_input_size,
    frame_side,
    input_size_for,
    max_input_size,
    needs_scout,
    round_up,
    scout_times,
)
from workers.probe import probe


@pytest.mark.parametrize(("size", "side", "expected"), [
    ((1920, 1080), "long", 1920), ((1080, 1920), "long", 1920),
    ((640, 480), "short", 480),
    # torchvision caps the longer side at 1333/800 of min_size: a 16:9 frame is scaled by its width.
    ((1920, 1080), "short", 1920 * 800 / 1333),
])
def test_frame_side_is_the_length_the_model_scales(size, side, expected):
    assert frame_side(*size, side) == pytest.approx(expected)


def test_the_largest_input_is_the_frame_at_least_twice_and_at_most_three_times_the_default():
    assert max_input_size(1920, 1080, 640, "long", 32) == 1920
    assert max_input_size(768, 576, 640, "long", 32) == 1280  # an old small clip is enlarged
    assert max_input_size(3840, 2160, 640, "long", 32) == 1920  # 4K: at most three times
    assert max_input_size(1920, 1080, 800, "short", 16) == 1600


def test_no_scout_when_the_default_shows_the_frame_at_its_own_size():
    assert not needs_scout(640, 360, 640, "long")
    assert not needs_scout(320, 180, 800, "short")
    assert needs_scout(1920, 1080, 640, "long")


def test_scout_times_are_spread_over_the_video():
    np.testing.assert_allclose(scout_times(8.0, 4), [1.0, 3.0, 5.0, 7.0])


def test_nobody_seen_keeps_the_default():
    choice = choose_input_size([], 1920, 1080, 640, "long", 32, 1920)
    assert (choice.pixels, choice.how, choice.person_pixels) == (640, "default", None)


def test_large_people_keep_the_default():
    choice = choose_input_size([500, 520, 480], 1920, 1080, 640, "long", 32, 1920)
    assert (choice.pixels, choice.how) == (640, "default")
    assert choice.person_pixels == pytest.approx(np.percentile([480, 500, 520], 10))  # 484


def test_small_people_raise_the_input_until_they_are_large_enough():
    # 24 dancers of about 180 px in a 1920x720 strip: 60 px at 640, lost; 112 px needs 1194.7.
    choice = choose_input_size(np.full(24, 180.0), 1920, 720, 640, "long", 32, 1920)
    assert (choice.pixels, choice.how) == (round_up(MIN_PERSON_PIXELS * 1920 / 180, 32), "raised") == (1216, "raised")
    assert choice.pixels * 180 / 1920 >= MIN_PERSON_PIXELS


def test_one_far_away_bystander_does_not_decide():
    heights = [400.0] * 19 + [60.0]
    assert choose_input_size(heights, 1920, 1080, 640, "long", 32, 1920).how == "default"


def test_the_input_stops_at_the_largest_size():
    choice = choose_input_size([40.0] * 10, 1920, 1080, 640, "long", 32, 1920)
    assert (choice.pixels, choice.how) == (1920, "raised")


class SizedStandIn(PoseModel):
    """A model with an input size that finds people `height` px tall, and only when its input
    is at least `visible_from` (as a small person is lost at a small input)."""

    name = "sized"
    input_side = "long"
    default_input_size = 640
    input_stride = 32

    def __init__(self, height: float, visible_from: int = 0) -> None:
        self.height, self.visible_from = height, visible_from
        self.sizes: list[int] = []
        self.seen: list[tuple[int, ...]] = []

    def set_input_size(self, pixels: int) -> None:
        self.sizes.append(pixels)

    def predict(self, images) -> list[Detections]:
        self.seen.extend(image.shape for image in images)
        if self.sizes[-1] < self.visible_from:
            return [detections([]) for _ in images]
        boxes = np.array([[100, 100, 160, 100 + self.height], [400, 100, 460, 100 + self.height]])
        found = Detections(boxes=boxes, box_scores=np.ones(2), keypoints=np.zeros((2, 17, 2)),
                           keypoint_scores=np.ones((2, 17)))
        return [found for _ in images]


@pytest.fixture(scope="module")
def clip_1080(tmp_path_factory):
    return probe(make_video(tmp_path_factory.mktemp("scout") / "wide.mp4", seconds=2.0, size="1920x1080"))


def test_the_scout_looks_at_twice_the_default_and_raises_the_input_for_small_people(clip_1080):
    model = SizedStandIn(height=180.0, visible_from=1280)
    choice = input_size_for(clip_1080, ModelThread(model), None)
    assert model.sizes == [1280, 1216]  # looked at 1280 (sees them), then runs at 1216
    assert (choice.pixels, choice.how) == (1216, "raised")
    assert choice.person_pixels == pytest.approx(180.0)
    assert len(model.seen) == 4 and all(shape == (1080, 1920, 3) for shape in model.seen)
    assert choice.scout_seconds > 0
    assert "raised from 640" in choice.describe()


def test_the_scout_keeps_the_default_for_large_people(clip_1080):
    model = SizedStandIn(height=600.0)
    choice = input_size_for(clip_1080, model, None)
    assert (choice.pixels, choice.how) == (640, "default") and model.sizes[-1] == 640


def test_a_size_asked_for_is_taken_without_a_scout(clip_1080):
    model = SizedStandIn(height=100.0)
    choice = input_size_for(clip_1080, model, 800)
    assert (choice.pixels, choice.how, model.sizes, model.seen) == (800, "asked", [800], [])


def test_a_small_video_is_not_scouted(tmp_path):
    model = SizedStandIn(height=50.0)
    choice = input_size_for(probe(make_video(tmp_path / "small.mp4", size="320x180")), model, None)
    assert (choice.pixels, choice.how, model.seen) == (640, "not scouted", [])


def test_a_model_without_an_input_size_is_left_alone(clip_1080):
    from tests.helpers import StandInEstimator

    assert input_size_for(clip_1080, StandInEstimator(), None) is None


def test_keyframe_near_reads_a_frame_from_the_asked_share_of_a_clip_with_one_keyframe(tmp_path):
    # testsrc draws a moving pattern: frames apart differ. One keyframe (at 0) for the whole clip.
    info = probe(make_video(tmp_path / "gop.mp4", seconds=3.0, fps="10", size="320x240", extra=["-g", "1000"]))
    first = keyframe_near(info, 2.0)
    later = keyframe_near(info, 2.0, earliest=1.5)
    exact = frame_at(info, 1.5)
    assert first is not None and later is not None and exact is not None
    assert first.shape == later.shape == (240, 320, 3)
    assert not np.array_equal(first, later)  # not the keyframe at 0
    assert np.abs(later.astype(int) - exact.astype(int)).mean() < 3  # the frame at 1.5 s


def test_cli_min_size_takes_auto_or_pixels(capsys):
    from pipeline.cli import get_args_parser

    parser = get_args_parser()
    assert parser.parse_args(["in.mp4", "out.mp4"]).model_min_size is None
    assert parser.parse_args(["in.mp4", "out.mp4", "--min-size", "auto"]).model_min_size is None
    assert parser.parse_args(["in.mp4", "out.mp4", "--min-size", "960"]).model_min_size == 960
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["in.mp4", "out.mp4", "--min-size", "big"])
    assert exit_info.value.code == 2
    assert "expected auto or a number of pixels, got 'big'" in capsys.readouterr().err
