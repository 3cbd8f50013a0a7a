"""Decode stage: frames of a video as RGB uint8 arrays, with index and timestamp."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from workers.data import Frame, VideoInfo
from workers.errors import DecodeError
from workers.ffmpeg import FFmpegProcess, file_url, input_args, last_message
from workers.probe import OPEN_OPTIONS

log = logging.getLogger("dancingskeletons")

#: Decoder errors tolerated in one video before it fails (damaged frames are concealed or
#: dropped by ffmpeg and reported as a warning up to this many).
MAX_DECODE_ERRORS = 50


def frame_at(info: VideoInfo, seconds: float) -> np.ndarray | None:
    """The frame of a video shown at `seconds`, upright, as RGB uint8 (height, width, 3).

    Read by a `VideoReader` that seeks (ffmpeg goes to the keyframe before, then decodes up
    to the time) and stops after one frame: for a few frames of a long video, far cheaper than
    reading it all, and decoded exactly as the pipeline decodes.

    Args:
        info: The probed video (`workers.probe.probe`).
        seconds: Where, from the start.

    Returns:
        The frame, or None when it cannot be read (past the end, a damaged file).
    """
    try:
        with VideoReader(info, start_seconds=seconds) as reader:
            return next(iter(reader)).image
    except (StopIteration, DecodeError, OSError):
        return None


def keyframe_near(info: VideoInfo, seconds: float, earliest: float = 0.0) -> np.ndarray | None:
    """A frame near `seconds` that is cheap to decode (RGB uint8, upright): the keyframe at or
    before it, or where that keyframe lies before `earliest`, the first frame from `earliest` on.

    A sample of the video near a time for the price of one decoded frame, where `frame_at`
    decodes from the keyframe up to the exact time (0.3-0.4 s for a 1080p H.264 frame against
    about 0.05). In this process through PyAV; a rotated video goes through `frame_at`
    (ffmpeg turns it).

    Args:
        info: The probed video.
        seconds: Where, from the start.
        earliest: The earliest acceptable time (seconds), at most `seconds`.

    Returns:
        The frame, or None when it cannot be read.
    """
    if info.rotation:
        return frame_at(info, seconds)
    try:
        with av.open(file_url(info.path), options=dict(OPEN_OPTIONS), timeout=60.0) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads: a short clip may have to decode from its start
            if stream.time_base is not None:
                container.seek(int(max(0.0, seconds) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is not None and frame.time < earliest - 1e-6:
                    continue
                image = frame.to_ndarray(format="rgb24")
                return image if image.shape[:2] == (info.height, info.width) else None
    except (av.FFmpegError, OSError):
        return None
    return None


class VideoReader:
    """Reads every frame of a video through ffmpeg, upright (rotation applied).

    The frame count is the count actually decoded, not the header's estimate. A damaged
    stretch is decoded as well as ffmpeg can (frames concealed or dropped) with a warning, up
    to `max_errors` decoder errors; more, or a file that ends in the middle of its data
    (a truncated MP4), fails.

    ffmpeg starts with `start` or the first iteration. In a `with` block, leaving it stops
    ffmpeg whatever happened (`close`): a caller that raises, or stops reading before the end,
    leaves no process behind; a caller that read to the end has had the end checked, as a
    plain iteration does. The threaded runner calls `start` and `kill` itself, `kill` from
    another thread on a stop.

        with VideoReader(probe(path)) as reader:
            for frame in reader:
                ...

    Args:
        info: The probed input.
        nice: Niceness added to the ffmpeg process.
        max_errors: Decoder errors tolerated before the video fails.
        start_seconds: Where to start reading (ffmpeg seeks there exactly); the frames'
            indices and times then count from there.
        size: (width, height) to scale the frames to (ffmpeg scales them), or None for the
            video's own size.
        threads: The decoder's threads; None for ffmpeg's default (one per core).
    """

    def __init__(self, info: VideoInfo, nice: int = 0, max_errors: int = MAX_DECODE_ERRORS,
                 start_seconds: float = 0.0, size: tuple[int, int] | None = None,
                 threads: int | None = None) -> None:
        self.info = info
        self.threads = threads
        self.size = (info.width, info.height) if size is None else (int(size[0]), int(size[1]))
        self.nice = nice
        self.max_errors = max_errors
        self.start_seconds = max(0.0, start_seconds)
        self.warnings: list[str] = []
        self.frames_read = 0
        self._process: FFmpegProcess | None = None

    def start(self) -> None:
        seek = ["-ss", f"{self.start_seconds:.3f}"] if self.start_seconds > 0 else []
        args = [
            "-nostdin",
            "-loglevel", "error",
            *seek,
            *([] if self.threads is None else ["-threads", str(self.threads)]),
            *input_args(self.info.path),
            "-map", "0:v:0",
            # Constant rate at the probed rate: a variable-rate video gets frames repeated
            # across its gaps and stays in sync with its audio; a constant-rate one is as is.
            "-fps_mode", "cfr", "-r", str(self.info.fps),
            *(["-vf", f"scale={self.size[0]}:{self.size[1]}"] if self.size != (self.info.width, self.info.height)
              else []),
            "-f", "rawvideo",
            "-pix_fmt", "rgb24",
            "pipe:1",
        ]
        self._process = FFmpegProcess(args, stdout=True, nice=self.nice)

    def __iter__(self) -> Iterator[Frame]:
        if self._process is None:
            self.start()
        process = self._process
        assert process is not None and process.stdout is not None
        try:
            yield from self._frames(process)
        except BaseException:  # GeneratorExit too: a caller that stops early leaves no ffmpeg
            process.kill()
            raise
        self._check_end(process)

    def _frames(self, process: FFmpegProcess) -> Iterator[Frame]:
        width, height = self.size
        frame_bytes = width * height * 3
        rate = float(self.info.fps)
        while True:
            image = np.empty((height, width, 3), np.uint8)
            view = image.data.cast("B")
            filled = 0
            while filled < frame_bytes:
                count = process.stdout.readinto(view[filled:])
                if not count:
                    break
                filled += count
            if filled == 0:
                return
            if filled < frame_bytes:
                raise DecodeError(f"{self.info.path}: the last frame is incomplete ({process.last_error()})")
            yield Frame(index=self.frames_read, timestamp=self.frames_read / rate, image=image)
            self.frames_read += 1

    def _check_end(self, process: FFmpegProcess) -> None:
        """After the last frame: fail on an ffmpeg error, a truncated or badly damaged file."""
        code = process.wait(timeout=30)
        warning = decoding_verdict(self.info.path, code, self.frames_read, process.stderr_lines(),
                                   process.stderr_count, self.max_errors)
        if warning:
            self.warnings.append(warning)
            log.warning(warning)

    def kill(self) -> None:
        """Stop ffmpeg now; a read blocked in another thread returns."""
        if self._process is not None:
            self._process.kill()

    def close(self) -> None:
        self.kill()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decoding_verdict(
    path: Path, code: int, frames_read: int, lines: list[str], errors: int, max_errors: int = MAX_DECODE_ERRORS
) -> str | None:
    """What a finished ffmpeg decode (run at `-loglevel error`) says about the file.

    Args:
        path: The input, for messages.
        code: ffmpeg's exit code.
        frames_read: Frames that came out.
        lines: ffmpeg's last stderr lines.
        errors: How many lines ffmpeg wrote to stderr (each one an error at this log level).
        max_errors: Decoder errors tolerated before the file counts as damaged.

    Returns:
        A warning for a file with a few damaged frames (concealed or dropped), else None.

    Raises:
        DecodeError: ffmpeg failed, nothing decoded, the file ends in the middle of its data
            ("partial file"), or more than `max_errors` errors.
    """
    if code != 0:
        raise DecodeError(f"{path}: decoding failed after {frames_read} frames ({last_message(lines)})")
    if frames_read == 0:
        raise DecodeError(f"{path}: no frame could be decoded ({last_message(lines)})")
    if any("partial file" in line for line in lines):
        raise DecodeError(f"{path}: the file is truncated (its data ends after {frames_read} frames)")
    if errors > max_errors:
        raise DecodeError(
            f"{path}: damaged: {errors} decoding errors, more than the {max_errors} tolerated "
            f"(last: {last_message(lines)})"
        )
    if errors:
        return f"{path}: {errors} decoding errors; damaged frames were concealed or dropped"
    return None
