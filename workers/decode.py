"""Decode stage: frames of a video as RGB uint8 arrays, with index and timestamp."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from workers.data import Frame, VideoInfo
from workers.errors import DecodeError
from workers.ffmpeg import FFmpegProcess, input_args


class VideoReader:
    """Reads every frame of a video through ffmpeg, upright (rotation applied).

    The frame count is the count actually decoded, not the header's estimate.

    Args:
        info: The probed input.
        nice: Niceness added to the ffmpeg process.
    """

    def __init__(self, info: VideoInfo, nice: int = 0) -> None:
        self.info = info
        self.nice = nice
        self.frames_read = 0
        self._process: FFmpegProcess | None = None

    def start(self) -> None:
        args = [
            "-nostdin",
            "-loglevel", "error",
            *input_args(self.info.path),
            "-map", "0:v:0",
            "-fps_mode", "passthrough",
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
        height, width = self.info.height, self.info.width
        frame_bytes = width * height * 3
        rate = float(self.info.fps)
        while True:
            image = np.empty((height, width, 3), np.uint8)
            view = memoryview(image).cast("B")
            filled = 0
            while filled < frame_bytes:
                count = process.stdout.readinto(view[filled:])
                if not count:
                    break
                filled += count
            if filled == 0:
                break
            if filled < frame_bytes:
                raise DecodeError(f"{self.info.path}: the last frame is incomplete ({process.last_error()})")
            yield Frame(index=self.frames_read, timestamp=self.frames_read / rate, image=image)
            self.frames_read += 1
        code = process.wait(timeout=30)
        if code != 0 and process.stderr_lines():
            raise DecodeError(f"{self.info.path}: decoding failed after {self.frames_read} frames ({process.last_error()})")
        if self.frames_read == 0:
            raise DecodeError(f"{self.info.path}: no frame could be decoded ({process.last_error()})")

    def kill(self) -> None:
        """Stop ffmpeg now; a read blocked in another thread returns."""
        if self._process is not None:
            self._process.kill()

    def close(self) -> None:
        self.kill()
