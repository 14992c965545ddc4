"""abx.csv, abx.md and abx.png from the rows of an ABX run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from measure.abx.evaluate import CSV_COLUMNS
from measure.abx.summary import best_layer, by_representation

from ..csv_rows import read_rows, write_rows

PHONE_CONDITIONS = ("within", "across")


def write_csv(rows: Sequence[dict], path: Path) -> None:
    write_rows(rows, path, CSV_COLUMNS, {"error": ".3f"})


def read_csv(path: Path) -> list[dict]:
    return read_rows(path, CSV_COLUMNS, {"layer": int, "error": float, "items": int, "cells": int}, "an abx.csv")


def _cell(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.1f}"


def summary_table(rows: Sequence[dict]) -> str:
    """Markdown: per representation, its best layer by across-speaker error and that layer's errors."""
    grouped = by_representation(rows)
    conditions = [c for c in ("within", "across", "speaker") if any(r["condition"] == c for r in rows)]
    lines = [
        "| representation | best layer | " + " | ".join(f"{c} %" for c in conditions) + " |",
        "|---|---:|" + "---:|" * len(conditions),
    ]
    for name, layers in grouped.items():
        best = best_layer(layers)
        label = str(best) if len(layers) > 1 else "–"
        lines.append(f"| {name} | {label} | " + " | ".join(_cell(layers[best].get(c)) for c in conditions) + " |")
    return "\n".join(lines) + "\n"


def layer_table(name: str, layers: dict[int, dict[str, float]]) -> str:
    conditions = [c for c in ("within", "across", "speaker") if any(c in v for v in layers.values())]
    lines = [
        f"| {name}: layer | " + " | ".join(f"{c} %" for c in conditions) + " |",
        "|---:|" + "---:|" * len(conditions),
    ]
    for layer in sorted(layers):
        lines.append(f"| {layer} | " + " | ".join(_cell(layers[layer].get(c)) for c in conditions) + " |")
    return "\n".join(lines) + "\n"


def markdown(rows: Sequence[dict], title: str, command: str) -> str:
    first = rows[0]
    cells = {r["condition"]: r["cells"] for r in rows if r["representation"] == first["representation"]}
    parts = [
        f"# Phone ABX: {title}\n",
        f"Triphone ABX error (%), angular distance with DTW; chance is 50, lower is better. Within: A, B, X "
        f"from one speaker; across: X from another speaker; speaker: speaker ABX by triphone (low = speaker "
        f"information present). {first['items']} items; cells: "
        + ", ".join(f"{k} {v}" for k, v in cells.items())
        + ".\n",
        f"```\n{command}\n```\n",
        summary_table(rows),
    ]
    for name, layers in by_representation(rows).items():
        if len(layers) > 1:
            parts.append(layer_table(name, layers))
    return "\n".join(parts)


def plot(rows: Sequence[dict], path: Path, title: str) -> None:
    """Error against layer, within (solid) and across (dashed); one-layer references as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = by_representation(rows)
    deepest = max((max(layers) for layers in grouped.values()), default=0)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, layers) in enumerate(grouped.items()):
        colour = colours[i % len(colours)]
        xs = sorted(layers)
        for condition, style in zip(PHONE_CONDITIONS, ("-", "--")):
            ys = [layers[x].get(condition, math.nan) for x in xs]
            label = f"{name} ({condition})"
            if len(xs) > 1:
                ax.plot(xs, ys, style, marker="o", color=colour, label=label)
            else:
                ax.axhline(ys[0], linestyle=style, color=colour, linewidth=1.2, label=label)
    ax.axhline(50.0, color="grey", linewidth=0.8, linestyle=":", label="chance")
    ax.set_xlabel("layer (0 = transformer input, i = output of block i)")
    ax.set_ylabel("phone ABX error (%)")
    ax.set_xlim(-0.3, max(1, deepest) + 0.3)
    ax.set_ylim(0, 55)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_with_curve(abx_dir: Path, curve: Path | None) -> str:
    """The phone ABX summary of abx_dir/abx.csv (best layer of each representation), then the pretraining
    monitor's curve (a pretraining run's abx_curve.tsv) when there is one."""
    text = (
        "Phone ABX (triphone, %, chance 50; lower is better), best layer by across-speaker error; per layer in "
        f"{abx_dir / 'abx.md'}:\n\n" + summary_table(read_csv(abx_dir / "abx.csv"))
    )
    if curve is not None and curve.is_file():
        rows = [line.split("\t") for line in curve.read_text().splitlines()[1:]]
        text += (
            "\nDuring pretraining (best student layer):\n\n| update | layer | within % | across % |\n"
            "|---:|---:|---:|---:|\n"
            + "".join(f"| {s} | {k} | {float(w):.1f} | {float(a):.1f} |\n" for s, k, w, a in rows)
        )
    return text
