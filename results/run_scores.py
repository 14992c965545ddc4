"""Scoring one s3prl run directory: its official test score recomputed from the files the evaluate run wrote,
with the 95 % interval and chance level, or why there is none."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from results import intervals, scores
from results.run_dirs import RunDir, nested_get
from superb.registry import BY_LABEL, CONSTANT_HYPOTHESIS, CONSTANT_SLOT_TYPES, Task

log = logging.getLogger(__name__)

UNFINISHED, ERROR = "unfinished", "error"
# log.log keeps full float precision; anything beyond this is a different set of predictions
LOG_AGREEMENT_TOLERANCE = 0.005  # percentage points


@dataclass
class RunScore:
    """The score of one run dir, or why there is none."""

    run: RunDir
    status: str  # "ok", UNFINISHED or ERROR
    values: tuple[float, ...] = ()  # SUPERB units; SF: (F1, CER)
    notes: list[str] = field(default_factory=list)
    evaluated_ckpt: str | None = None
    estimates: tuple[intervals.Estimate, ...] = ()  # one per value: 95 % interval and chance
    labels: tuple[list, list] | None = None  # (predicted, true) per utterance, accuracy tasks only

    def value_text(self) -> str:
        return " / ".join(f"{v:.2f}" for v in self.values) if self.status == "ok" else self.status


def _unfinished_reasons(run: RunDir, task: Task, files: list[Path]) -> list[str]:
    reasons = []
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        reasons.append("missing " + ", ".join(missing))
    if task.logs_test_accuracy:
        log_path = run.path / "log.log"
        if log_path.is_file():
            last = scores.last_test_line(log_path)
            if last is None:
                reasons.append("log.log has no 'test at step' line: the test set was never evaluated")
            elif last[0] != 0:
                reasons.append(
                    f"no evaluate run: the last 'test at step' line in log.log is from "
                    f"training step {last[0]} (evaluate writes step 0)"
                )
    else:
        if run.evaluate is None:
            reasons.append(f"no evaluate run (no args_*.yaml with mode: evaluate, evaluate_split: {task.test_split})")
        elif run.latest_train is not None and run.latest_train.time_tag > run.evaluate.time_tag:
            eval_splits = nested_get(run.latest_train.config, "runner", "eval_dataloaders") or []
            if task.test_split in eval_splits:
                reasons.append(
                    f"the {task.test_split} files may come from the training run "
                    f"args_{run.latest_train.time_tag}.yaml, newer than the last evaluate"
                )
    return reasons


Computed = tuple[tuple[float, ...], list[str], tuple[intervals.Estimate, ...], tuple[list, list] | None]


def accuracy_estimate(predicted: Sequence, truth: Sequence) -> intervals.Estimate:
    """Accuracy with its Wilson interval and the majority-label chance level."""
    correct = sum(p == t for p, t in zip(predicted, truth))
    low, high = intervals.wilson(correct, len(truth))
    return intervals.Estimate(
        100.0 * correct / len(truth), low, high, len(truth), "Wilson", intervals.majority_rate(list(truth))
    )


def _compute(run: RunDir, files: list[Path]) -> Computed:
    task = BY_LABEL[run.task]
    if task.metric.chance == CONSTANT_HYPOTHESIS:  # PER, WER
        errors, references = scores.token_errors(files[0], files[1])
        lengths = [len(r) for r in references]
        value = 100.0 * sum(errors) / sum(lengths)
        low, high = intervals.bootstrap_ratio(errors, lengths)
        chance = intervals.constant_hypothesis_error(references)[0]
        return (value,), [], (intervals.Estimate(value, low, high, len(errors), "bootstrap", chance),), None
    if task.metric.chance == CONSTANT_SLOT_TYPES:  # SF
        f1, cer, implementation = scores.slot_filling_scores(files[0], files[1])
        notes = [] if implementation == "s3prl" else ["SF metrics: own implementation (s3prl not importable)"]
        return (f1, cer), notes, _slot_filling_estimates(files, f1, cer, notes), None
    predicted, truth = scores.labels(files[0], files[1], fields=task.label_fields)
    estimate = accuracy_estimate(predicted, truth)
    step_and_acc = scores.last_test_line(run.path / "log.log")
    logged = 100.0 * step_and_acc[1]
    if abs(logged - estimate.value) > LOG_AGREEMENT_TOLERANCE:
        raise ValueError(
            f"{run.path / 'log.log'} reports test acc {logged:.4f}% but "
            f"{files[0].name}/{files[1].name} give {estimate.value:.4f}%: the files were "
            "overwritten after the evaluate run"
        )
    return (estimate.value,), [], (estimate,), (predicted, truth)


def _slot_filling_estimates(
    files: list[Path], f1: float, cer: float, notes: list[str]
) -> tuple[intervals.Estimate, ...]:
    """Bootstrap intervals of slot-type F1 and slot-value CER from our per-utterance values, and the
    chance F1 of the best constant set of slot types (CER has no chance level: a constant answer has
    no slot values)."""
    hypotheses, references = scores.aligned_texts(files[0], files[1])
    f1s = [scores.utterance_slot_type_f1(h, r) for h, r in zip(hypotheses, references)]
    pairs = [scores.utterance_slot_value_errors(h, r) for h, r in zip(hypotheses, references)]
    own_f1 = 100.0 * sum(f1s) / len(f1s)
    own_cer = 100.0 * sum(e for e, _ in pairs) / sum(c for _, c in pairs)
    if abs(own_f1 - f1) > 0.01 or abs(own_cer - cer) > 0.01:  # the interval would be around another number
        notes.append(
            f"SF intervals are around the own per-utterance scores (F1 {own_f1:.2f}, "
            f"CER {own_cer:.2f}), which differ from s3prl's"
        )
    n = len(references)
    f1_low, f1_high = intervals.bootstrap_mean(f1s)
    cer_low, cer_high = intervals.bootstrap_ratio([e for e, _ in pairs], [c for _, c in pairs])
    chance = intervals.constant_slot_types_f1([scores.slot_types(r, hypothesis=False) for r in references])[0]
    return (
        intervals.Estimate(f1, f1_low, f1_high, n, "bootstrap", chance),
        intervals.Estimate(cer, cer_low, cer_high, n, "bootstrap", None),
    )


def score_run(run: RunDir) -> RunScore:
    """Recompute the official test score of a run dir; unfinished/error carry the reason."""
    task = BY_LABEL[run.task]
    files = [run.path / name.format(fold=run.fold) for name in task.score_files]
    evaluated_ckpt = None
    if run.evaluate is not None:
        ckpt = run.evaluate.args.get("init_ckpt") or run.evaluate.args.get("past_exp")
        evaluated_ckpt = Path(str(ckpt)).name if ckpt else None
    try:
        reasons = _unfinished_reasons(run, task, files)
        if reasons:
            return RunScore(run, UNFINISHED, notes=reasons, evaluated_ckpt=evaluated_ckpt)
        values, notes, estimates, labels = _compute(run, files)
    except (ValueError, OSError) as error:  # unreadable score files: reported, never a number
        return RunScore(run, ERROR, notes=[str(error)], evaluated_ckpt=evaluated_ckpt)
    if evaluated_ckpt is not None and evaluated_ckpt != task.best_checkpoint:
        notes.append(f"evaluated {evaluated_ckpt}, not {task.best_checkpoint}")
    return RunScore(run, "ok", values, notes, evaluated_ckpt, estimates, labels)


def _same_dir(a: str, b: Path, b_expdir: str | None) -> bool:
    """Does path string `a` name run dir `b`, as an absolute path or as b's own (maybe relative)
    expdir argument?"""
    if Path(a).is_absolute() and Path(a).resolve() == b:
        return True
    return b_expdir is not None and os.path.normpath(a) == os.path.normpath(b_expdir)


def merge_separate_evaluations(run_scores: Sequence[RunScore]) -> list[RunScore]:
    """An evaluate run may write into another expdir (`-o args.expdir=...`). Its training dir then
    stays unfinished; drop that dir and name it on the evaluate run, so the two do not show as
    two competing runs."""
    kept = list(run_scores)
    for evaluated in run_scores:
        if evaluated.run.evaluate is None:
            continue
        ckpt = evaluated.run.evaluate.args.get("init_ckpt")
        if not ckpt:
            continue
        for trained in run_scores:
            train_expdir = trained.run.latest_train.args.get("expdir") if trained.run.latest_train else None
            if (
                trained is not evaluated
                and trained.status == UNFINISHED
                and trained in kept
                and trained.run.task == evaluated.run.task
                and trained.run.fold == evaluated.run.fold
                and _same_dir(
                    os.path.dirname(str(ckpt)), trained.run.path, None if train_expdir is None else str(train_expdir)
                )
            ):
                kept.remove(trained)
                evaluated.notes.append(f"trained in {trained.run.path}")
                log.info("%s: trained here, evaluated in %s", trained.run.path, evaluated.run.path)
    return kept
