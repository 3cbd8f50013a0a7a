"""Long videos: per-frame records live on disk, the whole-video analysis reads them in chunks.

Memory must not grow with the video's length (issue 7). The chunked code paths must give the
same answers as the whole-array ones, whatever the chunk size.
"""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from config import Config
from tests.helpers import detections, pose
from tests.reference import summarize_tracks
from tests.test_annotate import FPS, dancer
from workers.annotate import Annotator
from workers.data import PoseRows
from workers.motion import mirror_poses
from workers.records import FrameResult, FrameTable
from workers.spool import RecordSpool
from workers.timing import TimingParams, analyse_timing, analyse_timing_stream
from workers.track import TrackSummarizer


def test_a_record_spool_reads_back_any_range(tmp_path):
    spool = RecordSpool(np.dtype([("a", "<i8"), ("b", "<f4", (3,))]), tmp_path, buffer_records=10)
    values = np.zeros(57, spool.dtype)
    values["a"] = np.arange(57)
    values["b"] = np.arange(57)[:, None] * [1, 2, 3]
    for start, stop in ((0, 3), (3, 4), (4, 30), (30, 31), (31, 57)):  # one extend larger than the buffer
        spool.extend(values[start:stop])
    assert len(spool) == 57
    for start, stop in ((0, 57), (9, 11), (49, 57), (50, 50), (55, 99), (-5, 57)):  # as a slice would
        assert np.array_equal(spool.read(start, stop), values[start:stop])
    assert [start for start, _ in spool.chunks(20)] == [0, 20, 40]
    assert not list(tmp_path.iterdir())  # an unnamed file: nothing in the folder, nothing to clean up


def test_a_frame_table_reads_like_the_list_it_replaces(tmp_path):
    results = [
        FrameResult(k, k / 30, k % 3, None if k % 4 == 0 else k / 7, None if k % 5 == 0 else k / 9,
                    None if k < 3 else f"Score {k % 10}", tuple(range(k % 3)), tuple(f"#{i}" for i in range(k % 3)))
        for k in range(5000)  # more than one buffer of records
    ]
    table = FrameTable(tmp_path)
    for result in results:
        table.append(result)
    assert len(table) == 5000 and list(table) == results
    assert table[0] == results[0] and table[-1] == results[-1] and table[4095:4098] == results[4095:4098]
    assert table[::1000] == results[::1000]
    scores = table.column("score")
    assert np.isnan(scores[0]) and scores[1] == pytest.approx(1 / 7)
    with pytest.raises(ValueError, match="must be timestamp, persons, score or displayed"):
        table.column("text")


def _gappy_dance(frames: int, delay: int, dx: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    poses = np.stack([dancer((k - delay) / FPS, dx) for k in range(frames)]) + rng.normal(0, 0.5, (frames, 17, 2))
    poses[rng.random((frames, 17)) < 0.03] = np.nan
    for start in rng.integers(0, frames, frames // 150):
        poses[start:start + 12] = np.nan  # the person missed for a moment
    return poses


@pytest.mark.parametrize("mirror", [False, True])
def test_the_chunked_timing_analysis_equals_the_whole_array_one(mirror):
    poses = {1: _gappy_dance(700, 0, 100, 1), 2: _gappy_dance(700, 3, 300, 2), 3: _gappy_dance(700, 6, 500, 3)}
    if mirror:
        poses[2] = mirror_poses(poses[2])
    params = TimingParams(mirror=mirror)
    whole = analyse_timing(poses, FPS, params)
    assert whole[3].lag_ms - whole[1].lag_ms == pytest.approx(6 * 1000 / FPS, abs=20)
    assert whole[2].mirrored_with == ((1, 3) if mirror else ())
    ids = [3, 1, 2]  # any order
    for chunk in (1, 7, 150):
        chunked = analyse_timing_stream(ids, 700, lambda a, b: [poses[i][a:b] for i in ids], FPS, params, chunk)
        for person_id, expected in whole.items():
            got = chunked[person_id]
            assert got.lag_ms == pytest.approx(expected.lag_ms, abs=1e-9)
            assert got.pose_score == pytest.approx(expected.pose_score, abs=1e-9)
            assert got.windows == expected.windows and got.mirrored_with == expected.mirrored_with
            assert np.allclose(got.distances, expected.distances, equal_nan=True, atol=1e-12)


def test_track_summaries_over_chunks_equal_the_whole_video_ones():
    rng = np.random.default_rng(4)
    frames, ids = [], []
    for k in range(400):
        present = [i for i in (1, 2, 3) if not (i == 3 and 100 < k < 250)]
        people = [pose(50 + 10 * i, 150 * i + 20 * np.sin(k / (5 + i)), 100) + rng.normal(0, 1, (17, 2))
                  for i in present]
        frames.append(detections(people))
        ids.append(np.array(present))
    whole = summarize_tracks(frames, ids, FPS)
    rows = PoseRows.from_frames(frames, ids)
    summarizer = TrackSummarizer(FPS)
    for start in range(0, 400, 37):
        first = max(0, start - summarizer.margin)
        part = PoseRows.from_frames(frames[first:start + 37], ids[first:start + 37], start=first)
        summarizer.add(part, own_from=start)
    chunked = summarizer.summaries()
    assert chunked.keys() == whole.keys() == {1, 2, 3} and len(rows) == 400
    for person_id, summary in whole.items():
        assert chunked[person_id].frames_present == summary.frames_present
        assert chunked[person_id].total_frames == summary.total_frames == 400
        assert chunked[person_id].median_height == pytest.approx(summary.median_height)
        assert chunked[person_id].motion == pytest.approx(summary.motion)
        assert chunked[person_id].box == pytest.approx(summary.box)
        assert (chunked[person_id].first_frame, chunked[person_id].last_frame) == \
            (summary.first_frame, summary.last_frame) == (0, 399)
    assert whole[3].frames_present == 400 - 149  # away for frames 101..249


def _feed(annotator: Annotator, start: int, stop: int) -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    from workers.data import Frame

    for index in range(start, stop):
        t = index / FPS
        annotator(Frame(index, t, image), detections([dancer(t, 120), dancer(t - 3 / FPS, 420)]))


def test_the_annotator_gives_the_same_persons_whatever_its_chunk_size(tmp_path, monkeypatch):
    config = Config(input="in.mp4", output="out.mp4")
    big = Annotator(config, draw=False, fps=FPS, directory=tmp_path)
    _feed(big, 0, 600)
    expected = big.finish()
    monkeypatch.setattr(Annotator, "CHUNK_FRAMES", 50)
    small = Annotator(config, draw=False, fps=FPS, directory=tmp_path)
    _feed(small, 0, 600)
    persons, moments = small.finish()
    assert [(p.id, p.frames, p.first_frame, p.last_frame, p.scored) for p in persons] == \
        [(p.id, p.frames, p.first_frame, p.last_frame, p.scored) for p in expected[0]] == \
        [(1, 600, 0, 599, True), (2, 600, 0, 599, True)]
    assert [p.lag_ms for p in persons] == pytest.approx([p.lag_ms for p in expected[0]], abs=1e-9)
    assert persons[1].lag_ms - persons[0].lag_ms == pytest.approx(3 * 1000 / FPS, abs=20)
    assert moments == expected[1]


def test_scoring_more_frames_does_not_take_more_memory(tmp_path):
    """Before the records moved to disk, each frame kept about 2.3 KB: 7 MB for these 3000."""
    annotator = Annotator(Config(input="in.mp4", output="out.mp4"), draw=False, fps=FPS, directory=tmp_path)
    _feed(annotator, 0, 1500)  # past the first live-lag windows and text values
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _feed(annotator, 1500, 4500)
        annotator.close()  # the frames held for the identity look-ahead
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(annotator.results) == 4500
    assert grown < 100_000, f"memory grew by {grown} bytes over 3000 frames"


def test_a_full_disk_is_a_clear_error(tmp_path):
    from workers.errors import SpoolError

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    spool = RecordSpool(np.int64, tmp_path, buffer_records=2)
    spool._file.close()
    spool._file = open("/dev/full", "r+b")  # every write fails with ENOSPC
    with pytest.raises(SpoolError, match=f"{tmp_path}: cannot write the run's temporary records .*free some space"):
        spool.extend(np.arange(5))
    with pytest.raises(SpoolError, match="missing: cannot hold the run's temporary records"):
        RecordSpool(np.int64, tmp_path / "missing")
