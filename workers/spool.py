"""Append-only tables of fixed-size records on disk, so a long video does not grow memory.

A run keeps something for every frame (its persons, its score) until the whole-video
analysis at the end. In memory that grows with the video's length (some 2 KB a frame, 0.5 GB
for two hours at 30 fps); here it lives in an unnamed temporary file (no name ever appears
in the folder, and the operating system removes it even when the process is killed), with
only the last few thousand records buffered in memory.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from workers.data import CHUNK_FRAMES
from workers.errors import SpoolError


class RecordSpool:
    """An append-only array of records of one NumPy dtype, kept in a temporary file.

    Reads of any range are allowed at any time (the same thread as the appends).

    Args:
        dtype: The record type, e.g. a structured dtype with one field per column.
        directory: Where the temporary file lives; None for the system's temporary folder.
            Prefer a folder on a real disk (the output folder): the system's may be memory.
        buffer_records: Records kept in memory before they are written out together.
    """

    def __init__(
        self, dtype: np.dtype | str, directory: Path | None = None, buffer_records: int = CHUNK_FRAMES
    ) -> None:
        if buffer_records < 1:
            raise ValueError(f"buffer_records must be >= 1, got {buffer_records!r}")
        self.dtype = np.dtype(dtype)
        self.directory = Path(directory) if directory is not None else Path(tempfile.gettempdir())
        try:
            self._file = tempfile.TemporaryFile(dir=self.directory)
        except OSError as error:
            raise SpoolError(f"{self.directory}: cannot hold the run's temporary records ({error.strerror})") from None
        self._written = 0
        self._buffer = np.empty(buffer_records, self.dtype)
        self._buffered = 0

    def __len__(self) -> int:
        return self._written + self._buffered

    def extend(self, records: np.ndarray) -> None:
        """Append records (an array of this spool's dtype, or values that cast to it)."""
        records = np.asarray(records, dtype=self.dtype).reshape(-1)
        if self._buffered + len(records) > len(self._buffer):
            self._flush()
        if len(records) > len(self._buffer):
            self._write(records)
            return
        self._buffer[self._buffered : self._buffered + len(records)] = records
        self._buffered += len(records)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Records start..stop-1 as a new array (the range is clipped to what exists)."""
        start, stop, _ = slice(start, stop).indices(len(self))
        result = np.empty(max(0, stop - start), self.dtype)
        if stop <= start:
            return result
        from_file = max(0, min(stop, self._written) - start)
        if from_file:
            size = self.dtype.itemsize
            data = os.pread(self._file.fileno(), from_file * size, start * size)
            if len(data) != from_file * size:
                raise OSError(f"temporary file: read {len(data)} of {from_file * size} bytes")
            result[:from_file] = np.frombuffer(data, self.dtype)
        if from_file < len(result):
            first = max(start, self._written) - self._written
            result[from_file:] = self._buffer[first : first + len(result) - from_file]
        return result

    def chunks(self, size: int = 65536):
        """(start, records) for consecutive ranges of at most `size` records, all of them."""
        for start in range(0, len(self), size):
            yield start, self.read(start, start + size)

    def close(self) -> None:
        """Remove the temporary file (also done when the spool is garbage-collected)."""
        self._file.close()

    def _flush(self) -> None:
        if self._buffered:
            self._write(self._buffer[: self._buffered])
            self._buffered = 0

    def _write(self, records: np.ndarray) -> None:
        data = np.ascontiguousarray(records).data.cast("B")
        offset = self._written * self.dtype.itemsize
        try:
            while data:
                done = os.pwrite(self._file.fileno(), data, offset)
                data, offset = data[done:], offset + done
        except OSError as error:
            raise SpoolError(f"{self.directory}: cannot write the run's temporary records ({error.strerror}); "
                             "free some space there") from None
        self._written += len(records)
