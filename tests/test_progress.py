"""The progress displays: log lines for nohup and log files, durations in words."""

import pytest

from config import Config
from pipeline.progress import BarProgress, LogProgress, Progress, Progresses, format_duration, make_progress


def test_log_progress_lines_are_periodic_with_eta(caplog):
    now = [0.0]
    progress = LogProgress(interval=10, clock=lambda: now[0])
    progress.begin(3)
    progress.start_file(2, "sub/b.mov")
    progress.expect_frames(100)
    with caplog.at_level("INFO", logger="dancingskeletons"):
        for _ in range(20):
            now[0] += 1
            progress.advance(2)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "[2/3] sub/b.mov: 20/100 frames (20%), 2.0 frames/s, file ETA 40s",
        "[2/3] sub/b.mov: 40/100 frames (40%), 2.0 frames/s, file ETA 30s",
    ]
    assert all(getattr(record, "progress", False) for record in caplog.records)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (12.4, "12s"), (190, "3m10s"), (3720, "1h02m")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_make_progress_picks_the_display():
    config = Config(input="a.mp4", output="b.mp4")
    assert type(make_progress(config.replace(progress=False), terminal=True)) is Progress
    assert isinstance(make_progress(config, terminal=False), LogProgress)
    assert isinstance(make_progress(config, terminal=True), BarProgress)
    both = make_progress(config.replace(log_file="run.log"), terminal=True)
    assert isinstance(both, Progresses) and [type(d) for d in both.displays] == [BarProgress, LogProgress]
