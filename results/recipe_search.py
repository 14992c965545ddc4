"""The recipe search's report (search.md, search.csv, curves.md/png) from its run directories: per arm the updates,
the pretraining wall time, the final loss, the selector's health scalars over the second half, and the ABX of its
best layer at update 0, at the end and at its best evaluation, against the log-mel references. The search itself
runs with `python -m experiments.recipe_search`.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from results.abx import ABX_FILES
from results.search_curves import read_records, write_curves

# the selector's health scalars, averaged over the logged updates of the second half of the run
MECHANISM = ("teacher_rho", "teacher_span_rho", "student_rho", "student_span_rho", "hardness_lift", "masked_fraction")


COLUMNS = (
    "name",
    "updates",
    "wall_s",
    "final_loss",
    "init_within",
    "init_across",
    "end_layer",
    "end_within",
    "end_across",
    "best_step",
    "best_layer",
    "best_within",
    "best_across",
    *MECHANISM,
    "about",
    "overrides",
)


@dataclass
class ArmLog:
    """What one arm's run directory says."""

    updates: int = 0
    final_loss: float = math.nan
    abx: list[dict] = field(default_factory=list)  # the monitor's records, in step order
    mechanism: dict[str, float] = field(default_factory=dict)  # MECHANISM key -> mean over the second half


def second_half_means(records: Sequence[dict], updates: int) -> dict[str, float]:
    """Each MECHANISM scalar averaged over the logged updates after half of `updates` (NaN values, e.g. the lift
    while alpha is 0, left out; NaN when none is left)."""
    means = {}
    for key in MECHANISM:
        values = [r[key] for r in records if r["step"] > updates / 2 and math.isfinite(r.get(key, math.nan))]
        means[key] = statistics.fmean(values) if values else math.nan
    return means


def read_run(run_dir: Path) -> ArmLog:
    losses, abx = read_records(run_dir)
    if not losses and not abx:
        return ArmLog()
    tail = [r["rec_loss"] for r in losses[-5:]]
    updates = max((r["step"] for r in losses), default=0)
    return ArmLog(updates, statistics.fmean(tail) if tail else math.nan, abx, second_half_means(losses, updates))


def arm_row(name: str, about: str, overrides: Sequence[str], run: ArmLog, wall_s: float) -> dict:
    row = {
        "name": name,
        "updates": run.updates,
        "wall_s": wall_s,
        "final_loss": run.final_loss,
        "about": about,
        "overrides": " ".join(overrides),
        **run.mechanism,
    }
    if run.abx:
        first, last = run.abx[0]["abx"], run.abx[-1]["abx"]
        best = min(run.abx, key=lambda r: (r["abx"]["best_across"], r["step"]))
        row.update(
            init_within=first["best_within"],
            init_across=first["best_across"],
            end_layer=last["best_layer"],
            end_within=last["best_within"],
            end_across=last["best_across"],
            best_step=best["step"],
            best_layer=best["abx"]["best_layer"],
            best_within=best["abx"]["best_within"],
            best_across=best["abx"]["best_across"],
        )
    return row


def _fmt(value, digits: int = 1) -> str:
    if value is None or value == "" or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(rows: Sequence[dict], references: Sequence[dict], command: str) -> str:
    lines = [
        "# Small-scale recipe search, by phone ABX",
        "",
        f"Command: `{command}`",
        "",
        f"Phone ABX (triphone, within / across speaker, %) of the best student layer on the first {ABX_FILES} "
        "dev-clean utterances, from the pretrainer's monitor: at update 0 (random init), at the end, and at the "
        "evaluation with the lowest across-speaker error. Wall: the pretraining process, evaluations included. "
        "Loss: mean regression loss of the last five logged updates. Chance is 50. Selector: means over the "
        "logged updates of the second half of the run of the teacher predictor's Spearman rho with the realised "
        "per-frame loss (per frame / per span), the student predictor's (which sees the mask), and the hardness "
        "lift (realised loss in hard-picked spans over that in random spans of the same rows; 1 = no harder than "
        "chance); masked: the masked share of the frames.",
        "",
        "| reference | within | across |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r['representation']} | {r['within']:.1f} | {r['across']:.1f} |" for r in references]
    lines += [
        "",
        "| arm | updates | wall s | loss | init within / across | end layer: within / across | "
        "best (step, layer): within / across | teacher rho frame / span | student rho frame / span | lift | "
        "masked | what |",
        "|---|---:|---:|---:|---|---|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['updates']} | {_fmt(r['wall_s'], 0)} | {_fmt(r['final_loss'], 3)} | "
            f"{_fmt(r.get('init_within'))} / {_fmt(r.get('init_across'))} | "
            f"{_fmt(r.get('end_layer'))}: {_fmt(r.get('end_within'))} / {_fmt(r.get('end_across'))} | "
            f"({_fmt(r.get('best_step'))}, {_fmt(r.get('best_layer'))}): {_fmt(r.get('best_within'))} / "
            f"{_fmt(r.get('best_across'))} | {_fmt(r.get('teacher_rho'), 2)} / {_fmt(r.get('teacher_span_rho'), 2)} | "
            f"{_fmt(r.get('student_rho'), 2)} / {_fmt(r.get('student_span_rho'), 2)} | "
            f"{_fmt(r.get('hardness_lift'), 3)} | "
            f"{_fmt(r.get('masked_fraction'), 3)} | {r['about']} (`{r['overrides']}`) |"
        )
    lines += seed_means_table(rows)
    return "\n".join(lines) + "\n"


SEED_SUFFIX = re.compile(r"-s\d+$")  # arms named NAME-s<seed> are seeds of one setting


MEAN_COLUMNS = ("end_across", "best_across", *MECHANISM)


def seed_means_table(rows: Sequence[dict]) -> list[str]:
    """Markdown lines: per setting with more than one seed (arms NAME-s0, NAME-s1, ...), the mean and the range over
    its seeds of the end / best across-speaker ABX and the selector's scalars; no lines when no setting has two."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(SEED_SUFFIX.sub("", row["name"]), []).append(row)
    if all(len(group) < 2 for group in groups.values()):
        return []
    lines = [
        "",
        "Mean over seeds [min, max]:",
        "",
        "| setting | seeds | " + " | ".join(c.replace("_", " ") for c in MEAN_COLUMNS) + " |",
        "|---|---:|" + "---:|" * len(MEAN_COLUMNS),
    ]
    for name, group in groups.items():
        cells = []
        for column in MEAN_COLUMNS:
            values = [r[column] for r in group if isinstance(r.get(column), float) and math.isfinite(r[column])]
            digits = 1 if column.endswith("across") else 3
            cells.append(
                f"{statistics.fmean(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"
                if values
                else "–"
            )
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    return lines


def write_search_report(
    rows: Sequence[dict], references: Sequence[dict], command: str, out: Path, run_dirs: dict[str, Path]
) -> None:
    """OUT/search.csv, search.md and the curves of `run_dirs` (arm name -> its pretraining run directory)."""
    with (out / "search.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out / "search.md").write_text(markdown(rows, references, command), encoding="utf-8")
    write_curves(run_dirs, out)
