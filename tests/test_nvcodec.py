"""The GPU video path's parts that run on the CPU (issue 27): ffmpeg's colour conversion and
constant-rate timeline reproduced exactly, the choice of decoder and encoder with the library
absent or failing, the per-video fallback, and the models taking frames as torch tensors.
Known answers come from ffmpeg itself; tests/test_nvcodec_gpu.py runs the GPU parts."""

from __future__ import annotations

import logging
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.helpers import make_video
from workers import nvcodec
from workers.cfr import ConstantRate, constant_rate
from workers.decode import VideoReader
from workers.errors import DeviceError, EncodeError
from workers.ffmpeg import ffmpeg_exe
from workers.probe import probe
from workers.yuv import Colour, colour_of, nv12_to_rgb

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _ffmpeg_raw(path: Path, pix_fmt: str, extra: tuple[str, ...] = ()) -> bytes:
    return subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), *extra,
                           "-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1"], capture_output=True, check=True).stdout


@pytest.mark.parametrize("tags, colour", [
    ((), Colour("bt601", False)),
    (("-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"), Colour("bt709", False)),
    (("-color_range", "pc"), Colour("bt601", True)),
])
def test_nv12_becomes_the_rgb_ffmpeg_makes(tmp_path, tags, colour):
    """Against ffmpeg's own rgb24 of the same stream: the matrix and range from its tags
    (untagged: BT.601, limited), each chroma sample for its 2x2 pixels."""
    width, height = 320, 180
    clip = make_video(tmp_path / "clip.mp4", seconds=0.3, fps="10", size=f"{width}x{height}", extra=tags)
    assert nvcodec.stream_facts(probe(clip)).colour == colour
    nv12 = np.frombuffer(_ffmpeg_raw(clip, "nv12"), np.uint8).reshape(-1, height * 3 // 2, width)
    theirs = np.frombuffer(_ffmpeg_raw(clip, "rgb24"), np.uint8).reshape(-1, height, width, 3)
    ours = np.stack([nv12_to_rgb(torch.from_numpy(frame.copy()), height, width, colour).numpy() for frame in nv12])
    difference = np.abs(ours.astype(np.int16) - theirs)
    assert difference.mean() < 0.8 and difference.max() <= 3
    wrong = Colour("bt709" if colour.matrix == "bt601" else "bt601", colour.full_range)
    worse = np.abs(nv12_to_rgb(torch.from_numpy(nv12[0].copy()), height, width, wrong).numpy().astype(np.int16)
                   - theirs[0])
    assert worse.mean() > 3 * difference.mean()  # the test tells the matrices apart


def test_a_batch_converts_as_its_frames_one_by_one():
    rng = np.random.default_rng(5)
    batch = torch.from_numpy(rng.integers(0, 255, (3, 12, 8), dtype=np.uint8))
    together = nv12_to_rgb(batch.unsqueeze(-1), 8, 8, Colour("bt709", False))
    assert together.shape == (3, 8, 8, 3)
    for frame, rgb in zip(batch, together):
        assert torch.equal(nv12_to_rgb(frame, 8, 8, Colour("bt709", False)), rgb)


def test_a_decoder_surface_taller_than_the_picture_is_cropped():
    """NVDEC may hand out a surface of coded height (1088 for 1080): luma rows, then chroma rows
    of the surface, each cropped to the picture."""
    height, width, surface = 6, 4, 8
    planes = torch.full((surface * 3 // 2, width), 200, dtype=torch.uint8)
    planes[:height] = 100
    planes[surface:surface + height // 2] = 128
    rgb = nv12_to_rgb(planes, height, width, Colour("bt601", True))
    assert rgb.shape == (height, width, 3) and bool((rgb == 100).all())


@pytest.mark.parametrize("tags, why", [
    (("bt709", "tv", "yuv420p10le"), "pixel format yuv420p10le"),
    (("fcc", "tv", "yuv420p"), "the fcc colour matrix"),
])
def test_what_is_not_converted_here_says_why(tags, why):
    assert why in str(colour_of(*tags))
    assert colour_of(None, None, "yuvj420p") == Colour("bt601", True)


def _nearest_source(path: Path, rate: Fraction) -> tuple[list[int], list[int]]:
    """For each frame of ffmpeg's `-fps_mode cfr -r rate` output: which decoded frame it is
    (nearest picture, tiny grey thumbnails); and which one `constant_rate` says."""
    size = (32, 18)
    raw = _ffmpeg_raw(path, "gray", ("-map", "0:v:0", "-fps_mode", "cfr", "-r", str(rate), "-s", "32x18"))
    theirs = np.frombuffer(raw, np.uint8).reshape(-1, size[1], size[0]).astype(np.int16)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = (container.start_time or 0) / 1_000_000
        decoded = sorted(
            (float(frame.pts * stream.time_base) - start, float((frame.duration or 0) * stream.time_base),
             frame.reformat(width=size[0], height=size[1], format="gray").to_ndarray().astype(np.int16))
            for frame in container.decode(stream)
        )
    pictures = np.stack([picture for *_, picture in decoded])
    truth = [int(np.abs(pictures - picture).mean(axis=(1, 2)).argmin()) for picture in theirs]
    return truth, constant_rate([t for t, *_ in decoded], [d for _, d, _ in decoded], rate)


@pytest.mark.parametrize("name, args, rates", [
    ("constant.mp4", ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-t", "2"], (30, 24)),
    ("gaps.mkv", ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-t", "3",
                  "-vf", "setpts='PTS+if(gt(N,20),0.37/TB,0)+if(gt(N,50),0.8/TB,0)'", "-fps_mode", "vfr"], (30, 24)),
    ("crowded.mkv", ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=60", "-t", "2"], (30, 60)),
    ("late.mp4", ["-f", "lavfi", "-i", "sine", "-itsoffset", "0.23", "-f", "lavfi", "-i",
                  "testsrc2=size=320x180:rate=25", "-t", "2", "-map", "1:v", "-map", "0:a", "-c:a", "aac"], (25, 30)),
])
def test_the_constant_rate_timeline_is_ffmpegs(tmp_path, name, args, rates):
    """Known answers from ffmpeg's `-fps_mode cfr -r R` (what the ffmpeg decoder reads): frame
    gaps filled by repeats, crowded frames dropped, a video that starts after its audio, at
    its own rate and others."""
    path = tmp_path / name
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args, "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(path)], check=True)
    for rate in rates:
        truth, ours = _nearest_source(path, Fraction(rate))
        assert ours == truth, rate


def test_the_streaming_rule_gives_the_same_frames():
    times = [0.0, 0.1, 0.5, 0.52, 0.54, 1.0]
    durations = [0.1, 0.4, 0.02, 0.02, 0.46, 0.1]
    rate = ConstantRate(Fraction(10))
    shown: list[int] = []
    for index, (time, duration) in enumerate(zip(times, durations)):
        shown += [index - 1 if which == "previous" else index for which in rate.push(time, duration)]
    shown += [len(times) - 1] * rate.end()
    assert shown == constant_rate(times, durations, Fraction(10))
    assert shown[:2] == [0, 1] and len(shown) == 11  # 1.1 s at 10 fps


# --- choosing the decoder and encoder -----------------------------------------------------------


@pytest.fixture
def fresh_checks():
    """The library and the load-time checks are cached per process: start each test without."""
    for cached in (nvcodec.library, nvcodec.check_decoder, nvcodec.check_encoder):
        cached.cache_clear()
    yield
    for cached in (nvcodec.library, nvcodec.check_decoder, nvcodec.check_encoder):
        cached.cache_clear()


@pytest.fixture
def broken_library(tmp_path, monkeypatch, fresh_checks):
    """A PyNvVideoCodec that fails to import as the real one does without an NVIDIA driver."""
    package = tmp_path / "site" / "PyNvVideoCodec"
    package.mkdir(parents=True)
    failure = "raise RuntimeError('libnvidia-encode.so.1: cannot open shared object file')\n"
    (package / "__init__.py").write_text(failure)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "PyNvVideoCodec", raising=False)


def test_without_cuda_nothing_changes_and_the_library_is_never_imported(monkeypatch, fresh_checks):
    monkeypatch.delitem(sys.modules, "PyNvVideoCodec", raising=False)
    assert nvcodec.choose_decoder("auto", "cpu") == "ffmpeg"
    assert nvcodec.choose_encoder("auto", "cpu") == "libx264"
    assert nvcodec.choose_decoder("ffmpeg", "cuda:0") == "ffmpeg"
    assert "PyNvVideoCodec" not in sys.modules
    with pytest.raises(DeviceError, match="--decoder nvdec needs a CUDA device"):
        nvcodec.choose_decoder("nvdec", "cpu")


def test_auto_falls_back_with_one_line_when_the_library_fails(broken_library, caplog):
    with caplog.at_level(logging.INFO, logger="dancingskeletons"):
        assert nvcodec.choose_decoder("auto", "cuda:0") == "ffmpeg"
        assert nvcodec.choose_encoder("auto", "cuda:0") in ("libx264", "h264_nvenc")
    lines = [record.getMessage() for record in caplog.records]
    assert any(line.startswith("decoding with ffmpeg on the CPU") and "libnvidia-encode" in line for line in lines)
    assert any(line.startswith("encoding with ") and "does not load here" in line for line in lines)


def test_asked_for_by_name_a_failure_is_an_error(broken_library):
    with pytest.raises(DeviceError, match="--decoder nvdec does not work here: PyNvVideoCodec does not load here"):
        nvcodec.choose_decoder("nvdec", "cuda:0")
    with pytest.raises(EncodeError, match="--encoder nvenc does not work here: .*use --encoder libx264"):
        nvcodec.choose_encoder("nvenc", "cuda:0")


def test_a_missing_library_says_how_to_install_it(monkeypatch, fresh_checks):
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)  # import raises ModuleNotFoundError
    with pytest.raises(DeviceError, match="requirements-nvcodec.txt"):
        nvcodec.choose_decoder("nvdec", "cuda:0")


def test_a_video_nvdec_cannot_read_as_ffmpeg_does_goes_to_ffmpeg(tmp_path, caplog):
    odd = probe(make_video(tmp_path / "odd.mp4", seconds=0.2, size="161x120", extra=("-vf", "pad=162:120")))
    assert nvcodec.stream_facts(odd).unsuitable is None  # padded to even: fine
    rotated = probe(make_video(tmp_path / "r.mp4", seconds=0.2, extra=("-metadata:s:v", "rotate=90")))
    ten_bit = probe(make_video(tmp_path / "t.mkv", seconds=0.2, extra=("-pix_fmt", "yuv420p10le")))
    ten_bit_mp4 = probe(make_video(tmp_path / "t.mp4", seconds=0.2, extra=("-pix_fmt", "yuv420p10le")))
    assert "pixel format yuv420p10le" in (nvcodec.stream_facts(ten_bit_mp4).unsuitable or "")
    mpeg4 = probe(make_video(tmp_path / "m.avi", seconds=0.2, extra=("-c:v", "mpeg4")))
    matroska = probe(make_video(tmp_path / "k.mkv", seconds=0.2))
    for info, why in ((ten_bit, "NVDEC is not used for matroska"), (mpeg4, "NVDEC is not used for mpeg4"),
                      (matroska, "NVDEC is not used for matroska files (their frame count is not in the file)")):
        assert why in (nvcodec.stream_facts(info).unsuitable or "")
        with caplog.at_level(logging.INFO, logger="dancingskeletons"):
            reader = nvcodec.open_reader(info, "nvdec", "cuda:0")
        assert isinstance(reader, VideoReader)
        assert caplog.records[-1].getMessage().startswith(f"{info.path.name}: decoding with ffmpeg")
    if rotated.rotation:
        assert "rotated" in (nvcodec.stream_facts(rotated).unsuitable or "")


def test_the_stream_facts_give_ffmpegs_times(tmp_path):
    clip = make_video(tmp_path / "c.mp4", seconds=1.0, fps="25", size="64x48")
    facts = nvcodec.stream_facts(probe(clip))
    assert facts.unsuitable is None and facts.colour == Colour("bt601", False)
    assert len(facts.durations) == 25 and all(d == pytest.approx(0.04) for d in facts.durations.values())
    assert facts.default_duration == pytest.approx(0.04)


# --- the models take torch frames ------------------------------------------------------------


def test_keypoint_rcnn_takes_torch_frames_as_numpy_ones():
    from config import Config
    from workers.models import load_estimator

    estimator = load_estimator(Config(input=Path("in.mp4"), output=Path("out.mp4"), weights="random", device="cpu",
                                      model_min_size=96, person_threshold=0.0, max_persons=3))
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (72, 128, 3), dtype=np.uint8) for _ in range(2)]
    model = getattr(estimator, "estimator", estimator)
    assert model.accepts_device_frames is False  # on the CPU the runner never hands it tensors
    for ours, theirs in zip(model.predict([torch.from_numpy(image) for image in images]), model.predict(images)):
        np.testing.assert_allclose(ours.keypoints, theirs.keypoints, atol=1e-3)


def test_the_tensor_letterbox_is_ultralytics():
    from workers.models.yolo import letterbox

    frames = [torch.zeros((1080, 1920, 3), dtype=torch.uint8)]
    batch, box = letterbox(frames, 640, 32)
    assert batch.shape == (1, 3, 384, 640) and (box.left, box.top) == (0, 12) and box.scale == pytest.approx(1 / 3)
    assert float(batch[0, 0, 0, 0]) == pytest.approx(114 / 255) and float(batch[0, 0, 12, 0]) == 0.0
    batch, box = letterbox([torch.zeros((480, 270, 3), dtype=torch.uint8)], 640, 32)
    assert batch.shape == (1, 3, 640, 384) and box.left == 12


@pytest.mark.skipif(not (SHARED / "models" / "yolo11n-pose.pt").is_file(), reason="needs ../shared")
def test_yolo_finds_the_same_keypoints_in_a_torch_frame(tmp_path):
    """The GPU path's letterbox (torch, on the frame's device) against Ultralytics' own (OpenCV,
    on the host), on a real frame with the real model: the same persons within a pixel."""
    from config import Config
    from workers.decode import frame_at
    from workers.models import load_estimator

    video = SHARED / "videos" / "park_two_people_vp9_audio.mp4"
    image = frame_at(probe(video), 3.0)
    assert image is not None
    estimator = load_estimator(Config(input=video, output=tmp_path / "o.mp4", model="yolo", device="cpu",
                                      weights=str(SHARED / "models" / "yolo11n-pose.pt"), runtime="torch"))
    model = getattr(estimator, "estimator", estimator)
    [ours] = model.predict([torch.from_numpy(image)])
    [theirs] = model.predict([image])
    assert len(ours.boxes) == len(theirs.boxes) >= 1
    assert np.abs(ours.boxes - theirs.boxes).mean() < 1.0
    seen = (ours.keypoint_scores > 0.5) & (theirs.keypoint_scores > 0.5)
    assert np.abs(ours.keypoints - theirs.keypoints)[seen].mean() < 1.0


# --- the run's wiring -------------------------------------------------------------------------


def test_the_model_gets_the_decoders_gpu_frames_and_they_are_released(tmp_path, monkeypatch):
    """The run with a reader that gives frames a device picture (here a CPU tensor standing in
    for the GPU's): the model takes the tensors, each picture is released once its frame left
    the infer stage (GPU memory held from the decoder to the model only), the video and report
    come out as usual and say which decoder read it."""
    from config import Config
    from pipeline import runner
    from tests.helpers import StandInEstimator
    from workers.data import DeviceImage, Frame

    held: list[DeviceImage] = []

    class TensorReader(VideoReader):
        def _frames(self, process):
            for frame in super()._frames(process):
                picture = DeviceImage(torch.from_numpy(frame.image.copy()))
                held.append(picture)
                yield Frame(frame.index, frame.timestamp, frame.image, picture)

    class TensorModel(StandInEstimator):
        accepts_device_frames = True
        seen: set = set()

        def predict(self, images):
            self.seen.update(type(image).__name__ for image in images)
            return super().predict([np.asarray(image) for image in images])

    monkeypatch.setattr(runner, "open_reader", lambda info, decoder, device, **kw: TensorReader(info, **kw))
    source = make_video(tmp_path / "in.mp4", seconds=1.0, fps="10", size="96x64", audio=True)
    model = TensorModel()
    result = runner.run_video(Config(input=source, output=tmp_path / "out.mp4", progress=False), model)
    assert model.seen == {"Tensor"}
    assert len(held) == 10 and all(picture.tensor is None for picture in held)
    assert result.decoder == "ffmpeg" and result.output is not None and result.output.is_file()


# --- the reader's logic, with a stand-in for the library ----------------------------------------

#: A stand-in for PyNvVideoCodec's ThreadedDecoder: PyAV decodes to NV12 in host memory and
#: hands out frames in presentation order with their pts, as NVDEC does into GPU memory.
FAKE_LIBRARY = '''
import enum
import av
import numpy as np


class OutputColorType(enum.Enum):
    NATIVE = 0
    RGB = 1


class _Frame:
    def __init__(self, planes, pts):
        self.planes, self.pts = planes, pts

    def __dlpack__(self, **kwargs):
        return self.planes.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.planes.__dlpack_device__()

    def getPTS(self):
        return self.pts


class ThreadedDecoder:
    def __init__(self, path, buffer_size, gpu_id=0, cuda_stream=0, use_device_memory=True,
                 output_color_type=OutputColorType.NATIVE):
        with av.open(path) as container:
            stream = container.streams.video[0]
            frames = [(f.pts, f.reformat(format="nv12").to_ndarray()) for f in container.decode(stream)]
        self.frames = [_Frame(planes, pts) for pts, planes in sorted(frames, key=lambda f: f[0])]

    def get_batch_frames(self, count):
        batch, self.frames = self.frames[:count], self.frames[count:]
        return batch

    def end(self):
        self.frames = []
'''


@pytest.fixture
def fake_library(tmp_path, monkeypatch, fresh_checks):
    package = tmp_path / "fake-site" / "PyNvVideoCodec"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_LIBRARY)
    monkeypatch.syspath_prepend(str(tmp_path / "fake-site"))
    monkeypatch.delitem(sys.modules, "PyNvVideoCodec", raising=False)


@pytest.mark.parametrize("name, args", [
    ("bframes.mp4", ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-f", "lavfi", "-i", "sine", "-t", "2",
                     "-bf", "3", "-c:a", "aac", "-shortest"]),
    ("gaps.mp4", ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-t", "3",
                  "-vf", "setpts='PTS+if(gt(N,20),0.37/TB,0)+if(gt(N,50),0.8/TB,0)'", "-fps_mode", "vfr"]),
    ("late.mp4", ["-f", "lavfi", "-i", "sine", "-itsoffset", "0.23", "-f", "lavfi", "-i",
                  "testsrc2=size=320x180:rate=25", "-t", "2", "-map", "1:v", "-map", "0:a", "-c:a", "aac"]),
    ("phone.mov", ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-t", "2",
                   "-vf", "setpts='N/(29.5*TB)+if(gt(N,30),0.05/TB,0)'", "-fps_mode", "vfr"]),
])
def test_the_reader_gives_ffmpegs_frames_from_the_decoders(tmp_path, fake_library, name, args):
    """NvdecReader's own logic (stream facts, conversion, the constant-rate timeline, the two
    copies of each picture) over decoded NV12 frames with their pts: the frames ffmpeg's reader
    gives, index for index."""
    path = tmp_path / name
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args, "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(path)], check=True)
    info = probe(path)
    with nvcodec.NvdecReader(info, "cpu") as ours, VideoReader(info) as theirs:
        pairs = list(zip(ours, theirs, strict=True))
    for mine, ffmpegs in pairs:
        assert (mine.index, mine.timestamp) == (ffmpegs.index, ffmpegs.timestamp)
        assert mine.device_image is not None and np.array_equal(mine.device_image.tensor.numpy(), mine.image)
        assert np.abs(mine.image.astype(np.int16) - ffmpegs.image).mean() < 1.0, mine.index
    # Every frame's picture is its own (the draw stage paints in place): a repeat is a copy.
    for (one, _), (other, _) in zip(pairs, pairs[1:]):
        assert not np.shares_memory(one.image, other.image)


def test_the_load_time_check_passes_a_decoder_that_reads_as_ffmpeg_does(fake_library):
    nvcodec.check_decoder("cpu")  # no error: same frames, same pictures


def test_nvencs_status_is_named_in_the_message():
    error = RuntimeError("PyNvEncoderCaps : \nError Type : m_nvenc.nvEncOpenEncodeSessionEx(&encodeSessionExParams, "
                         "&hEncoder) returned error 2")
    assert nvcodec._first_line(error).endswith(
        "returned error 2 (NV_ENC_ERR_UNSUPPORTED_DEVICE: this GPU has no NVENC)")


def test_a_decoder_asked_for_by_name_that_does_not_work_stops_the_run_before_any_video(tmp_path):
    from pipeline.cli import get_args_parser, main

    source = make_video(tmp_path / "in.mp4", seconds=0.3, size="96x64")
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(source.read_bytes())
    for target, out in ((source, tmp_path / "o.mp4"), (folder, tmp_path / "out")):
        code = main(get_args_parser().parse_args([str(target), str(out), "--weights", "random", "--device", "cpu",
                                                  "--decoder", "nvdec", "--no-progress"]))
        assert code == 1
        assert not (tmp_path / "o.mp4").exists() and not list((tmp_path / "out").glob("*.mp4"))
