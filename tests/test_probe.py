"""The probe (PyAV) on the shared clips and on generated oddities, and what still reads ffmpeg's text."""

import subprocess
from fractions import Fraction

import pytest

from tests.helpers import make_video, need_shared
from workers.decode import decoding_verdict
from workers.errors import DecodeError, EncodeError, VideoOpenError
from workers.ffmpeg import explain_ffmpeg_messages, ffmpeg_exe, last_message
from workers.probe import probe, snap_rate, stream_rate, verify_output


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.mark.parametrize("name, size, fps, frames, video, audio", [
    ("park_two_people_vp9_audio.mp4", (1768, 994), Fraction(30), 230, "vp9", ("aac",)),
    ("lab_three_people_portrait_60fps.mp4", (1088, 1920), Fraction(60), 100, "h264", ()),
    ("pedestrians_msmpeg4_10fps.avi", (768, 576), Fraction(10), 300, "msmpeg4v3", ()),
])
def test_the_shared_clips(name, size, fps, frames, video, audio):
    info = probe(need_shared("videos", name))
    assert (info.width, info.height) == size
    assert info.fps == fps and info.frames == frames and info.expected_frames == frames
    assert info.video_codec == video and info.audio_codecs == audio
    assert info.has_audio is bool(audio) and info.audio_codec == (audio[0] if audio else None)
    assert info.duration == pytest.approx(frames / fps, abs=0.1) and info.rotation == 0


def test_an_ntsc_rate_is_the_exact_fraction(tmp_path):
    source = make_video(tmp_path / "ntsc.mp4", seconds=1, fps="30000/1001")
    assert probe(source).fps == Fraction(30000, 1001)


def test_a_variable_rate_video_is_read_at_its_base_rate(tmp_path):
    source = tmp_path / "vfr.mp4"
    # 6 s at 25 fps with 2..3 s dropped: the average rate is about 20.8, the stream's base rate 25.
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:duration=6", "-vf", "select='not(between(t,2,3))'",
           "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(source))
    assert probe(source).fps == 25


def test_a_rotated_video_reports_its_upright_size(tmp_path):
    plain = make_video(tmp_path / "plain.mp4", seconds=0.5, size="160x96")
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))
    info = probe(rotated)
    assert info.rotation in (90, 270) and (info.width, info.height) == (96, 160)
    assert probe(plain).rotation == 0


def test_no_audio_and_two_audio_tracks(tmp_path):
    silent = make_video(tmp_path / "silent.mp4", seconds=0.5)
    assert probe(silent).audio_codecs == () and probe(silent).has_audio is False
    two = tmp_path / "two.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=10:duration=1", "-f", "lavfi", "-i", "sine=duration=1",
           "-f", "lavfi", "-i", "sine=frequency=880:duration=1", "-map", "0:v", "-map", "1:a", "-map", "2:a",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a:0", "aac", "-c:a:1", "flac", str(two))
    info = probe(two)
    assert info.audio_codecs == ("aac", "flac") and info.audio_codec == "aac" and info.has_audio


def test_the_probe_reads_local_files_only(tmp_path):
    link = tmp_path / "remote.mp4"
    link.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n")
    with pytest.raises(VideoOpenError, match="remote.mp4: cannot open the video"):
        probe(link)


def test_verify_output_counts_the_frames_and_sees_the_audio(tmp_path):
    source = make_video(tmp_path / "v.mp4", seconds=1.2, fps="10", audio=True)
    assert verify_output(source) == (12, True)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(EncodeError, match="broken.mp4: cannot read back the encoded file"):
        verify_output(broken)


@pytest.mark.parametrize("average, base, expected", [
    (Fraction(30), Fraction(30), Fraction(30)),
    (Fraction(30000, 1001), Fraction(30000, 1001), Fraction(30000, 1001)),
    (Fraction(1798200, 60001), Fraction(30000, 1001), Fraction(30000, 1001)),  # a rounded duration
    (Fraction(125, 6), Fraction(25), Fraction(25)),  # variable rate: the base rate
    (Fraction(25), Fraction(90000), Fraction(25)),  # a base rate that is a time base, not a rate
    (None, Fraction(24), Fraction(24)),
    (None, None, None),
])
def test_stream_rate(average, base, expected):
    assert stream_rate(average, base) == expected


def test_snap_rate_keeps_plain_fractions_and_snaps_long_ones():
    assert snap_rate(Fraction(24000, 1001)) == Fraction(24000, 1001)
    assert snap_rate(Fraction(2500001, 100000)) == 25
    assert snap_rate(Fraction(1234567, 100000)).denominator <= 1001


# Canned ffmpeg output: what the decoder's and the messages' text handling makes of it.
PARTIAL = "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5581d2c4e3c0] stream 0, offset 0x30: partial file"
DAMAGED = "[h264 @ 0x55d6a1b3f240] error while decoding MB 4 2, bytestream -7"


def test_last_message_drops_the_prefix_and_the_repeats():
    assert last_message([DAMAGED, "    Last message repeated 3 times"]) == "error while decoding MB 4 2, bytestream -7"
    assert last_message([]) == "no message from ffmpeg"


@pytest.mark.parametrize("lines, expected", [
    (["[mov,mp4,m4a,3gp,3g2,mj2 @ 0x1] moov atom not found"], "the MP4 index (moov atom) is missing"),
    (["[hls @ 0x1] Format not on whitelist 'mov,mp4'"], "a playlist or list format, refused"),
    (["Invalid data found when processing input"], "not a video file ffmpeg can read"),
    (["[AVIOContext @ 0x1] Some new complaint"], "Some new complaint"),
    ([], "ffmpeg gave no reason"),
])
def test_explain_ffmpeg_messages(lines, expected):
    assert expected in explain_ffmpeg_messages(lines)


def test_decoding_verdict_on_canned_stderr(tmp_path):
    path = tmp_path / "v.mp4"
    assert decoding_verdict(path, 0, 100, [], 0) is None
    assert "3 decoding errors; damaged frames were concealed" in decoding_verdict(path, 0, 100, [DAMAGED] * 3, 3)
    with pytest.raises(DecodeError, match="truncated .its data ends after 40 frames"):
        decoding_verdict(path, 0, 40, [PARTIAL], 1)
    with pytest.raises(DecodeError, match="damaged: 60 decoding errors, more than the 50 tolerated"):
        decoding_verdict(path, 0, 100, [DAMAGED], 60)
    with pytest.raises(DecodeError, match="no frame could be decoded .error while decoding MB"):
        decoding_verdict(path, 0, 0, [DAMAGED], 1)
    with pytest.raises(DecodeError, match="decoding failed after 7 frames"):
        decoding_verdict(path, 1, 7, [DAMAGED], 1)
