"""Writing outputs so that a file under its final name is always whole.

Every output is written under a hidden partial name in its folder (`partial_path`) and renamed
into place when complete (`os.replace` is atomic within a folder): a run killed at any moment
leaves either the whole file or none, plus at most a partial file that the next run removes.
The video (`workers.encode`), the pose cache (`workers.poses`) and the reports
(`reports.report`) are all written this way.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def partial_path(output: Path) -> Path:
    """Where an output is written until it is complete (same folder, hidden name)."""
    return output.with_name(f".{output.name}.partial")


@contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `lock` (created if missing) for the block: other
    processes of this machine that ask for it wait, so that what one computes for a shared cache
    the others read instead of computing it again. The lock ends with the process at the latest."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomically(path: Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write a file under its hidden partial name, then rename it into place.

    Args:
        path: The final name.
        write: Writes the content to the open binary file it is given.
    """
    temporary = partial_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(temporary, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """A CSV file (UTF-8, "\\n" line ends), written atomically, row by row."""

    def write(handle: io.BufferedWriter) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        text.flush()
        text.detach()  # the caller closes the file

    return write_atomically(path, write)


def write_json(path: Path, data: dict) -> Path:
    """A JSON file (UTF-8, indented), written atomically."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"

    def write(handle: io.BufferedWriter) -> None:
        handle.write(text.encode("utf-8"))

    return write_atomically(path, write)


def write_bytes(path: Path, data: bytes) -> Path:
    """A file of `data`, written atomically."""

    def write(handle: io.BufferedWriter) -> None:
        handle.write(data)

    return write_atomically(path, write)
