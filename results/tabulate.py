"""Turn s3prl downstream run directories into the SUPERB table (Markdown + CSV).

python -m results.tabulate <run dirs or roots> --out results/ [--name superb] [--title T] [--synthetic | --real]
Scores are recomputed from the files the evaluate run writes (results/scores.py); nothing is guessed.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from results import intervals
from results.baselines import CAVEATS, DEFAULT_BASELINES, PublishedScores
from results.paths import repo_relative
from results.run_dirs import RunDirError, read_each_run_dir, read_run_dir
from results.run_scores import ERROR, UNFINISHED, RunScore, accuracy_estimate, merge_separate_evaluations, score_run
from superb.registry import ER_FOLD_NAMES, TASK_HEADERS, TASK_LABELS

log = logging.getLogger(__name__)

DATA_KINDS = {  # --real / --synthetic / neither
    "real": "real",
    "synthetic": "mini-SUPERB synthetic",
    "unstated": "not stated",
}
MISSING, AMBIGUOUS = "missing", "ambiguous"


# ----------------------------------------------------------------------------------------------
# The table: one row per upstream configuration, one cell per task.


def model_labels(keys: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """Readable, unique row labels: the upstream name plus the checkpoint file name (more of its
    path where two would collide) and any non-default feature options."""

    def label(key: tuple[str, ...], depth: int) -> str:
        upstream, ckpt, layer, trainable, features = key
        extras = []
        if ckpt:
            extras.append("/".join(Path(ckpt).parts[-depth:]))
        if layer:
            extras.append(f"layer {layer}")
        extras += [e for e in (trainable, features) if e]
        return f"{upstream} ({', '.join(extras)})" if extras else upstream

    depths = {key: 1 for key in keys}
    for _ in range(8):
        labels = {key: label(key, depths[key]) for key in keys}
        clashing = [k for k in keys if list(labels.values()).count(labels[k]) > 1]
        if not clashing:
            return labels
        for key in clashing:
            depths[key] += 1
    seen: dict[str, int] = {}
    unique = {}
    for key in keys:  # still identical after the whole path: number them
        seen[labels[key]] = seen.get(labels[key], 0) + 1
        unique[key] = labels[key] + (f" #{seen[labels[key]]}" if seen[labels[key]] > 1 else "")
    return unique


@dataclass
class Row:
    """One table row: cell texts per task, per-task lrs and the notes."""

    label: str
    model_key: tuple[str, ...]
    data: str
    cells: dict[str, str]  # the score alone ("85.00", SF "F1 / CER") or a status
    lrs: dict[str, str]
    notes: list[str] = field(default_factory=list)
    shown: dict[str, str] = field(default_factory=dict)  # the cell as printed, with intervals and chance

    def text(self, task: str) -> str:
        return self.shown.get(task, self.cells[task])


def with_interval(value_text: str, estimate: intervals.Estimate, extra: str = "") -> str:
    """ "85.00 (80.1–89.2; chance 23.1)": the score, its 95 % interval and the chance level."""
    chance = "" if estimate.chance is None else f"; chance {estimate.chance:.1f}"
    return f"{value_text} ({estimate.interval_text()}{chance}{'; ' + extra if extra else ''})"


def _shown(run: RunScore) -> str | None:
    if run.status != "ok" or len(run.estimates) != len(run.values):
        return None
    return " / ".join(with_interval(f"{v:.2f}", e) for v, e in zip(run.values, run.estimates))


def _single_cell(task: str, runs: list[RunScore]) -> tuple[str, list[str], str | None]:
    if not runs:
        return MISSING, [], None
    if len(runs) > 1:
        listing = ", ".join(f"{r.run.path} ({r.value_text()}, lr {r.run.lr})" for r in runs)
        return AMBIGUOUS, [f"{task}: {len(runs)} runs, pass only one: {listing}"], None
    run = runs[0]
    return run.value_text(), [f"{task}: {note}" for note in run.notes], _shown(run)


def pooled_er_estimate(runs: Sequence[RunScore]) -> intervals.Estimate | None:
    """Wilson interval and majority chance over the pooled test predictions of the scored ER folds
    (each IEMOCAP utterance is tested in exactly one fold, so the pool is the whole corpus)."""
    folds = [r.run.fold for r in runs]
    scored = [r for r in runs if r.status == "ok" and r.labels is not None and folds.count(r.run.fold) == 1]
    if not scored:
        return None
    predicted = [label for r in scored for label in r.labels[0]]
    truth = [label for r in scored for label in r.labels[1]]
    return accuracy_estimate(predicted, truth)


def _er_cell(runs: list[RunScore]) -> tuple[str, list[str], str | None]:
    text, notes = _er_cell_text(runs)
    pooled = pooled_er_estimate(runs)
    if pooled is None:
        return text, notes, None
    mean_text, _, folds = text.partition(" ")
    # folds of unequal size: the mean of fold accuracies is not the pooled one; worth a note when the
    # difference shows at the interval's precision
    if abs(pooled.value - float(mean_text)) >= 0.05:
        notes.append(
            f"ER: the interval is around the pooled accuracy {pooled.value:.2f} of the folds' "
            f"{pooled.n} test utterances, not their mean"
        )
    return text, notes, with_interval(mean_text, pooled, folds.strip("()"))


def _er_cell_text(runs: list[RunScore]) -> tuple[str, list[str]]:
    if not runs:
        return MISSING, []
    by_fold = {fold: [r for r in runs if r.run.fold == fold] for fold in ER_FOLD_NAMES}
    values, notes, statuses = [], [], []
    for fold, fold_runs in by_fold.items():
        if not fold_runs:
            notes.append(f"ER {fold}: missing")
            continue
        if len(fold_runs) > 1:
            statuses.append(AMBIGUOUS)
            notes.append(
                f"ER {fold}: {len(fold_runs)} runs, pass only one: " + ", ".join(str(r.run.path) for r in fold_runs)
            )
            continue
        run = fold_runs[0]
        statuses.append(run.status)
        if run.status == "ok":
            values.append(run.values[0])
            notes += [f"ER {fold}: {note}" for note in run.notes]
        else:
            notes.append(f"ER {fold}: {run.status}: " + "; ".join(run.notes))
    if not values:
        text = next(s for s in (ERROR, UNFINISHED, AMBIGUOUS) if s in statuses)
        return text, notes
    mean = sum(values) / len(values)
    if len(values) == len(ER_FOLD_NAMES):
        return f"{mean:.2f}", notes
    return f"{mean:.2f} ({len(values)}/{len(ER_FOLD_NAMES)} folds)", notes


def _lr_text(runs: list[RunScore]) -> str:
    lrs = list(dict.fromkeys(r.run.lr or "?" for r in runs))
    return ", ".join(lrs) if lrs else ""


def build_rows(run_scores: Sequence[RunScore], data_kind: str) -> list[Row]:
    """One row per upstream configuration, sorted by label."""
    keys = list(dict.fromkeys(r.run.model_key for r in run_scores))
    labels = model_labels(keys)
    rows = []
    for key in sorted(keys, key=lambda k: labels[k]):
        mine = [r for r in run_scores if r.run.model_key == key]
        row = Row(labels[key], key, DATA_KINDS[data_kind], {}, {})
        for task in TASK_LABELS:
            task_runs = [r for r in mine if r.run.task == task]
            text, notes, shown = _er_cell(task_runs) if task == "ER" else _single_cell(task, task_runs)
            row.cells[task], row.lrs[task] = text, _lr_text(task_runs)
            if shown is not None:
                row.shown[task] = shown
            row.notes += notes
        rows.append(row)
    return rows


def published_row(published: PublishedScores, label_suffix: str) -> Row:
    values = {
        "PR": f"{published.pr_per:.2f}",
        "KS": f"{published.ks_acc:.2f}",
        "IC": f"{published.ic_acc:.2f}",
        "SID": f"{published.sid_acc:.2f}",
        "ER": f"{published.er_acc:.2f}",
        "ASR": f"{published.asr_wer_no_lm:.2f}",
        "SF": f"{published.sf_f1:.2f} / {published.sf_cer:.2f}",
    }
    lrs = {task: "sweep" for task in TASK_LABELS}  # published numbers come from a per-upstream lr sweep
    return Row(published.name + label_suffix, ("published", published.name), "published, real data", values, lrs)


# ----------------------------------------------------------------------------------------------
# Rendering.

MAIN_COLUMNS = ("model", *(TASK_HEADERS[t] for t in TASK_LABELS), "notes")
LR_COLUMNS = tuple(f"{t} lr" for t in TASK_LABELS)
CSV_COLUMNS = ("data", *MAIN_COLUMNS, *LR_COLUMNS)


def _main_cells(row: Row) -> list[str]:
    return [row.label, *(row.text(t) for t in TASK_LABELS), "; ".join(row.notes)]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(map(_md_escape, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def full_title(title: str | None, data_kind: str) -> str:
    """The title always states when the data is not the real SUPERB data."""
    if data_kind == "synthetic":
        return (
            title or "mini-SUPERB results"
        ) + " (mini-SUPERB synthetic data; NOT comparable to published SUPERB numbers)"
    if data_kind == "unstated":
        return (
            title or "SUPERB results"
        ) + " (data not stated: pass --real or --synthetic; not set beside published numbers)"
    return title or "SUPERB results (real data, test sets)"


def render_markdown(
    rows: Sequence[Row],
    runs: Sequence[RunScore],
    skipped: Sequence[tuple[Path, str]],
    title: str | None,
    data_kind: str,
    baselines: Sequence[PublishedScores] = DEFAULT_BASELINES,
) -> str:
    """The whole report: main table, learning rates, per-run details, published numbers, skips."""
    label_of = _labels_by_key(rows)
    parts = [f"# {full_title(title, data_kind)}", ""]
    parts.append(
        "Test-set scores recomputed from the s3prl evaluate-run files, in SUPERB units (%). "
        "ER is the mean over the IEMOCAP folds found. `missing`: no run directory; "
        "`unfinished`: no evaluate output yet; `error`: unreadable score files "
        "(see notes)."
    )
    parts.append("")
    parts.append(
        "In brackets: the 95 % interval (Wilson for accuracies, ER over the folds' pooled test "
        "utterances; a seeded bootstrap over test utterances for PER, WER, F1 and CER) and the "
        "chance level on the same test set: the most frequent label's share for accuracies, the "
        "best constant hypothesis (one token repeated) for PER/WER, the best constant set of "
        "slot types for SF F1. A score is above chance when its interval excludes the chance level."
    )
    if data_kind == "synthetic":
        parts.append("")
        parts.append(
            "> **Synthetic mini-SUPERB data.** These numbers check the pipeline and "
            "relative comparisons only. They are not comparable to published SUPERB "
            "numbers, which are listed separately at the end."
        )
    main_rows = [_main_cells(r) for r in rows]
    if data_kind == "real":
        main_rows += [_main_cells(published_row(b, " (published)")) for b in baselines]
    parts += ["", markdown_table(MAIN_COLUMNS, main_rows), ""]
    parts += [
        "## Learning rates (config optimizer.lr)",
        "",
        markdown_table(("model", *TASK_LABELS), [[r.label, *(r.lrs[t] for t in TASK_LABELS)] for r in rows]),
        "",
    ]
    parts += [
        "## Runs",
        "",
        markdown_table(
            ("model", "task", "fold", "lr", "status", "score", "evaluated checkpoint", "run dir", "notes"),
            [
                [
                    label_of[r.run.model_key],
                    r.run.task,
                    r.run.fold or "",
                    r.run.lr or "?",
                    r.status,
                    _shown(r) or r.value_text(),
                    r.evaluated_ckpt or "",
                    repo_relative(r.run.path),
                    "; ".join(r.notes),
                ]
                for r in runs
            ],
        ),
        "",
    ]
    if data_kind != "real":
        parts += [
            "## Published SUPERB numbers (real data, NOT comparable to the tables above)",
            "",
            markdown_table(MAIN_COLUMNS[:-1], [_main_cells(published_row(b, ""))[:-1] for b in baselines]),
            "",
        ]
    parts += ["Published-number sources and caveats:", ""]
    parts += [f"- {b.name}: {b.source}" for b in baselines]
    parts += [f"- {caveat}" for caveat in CAVEATS]
    if skipped:
        parts += ["", "## Skipped", ""]
        parts += [f"- `{repo_relative(path)}`: {reason}" for path, reason in skipped]
    return "\n".join(parts) + "\n"


def _labels_by_key(rows: Sequence[Row]) -> dict[tuple[str, ...], str]:
    return {row.model_key: row.label for row in rows}


def csv_text(rows: Sequence[Row], data_kind: str, baselines: Sequence[PublishedScores] = DEFAULT_BASELINES) -> str:
    """The main table as CSV (same cells as the Markdown), with a data column and the lrs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    all_rows = list(rows)
    if data_kind == "real":
        all_rows += [published_row(b, " (published)") for b in baselines]
    for row in all_rows:
        writer.writerow([row.data, *_main_cells(row), *(row.lrs[t] for t in TASK_LABELS)])
    return buffer.getvalue()


def runs_csv_text(rows: Sequence[Row], runs: Sequence[RunScore]) -> str:
    """One line per run dir with numeric scores (SF: score = F1, sf_cer = CER), for scripts and
    lr sweeps."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        (
            "model",
            "task",
            "fold",
            "lr",
            "status",
            "score",
            "sf_cer",
            "score_low",
            "score_high",
            "chance",
            "test_utterances",
            "evaluated_checkpoint",
            "run_dir",
            "notes",
        )
    )
    label_of = _labels_by_key(rows)
    for r in runs:
        values = [f"{v:.4f}" for v in r.values] + ["", ""]
        first = r.estimates[0] if r.estimates else None
        stats = (
            ["", "", "", ""]
            if first is None
            else [
                f"{first.low:.4f}",
                f"{first.high:.4f}",
                "" if first.chance is None else f"{first.chance:.4f}",
                str(first.n),
            ]
        )
        writer.writerow(
            (
                label_of[r.run.model_key],
                r.run.task,
                r.run.fold or "",
                r.run.lr or "",
                r.status,
                values[0],
                values[1],
                *stats,
                r.evaluated_ckpt or "",
                repo_relative(r.run.path),
                "; ".join(r.notes),
            )
        )
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# Entry point.


@dataclass
class Report:
    """Everything `tabulate` computed; `markdown` is what is printed and written."""

    rows: list[Row]
    runs: list[RunScore]
    skipped: list[tuple[Path, str]]
    markdown: str
    csv: str
    runs_csv: str


def tabulate(paths: Sequence[Path], title: str | None = None, data_kind: str = "unstated") -> Report:
    """Find, identify and score the run dirs under `paths` and render the report."""
    if data_kind not in DATA_KINDS:
        raise ValueError(f"data_kind must be one of {sorted(DATA_KINDS)}, got {data_kind!r}")
    runs, skipped = read_each_run_dir(paths, read_run_dir, (RunDirError, OSError))
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    order = {task: i for i, task in enumerate(TASK_LABELS)}
    runs.sort(key=lambda r: (r.model_key, order[r.task], r.fold or "", str(r.path)))
    run_scores = merge_separate_evaluations([score_run(run) for run in runs])
    rows = build_rows(run_scores, data_kind)
    return Report(
        rows,
        run_scores,
        skipped,
        render_markdown(rows, run_scores, skipped, title, data_kind),
        csv_text(rows, data_kind),
        runs_csv_text(rows, run_scores),
    )


def write_report(report: Report, out: Path, name: str) -> list[Path]:
    """<out>/<name>.md, <name>.csv and <name>_runs.csv; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in {".md": report.markdown, ".csv": report.csv, "_runs.csv": report.runs_csv}.items():
        path = out / f"{name}{suffix}"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m results.tabulate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="*", type=Path, help="s3prl run dirs, or roots to search")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    parser.add_argument("--name", default="superb", help="file stem: <out>/<name>.md, <name>.csv, <name>_runs.csv")
    parser.add_argument("--title", default=None, help="table title")
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--synthetic",
        action="store_const",
        const="synthetic",
        dest="data_kind",
        help="runs on mini-SUPERB synthetic data: published numbers kept apart",
    )
    data.add_argument(
        "--real",
        action="store_const",
        const="real",
        dest="data_kind",
        help="runs on the real SUPERB corpora: published numbers in the same table",
    )
    parser.add_argument(
        "--lowresource",
        type=Path,
        default=None,
        metavar="RUNS",
        help="also write <out>/lowresource.md and .csv: the fine-tuning runs RUNS/finetune_<split> "
        "(decoded by finetune.decode) beside the published Base rows",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.paths and args.lowresource is None:
        parser.error("give s3prl run dirs, --lowresource RUNS, or both")
    if args.lowresource is not None:
        from results.lowresource import DEFAULT_LABEL, run_folders, write_table

        sys.stdout.write(write_table(run_folders(args.lowresource), DEFAULT_LABEL, args.out) + "\n")
        if not args.paths:
            return 0
    report = tabulate(args.paths, args.title, args.data_kind or "unstated")
    if not report.runs:
        parser.error("no s3prl run directory could be read under: " + ", ".join(map(str, args.paths)))
    written = write_report(report, args.out, args.name)
    sys.stdout.write(report.markdown)
    log.info("wrote %s", ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
