"""The whole pipeline through real threads and the real ffmpeg, with a stand-in pose model."""

import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from config import Config
from pipeline.runner import run_video
from tests.helpers import StandInEstimator, child_processes, detections, make_video, pose, stream_facts
from workers.annotate import Annotator
from workers.data import Frame
from workers.decode import VideoReader
from workers.encode import VideoWriter
from workers.errors import VideoOpenError
from workers.probe import probe


def _config(tmp_path, source, **changes):
    return Config(input=source, output=tmp_path / "out.mp4", progress=False, **changes)


@pytest.mark.parametrize("audio", [True, False], ids=["with-audio", "without-audio"])
def test_output_has_the_input_frames_plus_end_card_size_rate_and_audio(tmp_path, audio):
    source = make_video(tmp_path / "in.mp4", seconds=2, fps="30000/1001", size="192x108", audio=audio)
    config = _config(tmp_path, source, end_card_seconds=1.0)
    result = run_video(config, StandInEstimator())
    facts = stream_facts(config.output)
    assert len(result.frames) == 60
    assert facts["frames"] == 60 + 30  # one second of end card at 29.97 fps
    assert (facts["width"], facts["height"]) == (192, 108)
    assert facts["fps"] == "29.97"
    assert probe(config.output).fps == probe(source).fps
    assert facts["audio"] is audio
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4", "out.poses.npz"]  # no temporary left


def test_scores_and_texts_follow_the_stand_in_skeletons(tmp_path):
    source = make_video(tmp_path / "in.mp4", seconds=1, fps="10")
    result = run_video(_config(tmp_path, source), StandInEstimator())
    assert [f.index for f in result.frames] == list(range(10))  # order kept
    for frame in result.frames:
        if frame.index % 5 == 4:
            assert (frame.persons, frame.score, frame.text) == (1, None, "One person")
        else:
            assert frame.persons == 2 and frame.score == pytest.approx(10.0)
            assert frame.text == "Similarity score: 10"
    assert result.total == pytest.approx(10.0)
    assert result.total_text == "Total score: 10"


def test_no_score_draws_skeletons_only_and_no_end_card(tmp_path):
    source = make_video(tmp_path / "in.mp4", seconds=1, fps="10")
    config = _config(tmp_path, source, score=False)
    result = run_video(config, StandInEstimator())
    assert all(f.text is None and f.score is None for f in result.frames)
    assert stream_facts(config.output)["frames"] == 10


def test_skeletons_are_drawn_where_the_keypoints_are():
    image = np.zeros((200, 300, 3), np.uint8)
    frame = Frame(index=0, timestamp=0.0, image=image)
    annotator = Annotator(Config(input="in.mp4", output="out.mp4", score=False))
    assert annotator(frame, detections([pose(40, 100, 100)])) == []  # held until its ids are decided
    assert annotator.close() == [frame]
    keypoints = np.round(pose(40, 100, 100)).astype(int)
    for x, y in keypoints:  # a dot on every keypoint (all 17 are confident)
        assert image[y, x].any(), (x, y)
    assert not image[5:20, 250:295].any()  # far corner untouched


def test_odd_frame_size_is_padded_not_rescaled(tmp_path):
    source = make_video(tmp_path / "in.mp4", seconds=0.5, fps="10", size="161x121",
                        extra=["-pix_fmt", "yuv444p"])
    config = _config(tmp_path, source, end_card_seconds=0)
    run_video(config, StandInEstimator())
    facts = stream_facts(config.output)
    assert (facts["width"], facts["height"]) == (162, 122)


def test_a_failing_stage_stops_everything_fast_and_leaves_nothing(tmp_path):
    source = make_video(tmp_path / "in.mp4", seconds=20, fps="30", size="320x240", audio=True)
    config = _config(tmp_path, source, queue_size=2, batch_size=2)
    threads_before = set(threading.enumerate())
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="failed on purpose"):
        run_video(config, StandInEstimator(raise_on_call=3))
    assert time.monotonic() - start < 10
    left = {t for t in set(threading.enumerate()) - threads_before if t.name != "tqdm_monitor"}  # tqdm's own
    assert left == set()
    assert child_processes() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_a_failing_encoder_is_reported_and_cleaned_up(tmp_path, monkeypatch):
    source = make_video(tmp_path / "in.mp4", seconds=1, fps="10")
    config = _config(tmp_path, source, x264_preset="veryfast")
    import workers.encode as encode

    real_init = encode.VideoWriter.__init__

    def broken_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self._process.kill()  # the encoder dies before the first frame

    monkeypatch.setattr(encode.VideoWriter, "__init__", broken_init)
    with pytest.raises(Exception, match="encoder stopped|encoding failed"):
        run_video(config, StandInEstimator())
    assert child_processes() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_an_error_inside_a_writers_with_block_stops_ffmpeg_and_leaves_no_file(tmp_path):
    output = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="the stage broke"):
        with VideoWriter(output, 640, 480, Fraction(10)) as writer:
            for _ in range(8):  # 7.4 MB: more than the pipe and ffmpeg's probing (5 MB) hold
                writer.write(np.zeros((480, 640, 3), np.uint8))
            # So ffmpeg has read past its setup, where it opens its output: the partial file is there.
            assert child_processes() != [] and writer.temporary.exists()
            raise RuntimeError("the stage broke")
    assert child_processes() == []
    assert list(tmp_path.iterdir()) == []  # nothing under the final name, no partial file


def _write_two_then_leave(output, leave: str) -> VideoWriter:
    with VideoWriter(output, 64, 48, Fraction(10)) as writer:
        for _ in range(3):
            writer.write(np.zeros((48, 64, 3), np.uint8))
            if writer.frames_written == 2:
                if leave == "return":
                    return writer
                break
    return writer


@pytest.mark.parametrize("leave", ["return", "break"])
def test_a_writers_with_block_left_without_finish_aborts(tmp_path, leave):
    writer = _write_two_then_leave(tmp_path / "out.mp4", leave)
    assert not writer.finished and writer.frames_written == 2
    assert child_processes() == []
    assert list(tmp_path.iterdir()) == []  # a video cut short is not kept, error or not


def test_a_writers_with_block_keeps_the_video_finish_checked(tmp_path):
    output = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="after the video"):
        with VideoWriter(output, 64, 48, Fraction(10)) as writer:
            for value in (0, 128, 255):
                writer.write(np.full((48, 64, 3), value, np.uint8))
            assert writer.finish() == output
            raise RuntimeError("after the video")  # the finished video is whole: it stays
    assert stream_facts(output)["frames"] == 3
    assert child_processes() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_a_reader_left_early_stops_its_ffmpeg(tmp_path):
    source = make_video(tmp_path / "in.mp4", seconds=2, fps="10")  # 20 frames: more than a pipe holds
    with VideoReader(probe(source)) as reader:
        frames = iter(reader)  # kept: the generator alone would stop ffmpeg when collected
        assert next(frames).index == 0
        assert child_processes() != []  # ffmpeg is blocked on the full pipe
    assert child_processes() == []
    with pytest.raises(RuntimeError, match="the stage broke"):
        with VideoReader(probe(source)) as reader:
            frames = iter(reader)
            next(frames)
            raise RuntimeError("the stage broke")
    assert child_processes() == []
    del frames


def test_a_reader_read_to_the_end_in_a_with_block_counts_its_frames(tmp_path):
    source = make_video(tmp_path / "in.mp4", seconds=1, fps="10")
    with VideoReader(probe(source)) as reader:
        assert [frame.index for frame in reader] == list(range(10))
    assert reader.frames_read == 10 and reader.warnings == []
    assert child_processes() == []


def test_missing_and_non_video_inputs_fail_with_the_file_named(tmp_path):
    with pytest.raises(VideoOpenError, match="nothing.mp4: no such file"):
        probe(tmp_path / "nothing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    with pytest.raises(VideoOpenError, match="notes.mp4"):
        probe(text)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(VideoOpenError, match="empty.mp4: the file is empty"):
        probe(empty)


class OutOfMemoryError(RuntimeError):
    """Named like torch's (torch.OutOfMemoryError), which the runner recognises by name."""


class MemoryHungry(StandInEstimator):
    """Runs out of device memory for batches larger than `fits`."""

    def __init__(self, fits: int) -> None:
        super().__init__()
        self.fits = fits
        self.sizes: list[int] = []

    def predict(self, images):
        self.sizes.append(len(images))
        if len(images) > self.fits:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().predict(images)


def test_out_of_memory_halves_the_batch_and_goes_on(tmp_path):
    source = make_video(tmp_path / "in.mp4", seconds=1, fps="10")
    model = MemoryHungry(fits=2)
    result = run_video(_config(tmp_path, source, batch_size=8), model)
    assert len(result.frames) == 10 and result.total == pytest.approx(10.0)
    assert model.sizes[:3] == [8, 4, 2]  # halved twice, then kept at 2
    assert set(model.sizes[3:]) <= {2}


def test_out_of_memory_for_a_single_frame_fails_cleanly(tmp_path):
    from workers.errors import ModelError

    source = make_video(tmp_path / "in.mp4", seconds=1, fps="10")
    with pytest.raises(ModelError, match="memory even for one frame"):
        run_video(_config(tmp_path, source, batch_size=4), MemoryHungry(fits=0))
    assert child_processes() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_a_slow_model_batch_is_not_a_stall(tmp_path):
    import time as clock

    class Slow(StandInEstimator):
        def predict(self, images):
            clock.sleep(1.5)  # a CPU batch of a big model can take minutes
            return super().predict(images)

    source = make_video(tmp_path / "in.mp4", seconds=0.4, fps="10")
    result = run_video(_config(tmp_path, source, batch_size=2, stall_timeout=0.5), Slow())
    assert len(result.frames) == 4


def test_infer_every_k_frames_runs_the_model_on_keys_and_interpolates_between(tmp_path):
    from workers.poses import load_poses

    class Walker(StandInEstimator):
        """One person who walks 30 pixels to the right between model calls' frames."""

        def __init__(self):
            super().__init__()
            self.images = 0

        def predict(self, images):
            out = []
            for _ in images:
                out.append(detections([pose(20, 40 + 30 * self.images, 60)]))
                self.images += 1
            return out

    source = make_video(tmp_path / "in.mp4", seconds=1.1, fps="10", size="320x120")  # 11 frames
    model = Walker()
    result = run_video(_config(tmp_path, source, infer_every=3, batch_size=2), model)
    assert len(result.frames) == 11
    assert model.images == 5  # frames 0, 3, 6, 9 and the last one, 10
    _, frames = load_poses(tmp_path / "out.poses.npz")
    nose_x = [round(float(f.keypoints[0, 0, 0])) for f in frames]
    assert nose_x == [40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 160]


def test_frames_drawn_on_several_threads_come_out_in_order_with_their_own_skeletons(tmp_path, monkeypatch):
    import pipeline.runner
    from workers.decode import VideoReader

    monkeypatch.setattr(pipeline.runner, "DRAW_THREADS", 4)
    # Every frame brighter than the one before, by a fifth of the range (five steps, then again).
    source = make_video(tmp_path / "in.mp4", seconds=3, fps="10", size="320x240",
                        extra=["-vf", "eq=brightness='0.2*mod(n,5)-0.4':eval=frame"])
    config = _config(tmp_path, source, end_card_seconds=0, crf=0, x264_preset="ultrafast")
    result = run_video(config, StandInEstimator())
    frames = []
    for path in (source, config.output):
        reader = VideoReader(probe(path))
        reader.start()
        frames.append([frame.image.astype(int) for frame in reader])
    inputs, outputs = frames
    assert len(outputs) == len(inputs) == 30
    # Below the skeletons (the bottom 16 rows) nothing is drawn: each output frame is its own
    # input frame, not a neighbour's.
    bottom = slice(224, 240)
    for k, (before, after) in enumerate(zip(inputs, outputs)):
        own = np.abs(after[bottom] - before[bottom]).mean()
        others = [np.abs(after[bottom] - inputs[j][bottom]).mean() for j in (k - 1, k + 1) if 0 <= j < len(inputs)]
        assert own < 2 < min(others), (k, own, others)
    # Where the skeletons are, every frame is drawn on (its persons' colours, not the input's pixels).
    assert all((np.abs(after[60:180] - before[60:180]).sum(axis=2) > 60).sum() > 200
               for before, after in zip(inputs, outputs))
    assert result.stages["draw"].items == 30
