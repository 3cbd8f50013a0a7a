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
    """How a run shows its progress; this base shows nothing (`--no-progress`)."""

    def begin(self, files: int) -> None:
        """A run over `files` files starts."""

    def start_file(self, position: int, label: str) -> None:
        """File number `position` (from 1) starts."""

    def expect_frames(self, frames: int | None) -> None:
        """The current file is about to be processed, with about `frames` frames."""

    def advance(self, frames: int) -> None:
        """`frames` more frames of the current file were scored."""

    def end_file(self, row: SummaryRow) -> None:
        """The current file ended with `row`."""

    def close(self) -> None:
        """The run ended (or was interrupted)."""


class BarProgress(Progress):
    """tqdm bars for a terminal: files (when more than one) above frames of the current file.

    Log lines are printed through `tqdm.write` by the CLI's handler, above the bars.
    """

    def __init__(self) -> None:
        self._files: tqdm | None = None
        self._frames: tqdm | None = None
        self._label = ""

    def begin(self, files: int) -> None:
        if files > 1:
            self._files = tqdm(total=files, unit="file", desc="files", position=0, **_bar_width())

    def start_file(self, position: int, label: str) -> None:
        self._label = label

    def expect_frames(self, frames: int | None) -> None:
        self._close_frames()
        self._frames = tqdm(
            total=frames or None, unit="frame", desc=self._label, position=1 if self._files else 0,
            leave=False, **_bar_width(),
        )

    def advance(self, frames: int) -> None:
        if self._frames is not None:
            self._frames.update(frames)

    def end_file(self, row: SummaryRow) -> None:
        self._close_frames()
        if self._files is not None:
            self._files.update(1)

    def close(self) -> None:
        self._close_frames()
        if self._files is not None:
            self._files.close()
            self._files = None

    def _close_frames(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None


def _bar_width() -> dict:
    """Follow the terminal's size; 80x24 where it reports none (a bare pty, `script`), where
    tqdm would otherwise draw nothing at all."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        size = os.terminal_size((0, 0))
    return {"dynamic_ncols": True} if size.columns > 0 and size.lines > 0 else {"ncols": 80, "nrows": 24}


class LogProgress(Progress):
    """Progress as a log line every `interval` seconds while a file is processed (no bars).

    For output that is not a terminal (nohup, a log file). The lines carry the record
    attribute `progress=True`, so a handler can leave them out.

    Args:
        interval: Seconds between two lines (0: at every update).
        clock: Monotonic seconds (replaceable in tests).
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._files = 0
        self._position = 0
        self._label = ""
        self._expected: int | None = None
        self._done = 0
        self._file_started = 0.0
        self._last_line = 0.0
        self._processed_seconds: list[float] = []

    def begin(self, files: int) -> None:
        self._files = files

    def start_file(self, position: int, label: str) -> None:
        self._position, self._label = position, label

    def expect_frames(self, frames: int | None) -> None:
        self._expected, self._done = frames, 0
        self._file_started = self._last_line = self._clock()

    def advance(self, frames: int) -> None:
        self._done += frames
        now = self._clock()
        if now - self._last_line < self.interval:
            return
        self._last_line = now
        log.info("%s", self.line(now), extra={"progress": True})

    def line(self, now: float) -> str:
        """The progress line at monotonic time `now`."""
        elapsed = now - self._file_started
        rate = self._done / elapsed if elapsed > 0 else 0.0
        text = f"[{self._position}/{self._files}] {self._label}: {self._done}"
        file_left = None
        if self._expected:
            text += f"/{self._expected} frames ({min(100, 100 * self._done // self._expected)}%)"
            if rate > 0:
                file_left = max(0.0, (self._expected - self._done) / rate)
        else:
            text += " frames"
        text += f", {rate:.1f} frames/s"
        if file_left is not None:
            text += f", file ETA {format_duration(file_left)}"
            remaining_files = self._files - self._position
            if self._processed_seconds and remaining_files:
                average = sum(self._processed_seconds) / len(self._processed_seconds)
                text += f", all files ETA ~{format_duration(file_left + remaining_files * average)}"
        return text

    def end_file(self, row: SummaryRow) -> None:
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
