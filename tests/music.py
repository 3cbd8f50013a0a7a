"""Known-answer music for the audio alignment: synthetic dance tracks and what devices do to them.

A track is a drum loop that repeats every bar at 120 BPM (the same kick, snare and hi-hat samples
each time), a bass line and chords that repeat every 4 and 2 bars, and a lead that improvises
over them, so that the loudness envelope repeats every bar while the waveform does not. Two
seeds give two songs of the same tempo and style. The devices: a start offset, a clock that runs
fast (resampled by 1 + ppm), echo, noise, a phone's 300-3400 Hz band, AAC.

    python -m tests.music --table     # every case of tests/test_alignment.py: errors per case (docs)
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

BPM = 120.0
BEAT = 60.0 / BPM
BAR = 4 * BEAT
SHARED = Path(__file__).resolve().parents[2] / "shared"
PARK = SHARED / "videos" / "park_two_people_vp9_audio.mp4"
SILENT_VIDEO = SHARED / "videos" / "lab_three_people_portrait_60fps.mp4"


def _note(freq: float, seconds: float, rate: int, rng: np.random.Generator, harmonics: int = 4) -> np.ndarray:
    """A plucked note: a few harmonics with random phases and a decaying envelope."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * freq * k * t + rng.uniform(0, 2 * np.pi)) / k
               for k in range(1, harmonics + 1) if freq * k < rate / 2)
    return np.asarray(tone) * np.exp(-3.0 * t / seconds) * np.minimum(1.0, t * 200)


def song(seconds: float, rate: int = 8000, seed: int = 0, kit_seed: int | None = None) -> np.ndarray:
    """A dance track (mono float64, peak about 1).

    Args:
        seconds: Length (seconds).
        rate: Sample rate (Hz).
        seed: The music (bass, chords, lead); another seed is another song of the same style.
        kit_seed: The drum samples; by default the song's seed. Two songs with the same kit
            share every drum hit, a harder case for telling them apart.
    """
    rng = np.random.default_rng(seed)
    kit = np.random.default_rng(seed if kit_seed is None else kit_seed)
    n = int(seconds * rate)
    out = np.zeros(n + 2 * rate)
    t = np.arange(int(0.25 * rate)) / rate
    kick = np.sin(2 * np.pi * np.cumsum(kit.uniform(45, 60) + 120 * np.exp(-t * 30)) / rate) * np.exp(-t * 12)
    snare_noise = signal.lfilter(*signal.butter(2, [1500 / (rate / 2), 0.9], "band"), kit.normal(size=len(t)))
    snare = snare_noise * np.exp(-t * 25) + 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-t * 30)
    hat_t = np.arange(int(0.05 * rate)) / rate
    hat = signal.lfilter(*signal.butter(2, 0.6, "high"), kit.normal(size=len(hat_t))) * np.exp(-hat_t * 80)
    root = rng.choice([110.0, 123.5, 130.8, 146.8])
    scale = root * 2 ** (np.array([0, 2, 3, 5, 7, 8, 10, 12, 14, 15]) / 12)
    progression = rng.choice(scale[:6], 4)
    chords = [rng.choice(scale, 3, replace=False) for _ in range(2)]
    eighth = BEAT / 2
    bars = int(np.ceil(seconds / BAR))
    for bar in range(bars):
        start = bar * BAR
        for beat in range(4):
            at = int((start + beat * BEAT) * rate)
            out[at:at + len(kick)] += 0.9 * kick
            if beat % 2:
                out[at:at + len(snare)] += 0.6 * snare
        for k in range(8):
            at = int((start + k * eighth) * rate)
            out[at:at + len(hat)] += rng.uniform(0.1, 0.3) * hat
        bass = _note(progression[bar % 4] / 2, BAR / 2, rate, rng)
        for half in range(2):
            at = int((start + half * BAR / 2) * rate)
            out[at:at + len(bass)] += 0.5 * bass
        for freq in chords[(bar // 2) % 2]:
            pad = _note(freq * 2, BAR, rate, rng, harmonics=3)
            at = int(start * rate)
            out[at:at + len(pad)] += 0.15 * pad
        for k in range(8):
            if rng.random() < 0.7:
                lead = _note(rng.choice(scale) * 4, eighth, rate, rng, harmonics=2)
                at = int((start + k * eighth) * rate)
                out[at:at + len(lead)] += 0.2 * lead
    out = out[:n]
    return out / max(float(np.max(np.abs(out))), 1e-12)


def delay(samples: np.ndarray, seconds: float, rate: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """`samples` recorded from `seconds` before their start (negative: cut off at the start);
    the samples before the music begin are quiet room noise."""
    shift = int(round(seconds * rate))
    if shift >= 0:
        noise = (rng or np.random.default_rng(1)).normal(scale=1e-3, size=shift)
        return np.concatenate([noise, samples])
    return samples[-shift:]


def clock(samples: np.ndarray, ppm: float) -> np.ndarray:
    """`samples` as recorded by a clock that runs `ppm` parts per million fast: every second of
    the music lasts 1 + ppm * 1e-6 seconds of samples."""
    scale = 1 + ppm * 1e-6
    count = int(len(samples) * scale)
    return np.interp(np.arange(count) / scale, np.arange(len(samples)), samples)


def echo(samples: np.ndarray, rate: int, taps: tuple[tuple[float, float], ...] = ((0.023, 0.6), (0.061, 0.4),
                                                                                  (0.137, 0.25))) -> np.ndarray:
    """`samples` in a room: delayed (seconds), attenuated copies added."""
    out = samples.copy()
    for seconds, gain in taps:
        shift = int(seconds * rate)
        out[shift:] += gain * samples[:-shift]
    return out


def noise(samples: np.ndarray, snr_db: float, seed: int = 7) -> np.ndarray:
    """`samples` with white noise at `snr_db` dB below (above, when negative) their power."""
    rng = np.random.default_rng(seed)
    power = float(np.mean(samples**2))
    return samples + rng.normal(scale=np.sqrt(power / 10 ** (snr_db / 10)), size=len(samples))


def phone(samples: np.ndarray, rate: int) -> np.ndarray:
    """`samples` through a phone's band: 300-3400 Hz (or up to just below Nyquist)."""
    high = min(3400.0, 0.45 * rate)
    return signal.sosfilt(signal.butter(4, [300, high], "band", fs=rate, output="sos"), samples)


def aac_roundtrip(samples: np.ndarray, rate: int, folder: Path, name: str = "student") -> Path:
    """`samples` encoded to AAC in an .m4a through ffmpeg (written to `folder`); the file's path."""
    from workers.ffmpeg import ffmpeg_exe

    path = folder / f"{name}.m4a"
    pcm = (np.clip(samples, -1, 1) * 32000).astype("<i2").tobytes()
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "-",
                    "-c:a", "aac", "-b:a", "96k", str(path)], input=pcm, check=True)
    return path


@dataclass(frozen=True)
class Case:
    """A teacher/student pair with its known answer.

    Attributes:
        name: What the case shows.
        make: Returns (reference, student, rate Hz); built on demand (some take a second).
        offset: The student's time (seconds) of the reference's time 0; None for a pair that
            must be refused.
        drift_ppm: The student's clock's drift (parts per million).
    """

    name: str
    make: Callable[[], tuple[np.ndarray, np.ndarray, int]]
    offset: float | None
    drift_ppm: float = 0.0


def _pair(seconds: float, offset: float, *, rate: int = 8000, seed: int = 0, ppm: float = 0.0,
          student_seconds: float | None = None, device: Callable[[np.ndarray], np.ndarray] | None = None,
          other_seed: int | None = None, kit_seed: int | None = None) -> Callable[[], tuple]:
    def make() -> tuple[np.ndarray, np.ndarray, int]:
        music = song(seconds, rate, seed)
        reference = music
        played = music if other_seed is None else song(seconds, rate, other_seed, kit_seed)
        student = delay(clock(played, ppm), offset, rate)
        if student_seconds is not None:
            student = student[: int(student_seconds * rate)]
        if device is not None:
            student = device(student)
        return reference, student, rate
    return make


def cases() -> list[Case]:
    """The known-answer cases of the fast tests (short signals; the drift cases are minutes long
    at 4000 Hz)."""
    r = 8000
    return [
        Case("offset +2.5 s", _pair(30, 2.5), 2.5),
        Case("offset -1.75 s (student started late)", _pair(30, -1.75), -1.75),
        Case("offset +75 s, student longer", _pair(40, 75.0, student_seconds=120), 75.0),
        Case("offset -70 s, student shorter", _pair(100, -70.0, student_seconds=25), -70.0),
        Case("partial overlap: student starts 20 s before the end", _pair(30, -22.0, student_seconds=30), -22.0),
        Case("echo", _pair(30, 1.3, device=lambda s: echo(s, r)), 1.3),
        Case("noise at -5 dB SNR", _pair(30, 0.7, device=lambda s: noise(s, -5)), 0.7),
        Case("phone band 300-3400 Hz", _pair(30, -3.1, device=lambda s: phone(s, r)), -3.1),
        Case("echo + phone + noise 0 dB", _pair(30, 4.2, device=lambda s: noise(phone(echo(s, r), r), 0)), 4.2),
        Case("drift +200 ppm, 5 min", _pair(300, 12.0, rate=4000, ppm=200), 12.0, 200),
        Case("drift -500 ppm, 5 min", _pair(300, -8.0, rate=4000, ppm=-500), -8.0, -500),
        Case("drift +1000 ppm, 10 min", _pair(600, 3.0, rate=4000, ppm=1000), 3.0, 1000),
        Case("unrelated song, same tempo", _pair(30, 0.0, other_seed=11), None),
        Case("unrelated song, 2 min", _pair(120, 0.0, rate=4000, other_seed=13), None),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="store_true", help="print the error of every case (default: on)")
    parser.parse_args(argv)
    from workers.alignment import align_audio

    print("| case | matched | offset error (ms) | drift error (ppm) | confidence | peak ratio | windows | time (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for case in cases():
        reference, student, rate = case.make()
        started = time.process_time()
        found = align_audio(reference, student, rate)
        cost = time.process_time() - started
        if case.offset is None or not found.matched:
            error, drift = "", ""
        else:
            error = f"{(found.offset_seconds - case.offset) * 1000:+.2f}"
            drift = f"{found.drift_ppm - case.drift_ppm:+.1f}"
        print(f"| {case.name} | {found.matched} | {error} | {drift} | {found.confidence:.2f} | "
              f"{found.peak_ratio:.1f} | {found.windows_used}/{found.windows_total} | {cost:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
