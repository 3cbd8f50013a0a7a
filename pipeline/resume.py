"""Whether an earlier run's outputs can be kept (a folder run's resume), and removing them.

A video is skipped when its report exists, was made with the same result settings
(`fingerprint`) from the same input file, and every output the settings ask for is there and
is the one the report lists. Otherwise its outputs are removed, the JSON first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from config import Config
from reports.outputs import OutputFiles, expected_files, read_report
from reports.report import fingerprint, input_identity
from workers.files import partial_path


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
