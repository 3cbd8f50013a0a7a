"""Per-video reports: the JSON against docs/REPORTS.md, the CSV, the PNG, the resume check."""

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from config import Config
from pipeline.resume import complete_report
from pipeline.runner import run_video
from reports import schemas
from reports.report import (
    CSV_COLUMNS,
    PERSON_COLUMNS,
    fingerprint,
    frame_rows,
    person_entries,
    score_statistics,
    write_reports,
)
from reports.results import FrameResult
from tests.conftest import validate_report
from tests.helpers import StandInEstimator, detections, make_video, pose
from workers.infer import PoseModel

DOCS = Path(__file__).resolve().parents[1] / "docs" / "REPORTS.md"


def flattened(value, prefix=""):
    """(key, value) for every key of a JSON document, "a.b" for nested, "a[].b" in lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path, item
            yield from flattened(item, path)
    elif isinstance(value, list):
        for item in value:
            yield from flattened(item, f"{prefix}[]")


def check_against_schema(report: dict) -> set[str]:
    """Validate `report` against the report's JSON Schema; return the keys it has."""
    validate_report(report)
    return {key for key, _ in flattened(report)}


def _run(tmp_path, source, estimator=None, teacher=None, **changes):
    config = Config(input=source, output=tmp_path / "out" / "clip.mp4", progress=False, end_card_seconds=0.5,
                    **changes)
    return config, run_video(config, estimator or StandInEstimator(), teacher=teacher)


def dancing_teacher(frames: int = 60, size: tuple[int, int] = (96, 64)):
    """The left dancer of `DancingPair` as a teacher (10 fps), aligned by hand with no offset."""
    from workers.reference import Alignment, TeacherPoses, TeacherSetup

    found = DancingPair().predict([np.zeros((size[1], size[0], 3), np.uint8)] * frames)
    keypoints = np.stack([persons.keypoints[0] for persons in found])
    return TeacherSetup(TeacherPoses(keypoints, 10.0, 1, "#1, the only person in the reference video"),
                        Alignment("manual", 0.0, None, None, "given with --offset"), input="teacher.mp4",
                        poses_file="teacher.poses.npz", persons_found=(1,))


class DancingPair(PoseModel):
    """Two people making the same non-periodic arm moves at the same time; the right one is
    hidden for 0.8 s (frames 20-27 at 10 fps), so that its two tracklets are joined."""

    name = "dancing-pair"
    device = "cpu"
    # An input size to choose, like the real models (the clips are smaller than it: not scouted).
    input_side = "long"
    default_input_size = 640
    input_stride = 32

    def __init__(self) -> None:
        self.frames = 0

    def predict(self, images):
        out = []
        for image in images:
            height, width = image.shape[:2]
            t = self.frames / 10
            people = []
            for centre in (0.3, 0.7):
                if centre == 0.7 and 20 <= self.frames < 28:
                    continue
                keypoints = pose(height / 5, width * centre, height / 2)
                keypoints[[9, 10], 1] -= height / 8 * np.array([np.sin(2.1 * t), np.sin(1.3 * t + 1)])  # wrists
                keypoints[[7, 8], 0] += height / 12 * np.array([np.cos(1.7 * t), np.sin(2.9 * t)])  # elbows
                people.append(keypoints)
            out.append(detections(people))
            self.frames += 1
        return out


def make_scene_video(path: Path, size: str, *scenes: tuple[str, float]) -> Path:
    """(lavfi source, seconds) scenes one after the other, 10 fps: a camera cut between each.
    A source with options of its own ends with ":" ("color=c=gray:")."""
    from workers.ffmpeg import ffmpeg_exe

    inputs = []
    for source, seconds in scenes:
        separator = "" if source.endswith(":") else "="
        inputs += ["-f", "lavfi", "-i", f"{source}{separator}size={size}:rate=10:duration={seconds}"]
    joined = "".join(f"[{k}:v]" for k in range(len(scenes))) + f"concat=n={len(scenes)}:v=1:a=0"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *inputs, "-filter_complex", joined,
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=1.5, fps="10", size="96x64", audio=True)


def test_score_statistics_leave_unscored_frames_out():
    stats = score_statistics([None, 1.0, 2.0, 3.0, 4.0, None])
    assert stats["count"] == 4
    assert (stats["mean"], stats["median"], stats["p25"], stats["p75"]) == (2.5, 2.5, 1.75, 3.25)
    assert (stats["min"], stats["max"]) == (1.0, 4.0)
    assert stats["std"] == pytest.approx(1.118034, abs=1e-6)
    empty = score_statistics([None, None])
    assert empty["count"] == 0 and set(empty.values()) == {0, None}
    assert set(empty) == set(stats)  # keys are stable


def test_person_entries_follow_the_tracks_in_id_order():
    from reports.results import PersonResult
    from workers.identity import Join, TrackletSpan
    from workers.sync import SyncScore
    from workers.timing import WindowLag

    join = Join(gap_frames=12, cost=0.4, terms={"position": 0.3, "colour": 0.5})
    persons = [
        PersonResult(3, 5, 2, 9, False, "present in 10% of frames"),
        PersonResult(1, 50, 0, 61, True, "performer", lag_ms=-20.0,
                     windows=(WindowLag(0.0, 4.0, -20.0, 0.9), WindowLag(1.0, 5.0, None, None)),
                     score=9.5, timing_score=8.75, mirrored_with=(3,), box=(10.04, 20.0, 110.26, 320.5),
                     sync=SyncScore(8.7, 1.2, 2.5, 0.025, True), lag_confidence=0.45, group=1,
                     tracklets=(TrackletSpan(4, 0, 29, 30, None), TrackletSpan(7, 42, 61, 20, join)),
                     gaps=((30, 41),)),
    ]
    assert person_entries(persons, fps=10.0) == [
        {"id": 1, "frames": 50, "first_frame": 0, "last_frame": 61, "box": [10.0, 20.0, 110.3, 320.5],
         "scored": True, "reason": "performer",
         "lag_ms": -20.0, "lag_confidence": 0.45,
         "lag_ms_windows": [{"start_s": 0.0, "end_s": 4.0, "lag_ms": -20.0},
                                             {"start_s": 1.0, "end_s": 5.0, "lag_ms": None}],
         "score": 9.5, "timing_score": 8.75, "mirrored_with": [3],
         "sync": {"score": 8.7, "chance_mean": 1.2, "chance_p95": 2.5, "p_value": 0.025, "above_chance": True},
         "group": 1,
         "tracklets": [{"start_frame": 0, "end_frame": 29, "frames": 30, "join": None},
                       {"start_frame": 42, "end_frame": 61, "frames": 20,
                        "join": {"gap_frames": 12, "cost": 0.4, "position": 0.3, "velocity": None, "shape": None,
                                 "colour": 0.5}}],
         "gaps": [{"start_frame": 30, "end_frame": 41, "start_s": 3.0, "end_s": 4.2}],
         "limbs": {}, "late_limbs": [], "reference": None},
        {"id": 3, "frames": 5, "first_frame": 2, "last_frame": 9, "box": None, "scored": False,
         "reason": "present in 10% of frames", "lag_ms": None, "lag_confidence": None, "lag_ms_windows": [],
         "score": None,
         "timing_score": None, "mirrored_with": [], "sync": None, "group": None, "tracklets": [], "gaps": [],
         "limbs": {}, "late_limbs": [], "reference": None},
    ]
    assert person_entries([], fps=10.0) == []


def test_frame_rows_leave_missing_values_empty():
    frames = [FrameResult(0, 0.0, 2, 7.25, 7.25, "Similarity score: 07", ids=(1, 3)),
              FrameResult(1, 0.1, 0, None, None, None)]
    assert list(frame_rows(frames)) == [["0", "0.000000", "2", "7.250000", "7.250000", "1 3"],
                                        ["1", "0.100000", "0", "", "", ""]]


@pytest.mark.parametrize("name, heading", [("report", "## `<stem>.json`"), ("summary", "### `OUT_DIR/summary.csv`")])
def test_the_docs_show_the_schemas_key_tables(name, heading):
    # docs/REPORTS.md's tables are rendered from the schemas: `python -m reports.schemas`.
    text = DOCS.read_text()
    section = text[text.index(heading):]
    assert schemas.markdown_table(name).strip() in section, f"docs/REPORTS.md: regenerate the {name} table"


def test_a_report_with_an_unknown_key_or_a_wrong_type_is_invalid(tmp_path, clip):
    from jsonschema import ValidationError

    config, result = _run(tmp_path, clip, video=False)
    report = write_reports(result, config)
    validate_report(report)
    with pytest.raises(ValidationError, match="'surprise' was unexpected"):
        validate_report({**report, "surprise": 1})
    with pytest.raises(ValidationError, match="is not of type 'integer'"):
        validate_report({**report, "frames": "many"})
    with pytest.raises(ValidationError, match="'fingerprint' is a required property"):
        validate_report({k: v for k, v in report.items() if k != "fingerprint"})


def test_every_report_written_is_validated(tmp_path, clip, monkeypatch):
    # The tests' schema check patches reports.report's writer (tests/conftest.py); a report the
    # schema refuses must be refused when written, or that check has silently stopped.
    from jsonschema import ValidationError

    import reports.report

    config, result = _run(tmp_path, clip, video=False)
    build = reports.report.build_report
    monkeypatch.setattr(reports.report, "build_report", lambda *args, **kwargs: {**build(*args, **kwargs),
                                                                                   "surprise": 1})
    with pytest.raises(ValidationError, match="'surprise' was unexpected"):
        write_reports(result, config)
    assert not config.output.with_suffix(".json").exists()


def test_reports_match_the_documented_schema_and_the_run(tmp_path, clip, monkeypatch):
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renamed.append(Path(b).name), real_replace(a, b)))
    config, result = _run(tmp_path, clip)
    report = write_reports(result, config, probe_seconds=0.01)

    assert renamed == ["clip.mp4", "clip.poses.npz", "clip.csv", "clip.png", "clip.persons.csv",
                       "clip.json"]  # the JSON last
    on_disk = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert on_disk == report
    seen = check_against_schema(report)
    # Two people dancing together for 6 s (enough distinct time shifts for p < 0.05): the synchrony
    # keys, which the clip above is too short and too still for.
    # The right one is hidden for 0.8 s: a join and a gap. (A plain background: the stand-in's
    # skeletons are not in the picture, so a test pattern would give them changing colours.)
    dancing = make_scene_video(tmp_path / "dancing.mp4", "96x64", ("color=c=gray:", 6))
    _, moving = _run(tmp_path / "dancing", dancing, DancingPair())
    moving_report = write_reports(moving, Config(input=dancing, output=tmp_path / "dancing" / "out" / "clip.mp4"))
    seen |= check_against_schema(moving_report)
    # The same pair against a teacher who dances their moves.
    _, taught = _run(tmp_path / "taught", dancing, DancingPair(), teacher=dancing_teacher())
    taught_report = write_reports(taught, Config(input=dancing, output=tmp_path / "taught" / "out" / "clip.mp4"))
    seen |= check_against_schema(taught_report)
    assert taught_report["reference"]["compared"] is True and taught_report["reference"]["alignment"] == "manual"
    assert [p["reference"]["lag_ms"] for p in taught_report["persons"]] == [pytest.approx(0.0, abs=5.0)] * 2
    assert taught_report["persons"][0]["reference"]["limbs"]["left_arm"]["lag_ms"] == pytest.approx(0.0, abs=5.0)
    assert taught_report["persons"][0]["reference"]["limbs"]["left_leg"]["reason"] == "not enough movement"
    assert moving_report["reference"] is None and moving_report["persons"][0]["reference"] is None
    # A camera cut at 1 s.
    cut = make_scene_video(tmp_path / "cut.mp4", "96x64", ("testsrc", 1), ("smptebars", 1))
    cut_config, cut_result = _run(tmp_path / "cut", cut, video=False)
    cut_report = write_reports(cut_result, cut_config)
    seen |= check_against_schema(cut_report)
    assert [c["frame"] for c in cut_report["identity"]["scene_cuts"]] == [10]
    assert "not carried across 1 camera cut (at 1.00 s)" in cut_report["identity"]["note"]
    assert {p["first_frame"] for p in cut_report["persons"]} == {0, 10}  # new ids after the cut
    joined = [p for p in moving_report["persons"] if len(p["tracklets"]) == 2]
    assert len(joined) == 1 and joined[0]["gaps"][0]["start_frame"] == 20 and joined[0]["gaps"][0]["end_frame"] == 27
    assert joined[0]["tracklets"][1]["join"]["cost"] < 1.0
    assert seen == {key for key, _, _ in schemas.keys(schemas.load("report"))}, "schema keys a full report lacks"
    assert moving_report["sync"]["score"] >= 9.5 and moving_report["sync"]["above_chance"] is True
    assert [p["sync"]["score"] >= 9.5 for p in moving_report["persons"]] == [True, True]
    assert report["input"] == str(clip) and report["output"] == str(config.output)
    assert report["model"] == "stand-in" and report["encoder"] == "libx264"
    assert report["input_size"] is None  # a model without an input size to choose
    assert (moving_report["input_size"]["how"], moving_report["input_size"]["pixels"]) == ("not scouted", 640)
    assert (report["frames"], report["frames_scored"], report["fps"], report["fps_exact"]) == (15, 12, 10.0, "10/1")
    assert report["duration_seconds"] == pytest.approx(1.5)
    assert report["score"]["mean"] == pytest.approx(10.0) and report["score"]["end_card"] == "Total score: 10"
    assert report["score"]["per_frame"]["median"] == pytest.approx(10.0)
    assert [(p["id"], p["frames"]) for p in report["persons"]] == [(1, 15), (2, 12)]  # every 5th frame alone
    assert report["persons_tracked"] is True
    assert [p["scored"] for p in report["persons"]] == [True, True]
    assert report["sync"]["performers"] == [1, 2]
    assert [p["score"] for p in report["persons"]] == [pytest.approx(10.0)] * 2  # identical poses
    assert report["worst_moments"] and report["worst_moments"][0]["score"] == pytest.approx(10.0)
    assert report["settings"] == config.as_dict()
    assert report["fingerprint"] == fingerprint(config)
    assert report["timings"]["stages"]["encode"]["items"] == 15 + 5
    assert report["timings"]["total_seconds"] >= report["timings"]["pipeline_seconds"] > 0

    with open(tmp_path / "out" / "clip.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 1 + 15
    assert [int(row[0]) for row in rows[1:]] == list(range(15))
    assert rows[5] == ["4", "0.400000", "1", "", "10.000000", "1"]  # one person: unscored, the average still shown
    assert float(rows[2][3]) == pytest.approx(10.0)
    assert rows[1][5] == "1 2"  # the ids drawn, the same as the report's and the pose cache's
    with open(tmp_path / "out" / "clip.persons.csv", newline="") as handle:
        people = list(csv.DictReader(handle))
    assert tuple(people[0]) == PERSON_COLUMNS
    assert [row["id"] for row in people] == [str(p["id"]) for p in sorted(
        report["persons"], key=lambda p: (not p["scored"], p["group"] or 0, p["id"]))]
    for row in people:
        entry = next(p for p in report["persons"] if str(p["id"]) == row["id"])
        assert row["performer"] == ("yes" if entry["scored"] else "no") and row["reason"] == entry["reason"]
        assert row["lag_ms"] == ("" if entry["lag_ms"] is None else f"{entry['lag_ms']:.1f}")
        assert float(row["seen_share"]) == pytest.approx(entry["frames"] / 15, abs=1e-3)
    from workers.poses import load_poses

    _, cached = load_poses(tmp_path / "out" / "clip.poses.npz")
    assert cached.ids(0).tolist() == [1, 2] and cached.ids(4).tolist() == [1]

    with Image.open(tmp_path / "out" / "clip.png") as image:
        image.verify()
    with Image.open(tmp_path / "out" / "clip.png") as image:
        assert image.format == "PNG" and image.size == (1000, 500)
        assert len(image.convert("RGB").getcolors(maxcolors=100_000)) > 10  # something was drawn
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "clip.csv", "clip.json", "clip.mp4", "clip.persons.csv", "clip.png", "clip.poses.npz",
    ]  # no partial file left


def test_no_video_writes_reports_only(tmp_path, clip):
    config, result = _run(tmp_path, clip, video=False, score=False)
    report = write_reports(result, config)
    check_against_schema(report)
    assert result.output is None and result.encoder is None
    assert "encode" not in result.stages
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "clip.csv", "clip.json", "clip.persons.csv", "clip.png", "clip.poses.npz",
    ]
    assert report["output"] is None and report["files"]["video"] is None
    assert report["timings"]["stages"]["encode"] is None
    assert report["score"]["mean"] is None and report["score"]["per_frame"]["count"] == 0
    assert report["frames"] == 15 and report["frames_scored"] == 0


def test_complete_report_needs_same_settings_same_input_and_every_output(tmp_path, clip):
    config, result = _run(tmp_path, clip)
    write_reports(result, config)
    assert complete_report(config) is not None
    assert complete_report(config.replace(device="cpu", batch_size=1, progress=True)) is not None
    assert complete_report(config.replace(video=False)) is not None  # fewer outputs asked for
    assert complete_report(config.replace(crf=35)) is None
    assert complete_report(config.replace(person_threshold=0.5)) is None
    stat = clip.stat()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        assert complete_report(config) is None  # the input changed
    finally:
        os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (tmp_path / "out" / "clip.png").unlink()
    assert complete_report(config) is None


def test_a_report_made_without_video_does_not_count_for_a_run_with_video(tmp_path, clip):
    config, result = _run(tmp_path, clip, video=False)
    write_reports(result, config)
    config.output.write_bytes(b"a stale video from some other run")
    assert complete_report(config.replace(video=False)) is not None
    assert complete_report(config.replace(video=True)) is None  # the report lists no video


def test_the_cli_writes_the_reports_and_no_video_skips_the_encoder(tmp_path, clip, monkeypatch, capsys):
    import workers.models
    from pipeline.cli import get_args_parser, main

    monkeypatch.setattr(workers.models, "build_estimator", lambda config: StandInEstimator())
    out = tmp_path / "results"
    out.mkdir()
    assert main(get_args_parser().parse_args([str(clip), str(out), "--no-video", "--no-progress"])) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip.csv", "clip.html", "clip.json", "clip.persons.csv",
                                                          "clip.png", "clip.poses.npz"]
    assert "clip.json: 15 frames, 12 scored, total score 10.00" in capsys.readouterr().err
    assert json.loads((out / "clip.json").read_text())["settings"]["video"] is False
