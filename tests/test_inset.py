"""The teacher's picture-in-picture: which of the teacher's frames each frame shows, and how it is drawn."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import make_video
from workers.decode import VideoReader
from workers.draw import Inset, draw_inset
from workers.inset import TeacherInset, inset_size
from workers.probe import probe
from workers.reference import Alignment, TeacherPoses


def test_the_picture_keeps_the_teachers_shape_and_never_covers_half_a_portrait_frame():
    assert inset_size((1920, 1080), (1280, 720)) == (536, 302)
    assert inset_size((1080, 1920), (1920, 1080)) == (302, 170)
    width, height = inset_size((720, 1280), (1080, 1920))  # a portrait teacher on a portrait class
    assert width == 200 and height <= 0.28 * 1.5 * 1280 and width % 2 == 0 == height % 2


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """A 25 fps teacher, 4 s, each frame one flat grey a little brighter than the one before."""
    path = tmp_path_factory.mktemp("inset") / "teacher.mp4"
    return make_video(path, seconds=4, fps="25", size="320x180",
                      extra=["-vf", "geq=lum='16+2*N':cb=128:cr=128", "-crf", "0"])


@pytest.fixture(scope="module")
def levels(numbered):
    """Each of the teacher's frames' mean level, as the picture-in-picture decodes it."""
    with VideoReader(probe(numbered), size=(178, 100)) as reader:
        return np.array([frame.image.mean() for frame in reader])


def frame_number(image: np.ndarray, levels: np.ndarray) -> int:
    return int(np.argmin(np.abs(levels - image.mean())))


def test_each_frame_shows_the_teachers_frame_at_the_aligned_time(numbered, levels):
    info = probe(numbered)
    teacher = TeacherPoses(np.zeros((100, 17, 2)), 25.0, 1)
    # The teacher's recording starts 1 s into this 30 fps video and its clock runs 1% slow.
    alignment = Alignment("audio", 1.0, 10_000.0, 0.9)
    with TeacherInset(info, teacher, alignment, 30.0, (640, 360)) as inset:
        shown = {index: inset.at(index) for index in range(0, 150, 7)}
    for index, picture in shown.items():
        seconds = (index / 30.0 - 1.0) / 1.01
        if seconds < 0:
            assert picture is None
            continue
        assert picture is not None and picture.image.shape == (100, 178, 3) and picture.label == "Teacher"
        assert frame_number(picture.image, levels) == round(seconds * 25)


def test_after_the_teachers_recording_ends_there_is_no_picture(numbered):
    info = probe(numbered)
    teacher = TeacherPoses(np.zeros((100, 17, 2)), 25.0, 1)
    with TeacherInset(info, teacher, Alignment("manual", 0.0), 30.0, (640, 360)) as inset:
        assert inset.at(30) is not None and inset.at(119) is not None
        assert inset.at(125) is None and inset.at(200) is None


def test_the_picture_is_drawn_in_the_bottom_right_corner_with_its_skeleton():
    image = np.zeros((360, 640, 3), np.uint8)
    picture = np.full((90, 160, 3), 100, np.uint8)
    keypoints = np.full((17, 2), np.nan)
    keypoints[5], keypoints[7] = (40, 20), (120, 70)  # left shoulder to left elbow
    draw_inset(image, Inset(picture, keypoints, "Teacher"))
    margin = 6
    corner = image[360 - margin - 90:360 - margin, 640 - margin - 160:640 - margin]
    assert (corner == 100).mean() > 0.5 and (corner == 255).any()  # the picture, its skeleton, its frame
    assert (image[:200, :400] == 0).all()  # nothing elsewhere
    assert (picture == 100).all()  # the teacher's frame itself is not drawn on (it may be shown again)
