"""workers/decode.py: reading from a time on, one frame at a time, as the pipeline decodes."""

import numpy as np

from tests.helpers import make_video
from workers.decode import VideoReader, frame_at
from workers.probe import probe


def _clip(tmp_path):
    # One keyframe for the whole clip: a frame in the middle has to be decoded from the start.
    return probe(make_video(tmp_path / "clip.mp4", seconds=3.0, fps="10", extra=["-g", "100"]))


def test_frame_at_is_the_frame_the_pipeline_decodes_at_that_time(tmp_path):
    info = _clip(tmp_path)
    with VideoReader(info) as reader:
        frames = [frame.image for frame in reader]
    assert len(frames) == 30
    for seconds, index in ((0.0, 0), (1.5, 15), (2.9, 29)):
        np.testing.assert_array_equal(frame_at(info, seconds), frames[index])


def test_frame_at_past_the_end_is_none(tmp_path):
    assert frame_at(_clip(tmp_path), 10.0) is None


def test_a_reader_started_later_reads_the_rest(tmp_path):
    info = _clip(tmp_path)
    with VideoReader(info) as reader:
        whole = [frame.image for frame in reader]
    with VideoReader(info, start_seconds=2.0) as reader:
        rest = list(reader)
    assert [frame.index for frame in rest] == list(range(10))
    np.testing.assert_array_equal(rest[0].image, whole[20])
