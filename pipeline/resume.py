"""Which files a run leaves, and whether an earlier run's can be kept (a folder run's resume).

A video is skipped when its report exists, was made with the same result settings
(`fingerprint`) from the same input file, and every output the settings ask for is there and
is the one the report lists. Otherwise its outputs are removed, the JSON first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from config import Config
from workers.files import partial_path
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


def fingerprint(config: Config) -> str:
    """A digest of the report format and every setting that changes a run's results.

    Two configs with the same fingerprint produce the same numbers and the same pixels from
    the same input (see `config.settings.RUN_ONLY_SETTINGS` for what is left out).
    """
    canonical = json.dumps({"format": FORMAT, "settings": config.result_settings()}, sort_keys=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def input_identity(path: Path) -> dict[str, int]:
    """Size in bytes and modification time in nanoseconds: a changed input is redone."""
    stat = Path(path).stat()
    return {"size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def read_report(path: Path) -> dict | None:
    """A report written by `write_reports`, or None when missing or not one."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        return None
    return report


def complete_report(config: Config) -> dict | None:
    """The report of an earlier run whose outputs can be kept as they are, or None.

    They can when the JSON exists, was made with the same result settings (fingerprint) from
    the same input file (size and modification time), and every output `config` asks for
    exists and is the one the report lists.
    """
    files = OutputFiles.of(config.output)
    report = read_report(files.json)
    if report is None or report.get("fingerprint") != fingerprint(config):
        return None
    try:
        if report.get("input_file") != input_identity(config.input):
            return None
    except OSError:
        return None
    listed = report.get("files") or {}
    for name, path in expected_files(config).items():
        if listed.get(name) != path.name or not path.is_file():
            return None
    return report


def remove_outputs(output: Path) -> None:
    """Remove every output of `output` and its partial files, the JSON first."""
    files = OutputFiles.of(output)
    for path in (*files.all(), files.page):
        path.unlink(missing_ok=True)
        partial_path(path).unlink(missing_ok=True)
    shutil.rmtree(files.media, ignore_errors=True)
