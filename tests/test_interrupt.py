"""Ctrl-C in a real pseudo-terminal: exit 130 within seconds, nothing left behind."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

from tests.helpers import make_video

REPO = Path(__file__).resolve().parents[1]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_ctrl_c_in_a_terminal_exits_130_and_leaves_nothing(tmp_path):
    source = make_video(tmp_path / "in.mp4", seconds=30, fps="10", size="160x120", audio=True)
    output = tmp_path / "interrupted.mp4"
    argv = [sys.executable, "-m", "pipeline", str(source), str(output), "--weights", "random",
            "--device", "cpu", "--min-size", "320", "--person-threshold", "0", "--max-persons", "2", "-b", "1"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader with the pty as its controlling terminal
        # SIGINT as a terminal gives it, even where this suite was started in the background
        # (`make test &`), which makes the shell ignore SIGINT in everything it starts.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.chdir(REPO)
        os.execv(sys.executable, argv)
    try:
        shown = _read_until(fd, b"frame", timeout=120)  # the progress bar is up: frames are flowing
        assert b"frame" in shown, shown.decode(errors="replace")
        time.sleep(1)
        os.write(fd, b"\x03")  # the terminal turns ^C into SIGINT for the foreground group
        pressed = time.monotonic()
        status = None
        while time.monotonic() - pressed < 15:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
                break
            _read_until(fd, b"\n", 0.2)
        assert status is not None and os.WIFEXITED(status), "still running 15 s after Ctrl-C"
        assert time.monotonic() - pressed < 10
        assert os.WEXITSTATUS(status) == 130
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    assert not output.exists()
    assert [p.name for p in tmp_path.iterdir() if "interrupted" in p.name] == []  # no partial file either
    assert _processes_mentioning(str(output.name)) == []  # no ffmpeg left running
