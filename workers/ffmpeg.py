"""The ffmpeg binary that imageio-ffmpeg ships: running it safely on local files only.

We use imageio-ffmpeg for the binary but start the processes ourselves, because its
`write_frames` sends ffmpeg's stderr to ours, never checks the exit code and maps `1:a:0`
without `?`, and its `read_frames` generator cannot be stopped from another thread while it
blocks on a read. Here every process drains its stderr into a short buffer (a chatty ffmpeg
cannot block), can be killed from any thread, runs in its own session (a terminal's Ctrl-C
reaches us, and we stop it), and only reads local files.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections import deque
from functools import cache, lru_cache
from pathlib import Path

import imageio_ffmpeg

#: Protocols an input may use: local files only, never the network.
INPUT_PROTOCOLS = "file"

#: Demuxers an input may use: video containers and raw video streams. Not on it: playlists
#: and lists that make ffmpeg open other files or addresses (hls, dash, concat, ffconcat,
#: image2 patterns, subfile, tee, data URIs). Nested demuxers inherit the list, so an HLS
#: playlist smuggled into an AVI or MP4 is refused too.
INPUT_FORMATS = ",".join((
    "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "asf", "flv", "mpeg", "mpegts", "mpegvideo",
    "ogg", "h264", "hevc", "m4v", "vc1", "nut", "mxf", "ivf", "obu", "av1", "dv", "rm", "gif", "wtv",
    "yuv4mpegpipe",
))

@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def file_url(path: Path) -> str:
    """An ffmpeg URL for a local file that no name can turn into an option or a protocol."""
    return "file:" + str(Path(path).resolve())


def input_args(path: Path) -> list[str]:
    """The arguments that open `path` as an input: a local file, in a video container."""
    return ["-protocol_whitelist", INPUT_PROTOCOLS, "-format_whitelist", INPUT_FORMATS, "-i", file_url(path)]


#: Whether ffmpeg processes start in a session of their own, so that Ctrl-C at a terminal (the
#: foreground process group's SIGINT) reaches the run, which stops them in order, and not them.
_OWN_SESSION = [True]


def stay_in_process_group() -> None:
    """Start the ffmpeg processes of this process in its own process group from now on.

    For a `--jobs` worker, which leads a group of its own (no terminal signal reaches it): when
    the worker dies, its driver kills the group, and the ffmpeg processes with it, instead of
    leaving an encoder to finish a file that is no longer wanted.
    """
    _OWN_SESSION[0] = False


class FFmpegProcess:
    """One ffmpeg process with its stderr drained in the background.

    Args:
        args: Arguments after the binary (the binary, -nostdin-like flags are added).
        stdin: Give the process a pipe to write to.
        stdout: Give the process a pipe to read from.
        nice: Scheduling niceness to add (0: as ours).
    """

    def __init__(self, args: list[str], *, stdin: bool = False, stdout: bool = False, nice: int = 0) -> None:
        self.args = [ffmpeg_exe(), "-hide_banner", *args]
        if nice:
            # Lower priority: on a busy CPU the model's threads should not be preempted.
            self.args = ["nice", "-n", str(nice), *self.args]
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=_OWN_SESSION[0],
        )
        self._stderr_tail: deque[str] = deque(maxlen=40)
        self.stderr_count = 0
        self._drain = threading.Thread(target=self._drain_stderr, name="ffmpeg-stderr", daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in iter(self.process.stderr.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                self._stderr_tail.append(line)
                self.stderr_count += 1
        self.process.stderr.close()

    @property
    def stdin(self):
        return self.process.stdin

    @property
    def stdout(self):
        return self.process.stdout

    def stderr_lines(self) -> list[str]:
        """The last lines ffmpeg wrote to stderr."""
        return list(self._stderr_tail)

    def last_error(self) -> str:
        """ffmpeg's last message, or a placeholder (see `last_message`)."""
        return last_message(self.stderr_lines())

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end and its stderr to be read; return the exit code."""
        code = self.process.wait(timeout=timeout)
        self._drain.join(timeout=5)
        return code

    def kill(self) -> None:
        """Stop the process now (safe to call from any thread, and more than once)."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a zombie the kernel keeps
            pass
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        # The process is gone, so its stderr ends: the thread reading it ends too. Joined, so
        # that no thread outlives a stopped run.
        self._drain.join(timeout=5)


def run_ffmpeg(args: list[str], timeout: float) -> tuple[int, list[str]]:
    """Run ffmpeg to completion; return its exit code and stderr lines.

    Raises:
        subprocess.TimeoutExpired: It ran longer than `timeout` seconds (it is killed).
    """
    proc = FFmpegProcess(args)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return code, proc.stderr_lines()


_PREFIX = re.compile(r"^(\[[^\]]*\] ?)+")
_EXPLANATIONS = (
    ("moov atom not found", "the MP4 index (moov atom) is missing: the file is incomplete or truncated"),
    ("Format not on whitelist", "a playlist or list format, refused: only local video files are read"),
    ("Protocol not on whitelist", "it refers to another file or a network address, refused"),
    ("Invalid data found when processing input", "not a video file ffmpeg can read"),
    ("No such file or directory", "no such file"),
    ("Permission denied", "permission denied"),
)


def last_message(lines: list[str]) -> str:
    """The last of ffmpeg's stderr lines that says something, without its "[h264 @ 0x..]"
    prefix; "no message from ffmpeg" when there is none."""
    said = [line for line in lines if line.strip() and "Last message repeated" not in line]
    return _PREFIX.sub("", said[-1].strip()) if said else "no message from ffmpeg"


def explain_ffmpeg_messages(lines: list[str]) -> str:
    """The most telling of FFmpeg's messages (the binary's stderr, or the libraries' log and
    errors), in words a user can act on."""
    for needle, explanation in _EXPLANATIONS:
        if any(needle in line for line in lines):
            return explanation
    for line in reversed(lines):
        if line.strip() and not line.startswith(" "):
            return _PREFIX.sub("", line.strip())
    return "ffmpeg gave no reason"


def looks_like_mp4(path: Path) -> bool:
    """Whether the file starts like an MP4/MOV (an 'ftyp', 'moov', 'mdat' or 'free' box)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    return head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


@cache
def encoder_works(encoder: str) -> bool:
    """Whether the bundled ffmpeg can really encode with `encoder` on this machine."""
    args = ["-nostdin", "-f", "lavfi", "-i", "color=s=256x256:d=0.1", "-c:v", encoder, "-f", "null", "-"]
    try:
        code, _ = run_ffmpeg(args, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return code == 0
