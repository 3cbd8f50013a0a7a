"""The outputs' contracts: JSON Schemas of the report and of a summary.csv row.

`report.schema.json` describes `<stem>.json` (every key, its types and its meaning);
`summary-row.schema.json` one row of a folder run's `summary.csv` as `csv.DictReader` reads it.
The tests validate every report and summary they write against them, and check that the key
tables of docs/REPORTS.md are the ones `markdown_table` renders from them:

    python -m reports.schemas report    # the report's key table, to paste into docs/REPORTS.md
    python -m reports.schemas summary   # the summary.csv column table
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parent
SCHEMAS = {"report": "report.schema.json", "summary": "summary-row.schema.json"}


@cache
def load(name: str) -> dict[str, Any]:
    """The schema `name` ("report" or "summary"), parsed."""
    if name not in SCHEMAS:
        raise ValueError(f"name must be one of {', '.join(SCHEMAS)}, got {name!r}")
    return json.loads((FOLDER / SCHEMAS[name]).read_text(encoding="utf-8"))


def keys(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, list[str], str]]:
    """(key, types, description) of every documented key, depth first in schema order:
    "a.b" for key b of object a, "a[].b" for key b of the objects in list a."""
    for name, node in schema.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        yield key, types, node.get("description", "")
        yield from keys(node, key)
        if "properties" in node.get("items", {}):
            yield from keys(node["items"], key + "[]")


def markdown_table(name: str) -> str:
    """The Markdown table docs/REPORTS.md shows for schema `name`."""
    schema = load(name)
    if name == "summary":
        lines = ["| column | meaning |", "| --- | --- |"]
        lines += [f"| `{key}` | {description} |" for key, _, description in keys(schema)]
    else:
        lines = ["| key | type | meaning |", "| --- | --- | --- |"]
        lines += [f"| `{key}` | {' or '.join(types)} | {description} |" for key, types, description in keys(schema)]
    return "\n".join(lines) + "\n"
