"""Known answers for the audio alignment (workers/alignment.py, workers/audio.py): synthetic dance
tracks from tests/music.py offset, drifted and degraded as devices do, unrelated songs refused."""

import numpy as np
import pytest

from tests import music
from workers.alignment import NO_MATCH, AlignParams, AudioAlignment, align_audio
from workers.audio import AudioTrack, read_audio

#: The precision goals: median and worst offset error (seconds) over the matched cases.
MEDIAN_ERROR, WORST_ERROR = 0.005, 0.020
#: The 10-minute drift case is in tests/test_alignment_real_audio.py (slow).
CASES = [case for case in music.cases() if "10 min" not in case.name]
ERRORS: dict[str, float] = {}

needs_park = pytest.mark.skipif(not music.PARK.exists(), reason=f"{music.PARK.name} is not in ../shared/videos")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_case_is_aligned_or_refused_as_known(case):
    reference, student, rate = case.make()
    found = align_audio(reference, student, rate)
    if case.offset is None:
        assert not found.matched and found.reason == NO_MATCH
        return
    assert found.matched, found.reason
    error = abs(found.offset_seconds - case.offset)
    ERRORS[case.name] = error
    assert error < WORST_ERROR
    assert found.drift_ppm == pytest.approx(case.drift_ppm, abs=20)
    assert 0 < found.confidence <= 1 and found.windows_used >= 1


def test_the_median_error_over_the_matched_cases_is_within_the_goal():
    if len(ERRORS) < 5:
        pytest.skip("the cases did not run in this process")
    assert float(np.median(list(ERRORS.values()))) < MEDIAN_ERROR


def test_the_times_map_both_ways():
    found = AudioAlignment(True, offset_seconds=-12.5, drift_ppm=500)
    assert found.student_time(20.0) == pytest.approx(-12.5 + 20 * 1.0005)
    assert found.reference_time(found.student_time(np.array([0.0, 33.0]))) == pytest.approx([0.0, 33.0])


def test_silence_and_too_short_an_overlap_are_refused():
    music_ = music.song(20, 8000, 0)
    silent = align_audio(music_, np.zeros(8000 * 20), 8000)
    assert not silent.matched and "silent" in silent.reason
    short = align_audio(music_, music_[:8000], 8000)
    assert not short.matched and "shorter" in short.reason
    # The student holds only the reference's last 2 s, then something else.
    tail = np.concatenate([music_[-2 * 8000:], music.song(20, 8000, 5)])
    assert not align_audio(music_, tail, 8000).matched


def test_bad_arguments_are_rejected_with_the_allowed_range():
    with pytest.raises(ValueError, match="band"):
        AlignParams(band=(300.0, 3000.0))
    with pytest.raises(ValueError, match="shape"):
        align_audio(np.zeros((10, 2)), np.zeros(10), 8000)
    with pytest.raises(ValueError, match="shape"):
        AudioTrack(np.zeros((3, 2), np.float32), 4000)


def test_an_aac_student_read_back_through_read_audio_is_aligned(tmp_path):
    rate = 16000
    reference = music.song(30, rate, 2) * 0.5
    student = music.delay(reference, 3.25, rate)
    track = read_audio(music.aac_roundtrip(student, rate, tmp_path))
    assert track is not None and track.rate == 4000 and track.samples.dtype == np.float32
    from scipy.signal import resample_poly

    found = align_audio(resample_poly(reference, 1, rate // track.rate), track.samples, track.rate)
    assert found.matched, found.reason
    assert abs(found.offset_seconds - 3.25) < 0.005


def test_a_file_without_audio_has_no_track_and_a_bad_file_is_an_audio_error(tmp_path):
    from workers.errors import AudioError

    if music.SILENT_VIDEO.exists():
        assert read_audio(music.SILENT_VIDEO) is None
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(AudioError, match="bad.mp4"):
        read_audio(bad)


@needs_park
def test_the_park_clip_whose_audio_track_is_digital_silence_is_refused_as_silent():
    # The clip carries a 7.7 s AAC stereo track whose every sample is 0: an honest refusal,
    # not an offset found in noise.
    track = read_audio(music.PARK, rate=8000)
    assert track is not None and track.seconds == pytest.approx(7.73, abs=0.05)
    assert not np.any(track.samples)
    student = music.delay(track.samples.astype(np.float64), -1.2, 8000)
    for reference, other in ((track.samples, student), (music.song(20, 8000, 4), track.samples)):
        found = align_audio(reference, other, 8000)
        assert not found.matched and "silent" in found.reason
