"""Read a file's first audio stream as mono float32 samples, for `workers.alignment`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from workers.errors import AudioError

#: The rate `read_audio` resamples to by default (Hz): what `workers.alignment` works at.
DEFAULT_RATE = 4000


@dataclass(frozen=True)
class AudioTrack:
    """A file's audio as mono samples.

    Attributes:
        samples: (n,) float32 samples, full scale 1.
        rate: Their sample rate (Hz).
        start_seconds: When the first sample plays, relative to the video stream's start
            (seconds; positive when the audio starts later). 0 when the file has no video or
            does not say.
    """

    samples: np.ndarray
    rate: int
    start_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.samples.ndim != 1:
            raise ValueError(f"samples must have shape (n,), got {self.samples.shape}")
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")

    @property
    def seconds(self) -> float:
        """The track's length (seconds)."""
        return len(self.samples) / self.rate


def read_audio(path: Path, rate: int = DEFAULT_RATE) -> AudioTrack | None:
    """The first audio stream of a file, decoded and resampled to mono float32 at `rate` Hz.

    Args:
        path: A video or audio file.
        rate: The wanted sample rate (Hz).

    Returns:
        The track, or None when the file has no audio stream.

    Raises:
        AudioError: The file cannot be opened or its audio cannot be decoded.
    """
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise AudioError(f"{path}: cannot open the file to read its audio ({error})") from error
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        start = 0.0
        if container.streams.video:
            video = container.streams.video[0]
            if (stream.start_time is not None and video.start_time is not None
                    and stream.time_base is not None and video.time_base is not None):
                start = float(stream.start_time * stream.time_base) - float(video.start_time * video.time_base)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as error:
            raise AudioError(f"{path}: the audio cannot be decoded ({error}); re-encode the file "
                             "or align it by hand") from error
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return AudioTrack(samples, rate, start)
