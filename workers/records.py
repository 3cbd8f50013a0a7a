"""Per-frame results of the score stage, kept on disk so that a long video does not grow memory."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np

from workers.spool import RecordSpool


@dataclass(frozen=True)
class FrameResult:
    """What the score stage found in one frame.

    Attributes:
        index: Frame index.
        timestamp: Seconds from the start.
        persons: Persons above the threshold.
        score: The frame score, or None when unscored.
        displayed: The on-screen (moving-average) score, or None.
        text: The text drawn on the frame, or None.
        ids: The track id of each person, in the order of the detections above the threshold.
        labels: The label drawn beside each person (same order): "#2", or "#2 +120 ms" once
            the live lag is known.
    """

    index: int
    timestamp: float
    persons: int
    score: float | None
    displayed: float | None
    text: str | None
    ids: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()


_RECORD = np.dtype([
    ("index", "<i8"), ("timestamp", "<f8"), ("persons", "<i4"), ("score", "<f8"), ("displayed", "<f8"),
    ("text", "<i4"), ("ids", "<i4"), ("labels", "<i4"),
])


class _Interned:
    """Distinct values numbered in order of appearance (texts and id tuples repeat a lot)."""

    def __init__(self) -> None:
        self.values: list[Hashable] = []
        self._codes: dict[Hashable, int] = {}

    def code(self, value: Hashable) -> int:
        code = self._codes.get(value)
        if code is None:
            code = self._codes[value] = len(self.values)
            self.values.append(value)
        return code


class FrameTable(Sequence[FrameResult]):
    """Every frame's `FrameResult`, in order, as 48-byte records in a temporary file.

    Reads like a list (`len`, indexing, slicing, iteration). The on-screen texts and the id
    and label tuples are stored once each and referred to by number: the texts take a few
    hundred values, the tuples change only when someone enters, leaves or gets a new label.

    Args:
        directory: Where the temporary file lives; None for the system's temporary folder.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._spool = RecordSpool(_RECORD, directory)
        self._texts, self._ids, self._labels = _Interned(), _Interned(), _Interned()

    def append(self, result: FrameResult) -> None:
        """Add the next frame's result."""
        record = np.zeros(1, _RECORD)
        record["index"], record["timestamp"], record["persons"] = result.index, result.timestamp, result.persons
        record["score"] = np.nan if result.score is None else result.score
        record["displayed"] = np.nan if result.displayed is None else result.displayed
        record["text"] = self._texts.code(result.text)
        record["ids"] = self._ids.code(tuple(result.ids))
        record["labels"] = self._labels.code(tuple(result.labels))
        self._spool.extend(record)

    def __len__(self) -> int:
        return len(self._spool)

    @overload
    def __getitem__(self, index: int) -> FrameResult: ...

    @overload
    def __getitem__(self, index: slice) -> list[FrameResult]: ...

    def __getitem__(self, index: int | slice) -> FrameResult | list[FrameResult]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[k] for k in range(start, stop, step)]
            return [self._result(record) for record in self._spool.read(start, stop)]
        position = range(len(self))[index]
        return self._result(self._spool.read(position, position + 1)[0])

    def __iter__(self) -> Iterator[FrameResult]:
        for _, records in self._spool.chunks():
            for record in records:
                yield self._result(record)

    def column(self, name: str) -> np.ndarray:
        """One numeric column for every frame: "timestamp", "persons", "score" or "displayed"
        (NaN where None)."""
        if name not in ("timestamp", "persons", "score", "displayed"):
            raise ValueError(f"name must be timestamp, persons, score or displayed, got {name!r}")
        return np.concatenate([records[name] for _, records in self._spool.chunks()] or [np.empty(0)])

    def _result(self, record: np.void) -> FrameResult:
        score, displayed = float(record["score"]), float(record["displayed"])
        return FrameResult(
            index=int(record["index"]),
            timestamp=float(record["timestamp"]),
            persons=int(record["persons"]),
            score=None if np.isnan(score) else score,
            displayed=None if np.isnan(displayed) else displayed,
            text=self._texts.values[record["text"]],
            ids=self._ids.values[record["ids"]],
            labels=self._labels.values[record["labels"]],
        )
