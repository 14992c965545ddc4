"""The recipe search's curves (curves.md, curves.png): per arm, the phone ABX monitor's best layer at every
evaluation, and the selector's scalars (teacher and student rho, the hardness lift) and the regression loss averaged
over tenths of the run, from each run directory's metrics.jsonl."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Sequence

from trainkit.logs import METRICS_FILE

CURVE_SCALARS = ("rec_loss", "teacher_rho", "teacher_span_rho", "student_rho", "hardness_lift")
BINS = 10


def read_records(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(dense training records, ABX monitor records) of a run directory, each in step order."""
    path = run_dir / METRICS_FILE
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return (
        sorted((r for r in records if "loss" in r), key=lambda r: r["step"]),
        sorted((r for r in records if "abx" in r), key=lambda r: r["step"]),
    )


def binned_means(records: Sequence[dict], bins: int = BINS) -> list[dict]:
    """[{"until": last update of the bin, scalar: mean of its finite values or NaN}] over `bins` equal tenths."""
    if not records:
        return []
    last = records[-1]["step"]
    rows = []
    for b in range(bins):
        low, high = last * b / bins, last * (b + 1) / bins
        inside = [r for r in records if low < r["step"] <= high]
        row = {"until": int(round(high))}
        for key in CURVE_SCALARS:
            values = [r[key] for r in inside if math.isfinite(r.get(key, math.nan))]
            row[key] = statistics.fmean(values) if values else math.nan
        rows.append(row)
    return rows


def _cell(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "–"


def curves_markdown(runs: dict[str, Path]) -> str:
    lines = [
        "# Curves over training",
        "",
        "Per arm: the best layer's phone ABX (within / across speaker, %) at each evaluation of the pretrainer's "
        "monitor, then the regression loss, the teacher's rho (per frame / per span), the student's rho and the "
        "hardness lift averaged over each tenth of the run (– : not measured, e.g. the lift while alpha is 0).",
        "",
    ]
    for name, run_dir in runs.items():
        dense, abx = read_records(run_dir)
        lines += [f"## {name}", "", "| update | best layer | within % | across % |", "|---:|---:|---:|---:|"]
        lines += [
            f"| {r['step']} | {r['abx']['best_layer']} | {r['abx']['best_within']:.1f} | "
            f"{r['abx']['best_across']:.1f} |"
            for r in abx
        ]
        lines += [
            "",
            "| updates up to | loss | teacher rho frame / span | student rho | lift |",
            "|---:|---:|---|---:|---:|",
        ]
        lines += [
            f"| {r['until']} | {_cell(r['rec_loss'], 3)} | {_cell(r['teacher_rho'], 2)} / "
            f"{_cell(r['teacher_span_rho'], 2)} | {_cell(r['student_rho'], 2)} | {_cell(r['hardness_lift'], 3)} |"
            for r in binned_means(dense)
        ]
        lines.append("")
    return "\n".join(lines)


def plot_curves(runs: dict[str, Path], path: Path) -> None:
    """Three panels against the update: best-layer across-speaker ABX, hardness lift, teacher rho."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, run_dir in runs.items():
        dense, abx = read_records(run_dir)
        axes[0].plot([r["step"] for r in abx], [r["abx"]["best_across"] for r in abx], marker="o", label=name)
        for ax, key in ((axes[1], "hardness_lift"), (axes[2], "teacher_rho")):
            rows = binned_means(dense)
            points = [(r["until"], r[key]) for r in rows if math.isfinite(r[key])]
            if points:
                ax.plot(*zip(*points), marker=".", label=name)
    for ax, title in zip(
        axes,
        ("best layer, across-speaker phone ABX %", "hardness lift (1 = random)", "teacher rho with the realised loss"),
    ):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("update")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_curves(runs: dict[str, Path], out: Path) -> None:
    (out / "curves.md").write_text(curves_markdown(runs), encoding="utf-8")
    plot_curves(runs, out / "curves.png")
