"""The SUPERB table's rows: one per upstream configuration (readably and uniquely labelled), one cell per task
from the scored run dirs (ER the mean over its folds), each score shown with its interval and chance level, and
the published rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from results import intervals
from results.baselines import PublishedScores
from results.run_scores import ERROR, UNFINISHED, RunScore, accuracy_estimate
from superb.registry import ER_FOLD_NAMES, TASK_LABELS

DATA_KINDS = {  # --real / --synthetic / neither
    "real": "real",
    "synthetic": "mini-SUPERB synthetic",
    "unstated": "not stated",
}
MISSING, AMBIGUOUS = "missing", "ambiguous"


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


def shown_text(run: RunScore) -> str | None:
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
    return run.value_text(), [f"{task}: {note}" for note in run.notes], shown_text(run)


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
