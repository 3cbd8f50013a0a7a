"""Video decode and encode on an NVIDIA GPU (NVDEC, NVENC) through NVIDIA's PyNvVideoCodec.

An optional extra (requirements-nvcodec.txt), imported only when a CUDA device asks for it:
on a machine without CUDA nothing here runs and the library is never imported.

- `choose_decoder` / `choose_encoder`: what `--decoder` and `--encoder` resolve to. `auto`
  takes the GPU's decoder or encoder on a CUDA device where a tiny generated clip goes through
  it at load time (so a failure shows then, not in the middle of a video), else ffmpeg's with
  one log line saying why; asked for by name, a failure is an error.
- `NvdecReader`: `workers.decode.VideoReader`'s interface. The frames are decoded into GPU
  memory (NV12), turned into RGB there as ffmpeg would (`workers.yuv`), put on ffmpeg's
  constant-rate timeline (`workers.cfr`), and copied once to the host for drawing; the GPU copy
  goes to the model (`Frame.device_image`), so the model's input never crosses to the host and
  back. A video this path cannot read exactly as ffmpeg does (rotated, odd-sized, 10-bit, a
  codec NVDEC lacks, a container other than MP4/MOV: `NVDEC_CONTAINERS`) is read by ffmpeg,
  with one log line saying why.
- `NvencWriter`: `workers.encode.VideoWriter`'s interface. The drawn frames (host memory) go to
  NVENC as BGRA; its H.264 goes to ffmpeg, which muxes it with the input's audio, copied, exactly
  as the libx264 path does, and the finished file is read back and checked the same way.

Not every NVIDIA GPU has NVENC: the H100 and H200 have none (NVENC refuses to open a session:
NV_ENC_ERR_UNSUPPORTED_DEVICE, docs/gpu-checks/2026-12-04-h200-1-nvcodec-probe.json). There
`--encoder auto` encodes with libx264, saying so once.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import av
import numpy as np

from workers.cfr import ConstantRate
from workers.data import DeviceImage, Frame, VideoInfo
from workers.decode import VideoReader
from workers.encode import VideoWriter
from workers.encode import choose_encoder as choose_ffmpeg_encoder
from workers.errors import DecodeError, DeviceError, EncodeError
from workers.ffmpeg import ffmpeg_exe, file_url
from workers.probe import OPEN_OPTIONS, probe
from workers.yuv import Colour, colour_of, nv12_to_rgb

log = logging.getLogger("dancingskeletons")

#: How to install the library.
INSTALL_HINT = "pip install -r requirements-nvcodec.txt"
#: The decoders `--decoder` takes, and the encoders `--encoder` takes.
DECODERS = ("auto", "ffmpeg", "nvdec")
#: Codecs (ffmpeg's names) this path gives to NVDEC; others are read by ffmpeg.
NVDEC_CODECS = frozenset({"h264", "hevc", "vp9", "av1"})
#: Containers (libavformat's demuxer names) this path reads with NVDEC: MP4 and MOV, where the
#: frame count is in the file. On an H200 (2026-12-04) NVDEC gave ffmpeg's frames from MP4
#: (B-frames, audio, 1080p) but fewer frames than ffmpeg from a variable-rate MKV: its threaded
#: decoder stops at the count the container's header implies, which MKV and WebM do not hold.
NVDEC_CONTAINERS = frozenset({"mov", "mp4"})
#: Frames the decoder's own thread decodes ahead (GPU memory: about 3 MB each at 1080p).
DECODE_AHEAD = 8
#: The NVENC settings: H.264, no B-frames (each packet's time is its frame's, so the raw
#: stream muxes without reordering), a keyframe every 2 s at 30 fps, and constant quality.
NVENC_OPTIONS = {"codec": "h264", "preset": "P4", "tuning_info": "high_quality", "rc": "vbr", "bf": "0",
                 "gop": "60"}


class CodecUnavailable(Exception):
    """The GPU decoder or encoder cannot be used here; the message says why."""


@cache
def library() -> ModuleType:
    """PyNvVideoCodec, imported once.

    Raises:
        CodecUnavailable: it is not installed, or it does not load here (no NVIDIA driver, no
            video engines for this container, an old driver); the message says which.
    """
    try:
        import PyNvVideoCodec
    except ModuleNotFoundError:
        raise CodecUnavailable(f"PyNvVideoCodec is not installed ({INSTALL_HINT})") from None
    except Exception as error:  # noqa: BLE001 - it raises RuntimeError for driver problems
        raise CodecUnavailable(f"PyNvVideoCodec does not load here: {_first_line(error)}") from None
    logging.getLogger("PyNvVideoCodec").setLevel(logging.WARNING)  # it logs its NVENC version at INFO
    return PyNvVideoCodec


#: NVENC's status codes that say something to a user (nvEncodeAPI.h).
NVENC_ERRORS = {"1": "NV_ENC_ERR_NO_ENCODE_DEVICE", "2": "NV_ENC_ERR_UNSUPPORTED_DEVICE: this GPU has no NVENC"}


def _first_line(error: BaseException) -> str:
    """The library's error in one line: its lines joined ("PyNvEncoderCaps :" alone says nothing;
    the line after it names the call and its status), NVENC's status named."""
    lines = [line.strip().removeprefix("Error Type :").strip() for line in str(error).splitlines()]
    text = " ".join(line for line in lines if line) or type(error).__name__
    for code, name in NVENC_ERRORS.items():
        if "nvEncOpenEncodeSessionEx" in text and text.rstrip().endswith(f"returned error {code}"):
            text += f" ({name})"
    return text[:300]


def _gpu_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


# --- what the video is ---------------------------------------------------------------------


@dataclass(frozen=True)
class StreamFacts:
    """What the GPU decoder needs to know about a video beyond `VideoInfo`, from its container.

    Attributes:
        colour: How its YUV becomes RGB as ffmpeg converts it, or None when it cannot be here.
        unsuitable: Why this path cannot read it as ffmpeg does, or None.
        time_base: The video stream's time base (seconds per pts unit).
        start: The container's start time in seconds (ffmpeg counts times from it).
        durations: Each packet's duration in seconds, by its pts (ffmpeg's frame durations).
        default_duration: A frame's duration where its packet has none (1 / the stream's rate).
    """

    colour: Colour | None
    unsuitable: str | None
    time_base: Fraction = Fraction(1, 1)
    start: float = 0.0
    durations: dict[int, float] = field(default_factory=dict)
    default_duration: float = 0.0


def stream_facts(info: VideoInfo) -> StreamFacts:
    """Read the container (its packets, not their pictures: a fraction of a second a minute)."""
    if info.rotation:
        return StreamFacts(None, f"it is rotated by {info.rotation} degrees")
    if info.width % 2 or info.height % 2:
        return StreamFacts(None, f"its size {info.width}x{info.height} is odd")
    if info.video_codec not in NVDEC_CODECS:
        return StreamFacts(None, f"NVDEC is not used for {info.video_codec}")
    try:
        with av.open(file_url(info.path), options=dict(OPEN_OPTIONS), timeout=60.0) as container:
            formats = set(container.format.name.split(","))
            if not formats & NVDEC_CONTAINERS:
                return StreamFacts(None, f"NVDEC is not used for {container.format.name.split(',')[0]} files "
                                         "(their frame count is not in the file)")
            stream = container.streams.video[0]
            context = stream.codec_context
            colour = colour_of(_tag(context.colorspace, MATRIX_CODES), _tag(context.color_range, RANGE_CODES),
                               _tag(context.format, {}))
            if isinstance(colour, str):
                return StreamFacts(None, f"its {colour} is converted by ffmpeg only")
            time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
            rate = stream.guessed_rate or stream.average_rate or info.fps
            durations = {
                int(packet.pts): float((packet.duration or 0) * time_base)
                for packet in container.demux(stream) if packet.pts is not None and packet.size
            }
            start = (container.start_time or 0) / 1_000_000
    except (av.FFmpegError, OSError) as error:
        return StreamFacts(None, f"its container could not be read ({_first_line(error)})")
    return StreamFacts(colour, None, time_base, start, durations, float(1 / Fraction(rate)))


#: ffmpeg's codes (AVColorSpace, AVColorRange) for the tags PyAV gives as numbers, by its names.
MATRIX_CODES = {0: "rgb", 1: "bt709", 2: "unspecified", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
                9: "bt2020nc", 10: "bt2020c"}
RANGE_CODES = {0: "unspecified", 1: "tv", 2: "pc"}


def _tag(value: Any, codes: dict[int, str]) -> str | None:
    """A colour tag as a lower-case name: PyAV gives enums, numbers or names, by version."""
    if value is None:
        return None
    name = getattr(value, "name", value)
    if isinstance(name, int):
        return codes.get(name, str(name))
    return str(name).lower()


# --- choosing --------------------------------------------------------------------------------


def choose_decoder(requested: str, device: str) -> str:
    """"nvdec" or "ffmpeg" for `--decoder requested` on `device` (see the module's docstring).

    Raises:
        DeviceError: nvdec was asked for by name and does not work here.
    """
    if requested == "ffmpeg":
        return "ffmpeg"
    if not device.startswith("cuda"):
        if requested == "nvdec":
            raise DeviceError(f"--decoder nvdec needs a CUDA device; the model runs on {device}")
        return "ffmpeg"
    try:
        check_decoder(device)
    except CodecUnavailable as error:
        if requested == "nvdec":
            raise DeviceError(f"--decoder nvdec does not work here: {error}") from None
        log.info("decoding with ffmpeg on the CPU: the GPU's decoder does not work here (%s)", error)
        return "ffmpeg"
    return "nvdec"


def choose_encoder(requested: str, device: str) -> str:
    """"nvenc", "h264_nvenc" or "libx264" for `--encoder requested` on `device`.

    `auto` on a CUDA device: NVENC through PyNvVideoCodec, then ffmpeg's own h264_nvenc, then
    libx264, each where it works (one line says why a GPU encoder was passed over).

    Raises:
        EncodeError: an encoder asked for by name does not work here.
    """
    if requested == "nvenc":
        try:
            check_encoder(device)
        except CodecUnavailable as error:
            raise EncodeError(f"--encoder nvenc does not work here: {error}; use --encoder libx264") from None
        return "nvenc"
    if requested != "auto" or not device.startswith("cuda"):
        return choose_ffmpeg_encoder(requested, device)
    try:
        check_encoder(device)
        return "nvenc"
    except CodecUnavailable as error:
        chosen = choose_ffmpeg_encoder("auto", device)
        log.info("encoding with %s: the GPU's encoder does not work here (%s)", chosen, error)
        return chosen


@cache
def _test_clip() -> Path:
    """A tiny H.264 clip made by our ffmpeg, for the load-time checks."""
    folder = Path(tempfile.mkdtemp(prefix="dancingskeletons-nvcodec-"))
    path = folder / "check.mp4"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=256x144:rate=30", "-frames:v", "8", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(path)], check=True, capture_output=True)
    return path


@cache
def check_decoder(device: str) -> None:
    """Decode the test clip on `device` and compare it with ffmpeg's frames.

    Raises:
        CodecUnavailable: the library is missing, or the clip does not decode, or not as ffmpeg does.
    """
    library()
    info = probe(_test_clip())
    try:
        with NvdecReader(info, device) as reader:
            ours = [frame.image for frame in reader]
    except Exception as error:  # noqa: BLE001 - any failure means: not here
        raise CodecUnavailable(_first_line(error)) from None
    with VideoReader(info) as reader:
        theirs = [frame.image for frame in reader]
    if len(ours) != len(theirs):
        raise CodecUnavailable(f"it decoded {len(ours)} frames of a clip of {len(theirs)}")
    difference = float(np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(ours, theirs)]))
    if difference > 2.0:
        raise CodecUnavailable(f"its pictures differ from ffmpeg's by {difference:.1f} levels on average")


@cache
def check_encoder(device: str) -> None:
    """Encode a few frames with NVENC on `device` and decode them back with ffmpeg.

    Raises:
        CodecUnavailable: the library is missing, NVENC does not open (a GPU without NVENC,
            such as the H100 and H200), or the stream does not decode.
    """
    library()
    frames = [np.full((144, 256, 3), value, np.uint8) for value in (16, 96, 176, 235)]
    try:
        encoder = _open_encoder(256, 144, Fraction(30), device)
        data = b"".join(_encode(encoder, frame) for frame in frames) + _packets(encoder.EndEncode())
    except Exception as error:  # noqa: BLE001 - any failure means: not here
        raise CodecUnavailable(_first_line(error)) from None
    decoded = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "h264", "-i", "pipe:0",
                              "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"], input=data, capture_output=True)
    if decoded.returncode != 0 or len(decoded.stdout) != 256 * 144 * len(frames):
        raise CodecUnavailable("its stream does not decode back to the frames given")


# --- decoding --------------------------------------------------------------------------------


class NvdecReader:
    """Reads every frame of a video with NVDEC: `workers.decode.VideoReader`'s interface.

    Each `Frame` carries the RGB picture twice: `image` in host memory (for drawing) and
    `device_image` on the GPU (for the model, which releases it). Frame `i` is the frame ffmpeg's
    `-fps_mode cfr -r FPS` gives at `i` (`workers.cfr`), at `i / fps` seconds.

    Args:
        info: The probed input (`stream_facts(info).unsuitable` must be None).
        device: The CUDA device, "cuda:N".
        facts: `stream_facts(info)`, if already read.
    """

    def __init__(self, info: VideoInfo, device: str, facts: StreamFacts | None = None) -> None:
        self.info = info
        self.device = device
        self.facts = facts or stream_facts(info)
        if self.facts.unsuitable is not None or self.facts.colour is None:
            raise DecodeError(f"{info.path}: cannot be read by NVDEC here: {self.facts.unsuitable}")
        self.warnings: list[str] = []
        self.frames_read = 0
        self._decoder: Any = None
        self._stop = threading.Event()

    def start(self) -> None:
        import torch

        nvc = library()
        # The decoder writes its frames on a stream of ours, where they are converted and copied:
        # in order, without waiting for the model's work on the default stream.
        self._stream = torch.cuda.Stream(device=self.device) if self.device.startswith("cuda") else None
        try:
            self._decoder = nvc.ThreadedDecoder(
                str(self.info.path), DECODE_AHEAD, gpu_id=_gpu_index(self.device),
                cuda_stream=0 if self._stream is None else self._stream.cuda_stream,
                use_device_memory=True, output_color_type=nvc.OutputColorType.NATIVE,
            )
        except Exception as error:  # noqa: BLE001 - the library raises its own types
            raise DecodeError(f"{self.info.path}: NVDEC could not open it ({_first_line(error)})") from None

    def __iter__(self) -> Iterator[Frame]:
        if self._decoder is None:
            self.start()
        try:
            yield from self._frames()
        finally:
            self.kill()
        if self.frames_read == 0:
            raise DecodeError(f"{self.info.path}: no frame could be decoded")

    def _frames(self) -> Iterator[Frame]:
        import torch

        facts, fps = self.facts, self.info.fps
        assert facts.colour is not None
        height, width = self.info.height, self.info.width
        rate = ConstantRate(fps)
        previous: tuple[np.ndarray, Any] | None = None
        while not self._stop.is_set():
            try:
                batch = self._decoder.get_batch_frames(DECODE_AHEAD)
            except Exception as error:  # noqa: BLE001
                if self._stop.is_set():
                    return
                raise DecodeError(f"{self.info.path}: decoding failed after {self.frames_read} frames "
                                  f"({_first_line(error)})") from None
            if not batch:
                break
            with torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext():
                # The batch at once: a few GPU operations and one copy to the host for all its frames.
                planes = torch.stack([torch.from_dlpack(frame) for frame in batch])
                rgbs = nv12_to_rgb(planes, height, width, facts.colour)
                hosts = rgbs.to("cpu").numpy()
            for index, frame in enumerate(batch):
                rgb, host, pts = rgbs[index], hosts[index], int(frame.getPTS())
                time = float(pts * facts.time_base) - facts.start
                duration = facts.durations.get(pts, 0.0) or facts.default_duration
                first = True
                for which in rate.push(time, duration):
                    # A picture shown again is a copy: each frame is drawn on in place.
                    if which == "previous" and previous is not None:
                        yield self._frame(previous[0].copy(), previous[1])
                    else:
                        yield self._frame(host if first else host.copy(), rgb)
                        first = False
                previous = (host, rgb)
        if previous is not None:
            for _ in range(rate.end()):
                yield self._frame(previous[0].copy(), previous[1])
        if rate.frames != len(facts.durations) and not self._stop.is_set():
            warning = (f"{self.info.path}: NVDEC gave {rate.frames} pictures of the {len(facts.durations)} "
                       "in the file")
            self.warnings.append(warning)
            log.warning(warning)

    def _frame(self, image: np.ndarray, device_image: Any) -> Frame:
        frame = Frame(index=self.frames_read, timestamp=self.frames_read / float(self.info.fps), image=image,
                      device_image=DeviceImage(device_image))
        self.frames_read += 1
        return frame

    def kill(self) -> None:
        """Stop decoding (from any thread); a `get_batch_frames` blocked in another thread returns."""
        self._stop.set()
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            try:
                decoder.end()
            except Exception:  # noqa: BLE001 - stopping must go on
                pass

    def close(self) -> None:
        self.kill()

    def __enter__(self) -> NvdecReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_reader(info: VideoInfo, decoder: str, device: str, nice: int = 0, threads: int | None = None) -> Any:
    """The reader of one video: `NvdecReader` when `decoder` is "nvdec" and NVDEC can read it
    exactly as ffmpeg does, else `workers.decode.VideoReader` (with one log line saying why)."""
    if decoder == "nvdec":
        facts = stream_facts(info)
        if facts.unsuitable is None:
            return NvdecReader(info, device, facts)
        log.info("%s: decoding with ffmpeg: %s", info.path.name, facts.unsuitable)
    return VideoReader(info, nice=nice, threads=threads)


# --- encoding --------------------------------------------------------------------------------


def _open_encoder(width: int, height: int, fps: Fraction, device: str) -> Any:
    nvc = library()
    options = dict(NVENC_OPTIONS, fps=str(round(float(fps))), gpu_id=str(_gpu_index(device)))
    return nvc.CreateEncoder(width, height, "ARGB", True, **options)


def _packets(packets: Any) -> bytes:
    """The bytes of what Encode/EndEncode returned (a list of dicts with "data", or bytes)."""
    if isinstance(packets, (bytes, bytearray)):
        return bytes(packets)
    return b"".join(bytes(packet["data"]) if isinstance(packet, dict) else bytes(packet) for packet in packets)


def _encode(encoder: Any, image: np.ndarray) -> bytes:
    import cv2

    return _packets(encoder.Encode(cv2.cvtColor(image, cv2.COLOR_RGB2BGRA)))  # NVENC's "ARGB" is B, G, R, A bytes


class NvencWriter(VideoWriter):
    """`workers.encode.VideoWriter` with NVENC encoding: the same file, audio, checks and cleanup.

    NVENC takes each drawn frame from host memory as BGRA (its own conversion to YUV runs on
    the GPU) and gives H.264, which ffmpeg muxes with the input's audio without encoding
    anything again (`-c:v copy`).

    Args:
        device: The CUDA device, "cuda:N".
        (the rest as `VideoWriter`'s)
    """

    def __init__(self, output: Path, width: int, height: int, fps: Fraction, audio_from: VideoInfo | None = None,
                 device: str = "cuda:0", nice: int = 0) -> None:
        self._nvenc = _open_encoder(width, height, fps, device)
        super().__init__(output, width, height, fps, audio_from=audio_from, nice=nice)

    def _input_args(self) -> list[str]:
        return ["-f", "h264", "-framerate", str(self.fps), "-protocol_whitelist", "pipe", "-i", "pipe:0"]

    def _video_args(self) -> list[str]:
        return ["-c:v", "copy"]

    def write(self, image: np.ndarray) -> None:
        """Append one RGB uint8 frame of the writer's size."""
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 ({self.height}, {self.width}, 3), got {image.dtype} {image.shape}")
        try:
            data = _encode(self._nvenc, image)
        except Exception as error:  # noqa: BLE001
            self._process.kill()
            raise EncodeError(f"{self.output}: NVENC failed ({_first_line(error)})") from None
        self._send(data)
        self.frames_written += 1

    def finish(self) -> Path:
        try:
            self._send(_packets(self._nvenc.EndEncode()))
        except EncodeError:
            raise
        except Exception as error:  # noqa: BLE001
            self.abort()
            raise EncodeError(f"{self.output}: NVENC failed ({_first_line(error)})") from None
        return super().finish()

