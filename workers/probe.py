"""What a video file holds, read with PyAV (FFmpeg's own libraries), not from ffmpeg's banner.

`probe` opens an input as the decoder will (local files only, video containers only), decodes
one frame and returns a `VideoInfo`: the exact frame rate as FFmpeg's fraction, the frame
count where the container records it, the duration, the rotation and the upright size, and
every audio stream's codec. `verify_output` reads back a finished output the same way.
Decoding and encoding stay with the ffmpeg binary (`workers.decode`, `workers.encode`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.logging

from workers.data import VideoInfo
from workers.errors import EncodeError, VideoOpenError
from workers.ffmpeg import INPUT_FORMATS, INPUT_PROTOCOLS, explain_ffmpeg_messages, file_url, looks_like_mp4

#: Options every input is opened with: local files only, video containers only (nested
#: demuxers, e.g. a playlist smuggled into a container, inherit them).
OPEN_OPTIONS = {"protocol_whitelist": INPUT_PROTOCOLS, "format_whitelist": INPUT_FORMATS}

#: Common nominal rates: a measured average within 0.01 of one (or of its NTSC n*1000/1001)
#: is taken to be it.
_NOMINAL_RATES = (24, 25, 30, 48, 50, 60, 100, 120, 240)

#: Packets read at most while looking for the first decodable frame.
_PROBE_PACKETS = 600


@contextmanager
def _libav_messages() -> Iterator[list[str]]:
    """FFmpeg's error messages while inside, in this thread ("moov atom not found")."""
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    found: list[str] = []
    try:
        with av.logging.Capture(local=True) as logs:
            yield found
    finally:
        av.logging.set_level(previous)
        found.extend(f"[{name}] {message.strip()}" if name else message.strip() for _, name, message in logs)


def snap_rate(rate: Fraction) -> Fraction:
    """A measured average rate as the rate it stands for.

    FFmpeg's average rate is frames over duration, so a constant-rate file whose duration is
    rounded gives a fraction such as 1798200/60001: within 0.01 of a nominal rate (or its
    NTSC version, 30000/1001) it is that rate, else it is kept to a denominator of at most 1001.
    """
    if rate.denominator <= 1001:
        return rate
    for nominal in _NOMINAL_RATES:
        for candidate in (Fraction(nominal), Fraction(nominal * 1000, 1001)):
            if abs(rate - candidate) < Fraction(1, 100):
                return candidate
    return rate.limit_denominator(1001)


def stream_rate(average: Fraction | None, base: Fraction | None) -> Fraction | None:
    """The rate to decode and encode a video stream at.

    The average rate of a constant-rate stream; for a variable-rate one (average and base
    rate differ by more than 1%) the base rate when it is at most 120, so that frames are
    repeated across gaps and the video keeps pace with its audio.

    Args:
        average: FFmpeg's average frame rate (frames over duration), None or 0 when unknown.
        base: FFmpeg's base rate (the lowest rate that represents every timestamp, "tbr").
    """
    base = base if base and 0 < base <= 1000 else None
    if not average:
        return snap_rate(base) if base else None
    fps = snap_rate(average)
    if base is not None and abs(base - fps) > fps / 100 and fps < base <= 120:
        return snap_rate(base)
    return fps


def _open(path: Path, timeout: float) -> Any:
    """The input container, or VideoOpenError saying why not."""
    with _libav_messages() as messages:
        try:
            return av.open(file_url(path), options=dict(OPEN_OPTIONS), timeout=timeout)
        except (av.FFmpegError, OSError) as error:
            failure = error
    reason = explain_ffmpeg_messages([*messages, str(failure)])
    if "moov atom" in reason and not looks_like_mp4(path):
        reason = "not a video file ffmpeg can read (no MP4 header, despite the name)"
    raise VideoOpenError(f"{path}: cannot open the video: {reason}")


def _first_frame(container: Any, stream: Any, path: Path) -> Any:
    """The first frame that decodes (damaged packets before it are skipped), or VideoOpenError."""
    with _libav_messages() as messages:
        try:
            for count, packet in enumerate(container.demux(stream)):
                if count >= _PROBE_PACKETS:
                    break
                try:
                    for frame in packet.decode():
                        return frame
                except av.FFmpegError as error:
                    messages.append(str(error))
        except (av.FFmpegError, OSError) as error:
            messages.append(str(error))
    raise VideoOpenError(f"{path}: no decodable video frame: {explain_ffmpeg_messages(messages)}")


def probe(path: Path, timeout: float = 60.0) -> VideoInfo:
    """Inspect a video: its upright frame size, exact rate, frame count, duration, audio.

    Decodes one frame, so a file that FFmpeg can open but not decode is refused here.

    Args:
        path: A local video file.
        timeout: Seconds to wait for the file's data.

    Raises:
        VideoOpenError: The file is missing, empty, not a video, or not decodable.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoOpenError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoOpenError(f"{path}: the file is empty")
    container = _open(path, timeout)
    with container:
        streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            what = "only a cover picture" if container.streams.video else "audio or data only"
            raise VideoOpenError(f"{path}: no video stream ({what})")
        stream = streams[0]
        fps = stream_rate(stream.average_rate, stream.base_rate)
        if fps is None or fps <= 0:
            raise VideoOpenError(f"{path}: the video stream has no frame rate")
        frame = _first_frame(container, stream, path)
        rotation = int(frame.rotation or 0) % 360
        width, height = (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)
        if container.duration is not None:
            duration = container.duration / av.time_base
        elif stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = 0.0
        audio = tuple(s.codec_context.codec.canonical_name for s in container.streams.audio)
        return VideoInfo(
            path=path,
            width=width,
            height=height,
            fps=fps,
            duration=max(0.0, float(duration)),
            has_audio=bool(audio),
            audio_codec=audio[0] if audio else None,
            video_codec=stream.codec_context.codec.canonical_name,
            frames=stream.frames or None,
            rotation=rotation,
            audio_codecs=audio,
        )


def verify_output(path: Path) -> tuple[int, bool]:
    """Read back a written video: its video packets (one per frame) and whether it has audio.

    Raises:
        EncodeError: The file cannot be read back.
    """
    try:
        with _libav_messages() as messages, av.open(file_url(path), options=dict(OPEN_OPTIONS)) as container:
            if not container.streams.video:
                raise EncodeError(f"{path}: the encoded file has no video stream")
            frames = sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)
            return frames, bool(container.streams.audio)
    except (av.FFmpegError, OSError) as error:
        reason = explain_ffmpeg_messages([*messages, str(error)])
        raise EncodeError(f"{path}: cannot read back the encoded file ({reason})") from None
