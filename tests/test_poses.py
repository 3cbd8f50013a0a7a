"""The pose cache: saved by every run, replayed with --poses, refused when it does not fit."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from config import Config
from pipeline.cli import get_args_parser, main
from pipeline.runner import run_video
from tests.helpers import StandInEstimator, detections, make_video, pose
from workers.data import VideoInfo
from workers.errors import PoseCacheError
from workers.poses import (
    CachedPoses,
    PoseCacheMeta,
    check_matches,
    load_poses,
    read_poses_meta,
    save_poses,
)


def _meta(**changes):
    values = dict(model="yolo", settings={"person_threshold": 0.5}, frames=3, fps="30000/1001",
                  width=640, height=360, input="in.mp4")
    values.update(changes)
    return PoseCacheMeta(**values)


def _info(**changes):
    values = dict(path=Path("in.mp4"), width=640, height=360, fps=Fraction(30000, 1001), duration=1.0,
                  has_audio=False, audio_codec=None, video_codec="h264")
    values.update(changes)
    return VideoInfo(**values)


def test_round_trip_is_exact(tmp_path):
    frames = [detections([pose(50.123457, 10, 20), pose(40, 300, 20)]), detections([]), detections([pose(33.3)])]
    frames = [type(d)(d.boxes.astype(np.float32), d.box_scores.astype(np.float32),
                      d.keypoints.astype(np.float32), d.keypoint_scores.astype(np.float32)) for d in frames]
    save_poses(tmp_path / "a.poses.npz", frames, _meta())
    meta, loaded = load_poses(tmp_path / "a.poses.npz")
    assert meta == _meta()
    assert [len(d) for d in loaded] == [2, 0, 1]
    for before, after in zip(frames, loaded):
        assert np.array_equal(before.keypoints, after.keypoints)
        assert np.array_equal(before.keypoint_scores, after.keypoint_scores)
        assert np.array_equal(before.boxes, after.boxes)


@pytest.mark.parametrize("info, model, floor, message", [
    (_info(width=320), "yolo", 0.5, "made from 640x360 frames, but in.mp4 is 320x360"),
    (_info(fps=Fraction(25)), "yolo", 0.5, "made at 30000/1001 fps"),
    (_info(), "keypointrcnn", 0.5, "made with the yolo model, not keypointrcnn"),
    (_info(), "yolo", 0.3, "holds persons above 0.5 only"),
])
def test_a_cache_that_does_not_fit_is_refused(info, model, floor, message):
    with pytest.raises(PoseCacheError, match=message):
        check_matches(Path("c.npz"), _meta(), info, model, floor)


def test_frame_count_mismatch_is_refused():
    replay = CachedPoses(Path("c.npz"), _meta(frames=1), [detections([])])
    with pytest.raises(PoseCacheError, match="holds 1 frames, but the video has more"):
        replay.predict([np.zeros((2, 2, 3), np.uint8)] * 2)
    with pytest.raises(PoseCacheError, match="holds 1 frames, but the video has 0"):
        CachedPoses(Path("c.npz"), _meta(frames=1), [detections([])]).check_complete(0)


def test_not_a_cache_is_refused(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(PoseCacheError, match="not a pose cache"):
        load_poses(bad)
    with pytest.raises(PoseCacheError, match="pose cache not found"):
        load_poses(tmp_path / "missing.npz")


def test_replaying_gives_the_same_scores_without_the_model(tmp_path, monkeypatch):
    source = make_video(tmp_path / "in.mp4", seconds=1, fps="10")
    first = run_video(Config(input=source, output=tmp_path / "a.mp4", progress=False), StandInEstimator())
    assert first.poses == tmp_path / "a.poses.npz"

    import workers.models

    def no_model(entry, config):
        raise AssertionError("the model must not be loaded when replaying")

    monkeypatch.setattr(workers.models.ModelEntry, "load", no_model)
    args = get_args_parser().parse_args([str(source), str(tmp_path / "b.mp4"), "--poses", str(first.poses),
                                         "--model", "keypointrcnn", "--no-progress"])
    assert main(args) == 1  # refused: the cache was made by the stand-in model, not keypointrcnn
    meta, frames = load_poses(first.poses)
    assert meta.model == "stand-in" and meta.frames == 10
    replay = CachedPoses(first.poses, meta, frames)
    second = run_video(Config(input=source, output=tmp_path / "b.mp4", progress=False), replay)
    assert [f.score for f in second.frames] == [f.score for f in first.frames]
    assert second.poses is None  # a replay does not write the cache again


def _yolo_cache(tmp_path):
    """A video and a pose cache of it that says it was made by the yolo model."""
    source = make_video(tmp_path / "in.mp4", seconds=1, fps="10")
    first = run_video(Config(input=source, output=tmp_path / "a.mp4", progress=False), StandInEstimator())
    meta, frames = load_poses(first.poses)
    said = PoseCacheMeta(**{**meta.__dict__, "model": "yolo", "settings": {"person_threshold": 0.5}})
    cache = save_poses(tmp_path / "yolo.poses.npz", frames, said)
    return source, cache


def test_a_replay_takes_the_model_and_its_thresholds_from_the_cache(tmp_path, monkeypatch):
    import json

    import workers.models

    source, cache = _yolo_cache(tmp_path)
    monkeypatch.setattr(workers.models.ModelEntry, "load", lambda entry, config: pytest.fail("model loaded"))
    assert _main(source, tmp_path / "b.mp4", "--poses", cache, "--no-progress") == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["model"] == "yolo"
    assert report["settings"]["person_threshold"] == 0.5  # yolo's default, not keypointrcnn's 0.9


def test_a_replay_with_another_model_named_is_refused_with_the_fix(tmp_path, capsys):
    source, cache = _yolo_cache(tmp_path)
    assert _main(source, tmp_path / "b.mp4", "--poses", cache, "--model", "keypointrcnn", "--no-progress") == 1
    err = capsys.readouterr().err
    assert "made with the yolo model, not keypointrcnn; leave out --model" in err
    assert not (tmp_path / "b.mp4").exists()


def test_the_header_alone_can_be_read(tmp_path):
    _, cache = _yolo_cache(tmp_path)
    assert read_poses_meta(cache).model == "yolo"
    with pytest.raises(PoseCacheError, match="pose cache not found"):
        read_poses_meta(tmp_path / "missing.npz")


def _main(*argv):
    return main(get_args_parser().parse_args([str(a) for a in argv]))


def test_pose_log_keeps_every_frame_on_disk(tmp_path):
    from workers.poses import PoseLog

    rng = np.random.default_rng(0)
    log, originals = PoseLog(tmp_path), []
    for index in range(9000):  # more than the spools' in-memory buffers of 4096 records
        count = int(rng.integers(0, 4))
        found = detections([pose(30 + i, 10 * i, index % 400) for i in range(count)])
        originals.append(found)
        log.append(found, np.arange(count) + index)
    assert len(log) == 9000 and log.records == sum(len(d) for d in originals)
    for index in (0, 7, 4095, 4096, 5000, 8999, -1):
        again, before = log.frame(index), originals[index]
        assert np.allclose(again.keypoints, before.keypoints) and np.allclose(again.boxes, before.boxes)
        assert list(log.ids(index)) == list(np.arange(len(before)) + range(9000)[index])
    rows = log.rows(4090, 4100)
    assert rows.start == 4090 and len(rows) == 10
    assert list(rows.counts) == [len(d) for d in originals[4090:4100]]
    assert rows.records["keypoints"].dtype == np.float32
    chunks = list(log.chunks(frames=4000))
    assert [c.start for c in chunks] == [0, 4000, 8000] and sum(len(c) for c in chunks) == 9000
    assert not list(tmp_path.iterdir())  # unnamed temporary files: nothing to see or clean up


def test_a_long_cache_round_trips_through_the_chunked_writer_and_reader(tmp_path):
    rng = np.random.default_rng(1)
    frames = [detections([pose(rng.uniform(20, 60), rng.uniform(0, 500), 20) for _ in range(rng.integers(0, 3))])
              for _ in range(10000)]
    save_poses(tmp_path / "long.poses.npz", frames, _meta(frames=10000))
    with np.load(tmp_path / "long.poses.npz") as archive:  # still a plain NumPy archive
        assert archive["counts"].sum() == len(archive["keypoints"]) == sum(len(d) for d in frames)
    meta, loaded = load_poses(tmp_path / "long.poses.npz")
    assert meta.frames == len(loaded) == 10000
    for index in (0, 4095, 4096, 9999):
        assert np.allclose(loaded[index].keypoints, frames[index].keypoints.astype(np.float32))


def test_a_cache_whose_counts_do_not_match_its_persons_is_refused(tmp_path):
    frames = [detections([pose(40)]), detections([pose(40), pose(50, 100)])]
    save_poses(tmp_path / "ok.poses.npz", frames, _meta(frames=2))
    with np.load(tmp_path / "ok.poses.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    for counts in ([1, 2**40], [-1, 4], [1, 1]):  # a huge claim must not allocate, a short one must not pass
        arrays["counts"] = np.array(counts, dtype=np.int64)
        np.savez_compressed(tmp_path / "bad.poses.npz", **arrays)
        with pytest.raises(PoseCacheError, match="not a pose cache of this tool"):
            load_poses(tmp_path / "bad.poses.npz")
