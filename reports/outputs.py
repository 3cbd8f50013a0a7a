"""The files one run leaves: their names beside the output video, which a config asks for, and
reading its report back (light: the review pages and the resume import this, not the report's writer)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from config import Config
from workers.poses import poses_path

#: The report's format; part of every fingerprint, so a new format redoes every video.
FORMAT = "dancingskeletons-report/1"


@dataclass(frozen=True)
class OutputFiles:
    """Every file one run writes beside (or as) its output video.

    Attributes:
        video: The annotated video (`<stem>.mp4`).
        poses: The pose cache (`<stem>.poses.npz`).
        csv: One row per frame (`<stem>.csv`).
        persons: One row per person (`<stem>.persons.csv`).
        plot: The score over time (`<stem>.png`).
        json: The report (`<stem>.json`), written last.
        page: The review page (`<stem>.html`), written after the report.
        media: The review page's thumbnail and person crops (`<stem>.review/`).
    """

    video: Path
    poses: Path
    csv: Path
    persons: Path
    plot: Path
    json: Path
    page: Path
    media: Path

    @classmethod
    def of(cls, output: Path) -> OutputFiles:
        """The files that belong to the output video path `output`."""
        output = Path(output)
        return cls(
            video=output,
            poses=poses_path(output),
            csv=output.with_suffix(".csv"),
            persons=output.with_suffix(".persons.csv"),
            plot=output.with_suffix(".png"),
            json=output.with_suffix(".json"),
            page=output.with_suffix(".html"),
            media=output.with_suffix(".review"),
        )

    def all(self) -> tuple[Path, ...]:
        """Every file, the JSON first (removing them in this order never leaves a stale report)."""
        return (self.json, self.video, self.poses, self.csv, self.persons, self.plot)


def expected_files(config: Config) -> dict[str, Path]:
    """The outputs a run with `config` leaves, by the name `files` gives them in the report."""
    files = OutputFiles.of(config.output)
    expected = {"csv": files.csv, "persons": files.persons, "plot": files.plot}
    if config.video:
        expected["video"] = files.video
    if config.save_poses and config.poses is None:
        expected["poses"] = files.poses
    return expected


def read_report(path: Path) -> dict | None:
    """A report written by `write_reports`, or None when missing or not one."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        return None
    return report
