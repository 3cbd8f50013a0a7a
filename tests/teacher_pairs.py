"""Known-answer footage for "against the teacher": teacher and students' videos with the truth.

The dancer on the park clip's roof (his jumping jacks, played forwards then backwards: 8 s at
30 fps, looped) is cut out as a rectangle with his own background. The teacher's video shows
him alone on a grey canvas; the students' video shows 2 to 4 copies of him side by side, each
on time or a known number of frames late (or early) against the teacher at the same moment of
the music. One student may have late arms: above the hip line his rectangle comes from a copy
k frames later than below it, so his legs keep time and his arms do not.

Both recordings hear the same synthetic dance music (`music`) but start at different moments,
and the students' device clock may drift: a moment the teacher's clock reads t appears in the
students' video at

    t_student = offset_seconds + t * (1 + drift_ppm * 1e-6)

The students' side may hear the music through echo, noise or a phone-like band; the teacher
may have other music, no audio, a mirrored picture (facing the class), another frame rate;
the students' video may have a variable frame rate (frames dropped, timestamps kept).

Every frame is composed in numpy from the dance's frames and the case's clock, then encoded
with the bundled ffmpeg, so the truth is exact to the frame; `check_pair` reads the files back
and measures each copy's lag and the audio's offset from the pixels and the samples alone.

    python -m tests.teacher_pairs [FOLDER] [--cases NAME...]   # build, run the CLI, print the table
    python -m tests.teacher_pairs [FOLDER] --pairs-only          # only build the files

needs ../shared (the clip, and for the table the model) and the optional ultralytics package.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import wave
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tests.composites import PARK, WEIGHTS
from workers.ffmpeg import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[1]
#: The limbs the reference report names; the arms are what a late upper body makes late. The
#: head and the torso (shoulders late, hips on time) of the student with late arms may go
#: either way: neither named nor unnamed counts against the tool.
LIMBS = ("left_arm", "right_arm", "left_leg", "right_leg", "head", "torso")
ARMS = ("left_arm", "right_arm")
EITHER_WAY = ("head", "torso")

#: The dance's own rate and length: forwards 4 s, then backwards 4 s, then again.
SOURCE_FPS = 30
SOURCE_FRAMES = 240
#: The roof crop of the park clip (width, height, x, y).
ROOF = (520, 480, 330, 0)
#: The hip line as a share of the rectangle's height, from top: YOLO11n-pose puts the hips
#: at 218..297 px of the 480 (median 258) as he jumps; the elbows are above it but for the
#: lowest arm positions, the knees below it (310..366 px).
HIP_LINE = 258 / 480
GREY = 128
AUDIO_KINDS = ("same", "other", "none")
DEGRADATIONS = ("echo", "noise", "phone")
#: The students' audio: the music at this signal-to-noise ratio (dB) with "noise".
NOISE_SNR_DB = -5.0
#: ffmpeg audio filters of the degradations: a room's echo, a phone's band. The band's filters
#: delay the sound by about 1.5 ms (measured by `check_pair`): an aligner that lands there is right.
AUDIO_FILTERS = {"echo": "aecho=0.8:0.8:70|190:0.5|0.3", "phone": "highpass=f=300,highpass=f=300,"
                 "lowpass=f=3400,lowpass=f=3400"}
#: Frames the variable-rate students' video drops: one in seven, and half a second at 3 s.
VFR_SELECT = "select='not(eq(mod(n,7),3))*not(between(t,3,3.5))'"
#: Sample rates: the teacher's device records at 48 kHz, the students' at 44.1 kHz.
TEACHER_RATE, STUDENT_RATE = 48000, 44100
#: World time at which the earlier of the two recordings starts (music plays from 0).
LEAD_IN = 1.37


def music(seconds: float, seed: int, rate: int = TEACHER_RATE) -> np.ndarray:
    """Dance-like music: drums repeating every bar, bass and chords every four bars, a melody
    that never repeats.

    About 120 BPM (the seed moves it by up to 6 BPM). The drums and the bass make the music
    locally periodic, as pop music is; the melody (a seeded random walk over a pentatonic
    scale) makes every bar different, so the whole recording matches itself at one offset only.

    Args:
        seconds: Length in seconds.
        seed: Everything random (tempo, bass line, chords, melody) follows it.
        rate: Samples per second.

    Returns:
        (round(seconds * rate),) float32 mono samples in -1..1.
    """
    rng = np.random.default_rng(seed)
    beat = 60.0 / (120.0 + rng.uniform(-6.0, 6.0))
    out = np.zeros(round(seconds * rate) + rate)
    t = np.arange(round(0.6 * rate)) / rate

    def note(freq: float, length: float, decay: float, harmonics: Sequence[float] = (1.0,)) -> np.ndarray:
        tt = t[: round(length * rate)]
        tone = sum(a * np.sin(2 * np.pi * freq * (h + 1) * tt) for h, a in enumerate(harmonics))
        return tone * np.exp(-decay * tt) * np.minimum(1.0, tt * 200)

    def add(start: float, sound: np.ndarray, gain: float) -> None:
        at = round(start * rate)
        if at < len(out):
            end = min(len(out), at + len(sound))
            out[at:end] += gain * sound[: end - at]

    kick = np.sin(2 * np.pi * (50 * t + 4.0 * (1 - np.exp(-25 * t)))) * np.exp(-10 * t)
    snare_noise = rng.standard_normal(len(t))
    snare = (snare_noise * np.exp(-25 * t) + 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-20 * t))
    hat = np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-90 * t)
    scale = np.array([0, 3, 5, 7, 10])  # minor pentatonic, semitones
    roots = rng.choice([0, 3, 5, 7, 8, 10], size=4)
    roots[0] = 0
    step = 0
    for k in range(int(seconds / beat) + 2):
        start = k * beat
        add(start, kick if k % 2 == 0 else snare, 0.9 if k % 2 == 0 else 0.5)
        add(start, hat, 0.15)
        add(start + beat / 2, hat, 0.1)
        root = roots[(k // 4) % 4]
        bass = 55.0 * 2 ** (root / 12)
        add(start, note(bass, beat / 2, 6, (1.0, 0.5, 0.3)), 0.35)
        add(start + beat / 2, note(bass * (2 if k % 4 == 3 else 1), beat / 2, 6, (1.0, 0.5, 0.3)), 0.3)
        if k % 4 == 0:
            for third in (0, 3 if root in (0, 5, 7) else 4, 7):
                add(start, note(220.0 * 2 ** ((root + third) / 12), 4 * beat, 1.2), 0.08)
        step = int(np.clip(step + rng.integers(-2, 3), 0, 9))
        if rng.random() < 0.8:
            degree = scale[step % 5] + 12 * (step // 5)
            add(start + (beat / 2 if rng.random() < 0.3 else 0.0),
                note(440.0 * 2 ** (degree / 12), beat, 5, (1.0, 0.3)), 0.25)
    out = out[: round(seconds * rate)]
    return (0.9 * out / max(1e-9, float(np.abs(out).max()))).astype(np.float32)


@dataclass(frozen=True)
class PairCase:
    """A teacher's video and a students' video to make.

    Attributes:
        name: The case's name (the files are NAME-teacher.mp4 and NAME-students.mp4).
        lags: Each student's lag behind the teacher, in the dance's frames (1/30 s; negative:
            ahead), left to right; 2 to 4 students.
        late_arms: (student index, frames): that student's upper body (above the hip line) is
            this many frames later than his legs, which keep his lag.
        offset: Seconds: where the teacher's time 0 falls in the students' video (positive:
            the students started recording first).
        drift_ppm: The students' clock runs this much fast: their whole video (picture and
            sound) is stretched by 1 + drift_ppm * 1e-6.
        teacher_fps: The teacher's frame rate.
        student_fps: The students' frame rate (nominal, with `variable_rate`).
        variable_rate: The students' video drops frames (`VFR_SELECT`) and keeps the others'
            timestamps.
        audio: The teacher's sound: "same" music as the students, "other" music, or "none".
        degradations: What the students' microphone does to the music: "echo", "noise"
            (at NOISE_SNR_DB), "phone" (300..3400 Hz); both tracks are AAC.
        mirrored: The teacher's picture is flipped left to right (he faces the class).
        teacher_seconds: Length of the teacher's video.
        student_seconds: Length of the students' video.
        height: The dancer's rectangle's height in pixels (the canvas is as tall).
        long: Slow to run through the model: the tests leave it out, the table runs it.
        give_offset: The table gives the tool the true offset (`--offset`).
        seed: The music's seed (the teacher's "other" music takes seed + 1000).
    """

    name: str
    lags: tuple[int, ...] = (0, 6)
    late_arms: tuple[int, int] | None = None
    offset: float = 3.2
    drift_ppm: float = 0.0
    teacher_fps: int = 30
    student_fps: int = 30
    variable_rate: bool = False
    audio: str = "same"
    degradations: tuple[str, ...] = ()
    mirrored: bool = False
    teacher_seconds: float = 10.0
    student_seconds: float = 12.0
    height: int = 240
    long: bool = False
    give_offset: bool = False
    seed: int = 1

    def __post_init__(self) -> None:
        if not 2 <= len(self.lags) <= 4:
            raise ValueError(f"{self.name}: lags must name 2 to 4 students, got {len(self.lags)}")
        if self.late_arms is not None and not 0 <= self.late_arms[0] < len(self.lags):
            raise ValueError(f"{self.name}: late_arms names student {self.late_arms[0]}, "
                             f"expected 0..{len(self.lags) - 1}")
        if self.audio not in AUDIO_KINDS:
            raise ValueError(f"{self.name}: audio must be one of {AUDIO_KINDS}, got {self.audio!r}")
        unknown = set(self.degradations) - set(DEGRADATIONS)
        if unknown:
            raise ValueError(f"{self.name}: unknown degradations {sorted(unknown)}, expected {DEGRADATIONS}")
        if self.height % 2 or not 48 <= self.height <= 480:
            raise ValueError(f"{self.name}: height must be even, 48..480 px, got {self.height}")
        for fps in (self.teacher_fps, self.student_fps):
            if not 10 <= fps <= 120:
                raise ValueError(f"{self.name}: frame rates must be 10..120, got {fps}")


@dataclass(frozen=True)
class StudentTruth:
    """One student copy on the students' canvas.

    Attributes:
        x_range: (x0, x1) of his rectangle on the canvas, pixels.
        lag_ms: His lag behind the teacher (his legs' lag, for the one with late arms), ms;
            positive: behind.
        upper_lag_ms: His upper body's lag behind the teacher, ms (= lag_ms but for late arms).
    """

    x_range: tuple[int, int]
    lag_ms: float
    upper_lag_ms: float


@dataclass(frozen=True)
class PairTruth:
    """What the tool should find in a pair.

    Attributes:
        offset_seconds: Where the teacher's time 0 falls in the students' video, seconds.
        drift_ppm: The students' clock against the teacher's: t_student = offset_seconds +
            t_teacher * (1 + drift_ppm * 1e-6).
        students: Each copy, left to right.
        late_arms_student: Index into `students` of the one with late arms, or None.
        late_arms_ms: How much later his upper body is than his legs, ms (0 without).
        mirrored: The teacher's picture is mirrored.
        audio: "same", "other" or "none" (the teacher's sound).
        teacher_x_range: (x0, x1) of the teacher's rectangle on his canvas, pixels (before
            the mirroring: the mirror image spans width - x1 .. width - x0).
        teacher_fps: The teacher's frame rate.
        student_fps: The students' (nominal) frame rate.
        teacher_size: (width, height) of the teacher's canvas, pixels.
    """

    offset_seconds: float
    drift_ppm: float
    students: tuple[StudentTruth, ...]
    late_arms_student: int | None
    late_arms_ms: float
    mirrored: bool
    audio: str
    teacher_x_range: tuple[int, int]
    teacher_fps: int
    student_fps: int
    teacher_size: tuple[int, int]

    def student_seconds(self, teacher_seconds: np.ndarray | float) -> np.ndarray:
        """Where moments of the teacher's video (seconds) fall in the students' video."""
        return self.offset_seconds + np.asarray(teacher_seconds, dtype=np.float64) * (1 + self.drift_ppm * 1e-6)


FRAME_MS = 1000.0 / SOURCE_FPS

CASES = {case.name: case for case in (
    # The plain case: the students started recording 3.2 s before the teacher.
    PairCase("duo", lags=(0, 6)),
    # The students started 2.5 s after the teacher, and their clock runs 300 ppm fast.
    PairCase("trio_started_late", lags=(0, 3, 9), offset=-2.5, drift_ppm=300.0),
    # The middle student's arms are 6 frames (200 ms) later than his legs.
    PairCase("late_arms", lags=(0, 0, 4), late_arms=(1, 6), offset=1.7),
    # Four students, one ahead of the teacher.
    PairCase("four", lags=(-4, 0, 5, 10), offset=2.35),
    # The students' microphone: a room's echo; noise at -5 dB SNR; a phone's band; all three.
    PairCase("echo", degradations=("echo",), offset=4.1),
    PairCase("noise", degradations=("noise",), offset=0.9, seed=2),
    PairCase("phone", degradations=("phone",), offset=-1.3, seed=3),
    PairCase("street", lags=(0, 6, 3), degradations=("echo", "noise", "phone"), offset=2.8, drift_ppm=150.0,
             seed=4),
    # The teacher danced to other music: audio alignment must refuse; the movement remains.
    PairCase("other_music", audio="other", offset=1.1),
    # The same, but the tool is given the offset.
    PairCase("other_music_given", audio="other", offset=1.1, give_offset=True),
    # The teacher's video has no sound.
    PairCase("silent_teacher", audio="none", offset=2.2),
    # The teacher faces the class: his picture is the mirror image.
    PairCase("mirrored_teacher", mirrored=True, offset=1.6),
    # Frame rates: teacher 25 / students 30; teacher 60 / students 25; variable-rate students.
    PairCase("teacher25_students30", teacher_fps=25, offset=3.3),
    PairCase("teacher60_students25", lags=(0, 6, 3), teacher_fps=60, student_fps=25, offset=-0.8),
    PairCase("students_vfr", variable_rate=True, offset=2.6),
    # Long: the students recorded 65 s before the teacher began, on a clock 1000 ppm fast;
    # the teacher started recording 70 s before the students. Small, so cheap to make.
    PairCase("long_students_first", lags=(0, 6, 3), offset=65.0, drift_ppm=1000.0, student_seconds=77.0,
             height=144, long=True, seed=5),
    PairCase("long_teacher_first", lags=(0, 6), offset=-70.0, drift_ppm=-500.0, teacher_seconds=82.0,
             height=144, long=True, seed=6),
)}


def _even(value: float) -> int:
    return 2 * round(value / 2)


def _layout(case: PairCase) -> tuple[int, int, int]:
    """(rectangle width, gap between students, students' canvas width), pixels."""
    width = _even(case.height * ROOF[0] / ROOF[1])
    gap = _even(width / 5)
    return width, gap, len(case.lags) * width + (len(case.lags) + 1) * gap


def truth_of(case: PairCase) -> PairTruth:
    """The truth of `case` (no files needed)."""
    width, gap, _ = _layout(case)
    arms = case.late_arms[1] if case.late_arms else 0
    students = tuple(
        StudentTruth(x_range=(gap + k * (width + gap), gap + k * (width + gap) + width), lag_ms=lag * FRAME_MS,
                     upper_lag_ms=(lag + (arms if case.late_arms and k == case.late_arms[0] else 0)) * FRAME_MS)
        for k, lag in enumerate(case.lags))
    return PairTruth(offset_seconds=case.offset, drift_ppm=case.drift_ppm, students=students,
                     late_arms_student=case.late_arms[0] if case.late_arms else None, late_arms_ms=arms * FRAME_MS,
                     mirrored=case.mirrored, audio=case.audio, teacher_x_range=(width // 2, width // 2 + width),
                     teacher_fps=case.teacher_fps, student_fps=case.student_fps, teacher_size=(2 * width, case.height))


def _world_starts(case: PairCase) -> tuple[float, float]:
    """World times (seconds, on the music's clock) at which the teacher and the students start."""
    stretch = 1 + case.drift_ppm * 1e-6
    teacher = LEAD_IN + max(0.0, case.offset / stretch)
    return teacher, teacher - case.offset / stretch


def teacher_world(case: PairCase, seconds: np.ndarray) -> np.ndarray:
    """World times of moments of the teacher's video (seconds)."""
    return _world_starts(case)[0] + np.asarray(seconds, dtype=np.float64)


def student_world(case: PairCase, seconds: np.ndarray) -> np.ndarray:
    """World times of moments of the students' video (seconds, on the students' clock)."""
    return _world_starts(case)[1] + np.asarray(seconds, dtype=np.float64) / (1 + case.drift_ppm * 1e-6)


def dance_frame(world_seconds: np.ndarray, lag_frames: float) -> np.ndarray:
    """Index of the dance's frame (0..SOURCE_FRAMES-1) that a copy `lag_frames` late shows at
    these world times: the latest frame that has started (a picture is held until the next)."""
    position = np.asarray(world_seconds, dtype=np.float64) * SOURCE_FPS - lag_frames
    return np.floor(position + 1e-6).astype(np.int64) % SOURCE_FRAMES


@lru_cache(maxsize=2)
def dancer_frames(height: int) -> np.ndarray:
    """(SOURCE_FRAMES, height, width, 3) uint8 RGB: the dance's rectangle at this height."""
    width = _even(height * ROOF[0] / ROOF[1])
    graph = (f"[0:v]crop={ROOF[0]}:{ROOF[1]}:{ROOF[2]}:{ROOF[3]},trim=end_frame={SOURCE_FRAMES // 2},"
             f"setpts=PTS-STARTPTS,split[f][r];[r]reverse[b];[f][b]concat=n=2:v=1:a=0,"
             f"scale={width}:{height},setsar=1[out]")
    raw = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(PARK), "-filter_complex",
                          graph, "-map", "[out]", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
                         capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)
    if len(frames) != SOURCE_FRAMES:
        raise ValueError(f"{PARK}: expected {SOURCE_FRAMES} frames of the dance, decoded {len(frames)}")
    return frames


def _teacher_pictures(case: PairCase, truth: PairTruth) -> Iterator[np.ndarray]:
    dance = dancer_frames(case.height)
    x0, x1 = truth.teacher_x_range
    count = round(case.teacher_seconds * case.teacher_fps)
    canvas = np.full((case.height, truth.teacher_size[0], 3), GREY, np.uint8)
    for index in dance_frame(teacher_world(case, np.arange(count) / case.teacher_fps), 0):
        canvas[:, x0:x1] = dance[index]
        yield canvas[:, ::-1] if case.mirrored else canvas


def _student_pictures(case: PairCase, truth: PairTruth) -> Iterator[np.ndarray]:
    dance = dancer_frames(case.height)
    hip = round(HIP_LINE * case.height)
    count = round(case.student_seconds * case.student_fps)
    world = student_world(case, np.arange(count) / case.student_fps)
    lower = [dance_frame(world, s.lag_ms / FRAME_MS) for s in truth.students]
    upper = [dance_frame(world, s.upper_lag_ms / FRAME_MS) for s in truth.students]
    canvas = np.full((case.height, _layout(case)[2], 3), GREY, np.uint8)
    for t in range(count):
        for student, low, up in zip(truth.students, lower, upper):
            x0, x1 = student.x_range
            canvas[:hip, x0:x1] = dance[up[t], :hip]
            canvas[hip:, x0:x1] = dance[low[t], hip:]
        yield canvas


def _track(case: PairCase, side: str) -> tuple[np.ndarray, int] | None:
    """(samples, rate) of one side's sound, or None (a silent teacher)."""
    if side == "teacher":
        if case.audio == "none":
            return None
        seconds, rate, world_of = case.teacher_seconds, TEACHER_RATE, teacher_world
    else:
        seconds, rate, world_of = case.student_seconds, STUDENT_RATE, student_world
    seed = case.seed + (1000 if side == "teacher" and case.audio == "other" else 0)
    starts = _world_starts(case)
    world_end = max(starts[0] + case.teacher_seconds,
                    starts[1] + case.student_seconds / (1 + case.drift_ppm * 1e-6)) + 1.0
    song = _song(world_end, seed)
    world = world_of(case, np.arange(round(seconds * rate)) / rate)
    samples = np.interp(world * TEACHER_RATE, np.arange(len(song)), song)
    if side == "students" and "noise" in case.degradations:
        rng = np.random.default_rng(case.seed + 7)
        noise = rng.standard_normal(len(samples))
        samples = samples + noise * np.sqrt(np.mean(samples ** 2)) * 10 ** (-NOISE_SNR_DB / 20)
    return samples, rate


@lru_cache(maxsize=4)
def _song(seconds: float, seed: int) -> np.ndarray:
    return music(seconds, seed, TEACHER_RATE)


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    scaled = samples / max(1.0, float(np.abs(samples).max()) / 0.95)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((scaled * 32767).astype("<i2").tobytes())


def _encode(path: Path, pictures: Iterator[np.ndarray], size: tuple[int, int], fps: int,
            sound: tuple[np.ndarray, int] | None, audio_filter: str, variable_rate: bool) -> Path:
    """Encode RGB pictures at a constant `fps` (H.264) with `sound` (AAC) into `path`."""
    wav = path.with_suffix(".wav")
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{size[0]}x{size[1]}", "-r", str(fps), "-i", "pipe:0"]
    if sound is not None:
        _write_wav(wav, *sound)
        args += ["-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "128k"]
        if audio_filter:
            args += ["-af", audio_filter]
    if variable_rate:
        args += ["-vf", VFR_SELECT, "-fps_mode", "vfr"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "14", "-pix_fmt", "yuv420p", str(path)]
    try:
        with subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            assert process.stdin is not None and process.stderr is not None
            try:
                for picture in pictures:
                    process.stdin.write(np.ascontiguousarray(picture).tobytes())
                process.stdin.close()
            except BrokenPipeError:
                pass
            error = process.stderr.read().decode(errors="replace")
        if process.returncode:
            raise RuntimeError(f"{path}: ffmpeg failed ({process.returncode}): {error.strip()}")
    finally:
        wav.unlink(missing_ok=True)
    return path


def make_pair(case: PairCase, folder: Path) -> tuple[Path, Path, PairTruth]:
    """Render `case` into `folder`: NAME-teacher.mp4, NAME-students.mp4 and NAME.truth.json.

    Returns:
        (teacher video, students' video, the truth).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truth = truth_of(case)
    teacher = _encode(folder / f"{case.name}-teacher.mp4", _teacher_pictures(case, truth), truth.teacher_size,
                      case.teacher_fps, _track(case, "teacher"), "", False)
    filters = ",".join(AUDIO_FILTERS[d] for d in DEGRADATIONS if d in case.degradations and d in AUDIO_FILTERS)
    students = _encode(folder / f"{case.name}-students.mp4", _student_pictures(case, truth),
                       (_layout(case)[2], case.height), case.student_fps, _track(case, "students"), filters,
                       case.variable_rate)
    (folder / f"{case.name}.truth.json").write_text(json.dumps(asdict(truth), indent=1))
    return teacher, students, truth


@dataclass(frozen=True)
class PairCheck:
    """What the files of a pair show, measured from the pixels and the samples alone.

    Attributes:
        lags: Each student's (legs', upper body's) lag behind the teacher, in the dance's
            frames: the shift that makes his rectangle look most like the teacher's.
        audio_offset: The offset (seconds) at which the students' sound best matches the
            teacher's (None without teacher sound).
        audio_correlation: The correlation of the two tracks at that offset, -1..1.
    """

    lags: tuple[tuple[int, int], ...]
    audio_offset: float | None
    audio_correlation: float | None


def _gray(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(times in seconds, (n, height, width) uint8 grey pictures) of every frame as stored."""
    import av

    with av.open(str(path)) as container:
        container.streams.video[0].thread_type = "AUTO"
        pairs = [(frame.time, frame.to_ndarray(format="gray")) for frame in container.decode(video=0)]
    return np.array([t for t, _ in pairs]), np.stack([p for _, p in pairs])


def _sound(path: Path, rate: int) -> tuple[float, np.ndarray] | None:
    """(start time in seconds, mono samples at `rate`) of the first audio track, or None."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        start, chunks = None, []
        for frame in container.decode(audio=0):
            start = frame.time if start is None else start
            chunks += [f.to_ndarray()[0] for f in resampler.resample(frame)]
        chunks += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return float(start or 0.0), np.concatenate(chunks).astype(np.float64)


def _audio_offset(teacher: Path, students: Path, truth: PairTruth, rate: int = 8000) -> tuple[float, float] | None:
    """(offset in seconds, correlation) that best lays the teacher's sound onto the students'."""
    a, b = _sound(teacher, rate), _sound(students, rate)
    if a is None or b is None:
        return None
    (start_a, x), (start_b, y) = a, b
    # The teacher's track on the students' clock (the known drift), so one shift fits it all.
    stretch = 1 + truth.drift_ppm * 1e-6
    x = np.interp(np.arange(round(len(x) * stretch)) / stretch, np.arange(len(x)), x)
    size = 1 << math.ceil(math.log2(len(x) + len(y)))
    corr = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(x, size)), size)
    shift = int(np.argmax(corr))
    shift = shift - size if shift > len(y) else shift
    lo, hi = max(0, shift), min(len(y), shift + len(x))
    overlap_y, overlap_x = y[lo:hi], x[lo - shift:hi - shift]
    correlation = float(np.corrcoef(overlap_x, overlap_y)[0, 1]) if hi - lo > rate else 0.0
    return shift / rate + start_b - start_a * stretch, correlation


def check_pair(teacher: Path, students: Path, truth: PairTruth, search: int = 15) -> PairCheck:
    """Measure a pair's lags and audio offset from its files, without a pose model.

    Each student's rectangle (above and below the hip line) is compared with the teacher's
    (flipped back when mirrored) at every shift of -search..search dance frames, over the
    teacher's frames that the students' video covers at every shift; each lag is the shift
    with the smallest mean absolute difference.

    The two videos sample the dance at their own phases, so a lag is known from the pixels
    to within a frame only (the truth's lag_ms / FRAME_MS, rounded either way); the lags of
    the students against each other, sampled together, are exact.
    """
    teacher_times, teacher_frames = _gray(teacher)
    student_times, student_frames = _gray(students)
    if truth.mirrored:
        teacher_frames = teacher_frames[:, :, ::-1]
    height = teacher_frames.shape[1]
    hip = round(HIP_LINE * height)
    rows = (slice(hip + 4, height, 3), slice(0, hip - 4, 3))
    shifts = np.arange(-search, search + 1)
    frame_s = 1.0 / truth.student_fps
    wanted = truth.student_seconds(teacher_times[:, None] + shifts[None, :] / SOURCE_FPS)
    covered = ((wanted >= student_times[0]) & (wanted < student_times[-1] + frame_s)).all(axis=1)
    samples = np.flatnonzero(covered)
    samples = samples[:: max(1, len(samples) // 100)]
    if len(samples) < 20:
        raise ValueError(f"{students}: only {len(samples)} of the teacher's frames are in it at every shift")
    # The students' frame that starts nearest each wanted time (not the one shown then, which
    # is on average half a frame older: a bias of a frame between 60 and 25 fps).
    after = np.clip(np.searchsorted(student_times, wanted[samples]), 1, len(student_times) - 1)
    before_nearer = wanted[samples] - student_times[after - 1] < student_times[after] - wanted[samples]
    shown = np.where(before_nearer, after - 1, after)
    x0, x1 = truth.teacher_x_range
    lags = []
    for student in truth.students:
        s0, s1 = student.x_range
        found = []
        for part in rows:
            reference = teacher_frames[samples][:, part, x0:x1:3].astype(np.int16)
            crops = student_frames[:, part, s0:s1:3].astype(np.int16)
            cost = [np.abs(crops[shown[:, k]] - reference).mean() for k in range(len(shifts))]
            found.append(int(shifts[int(np.argmin(cost))]))
        lags.append((found[0], found[1]))
    audio = _audio_offset(teacher, students, truth)
    return PairCheck(lags=tuple(lags), audio_offset=None if audio is None else audio[0],
                     audio_correlation=None if audio is None else audio[1])


@dataclass(frozen=True)
class PairScore:
    """How a run's report matches a pair's truth (None: the report does not say).

    Attributes:
        alignment: How the tool aligned the videos: "audio", "poses" or "manual".
        offset_error_ms: Reported offset minus the true one, ms.
        drift_error_ppm: Reported drift minus the true one, ppm.
        confidence: The alignment's confidence as reported.
        mirror: Whether the tool took the teacher as mirrored.
        lag_errors_ms: Per student (left to right): reported lag minus the true one (his legs'),
            ms; None where no person of the report stands in his rectangle.
        arms_named: Whether an arm of the student with late arms is among his late limbs.
        arms_share: The share of his arms' windows marked late.
        false_late: Limbs named late that are not: any of the others', his legs.
        problems: What is missing from the report, one line each.
    """

    alignment: str | None
    offset_error_ms: float | None
    drift_error_ppm: float | None
    confidence: float | None
    mirror: bool | None
    lag_errors_ms: tuple[float | None, ...]
    arms_named: bool | None
    arms_share: float | None
    false_late: int
    problems: tuple[str, ...]


def person_of(report: dict, student: StudentTruth) -> dict | None:
    """The report's person whose median box is centred in the student's rectangle (the
    nearest to its middle when several are), or None."""
    x0, x1 = student.x_range
    inside = []
    for person in report.get("persons", []):
        box = person.get("box")
        if box and len(box) == 4 and x0 <= (box[0] + box[2]) / 2 < x1:
            inside.append((abs((box[0] + box[2]) / 2 - (x0 + x1) / 2), person))
    return min(inside, key=lambda pair: pair[0])[1] if inside else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def score_report(report: dict, truth: PairTruth) -> PairScore:
    """Compare a run's JSON report (its `reference` parts) with the truth of its pair."""
    problems: list[str] = []
    reference = report.get("reference")
    if not isinstance(reference, dict):
        reference = {}
        problems.append("the report has no reference section")
    offset = _number(reference.get("offset_seconds"))
    drift = _number(reference.get("drift_ppm"))
    lag_errors: list[float | None] = []
    arms_named: bool | None = None
    arms_share: float | None = None
    false_late = 0
    for k, student in enumerate(truth.students):
        person = person_of(report, student)
        mine = (person or {}).get("reference")
        if not isinstance(mine, dict):
            problems.append(f"student {k + 1}: no person with a reference section in x {student.x_range}")
            lag_errors.append(None)
            continue
        lag = _number(mine.get("lag_ms"))
        lag_errors.append(None if lag is None else lag - student.lag_ms)
        named = set(mine.get("late_limbs") or [])
        if k == truth.late_arms_student:
            arms_named = bool(named & set(ARMS))
            limbs = mine.get("limbs") or {}
            windows = [bool(w) for arm in ARMS for w in (limbs.get(arm) or {}).get("late_windows") or []]
            arms_share = float(np.mean(windows)) if windows else None
            false_late += len(named - set(ARMS) - set(EITHER_WAY))
        else:
            false_late += len(named)
    return PairScore(
        alignment=reference.get("alignment"),
        offset_error_ms=None if offset is None else (offset - truth.offset_seconds) * 1000,
        drift_error_ppm=None if drift is None else drift - truth.drift_ppm,
        confidence=_number(reference.get("alignment_confidence")),
        mirror=reference.get("mirror") if isinstance(reference.get("mirror"), bool) else None,
        lag_errors_ms=tuple(lag_errors), arms_named=arms_named, arms_share=arms_share, false_late=false_late,
        problems=tuple(problems),
    )


def tool_command(case: PairCase, truth: PairTruth, teacher: Path, students: Path, output: Path) -> list[str]:
    """The CLI's command that scores the students against the teacher (no video out)."""
    command = [sys.executable, "-m", "pipeline", str(students), str(output), "--reference", str(teacher),
               "--model", "yolo", "--weights", str(WEIGHTS), "--device", "cpu", "--no-progress", "--no-video"]
    if case.give_offset:
        command += ["--offset", f"{truth.offset_seconds:.6f}"]
    return command


def run_case(case: PairCase, folder: Path) -> tuple[PairTruth, dict | None, str]:
    """Build a pair and run the CLI on it: (truth, its report or None, the CLI's last error line)."""
    from reports.outputs import OutputFiles, read_report

    teacher, students, truth = make_pair(case, folder)
    output = folder / f"{case.name}-out.mp4"
    files = OutputFiles.of(output)
    files.json.unlink(missing_ok=True)
    done = subprocess.run(tool_command(case, truth, teacher, students, output), cwd=ROOT, capture_output=True,
                          text=True)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    error = "" if done.returncode == 0 else f"exit {done.returncode}: {lines[-1] if lines else ''}"
    return truth, read_report(files.json), error


def _cell(value: float | None, form: str = "{:+.0f}") -> str:
    return "--" if value is None else form.format(value)


def table_row(case: PairCase, score: PairScore | None, error: str = "") -> str:
    """One markdown row of the table."""
    if score is None:
        return f"| {case.name} | {error or 'no report'} |" + " |" * 7
    arms = "--"
    if score.arms_named is not None:
        arms = f"{'yes' if score.arms_named else 'no'} ({_cell(score.arms_share, '{:.0%}')})"
    mirror = "" if score.mirror is None else (" mirrored" if score.mirror else "")
    return (f"| {case.name} | {score.alignment or '--'}{mirror} | {_cell(score.offset_error_ms)} | "
            f"{_cell(score.drift_error_ppm)} | {_cell(score.confidence, '{:.2f}')} | "
            f"{', '.join(_cell(e) for e in score.lag_errors_ms)} | {arms} | {score.false_late} | "
            f"{'; '.join(score.problems) or error} |")


TABLE_HEAD = ("| case | alignment | offset error ms | drift error ppm | confidence | lag errors ms (left to right) "
              "| late arms named (share of windows) | false late limbs | notes |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def get_args_parser() -> argparse.ArgumentParser:
    """The harness's parser."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.teacher_pairs",
        description="Build the teacher/students pairs, run the CLI's reference mode on each and print how far "
                    "its report is from the truth.")
    parser.add_argument("folder", type=Path, nargs="?", default=None,
                        help="where the videos, truths and reports go (default: a new temporary folder)")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=None, metavar="NAME",
                        help=f"only these cases (default: all, the long ones too): {', '.join(CASES)}")
    parser.add_argument("--pairs-only", action="store_true",
                        help="only build the videos and their NAME.truth.json (default: run the CLI too)")
    return parser


def main(args: argparse.Namespace) -> int:
    """Build every chosen case; unless `--pairs-only`, run the CLI on it and print the table."""
    # Resolved: the CLI runs from the repository's root.
    folder = (args.folder or Path(tempfile.mkdtemp(prefix="teacher-pairs-"))).resolve()
    cases = [CASES[name] for name in args.cases or CASES]
    if args.pairs_only:
        for case in cases:
            teacher, students, _ = make_pair(case, folder)
            print(f"{case.name}: {teacher.name}, {students.name}, {case.name}.truth.json")
        print(f"in {folder}")
        return 0
    print(TABLE_HEAD)
    for case in cases:
        truth, report, error = run_case(case, folder)
        print(table_row(case, None if report is None else score_report(report, truth), error), flush=True)
    print(f"\nfiles and reports in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
