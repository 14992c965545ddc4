"""How each layer's phone information evolves during pretraining: every layer's within- and across-speaker phone ABX
at every evaluation of the pretrainer's monitor (pretrain/monitor.py), one column of panels per run.

Run: python -m results.abx_evolution RUN_DIR [NAME=RUN_DIR ...] --out DIR

A RUN_DIR is a pretraining run folder whose metrics.jsonl holds the monitor's records ({"step", "abx": {"within":
[error per layer], "across": [...]}}; run.eval_data must have been set, run.eval_every sets how dense the curve is).
A resumed run can log an update twice; the record written last counts. Writes under --out:
* abx_evolution.csv: run, update, layer, within, across (%), one row per run, evaluation and layer;
* abx_evolution.png: per run, across-speaker (top) and within-speaker (bottom) ABX of every layer against the update
  (layer 0 is the context encoder's input, the last layer the top block);
* abx_evolution.md: per run and layer, the across-speaker ABX at the first evaluation, its lowest over training (and
  when), and at the last; "rise" = last - lowest, how far a layer fell back after its best point.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from results.search_curves import read_records
from trainkit.logs import METRICS_FILE

CONDITIONS = ("within", "across")
CSV_NAME, FIGURE_NAME, SUMMARY_NAME = "abx_evolution.csv", "abx_evolution.png", "abx_evolution.md"


@dataclass
class Evolution:
    """One run's monitor records: steps ascending, errors[condition][i][layer] at steps[i]."""

    name: str
    steps: list[int]
    errors: dict[str, list[list[float]]]

    @property
    def num_layers(self) -> int:
        return len(self.errors["across"][0])

    def layer_curve(self, condition: str, layer: int) -> list[float]:
        return [row[layer] for row in self.errors[condition]]


def read_evolution(run_dir: Path, name: str | None = None) -> Evolution:
    """The ABX records of run_dir/metrics.jsonl, one per update (the last one written wins, as a resumed run
    re-logs the updates it replays)."""
    run_dir = Path(run_dir)
    if not (run_dir / METRICS_FILE).is_file():
        raise FileNotFoundError(f"{run_dir / 'metrics.jsonl'}: not found; RUN_DIR must be a pretraining run folder")
    _, records = read_records(run_dir)
    by_step = {}
    for record in records:  # read_records sorts stably, so file order survives within a step
        by_step[record["step"]] = record["abx"]
    if not by_step:
        raise ValueError(
            f"{run_dir / 'metrics.jsonl'}: no ABX monitor records (pretrain with run.eval_data set to an aligned "
            f"corpus, e.g. --set run.eval_data=CORPUS --set run.eval_every=100)"
        )
    steps = sorted(by_step)
    errors = {c: [] for c in CONDITIONS}
    for step in steps:
        for condition in CONDITIONS:
            values = by_step[step].get(condition)
            if not isinstance(values, list) or not values:
                raise ValueError(f"{run_dir / 'metrics.jsonl'}: the record of update {step} has no '{condition}' list")
            errors[condition].append([float(v) for v in values])
    widths = {len(row) for c in CONDITIONS for row in errors[c]}
    if len(widths) != 1:
        raise ValueError(
            f"{run_dir / 'metrics.jsonl'}: the records have different layer counts {sorted(widths)}; "
            f"one run folder must hold one model"
        )
    return Evolution(name or run_dir.name, steps, errors)


def csv_rows(runs: Sequence[Evolution]) -> list[dict]:
    return [
        {
            "run": run.name,
            "update": step,
            "layer": layer,
            "within": run.errors["within"][i][layer],
            "across": run.errors["across"][i][layer],
        }
        for run in runs
        for i, step in enumerate(run.steps)
        for layer in range(run.num_layers)
    ]


def write_csv(runs: Sequence[Evolution], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["run", "update", "layer", "within", "across"])
        writer.writeheader()
        for row in csv_rows(runs):
            writer.writerow({**row, "within": f"{row['within']:.4f}", "across": f"{row['across']:.4f}"})


def layer_summary(run: Evolution, condition: str = "across") -> list[dict]:
    """Per layer: first, lowest (and its update), last error, and rise = last - lowest."""
    rows = []
    for layer in range(run.num_layers):
        curve = run.layer_curve(condition, layer)
        low = min(range(len(curve)), key=lambda i: (curve[i], i))
        rows.append(
            {
                "layer": layer,
                "first": curve[0],
                "lowest": curve[low],
                "lowest_update": run.steps[low],
                "last": curve[-1],
                "rise": curve[-1] - curve[low],
            }
        )
    return rows


def summary_markdown(runs: Sequence[Evolution]) -> str:
    lines = [
        "# Phone ABX of every layer over pretraining",
        "",
        "Across-speaker phone ABX error (%) per layer (0 = the context encoder's input, the last = the top block): at "
        "the first evaluation, the lowest over training and when, at the last evaluation, and the rise from the "
        "lowest to the last (how far the layer fell back). Written by `python -m results.abx_evolution`.",
        "",
    ]
    for run in runs:
        rows = layer_summary(run)
        best = min(rows, key=lambda r: r["last"])
        lines += [
            f"## {run.name}",
            "",
            f"{len(run.steps)} evaluations, updates {run.steps[0]}-{run.steps[-1]}; at the end the best layer is "
            f"{best['layer']} ({best['last']:.1f} %), the top layer {rows[-1]['layer']} is at "
            f"{rows[-1]['last']:.1f} %.",
            "",
            "| layer | first | lowest (update) | last | rise |",
            "|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['layer']} | {r['first']:.1f} | {r['lowest']:.1f} ({r['lowest_update']}) | {r['last']:.1f} | "
            f"{r['rise']:+.1f} |"
            for r in rows
        ]
        lines.append("")
    return "\n".join(lines)


def plot_evolution(runs: Sequence[Evolution], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(runs), figsize=(5.2 * len(runs), 7), squeeze=False)
    for column, run in enumerate(runs):
        colours = plt.get_cmap("viridis")([i / max(run.num_layers - 1, 1) for i in range(run.num_layers)])
        for row, condition in enumerate(("across", "within")):
            ax = axes[row][column]
            for layer in range(run.num_layers):
                top = layer == run.num_layers - 1
                ax.plot(
                    run.steps,
                    run.layer_curve(condition, layer),
                    color=colours[layer],
                    lw=2.2 if top or layer == 0 else 1.1,
                    ls="--" if layer == 0 else "-",
                    marker=".",
                    label=f"layer {layer}" + (" (input)" if layer == 0 else " (top)" if top else ""),
                )
            ax.set_title(f"{run.name}: {condition}-speaker phone ABX %", fontsize=9)
            ax.set_xlabel("pretraining update")
            ax.grid(alpha=0.3)
        axes[0][column].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_evolution(runs: Sequence[Evolution], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(runs, out / CSV_NAME)
    (out / SUMMARY_NAME).write_text(summary_markdown(runs), encoding="utf-8")
    plot_evolution(runs, out / FIGURE_NAME)


def parse_run(argument: str) -> tuple[str | None, Path]:
    """RUN_DIR or NAME=RUN_DIR."""
    name, sep, folder = argument.partition("=")
    return (name, Path(folder)) if sep and name else (None, Path(argument))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="pretraining run folders (NAME=RUN_DIR names one)")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    try:
        runs = [read_evolution(folder, name) for name, folder in map(parse_run, args.runs)]
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_evolution(runs, Path(args.out))
    print(summary_markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
