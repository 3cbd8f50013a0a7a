"""`--reference` end to end through the CLI: real videos with real music, real ffmpeg, the real
alignment and analysis; the pose model is scripted with synthetic dancers (known lags), so that
the known answers are exact and the run takes seconds.

The teacher's recording starts 3.3 s into the class's (its music too); one student dances on
time, one is 4 frames (133 ms) late with the arms and head only.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import get_args_parser, main
from reports.outputs import OutputFiles
from tests.helpers import child_processes, detections
from tests.music import song
from tests.synthetic_dance import FPS, LIMB_NAMES, Dancer, dance
from workers.data import Detections
from workers.decode import frame_at
from workers.ffmpeg import ffmpeg_exe
from workers.infer import PoseModel
from workers.probe import probe

RATE = 16000
OFFSET = 3.3  # where the teacher's time 0 falls in the class's video, seconds
LATE_FRAMES = 4
SIZE = (480, 270)
CLASS_SECONDS, TEACHER_SECONDS = 16.0, 12.0
#: The song's time at the start of each recording: the teacher starts 5 s in, the class 1.7 s.
TEACHER_START, CLASS_START = 5.0, 5.0 - OFFSET


def _video(path: Path, seconds: float, audio: np.ndarray | None) -> Path:
    """A grey test video at 30 fps, SIZE, with `audio` (mono float, RATE) as AAC, or none."""
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
            "-i", f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate={FPS:g}:duration={seconds}"]
    data = None
    if audio is not None:
        args += ["-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", "-", "-c:a", "aac", "-shortest"]
        data = (np.clip(audio, -1, 1) * 30000).astype("<i2").tobytes()
    subprocess.run([*args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
                   input=data, check=True)
    return path


def _detections(people: Sequence[np.ndarray]) -> Detections:
    """The scripted model's output: present keypoints confident, dropped ones (NaN) at score 0."""
    keypoints = [np.nan_to_num(person, nan=0.0) for person in people]
    found = detections(keypoints)
    scores = np.array([np.where(np.isfinite(person).all(axis=1), 10.0, 0.0) for person in people])
    return Detections(found.boxes, found.box_scores, found.keypoints, scores.reshape(len(people), 17))


class Scripted(PoseModel):
    """Gives the teacher's poses for the first video it sees and the class's for the next.

    A run reads the teacher's video first (unless its poses are cached), so the order of the
    frames it is asked for tells the two apart: the teacher has one person, the class two."""

    name = "scripted"
    device = "cpu"

    def __init__(self, teacher: np.ndarray, students: Sequence[np.ndarray]) -> None:
        self.scripts = [[[pose] for pose in teacher], list(zip(*students))]
        self.frames_seen = 0

    def predict(self, images):
        out = []
        for _ in images:
            script = self.scripts[0]
            out.append(_detections(script.pop(0)) if script else _detections([]))
            self.frames_seen += 1
            if not script and len(self.scripts) > 1:
                self.scripts.pop(0)
        return out


def _dancers() -> tuple[np.ndarray, list[np.ndarray]]:
    shift = round(OFFSET * FPS)  # the class's frame k shows the choreography at the teacher's frame k - shift
    teacher = dance(TEACHER_SECONDS, Dancer(place=(240, 190), scale=0.55, seed=9))
    on_time = dance(CLASS_SECONDS, Dancer(delays=dict.fromkeys(LIMB_NAMES, shift), place=(120, 190), scale=0.55,
                                          seed=2))
    upper = {"head": shift + LATE_FRAMES, "left_arm": shift + LATE_FRAMES, "right_arm": shift + LATE_FRAMES}
    late_arms = dance(CLASS_SECONDS, Dancer(delays={**dict.fromkeys(LIMB_NAMES, shift), **upper}, place=(360, 190),
                                            scale=0.55, seed=3))
    return teacher, [on_time, late_arms]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher")
    music = song(30.0, RATE, seed=4)
    other = song(30.0, RATE, seed=11)
    room = np.random.default_rng(5)
    class_audio = music[int(CLASS_START * RATE):int((CLASS_START + CLASS_SECONDS) * RATE)]
    class_audio = 0.5 * class_audio + room.normal(0, 0.05, len(class_audio))  # a phone in the room
    return {
        "class": _video(folder / "class.mp4", CLASS_SECONDS, class_audio),
        "teacher": _video(folder / "teacher.mp4", TEACHER_SECONDS,
                          music[int(TEACHER_START * RATE):int((TEACHER_START + TEACHER_SECONDS) * RATE)]),
        "teacher_other_music": _video(folder / "teacher_other_music.mp4", TEACHER_SECONDS,
                                      other[:int(TEACHER_SECONDS * RATE)]),
        "teacher_silent": _video(folder / "teacher_silent.mp4", TEACHER_SECONDS, None),
    }


def _run(monkeypatch, tmp_path, student: Path, teacher: Path, *flags: str) -> tuple[int, dict | None, Scripted]:
    model = Scripted(*_dancers())
    monkeypatch.setattr("workers.models.load_estimator", lambda config: model)
    output = tmp_path / "out" / "class.mp4"
    code = main(get_args_parser().parse_args([str(student), str(output), "--reference", str(teacher),
                                              "--no-progress", *flags]))
    report = OutputFiles.of(output).json
    return code, json.loads(report.read_text()) if report.is_file() else None, model


def test_the_class_is_aligned_by_the_music_and_each_dancer_scored_against_the_teacher(
        recordings, monkeypatch, tmp_path):
    code, report, model = _run(monkeypatch, tmp_path, recordings["class"], recordings["teacher"])
    assert code == 0
    reference = report["reference"]
    assert reference["alignment"] == "audio" and reference["audio_not_used"] is None
    assert reference["offset_seconds"] == pytest.approx(OFFSET, abs=0.005)
    assert abs(reference["drift_ppm"]) < 300 and reference["alignment_confidence"] > 0.5
    assert reference["person"] == 1 and "the only person" in reference["person_reason"]
    assert reference["mirror"] is False and reference["mirror_source"] == "detected"
    on_time, late = sorted((p for p in report["persons"] if p["reference"]), key=lambda p: p["box"][0])
    assert on_time["reference"]["lag_ms"] == pytest.approx(0.0, abs=1000 / FPS)
    assert late["reference"]["lag_ms"] > 40  # the upper body leads the body's lag
    assert late["reference"]["limbs"]["left_arm"]["lag_ms"] == pytest.approx(LATE_FRAMES * 1000 / FPS,
                                                                            abs=1000 / FPS)
    assert late["reference"]["limbs"]["left_leg"]["lag_ms"] == pytest.approx(0.0, abs=1000 / FPS)
    assert {"left_arm", "right_arm"} <= set(late["reference"]["late_limbs"]) and not on_time["reference"]["late_limbs"]
    with open(OutputFiles.of(Path(report["output"])).persons, newline="") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert "left_arm" in rows[str(late["id"])]["teacher_late_limbs"].split()
    assert float(rows[str(on_time["id"])]["teacher_lag_ms"]) == pytest.approx(on_time["reference"]["lag_ms"], abs=0.1)
    # The annotated video shows the teacher in its corner once the teacher's recording runs.
    output = probe(Path(report["output"]))
    source = probe(recordings["class"])
    corner = (slice(SIZE[1] - 60, SIZE[1] - 10), slice(SIZE[0] - 100, SIZE[0] - 10))
    before = np.abs(frame_at(output, 1.0)[corner].astype(int) - frame_at(source, 1.0)[corner]).mean()
    during = np.abs(frame_at(output, 8.0)[corner].astype(int) - frame_at(source, 8.0)[corner]).mean()
    assert before < 8 < during
    assert not child_processes()
    # The teacher's poses are cached: a second run does not run the model on its video again.
    code, again, model = _run(monkeypatch, tmp_path / "again", recordings["class"], recordings["teacher"])
    assert code == 0 and model.frames_seen == round(CLASS_SECONDS * FPS)
    assert again["reference"]["offset_seconds"] == reference["offset_seconds"]


@pytest.mark.parametrize("teacher, why", [("teacher_other_music", "the audio does not match"),
                                          ("teacher_silent", "teacher_silent.mp4 has no audio")])
def test_without_matching_music_the_movement_aligns_and_a_line_says_so(recordings, monkeypatch, tmp_path, capsys,
                                                                       teacher, why):
    code, report, _ = _run(monkeypatch, tmp_path, recordings["class"], recordings[teacher], "--no-video")
    assert code == 0
    reference = report["reference"]
    assert reference["alignment"] == "poses" and why in reference["audio_not_used"]
    assert reference["offset_seconds"] == pytest.approx(OFFSET, abs=1.5 / FPS)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "aligned with" in line]
    assert len(warnings) == 1 and why in warnings[0] and "by the movement" in warnings[0]


def test_an_offset_given_by_hand_is_used_as_is(recordings, monkeypatch, tmp_path):
    code, report, _ = _run(monkeypatch, tmp_path, recordings["class"], recordings["teacher_silent"], "--no-video",
                           "--offset", str(OFFSET))
    assert code == 0
    assert (report["reference"]["alignment"], report["reference"]["offset_seconds"]) == ("manual", OFFSET)
    assert report["reference"]["alignment_confidence"] is None


@pytest.mark.parametrize("teacher, flags, message", [
    ("not_a_video", (), "--reference: "),
    ("teacher", ("--reference-person", "7"), "--reference-person 7 is not in the reference video; its persons are #1"),
])
def test_a_teacher_that_cannot_be_used_is_a_usage_error_and_nothing_is_written(
        recordings, monkeypatch, tmp_path, capsys, teacher, flags, message):
    path = recordings.get(teacher)
    if path is None:
        path = tmp_path / "notes.mp4"
        path.write_text("not a video")
    code, report, _ = _run(monkeypatch, tmp_path, recordings["class"], path, *flags)
    assert code == 2 and report is None
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_folder_of_recordings_is_scored_against_one_teacher_computed_once(recordings, monkeypatch, tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    for name in ("monday.mp4", "tuesday.mp4"):
        shutil.copy(recordings["class"], folder / name)
    teacher, students = _dancers()
    model = Scripted(teacher, students)
    model.scripts.append(list(zip(*students)))  # the second video's frames
    monkeypatch.setattr("workers.models.load_estimator", lambda config: model)
    out = tmp_path / "out"
    fresh = shutil.copy(recordings["teacher"], tmp_path / "teacher.mp4")  # not prepared nor cached by another test
    code = main(get_args_parser().parse_args([str(folder), str(out), "--reference", str(fresh),
                                              "--no-progress", "--no-video"]))
    assert code == 0
    assert model.frames_seen == round(TEACHER_SECONDS * FPS) + 2 * round(CLASS_SECONDS * FPS)
    for name in ("monday", "tuesday"):
        reference = json.loads((out / f"{name}.json").read_text())["reference"]
        assert reference["alignment"] == "audio" and reference["offset_seconds"] == pytest.approx(OFFSET, abs=0.005)


def test_a_teacher_video_with_nobody_in_it_is_a_usage_error(recordings, monkeypatch, tmp_path, capsys):
    class Nobody(PoseModel):
        name = "scripted"
        device = "cpu"

        def predict(self, images):
            return [_detections([]) for _ in images]

    monkeypatch.setattr("workers.models.load_estimator", lambda config: Nobody())
    empty = shutil.copy(recordings["teacher_silent"], tmp_path / "empty_room.mp4")
    output = tmp_path / "out" / "class.mp4"
    code = main(get_args_parser().parse_args([str(recordings["class"]), str(output), "--reference", str(empty),
                                              "--no-progress"]))
    assert code == 2 and not OutputFiles.of(output).json.exists() and not output.exists()
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {empty}: no person was found in the reference video"]
