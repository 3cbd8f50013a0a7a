"""How a run shows its progress: bars on a terminal, log lines otherwise, or nothing.

One interface (`Progress`), three displays: `BarProgress` (tqdm bars over the files and the
current file's frames), `LogProgress` (a line every `--log-interval` seconds, for nohup and log
files), and `Progresses` (both at once). `make_progress` picks from the config.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from tqdm import tqdm

from config import Config
from reports.summary import SummaryRow

log = logging.getLogger("dancingskeletons")


def format_duration(seconds: float) -> str:
    """Seconds as "1h02m", "3m10s" or "12s"."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Progress:
    """How a run shows its progress; this base shows nothing (`--no-progress`).

    One video at a time: `start_file`, `expect_frames`, `advance`, `end_file`. Several at once
    (`--jobs`): `end_file` as each ends, and per running job, known by a key from 1 (its worker's
    slot), `start_job`, `advance_job` and `end_job`.
    """

    def begin(self, files: int) -> None:
        """A run over `files` files starts."""

    def start_file(self, position: int, label: str) -> None:
        """File number `position` (from 1) starts."""

    def expect_frames(self, frames: int | None) -> None:
        """The current file is about to be processed, with about `frames` frames."""

    def advance(self, frames: int) -> None:
        """`frames` more frames of the current file were scored."""

    def end_file(self, row: SummaryRow) -> None:
        """The current file (with several jobs: a file) ended with `row`."""

    def start_job(self, key: int, position: int, label: str, frames: int | None) -> None:
        """Job `key` starts processing file number `position`, of about `frames` frames."""

    def advance_job(self, key: int, frames: int) -> None:
        """Job `key` scored `frames` more frames."""

    def end_job(self, key: int) -> None:
        """Job `key` ended its file."""

    def close(self) -> None:
        """The run ended (or was interrupted)."""


#: The key of the one file processed in this process (several jobs count from 1).
CURRENT = 0


class BarProgress(Progress):
    """tqdm bars for a terminal: files (when more than one) above a bar per file being processed.

    Log lines are printed through `tqdm.write` by the CLI's handler, above the bars.
    """

    def __init__(self) -> None:
        self._files: tqdm | None = None
        self._frames: dict[int, tqdm] = {}
        self._label = ""

    def begin(self, files: int) -> None:
        if files > 1:
            self._files = tqdm(total=files, unit="file", desc="files", position=0, **_bar_width())

    def start_file(self, position: int, label: str) -> None:
        self._label = label

    def expect_frames(self, frames: int | None) -> None:
        self.start_job(CURRENT, 0, self._label, frames)

    def advance(self, frames: int) -> None:
        self.advance_job(CURRENT, frames)

    def end_file(self, row: SummaryRow) -> None:
        self.end_job(CURRENT)
        if self._files is not None:
            self._files.update(1)

    def start_job(self, key: int, position: int, label: str, frames: int | None) -> None:
        self.end_job(key)
        line = (1 if self._files else 0) if key == CURRENT else key
        self._frames[key] = tqdm(total=frames or None, unit="frame", desc=label, position=line, leave=False,
                                 **_bar_width())

    def advance_job(self, key: int, frames: int) -> None:
        if key in self._frames:
            self._frames[key].update(frames)

    def end_job(self, key: int) -> None:
        bar = self._frames.pop(key, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        for key in list(self._frames):
            self.end_job(key)
        if self._files is not None:
            self._files.close()
            self._files = None


def _bar_width() -> dict:
    """Follow the terminal's size; 80x24 where it reports none (a bare pty, `script`), where
    tqdm would otherwise draw nothing at all."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        size = os.terminal_size((0, 0))
    return {"dynamic_ncols": True} if size.columns > 0 and size.lines > 0 else {"ncols": 80, "nrows": 24}


@dataclass
class _Processing:
    """A file being processed, as a log line sees it."""

    position: int
    label: str
    expected: int | None
    started: float
    last_line: float
    done: int = 0


class LogProgress(Progress):
    """Progress as a log line every `interval` seconds per file being processed (no bars).

    For output that is not a terminal (nohup, a log file). The lines carry the record
    attribute `progress=True`, so a handler can leave them out. Each names its file.

    Args:
        interval: Seconds between two lines of a file (0: at every update).
        clock: Monotonic seconds (replaceable in tests).
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._files = 0
        self._position = 0
        self._label = ""
        self._processing: dict[int, _Processing] = {}
        self._processed_seconds: list[float] = []

    def begin(self, files: int) -> None:
        self._files = files

    def start_file(self, position: int, label: str) -> None:
        self._position, self._label = position, label

    def expect_frames(self, frames: int | None) -> None:
        self.start_job(CURRENT, self._position, self._label, frames)

    def advance(self, frames: int) -> None:
        self.advance_job(CURRENT, frames)

    def start_job(self, key: int, position: int, label: str, frames: int | None) -> None:
        now = self._clock()
        self._processing[key] = _Processing(position, label, frames, now, now)

    def advance_job(self, key: int, frames: int) -> None:
        file = self._processing.get(key)
        if file is None:
            return
        file.done += frames
        now = self._clock()
        if now - file.last_line < self.interval:
            return
        file.last_line = now
        log.info("%s", self.line(now, key), extra={"progress": True})

    def end_job(self, key: int) -> None:
        self._processing.pop(key, None)

    def line(self, now: float, key: int = CURRENT) -> str:
        """The progress line of job `key` (the current file by default) at monotonic time `now`."""
        file = self._processing[key]
        elapsed = now - file.started
        rate = file.done / elapsed if elapsed > 0 else 0.0
        text = f"[{file.position}/{self._files}] {file.label}: {file.done}"
        file_left = None
        if file.expected:
            text += f"/{file.expected} frames ({min(100, 100 * file.done // file.expected)}%)"
            if rate > 0:
                file_left = max(0.0, (file.expected - file.done) / rate)
        else:
            text += " frames"
        text += f", {rate:.1f} frames/s"
        if file_left is not None:
            text += f", file ETA {format_duration(file_left)}"
            remaining_files = self._files - file.position
            if key == CURRENT and self._processed_seconds and remaining_files:
                average = sum(self._processed_seconds) / len(self._processed_seconds)
                text += f", all files ETA ~{format_duration(file_left + remaining_files * average)}"
        return text

    def end_file(self, row: SummaryRow) -> None:
        self.end_job(CURRENT)
        if row.status == "done" and row.processing_seconds is not None:
            self._processed_seconds.append(row.processing_seconds)


class Progresses(Progress):
    """Several progress displays at once (bars on the terminal, lines in a log file)."""

    def __init__(self, *displays: Progress) -> None:
        self.displays = displays

    def begin(self, files: int) -> None:
        for display in self.displays:
            display.begin(files)

    def start_file(self, position: int, label: str) -> None:
        for display in self.displays:
            display.start_file(position, label)

    def expect_frames(self, frames: int | None) -> None:
        for display in self.displays:
            display.expect_frames(frames)

    def advance(self, frames: int) -> None:
        for display in self.displays:
            display.advance(frames)

    def end_file(self, row: SummaryRow) -> None:
        for display in self.displays:
            display.end_file(row)

    def start_job(self, key: int, position: int, label: str, frames: int | None) -> None:
        for display in self.displays:
            display.start_job(key, position, label, frames)

    def advance_job(self, key: int, frames: int) -> None:
        for display in self.displays:
            display.advance_job(key, frames)

    def end_job(self, key: int) -> None:
        for display in self.displays:
            display.end_job(key)

    def close(self) -> None:
        for display in self.displays:
            display.close()


def make_progress(config: Config, terminal: bool) -> Progress:
    """Bars when stderr is a terminal, log lines when it is not; lines also when logging to a file."""
    if not config.progress:
        return Progress()
    if not terminal:
        return LogProgress(config.log_interval)
    if config.log_file is not None:
        return Progresses(BarProgress(), LogProgress(config.log_interval))
    return BarProgress()
