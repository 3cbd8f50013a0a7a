"""Encode stage: annotated frames to H.264 in MP4, the input's audio muxed in the same pass."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from workers.data import VideoInfo
from workers.errors import EncodeError, UsageError
from workers.ffmpeg import FFmpegProcess, encoder_works, file_url, input_args
from workers.files import partial_path
from workers.probe import verify_output

#: Audio codecs MP4 takes as they are; others are re-encoded to AAC.
MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"})

#: The output containers, by the output file's extension: (ffmpeg muxer, audio codecs it takes
#: as they are; None: any). Other audio is re-encoded to AAC.
OUTPUT_CONTAINERS: dict[str, tuple[str, frozenset[str] | None]] = {
    ".mp4": ("mp4", MP4_AUDIO_CODECS),
    ".mov": ("mov", MP4_AUDIO_CODECS | {"pcm_s16le", "pcm_s24le"}),
    ".mkv": ("matroska", None),
}


def output_container(output: Path) -> tuple[str, frozenset[str] | None]:
    """The muxer and copyable audio codecs for an output name (see `OUTPUT_CONTAINERS`).

    Raises:
        UsageError: the extension is not one of them; the message names the allowed ones.
    """
    suffix = Path(output).suffix.lower()
    if suffix not in OUTPUT_CONTAINERS:
        allowed = ", ".join(OUTPUT_CONTAINERS)
        raise UsageError(f"{output}: the output video must end in {allowed} (the container follows the "
                         f"name), got {suffix or 'no extension'!r}")
    return OUTPUT_CONTAINERS[suffix]


def choose_encoder(requested: str, device: str) -> str:
    """The H.264 encoder to use: NVENC on a CUDA device when it works, else libx264.

    Raises:
        EncodeError: h264_nvenc was asked for explicitly and does not work here.
    """
    if requested == "libx264":
        return "libx264"
    if requested == "h264_nvenc":
        if not encoder_works("h264_nvenc"):
            raise EncodeError("h264_nvenc was requested but does not work on this machine; use --encoder libx264")
        return "h264_nvenc"
    if device.startswith("cuda") and encoder_works("h264_nvenc"):
        return "h264_nvenc"
    return "libx264"


class VideoWriter:
    """Writes RGB frames to an MP4 under a temporary name; `finish` moves it into place.

    ffmpeg starts here. As a context manager the writer keeps its video only if `finish`
    succeeded inside the block; however else the block is left (an exception, an early
    `return` or `break`, a `finish` that raised) it aborts: ffmpeg is stopped and the partial
    file removed, so no process outlives the block and nothing half-written lands under the
    final name. Leaving the block does not call `finish` for the caller: a video cut short
    without an error is no more complete than one cut short by an error, and `finish`'s
    EncodeError belongs at the caller's line. The threaded runner calls `finish` and `abort`
    itself (`abort` from another thread on a stop).

        with VideoWriter(output, width, height, fps) as writer:
            for image in images:
                writer.write(image)
            writer.finish()

    Args:
        output: Final path of the video.
        width: Frame width in pixels.
        height: Frame height in pixels.
        fps: Exact frame rate.
        audio_from: The input whose first audio stream is muxed in, or None.
        encoder: "libx264" or "h264_nvenc".
        preset: libx264 preset.
        crf: libx264 quality.
        nice: Niceness added to the ffmpeg process.
        threads: libx264's threads; None for its default (1.5 per core).
    """

    def __init__(
        self,
        output: Path,
        width: int,
        height: int,
        fps: Fraction,
        audio_from: VideoInfo | None = None,
        encoder: str = "libx264",
        preset: str = "veryfast",
        crf: int = 20,
        nice: int = 0,
        threads: int | None = None,
    ) -> None:
        self.output = Path(output)
        self.temporary = partial_path(self.output)
        self.width, self.height, self.fps = width, height, fps
        self.frames_written = 0
        self.finished = False
        self.has_audio = audio_from is not None and audio_from.has_audio
        self.encoder, self.preset, self.crf, self.threads = encoder, preset, crf, threads
        muxer, copyable = output_container(self.output)
        args = ["-nostdin", "-y", "-loglevel", "error", *self._input_args()]
        if self.has_audio:
            assert audio_from is not None
            args += [*input_args(audio_from.path), "-map", "0:v:0", "-map", "1:a:0"]
            copy = copyable is None or audio_from.audio_codec in copyable
            args += ["-c:a", "copy"] if copy else ["-c:a", "aac", "-b:a", "192k"]
        args += [*self._video_args(), "-f", muxer, file_url(self.temporary)]
        self.temporary.parent.mkdir(parents=True, exist_ok=True)
        self._process = FFmpegProcess(args, stdin=True, nice=nice)

    def _input_args(self) -> list[str]:
        """ffmpeg's arguments for the video coming through its stdin: raw RGB frames."""
        return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{self.width}x{self.height}",
                "-framerate", str(self.fps), "-protocol_whitelist", "pipe", "-i", "pipe:0"]

    def _video_args(self) -> list[str]:
        """ffmpeg's arguments for the output's video: the H.264 encoder and its settings."""
        args = []
        if self.width % 2 or self.height % 2:
            # yuv420p needs even sizes: pad one black pixel rather than rescale.
            args += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        if self.encoder == "h264_nvenc":
            args += ["-c:v", "h264_nvenc", "-preset", "p4", "-cq", str(self.crf + 3)]
        else:
            args += ["-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf)]
            args += [] if self.threads is None else ["-threads", str(self.threads)]
        return [*args, "-pix_fmt", "yuv420p"]

    def write(self, image: np.ndarray) -> None:
        """Append one RGB uint8 frame of the writer's size."""
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 ({self.height}, {self.width}, 3), got {image.dtype} {image.shape}")
        self._send(np.ascontiguousarray(image).data)
        self.frames_written += 1

    def _send(self, data: bytes | memoryview) -> None:
        """Write to ffmpeg's stdin; an ffmpeg that stopped is an EncodeError."""
        try:
            self._process.stdin.write(data)
        except (BrokenPipeError, ValueError, OSError):
            self._process.kill()
            raise EncodeError(f"{self.output}: the encoder stopped ({self._process.last_error()})") from None

    def finish(self) -> Path:
        """Close the stream, check ffmpeg's exit code and the file, move it to its final name.

        Raises:
            EncodeError: ffmpeg failed, or the file does not hold what was written.
        """
        try:
            self._process.stdin.close()
        except OSError:
            pass
        code = self._process.wait()
        if code != 0:
            self.abort()
            raise EncodeError(f"{self.output}: encoding failed ({self._process.last_error()})")
        frames, has_audio = verify_output(self.temporary)
        if frames != self.frames_written or has_audio != self.has_audio:
            self.abort()
            raise EncodeError(
                f"{self.output}: the encoded file holds {frames} frames (audio: {has_audio}), "
                f"expected {self.frames_written} (audio: {self.has_audio})"
            )
        os.replace(self.temporary, self.output)
        self.finished = True
        return self.output

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file (safe from any thread, more than once)."""
        self._process.kill()
        try:
            self.temporary.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        """Abort unless `finish` succeeded (see the class); an exception goes on as it is."""
        if not self.finished:
            self.abort()
