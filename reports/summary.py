"""Merge the summaries of a folder run split with `--shard I/N` into `summary.csv` and the index.

    python -m pipeline.summary OUT

Each shard writes `OUT/summary-shard-I-of-N.csv`; this reads them all (and an earlier
`summary.csv`, whose rows a shard's finished row replaces), writes `OUT/summary.csv` in path
order, and the review index over it. It exits 1 when a merged row failed, like a folder run,
and 2 when there is nothing to merge.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.batch import INDEX_NAME, SUMMARY_COLUMNS, SUMMARY_NAME
from pipeline.review import build_index
from workers.files import write_csv

#: Statuses of a file that a shard finished; a finished row wins over a pending one.
FINISHED = ("done", "skipped", "failed")


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
    shards = sorted(output_folder.glob("summary-shard-*-of-*.csv"))
    if not shards:
        raise FileNotFoundError(f"{output_folder}: no summary-shard-*-of-*.csv to merge")
    merged: dict[str, dict[str, str]] = {}
    earlier = output_folder / SUMMARY_NAME
    for path in ([earlier] if earlier.is_file() else []) + shards:
        for row in read_rows(path):
            known = merged.get(row["input"])
            if known is None or row["status"] in FINISHED or known["status"] not in FINISHED:
                merged[row["input"]] = row
    return [merged[name] for name in sorted(merged, key=lambda name: Path(name).parts)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="the output folder the shards wrote into")
    args = parser.parse_args(argv)
    try:
        rows = merge(args.output)
    except (OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_csv(args.output / SUMMARY_NAME, SUMMARY_COLUMNS, [[row.get(c, "") for c in SUMMARY_COLUMNS] for row in rows])
    build_index(args.output, rows)
    counts = {status: sum(row["status"] == status for row in rows) for status in (*FINISHED, "pending")}
    print(f"{args.output / SUMMARY_NAME}: {len(rows)} files ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); "
          f"{args.output / INDEX_NAME}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
