"""Folder runs: discovery, output names, summary, resume, bad files, interruption."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from config import Config
from pipeline.cli import get_args_parser, main
from pipeline.folder import exit_code, find_videos, plan_jobs, run_folder
from reports.outputs import OutputFiles
from tests.conftest import validate_summary_rows
from tests.helpers import StandInEstimator, make_video, partial_files, read_summary
from workers.errors import FolderError

ROOT = Path(__file__).resolve().parents[1]
REAL_MODEL_ARGS = ["--weights", "random", "--device", "cpu", "--min-size", "64", "--person-threshold", "0",
                   "--max-persons", "2", "-b", "2"]


def _main(*argv):
    return main(get_args_parser().parse_args([str(a) for a in argv]))


def corrupt_video(path: Path) -> Path:
    """An MP4 cut in half: the index (at the end) is missing."""
    whole = make_video(path.with_name("whole-" + path.name), seconds=1, fps="10", size="96x64")
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def folder(tmp_path):
    """in/: two good videos (one in a subfolder), a corrupt one, a text file named .mp4, a note."""
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    make_video(source / "a.mp4", seconds=1, fps="10", size="96x64", audio=True)
    make_video(source / "sub" / "b.mov", seconds=0.5, fps="10", size="96x64")
    corrupt_video(source / "sub" / "corrupt.mp4")
    (source / "text.mp4").write_text("not a video\n" * 50)
    (source / "notes.txt").write_text("not a video either")
    return source


class CountingModel:
    """Builds StandInEstimators and counts how often the model was loaded."""

    def __init__(self):
        self.loads = 0

    def __call__(self):
        self.loads += 1
        return StandInEstimator()


def _config(**changes):
    return Config(input="in", output="out", progress=False, end_card_seconds=0.5, **changes)


def test_videos_are_found_by_extension_hidden_and_output_folders_left_out(tmp_path):
    source = tmp_path / "in"
    for name in ["a.mp4", "B.MOV", "sub/c.mkv", "sub/deeper/d.webm", "notes.txt", ".hidden.mp4",
                 ".git/e.mp4", "out/f.mp4", "sub/g.jpg"]:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).touch()
    (source / "loop").symlink_to(source, target_is_directory=True)
    found = [p.relative_to(source).as_posix() for p in find_videos(source, exclude=source / "out")]
    assert found == ["B.MOV", "a.mp4", "sub/c.mkv", "sub/deeper/d.webm"]


def test_outputs_mirror_the_tree_and_clashing_stems_keep_their_extension(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    for name in ["a/b.mov", "a/b.MP4", "a/c.mkv", "summary.mp4", "x/summary.mp4"]:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).touch()
    jobs = {job.relative.as_posix(): job.output.relative_to(out).as_posix() for job in plan_jobs(source, out)}
    assert jobs == {
        "a/b.MP4": "a/b.MP4.mp4", "a/b.mov": "a/b.mov.mp4", "a/c.mkv": "a/c.mp4",
        "summary.mp4": "summary.mp4.mp4",  # summary.csv belongs to the run
        "x/summary.mp4": "x/summary.mp4",
    }
    assert OutputFiles.of(out / "a" / "b.mov.mp4").json.name == "b.mov.json"


def test_folders_that_would_mix_outputs_with_inputs_are_refused(tmp_path):
    source = tmp_path / "in"
    (source / "in").mkdir(parents=True)
    (source / "in" / "x.mp4").touch()
    with pytest.raises(FolderError, match="the output folder is the input folder"):
        plan_jobs(source, source)
    with pytest.raises(FolderError, match="would land inside the input folder"):
        plan_jobs(source, tmp_path)  # in/in/x.mp4 -> in/x.mp4
    inside = plan_jobs(source, source / "results")  # an output folder inside the input is left out
    assert [job.output for job in inside] == [source / "results" / "in" / "x.mp4"]


def test_outputs_never_land_outside_the_output_folder_through_a_link(tmp_path):
    source = tmp_path / "in"
    (source / "dance").mkdir(parents=True)
    (source / "dance" / "x.mp4").touch()
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "dance").symlink_to(elsewhere, target_is_directory=True)  # out/dance -> ../elsewhere
    with pytest.raises(FolderError, match="would land outside the output folder"):
        plan_jobs(source, out)


def test_a_folder_run_does_every_video_reports_bad_files_and_resumes(tmp_path, folder):
    out = tmp_path / "out"
    model = CountingModel()
    started = time.perf_counter()
    rows = run_folder(_config(), folder, out, model)
    first_seconds = time.perf_counter() - started

    assert model.loads == 1
    assert exit_code(rows) == 1
    summary = read_summary(out)
    assert [(r["input"], r["status"]) for r in summary] == [
        ("a.mp4", "done"), ("sub/b.mov", "done"), ("sub/corrupt.mp4", "failed"), ("text.mp4", "failed"),
    ]
    done = {r["input"]: r for r in summary if r["status"] == "done"}
    assert (done["a.mp4"]["frames"], done["a.mp4"]["frames_scored"], done["a.mp4"]["persons"]) == ("10", "8", "2")
    assert float(done["a.mp4"]["score"]) == pytest.approx(10.0)
    assert float(done["sub/b.mov"]["duration_seconds"]) == pytest.approx(0.5)
    assert done["sub/b.mov"]["report"] == "sub/b.json" and done["a.mp4"]["error"] == ""
    failed = {r["input"]: r["error"] for r in summary if r["status"] == "failed"}
    assert "corrupt.mp4" in failed["sub/corrupt.mp4"] and "text.mp4" in failed["text.mp4"]
    assert all("\n" not in error and error for error in failed.values())
    outputs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                     if p.is_file() and not p.parent.name.endswith(".review"))
    assert outputs == [
        "a.csv", "a.html", "a.json", "a.mp4", "a.persons.csv", "a.png", "a.poses.npz", "index.html",
        "sub/b.csv", "sub/b.html", "sub/b.json", "sub/b.mp4", "sub/b.persons.csv", "sub/b.png", "sub/b.poses.npz",
        "summary.csv",
    ]
    assert (out / "a.review" / "thumb.jpg").is_file() and (out / "sub" / "b.review" / "thumb.jpg").is_file()
    report = json.loads((out / "sub" / "b.json").read_text())
    assert report["input"] == str(folder / "sub" / "b.mov") and report["frames"] == 5

    again = CountingModel()
    started = time.perf_counter()
    rows = run_folder(_config(), folder, out, again)
    second_seconds = time.perf_counter() - started
    assert again.loads == 0  # nothing to do: the model is not even loaded
    assert exit_code(rows) == 1
    resumed = read_summary(out)
    assert [r["status"] for r in resumed] == ["skipped", "skipped", "failed", "failed"]
    for before, after in zip(summary, resumed):
        for column in ("input", "error", "score", "frames", "frames_scored", "persons", "duration_seconds", "report"):
            assert before[column] == after[column], column
    assert second_seconds < first_seconds / 3

    os.utime(folder / "a.mp4")  # a changed input is redone, and only it
    (out / "sub" / "b.png").unlink()  # so is a video with an output missing
    rows = run_folder(_config(), folder, out, CountingModel())
    assert [row.status for row in rows] == ["done", "done", "failed", "failed"]
    rows = run_folder(_config(display_window=5), folder, out, CountingModel())  # other settings: all redone
    assert [row.status for row in rows] == ["done", "done", "failed", "failed"]
    assert partial_files(out) == []


def test_reports_only_then_with_video(tmp_path, folder):
    out = tmp_path / "out"
    run_folder(_config(video=False), folder, out, CountingModel())
    assert not (out / "a.mp4").exists() and (out / "a.json").exists() and (out / "sub" / "b.png").exists()
    rows = run_folder(_config(), folder, out, CountingModel())
    assert [row.status for row in rows[:2]] == ["done", "done"]  # the videos were missing
    assert (out / "a.mp4").exists()
    rows = run_folder(_config(video=False), folder, out, CountingModel())
    assert [row.status for row in rows[:2]] == ["skipped", "skipped"]


class FailsOnWideFrames(StandInEstimator):
    def predict(self, images):
        if images[0].shape[1] > 100:
            raise RuntimeError("this model cannot take wide frames")
        return super().predict(images)


def test_a_file_failing_mid_run_is_recorded_cleaned_up_and_the_night_goes_on(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    make_video(source / "a.mp4", seconds=0.5, fps="10", size="96x64")
    make_video(source / "b.mp4", seconds=2, fps="10", size="128x64", audio=True)
    make_video(source / "c.mp4", seconds=0.5, fps="10", size="96x64")
    rows = run_folder(_config(), source, out, FailsOnWideFrames)
    assert [(row.input, row.status) for row in rows] == [("a.mp4", "done"), ("b.mp4", "failed"), ("c.mp4", "done")]
    assert rows[1].error == "RuntimeError: this model cannot take wide frames"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("b")) == []
    assert partial_files(out) == []


class InterruptsOnSecondVideo(StandInEstimator):
    def predict(self, images):
        if images[0].shape[1] > 100:
            raise KeyboardInterrupt
        return super().predict(images)


def test_ctrl_c_removes_the_current_file_and_marks_the_summary(tmp_path, monkeypatch, capsys):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    make_video(source / "a.mp4", seconds=0.5, fps="10", size="96x64")
    make_video(source / "b.mp4", seconds=2, fps="10", size="128x64")
    make_video(source / "c.mp4", seconds=0.5, fps="10", size="96x64")
    import workers.models

    monkeypatch.setattr(workers.models, "build_estimator", lambda config: InterruptsOnSecondVideo())
    assert _main(source, out, "--no-progress") == 130
    assert [(r["input"], r["status"]) for r in read_summary(out)] == [
        ("a.mp4", "done"), ("b.mp4", "interrupted"), ("c.mp4", "pending"),
    ]
    assert sorted(p.name for p in out.iterdir()) == [
        "a.csv", "a.html", "a.json", "a.mp4", "a.persons.csv", "a.png", "a.poses.npz", "a.review", "index.html",
        "summary.csv",
    ]  # the interrupted file's outputs are gone; the index covers what was done
    assert "interrupted" in capsys.readouterr().err


def test_usage_errors_exit_2_and_a_folder_without_videos_exits_1(tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    (source / "notes.txt").touch()
    (tmp_path / "file.mp4").touch()
    assert _main(source, source, "--weights", "random") == 2
    assert "the output folder is the input folder" in capsys.readouterr().err
    assert _main(source, tmp_path / "file.mp4", "--weights", "random") == 2
    assert "OUTPUT must be a folder" in capsys.readouterr().err
    assert _main(source, tmp_path / "new.mp4", "--weights", "random") == 2
    assert "not a video file name" in capsys.readouterr().err
    assert _main(source, tmp_path / "out", "--poses", "x.npz") == 2
    assert _main(tmp_path / "a.mp4", tmp_path / "a.csv") == 2  # one video: OUTPUT must name the video
    assert _main(source, tmp_path / "out", "--weights", "random") == 1
    assert "no video files found" in capsys.readouterr().err


def test_log_file_gets_every_file_and_errors(tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    corrupt_video(source / "bad.mp4")
    log = tmp_path / "logs" / "night.log"
    assert _main(source, tmp_path / "out", "--weights", "random", "--log-file", log) == 1
    text = log.read_text()
    assert "FAILED bad.mp4" in text and "1 files: 0 done, 0 skipped, 1 failed" in text
    assert "FAILED bad.mp4" in capsys.readouterr().err
    assert read_summary(tmp_path / "out")[0]["status"] == "failed"


def _summary_values(folder: Path) -> dict:
    """What an uninterrupted and a resumed run must agree on."""
    return {
        row["input"]: (row["status"].replace("skipped", "done"), row["error"], row["frames"], row["frames_scored"],
                       row["persons"], row["duration_seconds"], row["report"],
                       None if not row["score"] else round(float(row["score"]), 4))
        for row in read_summary(folder)
    }


def test_a_run_killed_mid_file_and_restarted_matches_an_uninterrupted_run(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    make_video(source / "a.mp4", seconds=0.2, fps="10", size="96x64", audio=True)
    make_video(source / "b.mp4", seconds=1, fps="10", size="96x64")
    corrupt_video(source / "corrupt.mp4")
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    command = [sys.executable, "-m", "pipeline", str(source), str(killed), *REAL_MODEL_ARGS, "--log-interval", "0"]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(300, process.kill)
    watchdog.start()
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            if line.startswith("[2/3] b.mp4: ") and "frames" in line:  # b.mp4 is being processed
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=60)
    finally:
        watchdog.cancel()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL, "".join(lines)

    # Killed: what sits under a final name is complete, the rest is missing or hidden.
    assert [(r["input"], r["status"]) for r in read_summary(killed)] == [
        ("a.mp4", "done"), ("b.mp4", "pending"), ("corrupt.mp4", "pending"),
    ]
    assert json.loads((killed / "a.json").read_text())["frames"] == 2
    assert not (killed / "b.json").exists() and not (killed / "b.csv").exists()

    assert _main(source, killed, *REAL_MODEL_ARGS, "--no-progress") == 1
    assert [r["status"] for r in read_summary(killed)] == ["skipped", "done", "failed"]
    assert partial_files(killed) == []
    assert _main(source, reference, *REAL_MODEL_ARGS, "--no-progress") == 1
    assert _summary_values(killed) == _summary_values(reference)
    assert sorted(p.name for p in killed.iterdir()) == sorted(p.name for p in reference.iterdir())


def test_shards_split_the_plan_disjointly_and_cover_it(tmp_path, folder):
    from pipeline.folder import shard_jobs

    jobs = plan_jobs(folder, tmp_path / "out")
    parts = [shard_jobs(jobs, index, 3) for index in (1, 2, 3)]
    names = [[job.relative.as_posix() for job in part] for part in parts]
    assert sorted(name for part in names for name in part) == sorted(job.relative.as_posix() for job in jobs)
    assert names[0] == [jobs[0].relative.as_posix(), jobs[3].relative.as_posix()]  # every 3rd from the 1st
    assert shard_jobs(jobs, 1, 1) == jobs


def test_sharded_runs_merged_give_the_summary_of_one_run(tmp_path, folder):
    from reports import merge as merge_summaries

    whole = tmp_path / "whole"
    run_folder(_config(), folder, whole, CountingModel())
    out = tmp_path / "out"
    for shard in ("1/2", "2/2"):
        run_folder(_config(shard=shard), folder, out, CountingModel())
    assert sorted(p.name for p in out.glob("summary*.csv")) == ["summary-shard-1-of-2.csv", "summary-shard-2-of-2.csv"]
    assert not (out / "index.html").exists()  # a shard's rows are a part: the merge writes it
    assert merge_summaries.main([str(out)]) == 1  # a failed file among them, as in one run
    merged, single = read_summary(out), read_summary(whole)

    def comparable(rows):
        return [{k: v for k, v in row.items() if k != "processing_seconds"} for row in rows]

    assert comparable(merged) == comparable(single)
    validate_summary_rows(merged)
    assert (out / "index.html").is_file()
    # Run again: every file is skipped, and the merge keeps the finished rows.
    run_folder(_config(shard="1/2"), folder, out, CountingModel())
    assert merge_summaries.main([str(out)]) == 1
    assert [r["status"] for r in read_summary(out)] == ["skipped", "done", "failed", "failed"]  # shard 1 again


def test_shard_usage_errors(tmp_path, folder, capsys):
    assert _main(folder, tmp_path / "out", "--shard", "3/2") == 2
    assert "shard must be I/N with 1 <= I <= N" in capsys.readouterr().err
    assert _main(folder, tmp_path / "out", "--shard", "x") == 2
    assert _main(folder / "a.mp4", tmp_path / "o.mp4", "--shard", "1/2") == 2
    assert "--shard splits a folder run" in capsys.readouterr().err
    from reports import merge as merge_summaries

    assert merge_summaries.main([str(tmp_path)]) == 2
