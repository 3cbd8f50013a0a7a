"""reports/summary.py: the summary's rows, names and merge, and that every summary is validated."""

import jsonschema
import pytest

from reports.summary import SummaryRow, is_reserved_stem, merge, shard_summary_name, write_summary


def test_a_row_reads_back_as_csv_reads_it():
    row = SummaryRow(input="a/b.mp4", status="done", score=7.25, frames=10, frames_scored=9, persons=2,
                     duration_seconds=1 / 3, processing_seconds=2.0, report="a/b.json", node="host")
    assert row.as_read() == {
        "input": "a/b.mp4", "status": "done", "error": "", "score": "7.250000", "frames": "10",
        "frames_scored": "9", "persons": "2", "duration_seconds": "0.333", "processing_seconds": "2.00",
        "report": "a/b.json", "node": "host",
    }
    assert SummaryRow(input="x.mp4", status="pending").as_read()["score"] == ""


def test_a_row_from_a_report_takes_its_numbers():
    report = {"score": {"mean": 5.5}, "frames": 30, "frames_scored": 28, "persons": [{}, {}, {}],
              "duration_seconds": 1.0}
    row = SummaryRow.from_report("v.mp4", "skipped", report, 0.5, "v.json")
    assert (row.score, row.frames, row.frames_scored, row.persons, row.report) == (5.5, 30, 28, 3, "v.json")


@pytest.mark.parametrize(("stem", "reserved"), [
    ("summary", True), ("Summary", True), ("index", True), ("summary-shard-1-of-2", True),
    ("summary2", False), ("indexes", False), ("dance", False),
])
def test_stems_that_collide_with_the_folders_own_files(stem, reserved):
    assert is_reserved_stem(stem) is reserved


def test_merge_takes_finished_rows_over_pending_and_sorts_by_path(tmp_path):
    write_summary(tmp_path / "summary.csv", [SummaryRow("b.mp4", "done", score=1.0), SummaryRow("a/z.mp4", "pending")])
    write_summary(tmp_path / shard_summary_name(1, 2), [SummaryRow("b.mp4", "pending"), SummaryRow("a/z.mp4", "failed",
                                                                                           error="bad")])
    write_summary(tmp_path / shard_summary_name(2, 2), [SummaryRow("c.mp4", "skipped")])
    rows = merge(tmp_path)
    assert [(row["input"], row["status"]) for row in rows] == [("a/z.mp4", "failed"), ("b.mp4", "done"),
                                                                ("c.mp4", "skipped")]


def test_merge_without_shards_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="summary-shard"):
        merge(tmp_path)


def test_every_summary_written_is_validated(tmp_path):
    # The tests' schema check patches reports.summary's writer (tests/conftest.py); a row the
    # schema refuses must be refused here, or that check has silently stopped.
    with pytest.raises(jsonschema.ValidationError):
        write_summary(tmp_path / "summary.csv", [SummaryRow(input="a.mp4", status="no such status")])
    assert not (tmp_path / "summary.csv").exists()


def test_the_old_names_still_work():
    import pipeline.batch
    import pipeline.folder
    from pipeline import review as old_review
    from pipeline import summary as old_summary
    from reports import merge, review

    assert pipeline.batch is pipeline.folder
    assert old_summary.main is merge.main
    assert old_review.main is review.main
