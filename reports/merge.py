"""Merge the summaries of a folder run split with `--shard I/N` into `summary.csv` and the index.

    python -m reports.merge OUT

Each shard writes `OUT/summary-shard-I-of-N.csv`; this reads them all (and an earlier
`summary.csv`, whose rows a shard's finished row replaces), writes `OUT/summary.csv` in path
order, and the review index over it. It exits 1 when a merged row failed, like a folder run,
and 2 when there is nothing to merge.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reports.review import build_index
from reports.summary import FINISHED, INDEX_NAME, SUMMARY_NAME, merge, write_merged_summary


def main(argv: Sequence[str] | None = None) -> int:
    """Merge the shards' summaries in the folder `argv` names; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m reports.merge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="the output folder the shards wrote into")
    args = parser.parse_args(argv)
    try:
        rows = merge(args.output)
    except (OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_merged_summary(args.output / SUMMARY_NAME, rows)
    build_index(args.output, rows)
    counts = {status: sum(row["status"] == status for row in rows) for status in (*FINISHED, "pending")}
    print(f"{args.output / SUMMARY_NAME}: {len(rows)} files ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); "
          f"{args.output / INDEX_NAME}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
