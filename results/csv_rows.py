"""CSV files of result rows (abx.csv, layerwise.csv): fixed columns and number formats on the way out, typed
values on the way back, and an error naming the file when it is not the kind of CSV expected."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Sequence


def write_rows(rows: Sequence[dict], path: Path, columns: Sequence[str], formats: dict[str, str]) -> None:
    """One line per row in `columns` order; `formats` maps a column to its format spec (e.g. ".3f")."""
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, **{k: format(row[k], spec) for k, spec in formats.items()}})


def read_rows(path: Path, columns: Sequence[str], types: dict[str, Callable], kind: str) -> list[dict]:
    """The rows of `kind` (e.g. "an abx.csv") with the `types` columns converted; ValueError when a column is
    missing or there are no rows."""
    with Path(path).open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or any(c not in rows[0] for c in columns):
        raise ValueError(f"{path}: not {kind} (columns {', '.join(columns)})")
    return [{**r, **{k: convert(r[k]) for k, convert in types.items()}} for r in rows]
