"""The ffmpeg binary that imageio-ffmpeg ships: running it safely, and probing inputs.

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
from fractions import Fraction
from functools import cache, lru_cache
from pathlib import Path

import imageio_ffmpeg

from workers.data import VideoInfo
from workers.errors import VideoOpenError

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

_NTSC_RATES = (24, 30, 48, 60, 120, 240)


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
            start_new_session=True,
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
        """ffmpeg's last message, or a placeholder."""
        lines = [line for line in self.stderr_lines() if "Last message repeated" not in line]
        return _PREFIX.sub("", lines[-1].strip()) if lines else "no message from ffmpeg"

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

    def is_running(self) -> bool:
        return self.process.poll() is None


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


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #\d+:\d+.*?: (Video|Audio): (\w+)")
_SIZE = re.compile(r", (\d{2,5})x(\d{2,5})[ ,]")
_FPS = re.compile(r", (\d+(?:\.\d+)?) fps")
_TBR = re.compile(r", (\d+(?:\.\d+)?)k? tbr")


def exact_rate(text: str) -> Fraction:
    """The exact frame rate behind ffmpeg's rounded print of it.

    ffmpeg prints 30000/1001 as "29.97" and 24000/1001 as "23.98"; a rate within 0.01 of
    n*1000/1001 for a common n is taken to be that fraction, others are taken as printed.
    """
    value = float(text)
    for nominal in _NTSC_RATES:
        ntsc = Fraction(nominal * 1000, 1001)
        if abs(value - float(ntsc)) < 0.01:
            return ntsc
    return Fraction(text).limit_denominator(1000)


def _stream_rate(line: str) -> Fraction | None:
    """The rate to decode and encode a video stream at.

    The average rate ("fps") of a constant-rate stream; for a variable-rate one (average and
    base rate "tbr" differ) the base rate, so that frames are repeated across gaps and the
    video keeps pace with its audio.
    """
    average, base = _FPS.search(line), _TBR.search(line)
    if average is None:
        return exact_rate(base.group(1)) if base and "k tbr" not in line else None
    fps = exact_rate(average.group(1))
    if base and "k tbr" not in line:
        tbr = exact_rate(base.group(1))
        if abs(tbr - fps) > fps / 100 and fps < tbr <= 120:
            return tbr
    return fps


def parse_probe(path: Path, lines: list[str]) -> VideoInfo:
    """Build a VideoInfo from the stderr of `probe`'s ffmpeg run.

    Raises:
        VideoOpenError: No video stream, or no frame could be decoded.
    """
    duration = 0.0
    video_codec = audio_codec = None
    has_audio = False
    fps: Fraction | None = None
    size: tuple[int, int] | None = None
    section = "input"
    for line in lines:
        if line.startswith("Output #"):
            section = "output"
        if section == "input" and (match := _DURATION.search(line)):
            hours, minutes, seconds = match.groups()
            duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        stream = _STREAM.search(line)
        if not stream:
            continue
        kind, codec = stream.groups()
        if section == "input":
            if kind == "Audio" and not has_audio:
                has_audio, audio_codec = True, codec
            elif kind == "Video" and video_codec is None and "attached pic" not in line:
                video_codec = codec
                fps = _stream_rate(line)
        elif kind == "Video" and size is None and (dims := _SIZE.search(line)):
            size = int(dims.group(1)), int(dims.group(2))
    if video_codec is None:
        raise VideoOpenError(f"{path}: no video stream found")
    if size is None:
        raise VideoOpenError(f"{path}: no decodable video frame: {_last_message(lines)}")
    if fps is None or fps <= 0:
        raise VideoOpenError(f"{path}: the video stream has no frame rate")
    return VideoInfo(
        path=Path(path),
        width=size[0],
        height=size[1],
        fps=fps,
        duration=duration,
        has_audio=has_audio,
        audio_codec=audio_codec,
        video_codec=video_codec,
    )


_PREFIX = re.compile(r"^(\[[^\]]*\] ?)+")
_EXPLANATIONS = (
    ("moov atom not found", "the MP4 index (moov atom) is missing: the file is incomplete or truncated"),
    ("Format not on whitelist", "a playlist or list format, refused: only local video files are read"),
    ("Protocol not on whitelist", "it refers to another file or a network address, refused"),
    ("Invalid data found when processing input", "not a video file ffmpeg can read"),
    ("No such file or directory", "no such file"),
    ("Permission denied", "permission denied"),
)


def _last_message(lines: list[str]) -> str:
    """The most telling of ffmpeg's messages, in words a user can act on."""
    for needle, explanation in _EXPLANATIONS:
        if any(needle in line for line in lines):
            return explanation
    for line in reversed(lines):
        if line.strip() and not line.startswith(" "):
            return _PREFIX.sub("", line.strip())
    return "ffmpeg gave no reason"


def probe(path: Path, timeout: float = 60.0) -> VideoInfo:
    """Inspect a video: size of its upright frames, exact rate, duration, audio.

    Decodes one frame, so a file that ffmpeg can open but not decode is refused here.

    Raises:
        VideoOpenError: The file is missing, not a video, or not decodable.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoOpenError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoOpenError(f"{path}: the file is empty")
    args = ["-nostdin", *input_args(path), "-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"]
    try:
        code, lines = run_ffmpeg(args, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VideoOpenError(f"{path}: ffmpeg took over {timeout:.0f} s to open the file") from None
    opened = any(line.startswith("Input #") for line in lines)
    has_video = any(
        (stream := _STREAM.search(line)) and stream.group(1) == "Video" and "attached pic" not in line
        for line in lines
        if not line.startswith("Output #")
    )
    if opened and not has_video:
        streams = "only a cover picture" if "attached pic" in "".join(lines) else "audio or data only"
        raise VideoOpenError(f"{path}: no video stream ({streams})")
    if code != 0 and not any(line.startswith("Output #") for line in lines):
        reason = _last_message(lines)
        if "moov atom" in reason and not _looks_like_mp4(path):
            reason = "not a video file ffmpeg can read (no MP4 header, despite the name)"
        raise VideoOpenError(f"{path}: cannot open the video: {reason}")
    return parse_probe(path, lines)


def _looks_like_mp4(path: Path) -> bool:
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
