"""Turn s3prl downstream run directories into the SUPERB table (Markdown + CSV).

python -m results.tabulate <run dirs or roots> --out results/ [--name superb] [--title T] [--synthetic | --real]
Scores are recomputed from the files the evaluate run writes (results/scores.py); nothing is guessed.
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from results import intervals, scores
from results.paths import repo_relative
from results.baselines import CAVEATS, DEFAULT_BASELINES, PublishedScores

log = logging.getLogger(__name__)

TASKS = ("PR", "KS", "IC", "SID", "ER", "ASR", "SF")
TASK_HEADERS = {
    "PR": "PR PER ↓", "KS": "KS acc ↑", "IC": "IC acc ↑", "SID": "SID acc ↑", "ER": "ER acc ↑",
    "ASR": "ASR WER ↓ (no LM)", "SF": "SF F1 ↑ / CER ↓",
}
DOWNSTREAM_TASKS = {  # s3prl `-d` module -> task; `ctc` is PR or SF, decided by corpus.name
    "asr": "ASR", "speech_commands": "KS", "fluent_commands": "IC", "voxceleb1": "SID",
    "emotion": "ER",
}
CTC_CORPUS_TASKS = {"libriphone": "PR", "snips": "SF"}
ER_FOLDS = ("fold1", "fold2", "fold3", "fold4", "fold5")

DATA_KINDS = {  # --real / --synthetic / neither
    "real": "real",
    "synthetic": "mini-SUPERB synthetic",
    "unstated": "not stated",
}
MISSING, UNFINISHED, ERROR, AMBIGUOUS = "missing", "unfinished", "error", "ambiguous"


@dataclass(frozen=True)
class TaskFiles:
    """What an evaluate run of one task leaves in its expdir."""

    split: str  # the split evaluated for the official number (`-t`)
    files: tuple[str, ...]  # score files; `{fold}` is filled in for ER
    uses_log: bool  # KS/IC/SID/ER append `test at step <N>: <acc>` to log.log


TASK_FILES = {
    "PR": TaskFiles("test", ("test-hyp.ark", "test-ref.ark"), uses_log=False),
    "ASR": TaskFiles("test-clean", ("test-clean-noLM-hyp.ark", "test-clean-noLM-ref.ark"), False),
    "SF": TaskFiles("test", ("test-hyp.ark", "test-ref.ark"), uses_log=False),
    "KS": TaskFiles("test", ("test_predict.txt", "test_truth.txt", "log.log"), uses_log=True),
    "IC": TaskFiles("test", ("test_predict.csv", "test_truth.csv", "log.log"), uses_log=True),
    "SID": TaskFiles("test", ("test_predict.txt", "test_truth.txt", "log.log"), uses_log=True),
    "ER": TaskFiles(
        "test", ("test_{fold}_predict.txt", "test_{fold}_truth.txt", "log.log"), uses_log=True
    ),
}
# log.log keeps full float precision; anything beyond this is a different set of predictions
LOG_AGREEMENT_TOLERANCE = 0.005  # percentage points


class RunDirError(ValueError):
    """A directory that cannot be read as an s3prl run of one of the seven tasks."""


# ----------------------------------------------------------------------------------------------
# Reading a run directory: args_<time>.yaml / config_<time>.yaml pairs, one per runner invocation.


class _LenientLoader(yaml.SafeLoader):
    """SafeLoader that reads the python/* tags `yaml.dump` may write (tuples...) as plain data."""


def _construct_python_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)


_LenientLoader.add_multi_constructor("tag:yaml.org,2002:python/", _construct_python_tag)


def load_yaml(path: Path) -> dict:
    """A YAML mapping, or RunDirError naming the file."""
    try:
        with Path(path).open(encoding="utf-8") as file:
            data = yaml.load(file, Loader=_LenientLoader)  # noqa: S506 - a safe loader subclass
    except (OSError, yaml.YAMLError) as error:
        raise RunDirError(f"{path}: unreadable YAML ({error})") from error
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: expected a mapping, found {type(data).__name__}")
    return data


@dataclass(frozen=True)
class Invocation:
    """One `run_downstream` invocation: its args and config, keyed by s3prl's time tag."""

    time_tag: str
    args: dict
    config: dict

    @property
    def mode(self) -> str:
        return str(self.args.get("mode", ""))


_TAGGED = re.compile(r"^(args|config)_(.+)\.yaml$")


def read_invocations(run_dir: Path) -> list[Invocation]:
    """All invocations in a run dir, oldest first. A config is paired with the args of the same
    time tag, else with the next newer config (the two tags can straddle a second)."""
    args_files, config_files = {}, {}
    for entry in sorted(run_dir.iterdir()):
        match = _TAGGED.match(entry.name)
        if match and entry.is_file():
            (args_files if match.group(1) == "args" else config_files)[match.group(2)] = entry
    config_tags = sorted(config_files)
    invocations = []
    for tag in sorted(args_files):
        paired = [t for t in config_tags if t >= tag]
        config = load_yaml(config_files[paired[0]]) if paired else {}
        invocations.append(Invocation(tag, load_yaml(args_files[tag]), config))
    return invocations


def _nested(mapping: dict, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _task_from_files(run_dir: Path) -> str | None:
    """Fallback when the args name no downstream: the score files are task-specific."""
    names = {p.name for p in run_dir.iterdir()}
    if any(re.match(r"(test|dev)_fold\d_predict\.txt$", n) for n in names):
        return "ER"
    if "test_predict.csv" in names or "dev_predict.csv" in names:
        return "IC"
    if any(n.endswith("-noLM-hyp.ark") for n in names):
        return "ASR"
    for split in ("test", "dev"):
        ref = run_dir / f"{split}-ref.ark"
        if ref.is_file():
            return "SF" if re.search(r"\bB-\S+ ", " ".join(scores.read_ark(ref).values())) else "PR"
        truth = run_dir / f"{split}_truth.txt"
        if truth.is_file():
            labels = [line.split(" ", 1)[-1] for line in truth.read_text("utf-8").splitlines() if line]
            if labels and all(re.fullmatch(r"id\d{5}", label) for label in labels):
                return "SID"
            return "KS"
    return None


def identify_task(run_dir: Path, invocations: Sequence[Invocation]) -> str:
    """The SUPERB task of a run dir from its args/config YAMLs, else from its files."""
    for inv in reversed(invocations):
        downstream = inv.args.get("downstream")
        if downstream in DOWNSTREAM_TASKS:
            return DOWNSTREAM_TASKS[downstream]
        if downstream == "ctc":
            corpus = _nested(inv.config, "downstream_expert", "corpus", "name")
            if corpus in CTC_CORPUS_TASKS:
                return CTC_CORPUS_TASKS[corpus]
            text_mode = _nested(inv.config, "downstream_expert", "text", "mode")
            if text_mode == "word":
                return "PR"
            if isinstance(text_mode, str) and "slot" in text_mode:
                return "SF"
        elif downstream is not None:
            raise RunDirError(f"{run_dir}: downstream {downstream!r} is not one of the SUPERB tasks "
                              f"this table covers ({', '.join(sorted(DOWNSTREAM_TASKS))}, ctc)")
    task = _task_from_files(run_dir)
    if task is None:
        raise RunDirError(f"{run_dir}: nothing identifies the task (no `downstream` in args_*.yaml, "
                          "no ctc corpus.name in config_*.yaml, no task-specific score files)")
    return task


def format_lr(value: Any) -> str | None:
    """1e-4 style; None when the config has no optimizer.lr. Strings such as '1e-4' are parsed."""
    if value is None:
        return None
    try:
        lr = float(value)
    except (TypeError, ValueError):
        return str(value)
    mantissa, exponent = f"{lr:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


@dataclass(frozen=True)
class RunDir:
    """An identified s3prl run directory (one task, one upstream, one ER fold)."""

    path: Path
    task: str
    upstream: str
    model_key: tuple[str, ...]  # upstream, ckpt, layer, trainable, feature selection
    lr: str | None
    fold: str | None  # ER only
    evaluate: Invocation | None  # the newest evaluate invocation on the task's split
    latest_train: Invocation | None


def read_run_dir(run_dir: Path) -> RunDir:
    """Identify task, upstream, lr and evaluate invocation of a run dir, or raise RunDirError."""
    run_dir = Path(run_dir)
    invocations = read_invocations(run_dir)
    if not invocations:
        raise RunDirError(f"{run_dir}: no args_*.yaml, not an s3prl run directory")
    try:
        task = identify_task(run_dir, invocations)
    except RunDirError:
        raise
    except (OSError, ValueError) as error:  # unreadable score files met by the file fallback
        raise RunDirError(f"{run_dir}: cannot identify the task: {error}") from error
    split = TASK_FILES[task].split
    trains = [inv for inv in invocations if inv.mode == "train"]
    evaluates = [inv for inv in invocations
                 if inv.mode == "evaluate" and inv.args.get("evaluate_split", "test") == split]
    describing = trains[-1] if trains else invocations[-1]
    args = describing.args
    upstream = str(args.get("upstream") or "?")
    model_key = (
        upstream,
        os.path.normpath(str(args["upstream_ckpt"])) if args.get("upstream_ckpt") else "",
        "" if args.get("upstream_layer_selection") is None else str(args["upstream_layer_selection"]),
        "fine-tuned" if args.get("upstream_trainable") else "",
        "" if args.get("upstream_feature_selection") in (None, "hidden_states")
        else str(args["upstream_feature_selection"]),
    )
    fold = None
    if task == "ER":
        newest = evaluates[-1] if evaluates else describing
        fold = (_nested(newest.config, "downstream_expert", "datarc", "test_fold")
                or newest.args.get("downstream_variant") or "fold1")  # s3prl's own default
        if fold not in ER_FOLDS:
            raise RunDirError(f"{run_dir}: ER test_fold {fold!r} is not one of {', '.join(ER_FOLDS)}")
    return RunDir(
        path=run_dir, task=task, upstream=upstream, model_key=model_key,
        lr=format_lr(_nested(describing.config, "optimizer", "lr")), fold=fold,
        evaluate=evaluates[-1] if evaluates else None,
        latest_train=trains[-1] if trains else None,
    )


def find_run_dirs(paths: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Run dirs (dirs holding args_*.yaml) in the given dirs or under the given roots, and the
    paths that yielded none with the reason."""
    found: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        if not path.is_dir():
            skipped.append((path, "does not exist" if not path.exists() else "not a directory"))
            continue
        before = len(found)
        for root, dirs, files in os.walk(path):
            dirs.sort()
            if any(_TAGGED.match(f) and f.startswith("args_") for f in files):
                found.append(Path(root))
                dirs.clear()  # an expdir does not nest other expdirs
        if len(found) == before:
            skipped.append((path, "no s3prl run directory (args_*.yaml) under it"))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, skipped


# ----------------------------------------------------------------------------------------------
# Scoring one run dir.


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


def _unfinished_reasons(run: RunDir, spec: TaskFiles, files: list[Path]) -> list[str]:
    reasons = []
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        reasons.append("missing " + ", ".join(missing))
    if spec.uses_log:
        log_path = run.path / "log.log"
        if log_path.is_file():
            last = scores.last_test_line(log_path)
            if last is None:
                reasons.append("log.log has no 'test at step' line: the test set was never evaluated")
            elif last[0] != 0:
                reasons.append(f"no evaluate run: the last 'test at step' line in log.log is from "
                               f"training step {last[0]} (evaluate writes step 0)")
    else:
        if run.evaluate is None:
            reasons.append(f"no evaluate run (no args_*.yaml with mode: evaluate, "
                           f"evaluate_split: {spec.split})")
        elif run.latest_train is not None and run.latest_train.time_tag > run.evaluate.time_tag:
            eval_splits = _nested(run.latest_train.config, "runner", "eval_dataloaders") or []
            if spec.split in eval_splits:
                reasons.append(f"the {spec.split} files may come from the training run "
                               f"args_{run.latest_train.time_tag}.yaml, newer than the last evaluate")
    return reasons


Computed = tuple[tuple[float, ...], list[str], tuple[intervals.Estimate, ...], tuple[list, list] | None]


def accuracy_estimate(predicted: Sequence, truth: Sequence) -> intervals.Estimate:
    """Accuracy with its Wilson interval and the majority-label chance level."""
    correct = sum(p == t for p, t in zip(predicted, truth))
    low, high = intervals.wilson(correct, len(truth))
    return intervals.Estimate(100.0 * correct / len(truth), low, high, len(truth), "Wilson",
                              intervals.majority_rate(list(truth)))


def _compute(run: RunDir, files: list[Path]) -> Computed:
    if run.task in ("PR", "ASR"):
        errors, references = scores.token_errors(files[0], files[1])
        lengths = [len(r) for r in references]
        value = 100.0 * sum(errors) / sum(lengths)
        low, high = intervals.bootstrap_ratio(errors, lengths)
        chance = intervals.constant_hypothesis_error(references)[0]
        return (value,), [], (intervals.Estimate(value, low, high, len(errors), "bootstrap", chance),), None
    if run.task == "SF":
        f1, cer, implementation = scores.slot_filling_scores(files[0], files[1])
        notes = [] if implementation == "s3prl" else ["SF metrics: own implementation "
                                                      "(s3prl not importable)"]
        return (f1, cer), notes, _slot_filling_estimates(files, f1, cer, notes), None
    fields = 3 if run.task == "IC" else 1
    predicted, truth = scores.labels(files[0], files[1], fields=fields)
    estimate = accuracy_estimate(predicted, truth)
    step_and_acc = scores.last_test_line(run.path / "log.log")
    logged = 100.0 * step_and_acc[1]
    if abs(logged - estimate.value) > LOG_AGREEMENT_TOLERANCE:
        raise ValueError(f"{run.path / 'log.log'} reports test acc {logged:.4f}% but "
                         f"{files[0].name}/{files[1].name} give {estimate.value:.4f}%: the files were "
                         "overwritten after the evaluate run")
    return (estimate.value,), [], (estimate,), (predicted, truth)


def _slot_filling_estimates(files: list[Path], f1: float, cer: float,
                            notes: list[str]) -> tuple[intervals.Estimate, ...]:
    """Bootstrap intervals of slot-type F1 and slot-value CER from our per-utterance values, and the
    chance F1 of the best constant set of slot types (CER has no chance level: a constant answer has
    no slot values)."""
    hypotheses, references = scores.aligned_texts(files[0], files[1])
    f1s = [scores.utterance_slot_type_f1(h, r) for h, r in zip(hypotheses, references)]
    pairs = [scores.utterance_slot_value_errors(h, r) for h, r in zip(hypotheses, references)]
    own_f1 = 100.0 * sum(f1s) / len(f1s)
    own_cer = 100.0 * sum(e for e, _ in pairs) / sum(c for _, c in pairs)
    if abs(own_f1 - f1) > 0.01 or abs(own_cer - cer) > 0.01:  # the interval would be around another number
        notes.append(f"SF intervals are around the own per-utterance scores (F1 {own_f1:.2f}, "
                     f"CER {own_cer:.2f}), which differ from s3prl's")
    n = len(references)
    f1_low, f1_high = intervals.bootstrap_mean(f1s)
    cer_low, cer_high = intervals.bootstrap_ratio([e for e, _ in pairs], [c for _, c in pairs])
    chance = intervals.constant_slot_types_f1([scores.slot_types(r, hypothesis=False) for r in references])[0]
    return (intervals.Estimate(f1, f1_low, f1_high, n, "bootstrap", chance),
            intervals.Estimate(cer, cer_low, cer_high, n, "bootstrap", None))


def score_run(run: RunDir) -> RunScore:
    """Recompute the official test score of a run dir; unfinished/error carry the reason."""
    spec = TASK_FILES[run.task]
    files = [run.path / name.format(fold=run.fold) for name in spec.files]
    evaluated_ckpt = None
    if run.evaluate is not None:
        ckpt = run.evaluate.args.get("init_ckpt") or run.evaluate.args.get("past_exp")
        evaluated_ckpt = Path(str(ckpt)).name if ckpt else None
    try:
        reasons = _unfinished_reasons(run, spec, files)
        if reasons:
            return RunScore(run, UNFINISHED, notes=reasons, evaluated_ckpt=evaluated_ckpt)
        values, notes, estimates, labels = _compute(run, files)
    except (ValueError, OSError) as error:  # unreadable score files: reported, never a number
        return RunScore(run, ERROR, notes=[str(error)], evaluated_ckpt=evaluated_ckpt)
    best = "dev-clean-best.ckpt" if run.task == "ASR" else "dev-best.ckpt"
    if evaluated_ckpt is not None and evaluated_ckpt != best:
        notes.append(f"evaluated {evaluated_ckpt}, not {best}")
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
            if (trained is not evaluated and trained.status == UNFINISHED and trained in kept
                    and trained.run.task == evaluated.run.task
                    and trained.run.fold == evaluated.run.fold
                    and _same_dir(os.path.dirname(str(ckpt)), trained.run.path,
                                  None if train_expdir is None else str(train_expdir))):
                kept.remove(trained)
                evaluated.notes.append(f"trained in {trained.run.path}")
                log.info("%s: trained here, evaluated in %s", trained.run.path, evaluated.run.path)
    return kept


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
    """"85.00 (80.1–89.2; chance 23.1)": the score, its 95 % interval and the chance level."""
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
        notes.append(f"ER: the interval is around the pooled accuracy {pooled.value:.2f} of the folds' "
                     f"{pooled.n} test utterances, not their mean")
    return text, notes, with_interval(mean_text, pooled, folds.strip("()"))


def _er_cell_text(runs: list[RunScore]) -> tuple[str, list[str]]:
    if not runs:
        return MISSING, []
    by_fold = {fold: [r for r in runs if r.run.fold == fold] for fold in ER_FOLDS}
    values, notes, statuses = [], [], []
    for fold, fold_runs in by_fold.items():
        if not fold_runs:
            notes.append(f"ER {fold}: missing")
            continue
        if len(fold_runs) > 1:
            statuses.append(AMBIGUOUS)
            notes.append(f"ER {fold}: {len(fold_runs)} runs, pass only one: "
                         + ", ".join(str(r.run.path) for r in fold_runs))
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
    if len(values) == len(ER_FOLDS):
        return f"{mean:.2f}", notes
    return f"{mean:.2f} ({len(values)}/{len(ER_FOLDS)} folds)", notes


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
        for task in TASKS:
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
        "PR": f"{published.pr_per:.2f}", "KS": f"{published.ks_acc:.2f}",
        "IC": f"{published.ic_acc:.2f}", "SID": f"{published.sid_acc:.2f}",
        "ER": f"{published.er_acc:.2f}", "ASR": f"{published.asr_wer_no_lm:.2f}",
        "SF": f"{published.sf_f1:.2f} / {published.sf_cer:.2f}",
    }
    lrs = {task: "sweep" for task in TASKS}  # published numbers come from a per-upstream lr sweep
    return Row(published.name + label_suffix, ("published", published.name),
               "published, real data", values, lrs)


# ----------------------------------------------------------------------------------------------
# Rendering.

MAIN_COLUMNS = ("model", *(TASK_HEADERS[t] for t in TASKS), "notes")
LR_COLUMNS = tuple(f"{t} lr" for t in TASKS)
CSV_COLUMNS = ("data", *MAIN_COLUMNS, *LR_COLUMNS)


def _main_cells(row: Row) -> list[str]:
    return [row.label, *(row.text(t) for t in TASKS), "; ".join(row.notes)]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(map(_md_escape, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def full_title(title: str | None, data_kind: str) -> str:
    """The title always states when the data is not the real SUPERB data."""
    if data_kind == "synthetic":
        return (title or "mini-SUPERB results") + \
            " (mini-SUPERB synthetic data; NOT comparable to published SUPERB numbers)"
    if data_kind == "unstated":
        return (title or "SUPERB results") + \
            " (data not stated: pass --real or --synthetic; not set beside published numbers)"
    return title or "SUPERB results (real data, test sets)"


def render_markdown(rows: Sequence[Row], runs: Sequence[RunScore], skipped: Sequence[tuple[Path, str]],
                    title: str | None, data_kind: str,
                    baselines: Sequence[PublishedScores] = DEFAULT_BASELINES) -> str:
    """The whole report: main table, learning rates, per-run details, published numbers, skips."""
    label_of = _labels_by_key(rows)
    parts = [f"# {full_title(title, data_kind)}", ""]
    parts.append("Test-set scores recomputed from the s3prl evaluate-run files, in SUPERB units (%). "
                 "ER is the mean over the IEMOCAP folds found. `missing`: no run directory; "
                 "`unfinished`: no evaluate output yet; `error`: unreadable score files "
                 "(see notes).")
    parts.append("")
    parts.append("In brackets: the 95 % interval (Wilson for accuracies, ER over the folds' pooled test "
                 "utterances; a seeded bootstrap over test utterances for PER, WER, F1 and CER) and the "
                 "chance level on the same test set: the most frequent label's share for accuracies, the "
                 "best constant hypothesis (one token repeated) for PER/WER, the best constant set of "
                 "slot types for SF F1. A score is above chance when its interval excludes the chance level.")
    if data_kind == "synthetic":
        parts.append("")
        parts.append("> **Synthetic mini-SUPERB data.** These numbers check the pipeline and "
                     "relative comparisons only. They are not comparable to published SUPERB "
                     "numbers, which are listed separately at the end.")
    main_rows = [_main_cells(r) for r in rows]
    if data_kind == "real":
        main_rows += [_main_cells(published_row(b, " (published)")) for b in baselines]
    parts += ["", markdown_table(MAIN_COLUMNS, main_rows), ""]
    parts += ["## Learning rates (config optimizer.lr)", "",
              markdown_table(("model", *TASKS), [[r.label, *(r.lrs[t] for t in TASKS)] for r in rows]),
              ""]
    parts += ["## Runs", "", markdown_table(
        ("model", "task", "fold", "lr", "status", "score", "evaluated checkpoint", "run dir", "notes"),
        [[label_of[r.run.model_key], r.run.task, r.run.fold or "", r.run.lr or "?", r.status,
          _shown(r) or r.value_text(), r.evaluated_ckpt or "", repo_relative(r.run.path), "; ".join(r.notes)]
         for r in runs]), ""]
    if data_kind != "real":
        parts += ["## Published SUPERB numbers (real data, NOT comparable to the tables above)", "",
                  markdown_table(MAIN_COLUMNS[:-1],
                                 [_main_cells(published_row(b, ""))[:-1] for b in baselines]), ""]
    parts += ["Published-number sources and caveats:", ""]
    parts += [f"- {b.name}: {b.source}" for b in baselines]
    parts += [f"- {caveat}" for caveat in CAVEATS]
    if skipped:
        parts += ["", "## Skipped", ""]
        parts += [f"- `{repo_relative(path)}`: {reason}" for path, reason in skipped]
    return "\n".join(parts) + "\n"


def _labels_by_key(rows: Sequence[Row]) -> dict[tuple[str, ...], str]:
    return {row.model_key: row.label for row in rows}


def csv_text(rows: Sequence[Row], data_kind: str,
             baselines: Sequence[PublishedScores] = DEFAULT_BASELINES) -> str:
    """The main table as CSV (same cells as the Markdown), with a data column and the lrs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    all_rows = list(rows)
    if data_kind == "real":
        all_rows += [published_row(b, " (published)") for b in baselines]
    for row in all_rows:
        writer.writerow([row.data, *_main_cells(row), *(row.lrs[t] for t in TASKS)])
    return buffer.getvalue()


def runs_csv_text(rows: Sequence[Row], runs: Sequence[RunScore]) -> str:
    """One line per run dir with numeric scores (SF: score = F1, sf_cer = CER), for scripts and
    lr sweeps."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("model", "task", "fold", "lr", "status", "score", "sf_cer",
                     "score_low", "score_high", "chance", "test_utterances",
                     "evaluated_checkpoint", "run_dir", "notes"))
    label_of = _labels_by_key(rows)
    for r in runs:
        values = [f"{v:.4f}" for v in r.values] + ["", ""]
        first = r.estimates[0] if r.estimates else None
        stats = ["", "", "", ""] if first is None else [
            f"{first.low:.4f}", f"{first.high:.4f}", "" if first.chance is None else f"{first.chance:.4f}",
            str(first.n)]
        writer.writerow((label_of[r.run.model_key], r.run.task, r.run.fold or "", r.run.lr or "",
                         r.status, values[0], values[1], *stats, r.evaluated_ckpt or "", repo_relative(r.run.path),
                         "; ".join(r.notes)))
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
    run_paths, skipped = find_run_dirs(paths)
    runs = []
    for path in run_paths:
        try:
            runs.append(read_run_dir(path))
        except (RunDirError, OSError) as error:
            skipped.append((path, str(error)))
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    order = {task: i for i, task in enumerate(TASKS)}
    runs.sort(key=lambda r: (r.model_key, order[r.task], r.fold or "", str(r.path)))
    run_scores = merge_separate_evaluations([score_run(run) for run in runs])
    rows = build_rows(run_scores, data_kind)
    return Report(rows, run_scores, skipped,
                  render_markdown(rows, run_scores, skipped, title, data_kind),
                  csv_text(rows, data_kind), runs_csv_text(rows, run_scores))


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
    parser = argparse.ArgumentParser(prog="python -m results.tabulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="s3prl run dirs, or roots to search")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    parser.add_argument("--name", default="superb",
                        help="file stem: <out>/<name>.md, <name>.csv, <name>_runs.csv")
    parser.add_argument("--title", default=None, help="table title")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--synthetic", action="store_const", const="synthetic", dest="data_kind",
                      help="runs on mini-SUPERB synthetic data: published numbers kept apart")
    data.add_argument("--real", action="store_const", const="real", dest="data_kind",
                      help="runs on the real SUPERB corpora: published numbers in the same table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    report = tabulate(args.paths, args.title, args.data_kind or "unstated")
    if not report.runs:
        parser.error("no s3prl run directory could be read under: "
                     + ", ".join(map(str, args.paths)))
    written = write_report(report, args.out, args.name)
    sys.stdout.write(report.markdown)
    log.info("wrote %s", ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
