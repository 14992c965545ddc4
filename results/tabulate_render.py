"""The SUPERB table rendered: the Markdown report (main table, learning rates, per-run details, published numbers,
skipped directories) and the two CSVs, the main table's and one line per run dir."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from results.baselines import CAVEATS, DEFAULT_BASELINES, PublishedScores
from results.paths import repo_relative
from results.run_scores import RunScore
from results.tabulate_rows import Row, published_row, shown_text
from superb.registry import TASK_HEADERS, TASK_LABELS

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
                    shown_text(r) or r.value_text(),
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
