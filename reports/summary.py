"""A folder run's summary: `summary.csv`, its rows and statuses, the shards' summaries and their merge.

The format lives here only: the file names (`summary.csv`, `summary-shard-I-of-N.csv`, the
review index `index.html`), the columns and the statuses. A folder run (`pipeline.folder`)
and a Ray run (`pipeline.cluster`) write it through `write_summary`; a run split with
`--shard I/N` leaves one summary per shard, which `merge` reads back (the command is
`python -m reports.merge OUT`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from workers.files import write_csv

SUMMARY_NAME = "summary.csv"
#: The review page over a folder run (reports/review.py).
INDEX_NAME = "index.html"
SUMMARY_COLUMNS = (
    "input", "status", "error", "score", "frames", "frames_scored", "persons",
    "duration_seconds", "processing_seconds", "report", "node",
)
#: A row's status: the first three are final; the others are only seen in the summary of a
#: run that is still going on or was interrupted.
STATUSES = ("done", "skipped", "failed", "pending", "interrupted")
#: Statuses of a file that a run finished; a finished row wins over a pending one in a merge.
FINISHED = STATUSES[:3]
#: The shards' own summaries, as `shard_summary_name` names them.
SHARD_PATTERN = "summary-shard-*-of-*.csv"


def shard_summary_name(index: int, count: int) -> str:
    """A shard's own summary, so that shards running at once never write the same file."""
    return f"summary-shard-{index}-of-{count}.csv"


def is_reserved_stem(stem: str) -> bool:
    """Whether a top-level output with this stem would collide with the folder's own files
    (`summary.*`, `summary-shard-*`, `index.*`); compared case-insensitively."""
    folded = stem.casefold()
    return folded in (Path(SUMMARY_NAME).stem, Path(INDEX_NAME).stem) or folded.startswith("summary-shard-")


@dataclass
class SummaryRow:
    """One line of `summary.csv` (see docs/REPORTS.md).

    Attributes:
        input: The input's path relative to the input folder.
        status: One of STATUSES.
        error: The one-line error of a failed file, else "".
        score: The total score, or None.
        frames: Frames in the video, or None.
        frames_scored: Frames with a score, or None.
        persons: Most persons found in one frame, or None.
        duration_seconds: The video's length (frames / fps), or None.
        processing_seconds: Seconds this run spent on the file.
        report: The report's path relative to the output folder, or "".
        node: The machine that processed the file in this run (its host name), or "" when
            none did (skipped, pending).
    """

    input: str
    status: str
    error: str = ""
    score: float | None = None
    frames: int | None = None
    frames_scored: int | None = None
    persons: int | None = None
    duration_seconds: float | None = None
    processing_seconds: float | None = None
    report: str = ""
    node: str = ""

    @classmethod
    def from_report(cls, input: str, status: str, report: dict, seconds: float, report_path: str,
                    node: str = "") -> SummaryRow:
        """A done or skipped file's row, its numbers taken from its report.

        Args:
            input: The input's path relative to the input folder (posix).
            report_path: The report's path relative to the output folder (posix).
        """
        return cls(
            input=input,
            status=status,
            score=report["score"]["mean"],
            frames=report["frames"],
            frames_scored=report["frames_scored"],
            persons=len(report["persons"]),
            duration_seconds=report["duration_seconds"],
            processing_seconds=seconds,
            report=report_path,
            node=node,
        )

    def cells(self) -> list[str]:
        """The row as CSV cells: empty for None, scores to 6 decimals, seconds to 3 (2 for processing)."""
        def number(value: float | None, digits: int) -> str:
            return "" if value is None else f"{value:.{digits}f}"

        def count(value: int | None) -> str:
            return "" if value is None else str(value)

        return [
            self.input, self.status, self.error, number(self.score, 6), count(self.frames),
            count(self.frames_scored), count(self.persons), number(self.duration_seconds, 3),
            number(self.processing_seconds, 2), self.report, self.node,
        ]

    def as_read(self) -> dict[str, str]:
        """The row as `csv.DictReader` reads it back from `summary.csv`."""
        return dict(zip(SUMMARY_COLUMNS, self.cells(), strict=True))


def write_summary(path: Path, rows: Sequence[SummaryRow]) -> Path:
    """`summary.csv` (or a shard's), written atomically."""
    return write_csv(path, SUMMARY_COLUMNS, [row.cells() for row in rows])


def write_merged_summary(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    """`summary.csv` from a merge's rows (dicts, as `read_rows` reads them), written atomically."""
    return write_csv(path, SUMMARY_COLUMNS, [[row.get(column, "") for column in SUMMARY_COLUMNS] for row in rows])


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of one summary file, as `csv.DictReader` reads them."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def merge(output_folder: Path) -> list[dict[str, str]]:
    """Every input's row from the shards' summaries (and an earlier `summary.csv`), path order.

    Raises:
        FileNotFoundError: No shard summary in the folder.
    """
    output_folder = Path(output_folder)
    shards = sorted(output_folder.glob(SHARD_PATTERN))
    if not shards:
        raise FileNotFoundError(f"{output_folder}: no {SHARD_PATTERN} to merge")
    merged: dict[str, dict[str, str]] = {}
    earlier = output_folder / SUMMARY_NAME
    for path in ([earlier] if earlier.is_file() else []) + shards:
        for row in read_rows(path):
            known = merged.get(row["input"])
            if known is None or row["status"] in FINISHED or known["status"] not in FINISHED:
                merged[row["input"]] = row
    return [merged[name] for name in sorted(merged, key=lambda name: Path(name).parts)]
