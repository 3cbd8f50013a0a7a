"""A corpus of odd, broken and hostile inputs, made with the bundled ffmpeg, and what each gives.

docs/RELIABILITY.md lists every case with its expected behaviour and the test that checks it.
"""

from __future__ import annotations

import http.server
import random
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from config import Config
from pipeline.cli import get_args_parser, main
from pipeline.runner import run_video
from tests.helpers import StandInEstimator, child_processes, make_video, stream_facts
from workers.decode import VideoReader
from workers.errors import StageError, VideoOpenError
from workers.ffmpeg import FFmpegProcess, ffmpeg_exe
from workers.probe import probe


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def lavfi_video(path: Path, *, size: str = "96x64", seconds: float = 1.0, rate: int = 10,
                codec: list[str] | None = None, audio: bool = False, extra: list[str] | None = None) -> Path:
    args = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:a", "aac"]
    args += codec or ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    ffmpeg(*args, *(extra or []), str(path))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    good = lavfi_video(folder / "good.mp4", seconds=4, rate=25, size="160x120", audio=True, extra=["-g", "25"])
    faststart = folder / "faststart.mp4"
    ffmpeg("-i", str(good), "-c", "copy", "-movflags", "+faststart", str(faststart))
    data, fast = good.read_bytes(), faststart.read_bytes()
    (folder / "zero.mp4").touch()
    (folder / "random.mp4").write_bytes(random.Random(0).randbytes(200_000))
    (folder / "text.mp4").write_text("This is a shopping list, not a video.\n" * 200)
    for percent in (10, 50, 90):
        (folder / f"truncated{percent}.mp4").write_bytes(data[: len(data) * percent // 100])
        (folder / f"faststart_truncated{percent}.mp4").write_bytes(fast[: len(fast) * percent // 100])
    (folder / "no_index.mp4").write_bytes(data[: data.find(b"moov") - 4])
    ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(folder / "audio_only.mp4"))
    cover = folder / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", str(cover))
    ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-i", str(cover), "-map", "0:a", "-map", "1:v",
           "-c:a", "aac", "-c:v", "png", "-disposition:v", "attached_pic", str(folder / "cover_art_only.mp4"))
    rng = random.Random(1)
    light, heavy, dead = bytearray(data), bytearray(data), bytearray(fast)
    middle = len(data) // 2
    light[middle : middle + 1500] = rng.randbytes(1500)
    heavy[len(data) // 5 : len(data) * 4 // 5] = rng.randbytes(len(data) * 4 // 5 - len(data) // 5)
    header = fast.find(b"mdat") + 8
    dead[header:] = bytes(len(fast) - header)  # every frame's data zeroed
    (folder / "damaged_light.mp4").write_bytes(light)
    (folder / "damaged_heavy.mp4").write_bytes(heavy)
    (folder / "no_decodable_frame.mp4").write_bytes(dead)
    return folder


def run_cli(source: Path, output: Path, *extra: str) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(get_args_parser().parse_args([
            str(source), str(output), "--weights", "random", "--device", "cpu", "--min-size", "64",
            "--max-persons", "1", "--no-progress", *extra,
        ]))
    return code, err.getvalue()


FAILING = {
    "zero.mp4": "the file is empty",
    "random.mp4": "cannot open the video",
    "text.mp4": "cannot open the video: not a video file ffmpeg can read (no MP4 header",
    "truncated10.mp4": "moov atom",
    "truncated50.mp4": "moov atom",
    "truncated90.mp4": "moov atom",
    "faststart_truncated10.mp4": "truncated",
    "faststart_truncated50.mp4": "truncated",
    "faststart_truncated90.mp4": "truncated",
    "no_index.mp4": "moov atom",
    "audio_only.mp4": "no video stream",
    "cover_art_only.mp4": "no video stream",
    "damaged_heavy.mp4": "damaged",
    "no_decodable_frame.mp4": "decod",
}


@pytest.mark.parametrize("name, reason", sorted(FAILING.items()))
def test_bad_input_fails_cleanly(corpus, tmp_path, name, reason):
    source = corpus / name
    output = tmp_path / "out.mp4"
    code, err = run_cli(source, output)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith(f"error: {source}") and reason in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing under the final name, no partial file
    assert child_processes() == []


def test_a_lightly_damaged_stretch_is_skipped_with_a_warning(corpus):
    reader = VideoReader(probe(corpus / "damaged_light.mp4"))
    frames = sum(1 for _ in reader)
    assert 90 <= frames <= 100
    assert len(reader.warnings) == 1 and "decoding errors" in reader.warnings[0]


def _run(source: Path, tmp_path: Path, **changes) -> tuple[Config, object]:
    config = Config(input=source, output=tmp_path / "out.mp4", progress=False, end_card_seconds=0, **changes)
    return config, run_video(config, StandInEstimator())


@pytest.mark.parametrize("name, codec", [
    ("vp9.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"]),
    ("av1.mkv", ["-c:v", "libaom-av1", "-cpu-used", "8", "-row-mt", "1"]),
    ("hevc.mp4", ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"]),
    ("ten_bit.mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le"]),
    ("mpeg4.avi", ["-c:v", "mpeg4"]),
])
def test_other_codecs_and_depths_decode(tmp_path, name, codec):
    source = lavfi_video(tmp_path / name, codec=codec)
    config, result = _run(source, tmp_path)
    assert len(result.frames) == 10
    assert stream_facts(config.output)["frames"] == 10


def test_rotated_phone_video_is_processed_and_written_upright(tmp_path):
    plain = lavfi_video(tmp_path / "plain.mp4", size="160x96")
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))
    info = probe(rotated)
    assert (info.width, info.height) == (96, 160)
    first = next(iter(VideoReader(info))).image
    upright = np.rot90(next(iter(VideoReader(probe(plain)))).image, k=1)  # 90 degrees counter-clockwise
    assert first.shape == upright.shape and np.abs(first.astype(int) - upright).mean() < 8
    config, _ = _run(rotated, tmp_path)
    facts = stream_facts(config.output)
    assert (facts["width"], facts["height"]) == (96, 160)
    assert probe(config.output).width == 96  # no rotation left for a player to apply twice


def test_variable_frame_rate_keeps_audio_in_sync(tmp_path):
    source = tmp_path / "vfr.mp4"
    # 6 s at 25 fps with the second 2..3 s dropped: 125 frames over 6 s of audio.
    lavfi_video(source, size="96x64", seconds=6, rate=25, audio=True,
                extra=["-vf", "select='not(between(t,2,3))'", "-fps_mode", "vfr"])
    config, result = _run(source, tmp_path)
    assert probe(source).fps == 25
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(config.output), "-f", "null", "-"],
                         capture_output=True, text=True).stderr
    video_frames = len(result.frames)
    audio_seconds = float(out.split("time=")[-1].split()[0].split(":")[-1])
    drift = abs(video_frames / 25 - audio_seconds)
    assert drift < 0.1, f"video {video_frames / 25:.2f} s against audio {audio_seconds:.2f} s"


def test_several_audio_tracks_keep_the_first(tmp_path):
    source = tmp_path / "two_tracks.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=10:duration=1", "-f", "lavfi", "-i", "sine=f=440:d=1",
           "-f", "lavfi", "-i", "sine=f=880:d=1", "-map", "0", "-map", "1", "-map", "2",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(source))
    config, _ = _run(source, tmp_path)
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(config.output)],
                         capture_output=True, text=True).stderr
    assert out.count("Audio:") == 1


@pytest.mark.parametrize("name", ["ünïcødé 舞蹈.mp4", "with spaces.mp4", "-starts-with-dash.mp4", "colon:name.mp4"])
def test_awkward_file_names(tmp_path, name):
    source = make_video(tmp_path / "plain.mp4", seconds=0.5)
    awkward = tmp_path / name
    shutil.copy(source, awkward)
    output = tmp_path / ("out " + name)
    code, err = run_cli(awkward, output)
    assert code == 0, err
    assert stream_facts(output)["frames"] == 5 + 50


def test_large_frames_keep_the_model_input_bounded(tmp_path):
    source = lavfi_video(tmp_path / "big.mp4", size="3840x2160", seconds=0.2)
    seen = []

    class Recorder(StandInEstimator):
        def predict(self, images):
            seen.append(images[0].shape)
            return super().predict(images)

    config = Config(input=source, output=tmp_path / "out.mp4", progress=False, end_card_seconds=0)
    result = run_video(config, Recorder())
    assert len(result.frames) == 2 and seen[0] == (2160, 3840, 3)
    # 64 MB a queue: 8 slots of 720p (2.6 MB a frame), 2 of 4K (24 MB), not 8 x 24 MB.
    assert config.queue_slots(1280, 720) == 8
    assert config.queue_slots(3840, 2160) == 2


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.requests.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _CountingHandler)
    _CountingHandler.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _CountingHandler.requests
    server.shutdown()


def test_playlists_and_lists_are_refused_and_read_nothing(corpus, tmp_path, loopback_server):
    address, requests = loopback_server
    segment = tmp_path / "secret_segment.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=10:duration=1", "-c:v", "libx264", "-f", "mpegts",
           str(segment))
    playlists = {
        "local.m3u8": f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{segment}\n#EXT-X-ENDLIST\n",
        "network.m3u8": f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{address}/seg.ts\n#EXT-X-ENDLIST\n",
        "playlist_named.mp4": f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{address}/x.ts\n#EXT-X-ENDLIST\n",
        "list.ffconcat": f"ffconcat version 1.0\nfile '{segment}'\n",
    }
    for name, text in playlists.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(VideoOpenError, match=f"{name}: cannot open the video"):
            probe(tmp_path / name)
    assert requests == []  # no network address was contacted
    # The local segment would have decoded had it been read: it is a valid video on its own.
    assert probe(segment).width == 96


def test_a_stalled_ffmpeg_stops_the_run(tmp_path, monkeypatch):
    import signal

    source = make_video(tmp_path / "in.mp4", seconds=2)
    real_start = VideoReader.start

    def start_and_freeze(self):
        real_start(self)
        self._process.process.send_signal(signal.SIGSTOP)  # ffmpeg hangs: no output, no exit

    monkeypatch.setattr(VideoReader, "start", start_and_freeze)
    config = Config(input=source, output=tmp_path / "out.mp4", progress=False, stall_timeout=1.0)
    import time

    began = time.monotonic()
    with pytest.raises(StageError, match="no progress for 1 s"):
        run_video(config, StandInEstimator())
    assert time.monotonic() - began < 6
    assert child_processes() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_a_flood_of_ffmpeg_messages_cannot_block_it(corpus):
    source = corpus / "good.mp4"
    process = FFmpegProcess(["-nostdin", "-loglevel", "trace", "-i", str(source), "-f", "rawvideo", "pipe:1"],
                            stdout=True)
    data = process.stdout.read()
    assert process.wait(timeout=30) == 0
    assert len(data) == 100 * 160 * 120 * 3 // 2  # yuv420p frames all came through
    assert process.stderr_count > 1000  # while ffmpeg wrote thousands of lines (far over a pipe's 64 KiB)
