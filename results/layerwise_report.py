"""The layer-wise probes' outputs: the probes and their metrics in CSV and plot order, layerwise.csv (write and
read back), the plot of the curves per layer and the Markdown table the command prints."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from .csv_rows import read_rows, write_rows

PROBES = {  # probe -> metric, in CSV and plot order
    "phone": "frame_accuracy",
    "keyword": "accuracy",
    "logmel": "r2",
    "speaker": "accuracy",
}
CSV_COLUMNS = ("layer", "probe", "metric", "value", "n_train", "n_test")


def write_csv(rows: Sequence[dict], path: Path) -> None:
    write_rows(rows, path, CSV_COLUMNS, {"value": ".6f"})


def read_csv(path: Path) -> list[dict]:
    """Rows of a layerwise.csv with typed layer / value / n_train / n_test."""
    return read_rows(
        path, CSV_COLUMNS, {"layer": int, "value": float, "n_train": int, "n_test": int}, "a layerwise.csv"
    )


def plot_layerwise(curves: dict[str, Sequence[dict]], path: Path, title: str) -> None:
    """One line per probe and curve set (curve set name as a prefix); layers on x, values on a 0-1 scale
    (accuracies as fractions, R^2 as is, so a negative R^2 shows below 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    lowest = 0.0
    for name, rows in curves.items():
        for probe, metric in PROBES.items():
            mine = sorted((r for r in rows if r["probe"] == probe), key=lambda r: r["layer"])
            if not mine:
                continue
            values = [r["value"] for r in mine]
            lowest = min(lowest, min(v for v in values if math.isfinite(v)) if any(map(math.isfinite, values)) else 0)
            ax.plot(
                [r["layer"] for r in mine], values, marker="o", label=f"{name + ': ' if name else ''}{probe} ({metric})"
            )
    ax.set_xlabel("layer (0 = transformer input, i = output of block i)")
    ax.set_ylabel("accuracy / R^2")
    ax.set_ylim(max(lowest - 0.05, -1.0), 1.0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(rows: Sequence[dict]) -> str:
    """Markdown: one line per layer, one column per probe."""
    probes = [p for p in PROBES if any(r["probe"] == p for r in rows)]
    layers = sorted({r["layer"] for r in rows})
    value = {(r["layer"], r["probe"]): r["value"] for r in rows}
    lines = ["| layer | " + " | ".join(f"{p} {PROBES[p]}" for p in probes) + " |", "|---:|" + "---:|" * len(probes)]
    for layer in layers:
        cells = [f"{value[(layer, p)]:.3f}" if (layer, p) in value else "" for p in probes]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
