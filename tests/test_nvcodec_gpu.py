"""The GPU video path against the ffmpeg path (issue 27): runs where CUDA and PyNvVideoCodec work,
skipped elsewhere (CI has no GPU; the GPU check runs this file on a GPU machine:
`python -m pytest tests/test_nvcodec_gpu.py`).

- NVDEC's frames: the same count, the same frame at each index (ffmpeg's constant-rate
  timeline) and the same pictures within a level, on generated clips (B-frames, variable rate,
  a video starting after its audio, 25/30/60 fps, tagged BT.709) and the real clips at hand;
- the model on NVDEC's GPU frames: the same persons, keypoints within 1 px on average;
- the whole run: frame counts and times exact, scores within 0.1, the audio where it was;
- NVENC, where this GPU has it (the H100 and H200 have none: skipped there, saying so).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from config import Config  # noqa: E402
from workers import nvcodec  # noqa: E402
from workers.decode import VideoReader  # noqa: E402
from workers.ffmpeg import ffmpeg_exe  # noqa: E402
from workers.probe import probe, verify_output  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "cuda:0"


def _nvdec_or_skip() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    try:
        nvcodec.check_decoder(DEVICE)
    except nvcodec.CodecUnavailable as error:
        pytest.skip(f"NVDEC does not work here: {error}")


pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _asset(name: str) -> Path | None:
    """A file of ../shared, or of the GPU kit the GPU check carries (which has no ../shared)."""
    for path in (ROOT.parent / "shared" / "videos" / name, ROOT.parent / "shared" / "models" / name,
                 ROOT / ".gpu-kit" / name):
        if path.is_file():
            return path
    return None


def _clip(path: Path, *args: str) -> Path:
    subprocess.run([ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", *args, str(path)], check=True)
    return path


GENERATED = {
    "bframes-1080p-audio.mp4": ("-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-f", "lavfi", "-i",
                                "sine", "-t", "3", "-c:v", "libx264", "-preset", "medium", "-bf", "3",
                                "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"),
    "gaps-720p.mp4": ("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", "3", "-vf",
                      "setpts='PTS+if(gt(N,20),0.37/TB,0)'", "-fps_mode", "vfr", "-c:v", "libx264",
                      "-pix_fmt", "yuv420p"),
    "late-25fps.mp4": ("-f", "lavfi", "-i", "sine", "-itsoffset", "0.23", "-f", "lavfi", "-i",
                       "testsrc2=size=640x360:rate=25", "-t", "2", "-map", "1:v", "-map", "0:a", "-c:v", "libx264",
                       "-pix_fmt", "yuv420p", "-c:a", "aac"),
    "bt709-60fps.mp4": ("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=60", "-t", "2", "-c:v", "libx264",
                        "-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries", "bt709",
                        "-color_trc", "bt709"),
    "hevc.mp4": ("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "2", "-c:v", "libx265",
                 "-pix_fmt", "yuv420p", "-x265-params", "log-level=error"),
}
REAL = ("park_two_people_vp9_audio.mp4", "clip.mp4", "lab_three_people_side_camera_60fps.mp4")


def _videos(tmp_path: Path) -> list[Path]:
    videos = []
    for name, args in GENERATED.items():
        try:
            videos.append(_clip(tmp_path / name, *args))
        except subprocess.CalledProcessError:  # an encoder this ffmpeg lacks (libx265)
            continue
    return videos + [path for name in REAL if (path := _asset(name)) is not None]


def test_nvdec_gives_ffmpegs_frames(tmp_path):
    _nvdec_or_skip()
    for video in _videos(tmp_path):
        info = probe(video)
        facts = nvcodec.stream_facts(info)
        if facts.unsuitable is not None:
            continue
        with nvcodec.NvdecReader(info, DEVICE, facts) as ours, VideoReader(info) as theirs:
            pairs = list(zip(ours, theirs, strict=True))  # strict: the same number of frames
        for mine, ffmpegs in pairs:
            assert mine.index == ffmpegs.index and mine.timestamp == ffmpegs.timestamp
            assert mine.device_image is not None and mine.device_image.tensor is not None
            assert np.array_equal(mine.device_image.tensor.cpu().numpy(), mine.image)
            difference = np.abs(mine.image.astype(np.int16) - ffmpegs.image).mean()
            assert difference < 1.0, (video.name, mine.index, difference)


def _yolo_or_skip() -> Path:
    weights = _asset("yolo11n-pose.pt")
    if weights is None:
        pytest.skip("no YOLO weights (../shared or the GPU kit)")
    return weights


def test_the_model_on_nvdec_frames_finds_the_same_keypoints(tmp_path):
    _nvdec_or_skip()
    video = _asset("park_two_people_vp9_audio.mp4") or _asset("clip.mp4")
    if video is None:
        pytest.skip("no real clip (../shared or the GPU kit)")
    from workers.models import load_estimator

    info = probe(video)
    for model, weights in (("yolo", str(_yolo_or_skip())), ("keypointrcnn", "random")):
        estimator = load_estimator(Config(input=video, output=tmp_path / "o.mp4", model=model, weights=weights,
                                          device=DEVICE, person_threshold=0.3 if model == "yolo" else 0.0,
                                          max_persons=4))
        with nvcodec.NvdecReader(info, DEVICE) as ours, VideoReader(info) as theirs:
            pairs = [pair for pair, _ in zip(zip(ours, theirs), range(48))][::6]
        errors = []
        for mine, ffmpegs in pairs:
            [found] = estimator.predict([mine.device_image.tensor])
            [expected] = estimator.predict([ffmpegs.image])
            if len(found.boxes) != len(expected.boxes) or not len(found.boxes):
                continue
            seen = (found.keypoint_scores > 0.5) & (expected.keypoint_scores > 0.5)
            if seen.any():
                errors.append(float(np.abs(found.keypoints - expected.keypoints)[seen].mean()))
        assert errors and float(np.mean(errors)) < 1.0, (model, errors)


def test_a_run_on_nvdec_equals_the_ffmpeg_run(tmp_path):
    _nvdec_or_skip()
    video = _asset("park_two_people_vp9_audio.mp4") or _asset("clip.mp4")
    if video is None:
        pytest.skip("no real clip (../shared or the GPU kit)")
    source = _clip(tmp_path / "in.mp4", "-i", str(video), "-t", "6", "-c:v", "libx264", "-c:a", "aac")
    from pipeline.runner import run_video
    from workers.models import load_estimator

    weights = str(_yolo_or_skip())
    results = {}
    for decoder in ("ffmpeg", "nvdec"):
        config = Config(input=source, output=tmp_path / decoder / "out.mp4", model="yolo", weights=weights,
                        device=DEVICE, decoder=decoder, encoder="libx264", progress=False, end_card_seconds=0.0,
                        save_poses=False)
        results[decoder] = run_video(config, load_estimator(config))
    ffmpegs, ours = results["ffmpeg"], results["nvdec"]
    assert (ffmpegs.decoder, ours.decoder) == ("ffmpeg", "nvdec")
    assert [(f.index, f.timestamp) for f in ours.frames] == [(f.index, f.timestamp) for f in ffmpegs.frames]
    same_count = np.mean([a.persons == b.persons for a, b in zip(ours.frames, ffmpegs.frames)])
    assert same_count >= 0.95, same_count
    both = [abs(a.score - b.score) for a, b in zip(ours.frames, ffmpegs.frames)
            if a.score is not None and b.score is not None]
    assert both and float(np.mean(both)) < 0.1, (np.mean(both), max(both))
    assert ours.total is not None and ffmpegs.total is not None and abs(ours.total - ffmpegs.total) < 0.1
    frames_ours, audio_ours = verify_output(ours.output)
    frames_theirs, audio_theirs = verify_output(ffmpegs.output)
    assert (frames_ours, audio_ours) == (frames_theirs, audio_theirs) == (len(ours.frames), True)
    assert _stream_times(ours.output) == pytest.approx(_stream_times(ffmpegs.output), abs=1e-3)


def _stream_times(path: Path) -> list[float]:
    """Each stream's start and duration, seconds: the audio in sync means these agree."""
    import av

    with av.open(str(path)) as container:
        return [float(value * stream.time_base) for stream in container.streams
                for value in (stream.start_time or 0, stream.duration or 0)]


def test_nvenc_writes_the_same_video_where_this_gpu_has_it(tmp_path):
    _nvdec_or_skip()
    try:
        nvcodec.check_encoder(DEVICE)
    except nvcodec.CodecUnavailable as error:
        pytest.skip(f"NVENC does not work on this GPU ({torch.cuda.get_device_name(0)}): {error}")
    source = _clip(tmp_path / "in.mp4", *GENERATED["bframes-1080p-audio.mp4"])
    info = probe(source)
    with VideoReader(info) as reader, nvcodec.NvencWriter(tmp_path / "out.mp4", info.width, info.height, info.fps,
                                                          audio_from=info, device=DEVICE) as writer:
        for frame in reader:
            writer.write(frame.image)
        writer.finish()
    assert verify_output(tmp_path / "out.mp4") == (info.frames, True)
