"""Does easy-to-hard masking help? Pretrain EH-MAM and its ablations over seeds, run the seven SUPERB tasks and
the layer-wise probes on each, and write OUT/study.md (every sentence in it is computed from the numbers).

    python -m results.study --scale ci --seeds 0,1 --steps 300 --task-steps 60 --out results/study
    python -m results.study --out results/study --report-only      # rebuild study.md from what is on disk
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from results.demo import (ABX_FILES, ABX_SPLITS, ALL_ER_FOLDS, ER_FOLD_COUNT, REPO, TASK_ORDER, DownstreamPool,
                          DownstreamRun, Stage, abx_stage, describe_task_steps, parse_folds, parse_profile,
                          parse_task_steps, parse_tasks, positive_int, prepare_corpus, pretrain_manifest,
                          pretraining_argv, run_pretraining, shown, slowest_first, timed)
from results.paths import repo_relative
from results.tabulate import TASK_HEADERS

log = logging.getLogger("study")

METRICS_FILE = "metrics.jsonl"
TASKS = ("PR", "KS", "IC", "SID", "ER", "ASR", "SF")  # the seven SUPERB tasks; SF is scored by its F1
LOWER_IS_BETTER = {"PR", "ASR", "SF_CER"}
SCORE_COLUMNS = {"PR": "PR PER ↓", "KS": "KS acc ↑", "IC": "IC acc ↑", "SID": "SID acc ↑", "ER": "ER acc ↑",
                 "ASR": "ASR WER ↓", "SF": "SF F1 ↑", "SF_CER": "SF CER ↓"}
TRAINING_KEYS = ("teacher_rho", "student_rho", "masked_fraction", "alpha")
CURVE_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # where the training table samples the logged steps
PROBE_ORDER = ("phone", "keyword", "logmel", "speaker")


@dataclass(frozen=True)
class Condition:
    """One arm of the study. `source`: pretrain (pretrain/run.py with `overrides`), random_init (a freshly
    initialised encoder of the same shape, exported), or fbank (s3prl's `-u fbank`, no encoder)."""

    name: str
    label: str
    source: str
    overrides: tuple[str, ...] = ()
    about: str = ""


def baseline_overrides(baseline: Path, reference: Path,
                       sections: Sequence[str] = ("mask", "curriculum", "loss", "teacher", "heads")) -> tuple[str, ...]:
    """The method settings in which `baseline` (e.g. pretrain/random_mask.yaml) differs from `reference`
    (pretrain/ehmam.yaml), as `--set section.key=value` strings; model size, optimisation, data and run
    settings are left out, so every arm keeps the study's own size, updates and batch size."""
    from pretrain.config import load_config

    a, b = load_config(baseline).to_dict(), load_config(reference).to_dict()
    overrides = []
    for section in sections:
        for key, value in a[section].items():
            if b[section].get(key) != value:
                overrides.append(f"{section}.{key}={value if isinstance(value, str) else json.dumps(value)}")
    return tuple(overrides)


def default_conditions() -> dict[str, Condition]:
    random_mask = baseline_overrides(REPO / "pretrain" / "random_mask.yaml", REPO / "pretrain" / "ehmam.yaml")
    return {c.name: c for c in (
        Condition("ehmam", "EH-MAM", "pretrain", (), "the pretraining config as is"),
        Condition("random_mask", "random masking", "pretrain", random_mask,
                  "pretrain/random_mask.yaml's changes relative to ehmam.yaml: " + ", ".join(random_mask)),
        Condition("no_aux", "EH-MAM w/o aux loss", "pretrain", ("loss.aux_weight=0.0",),
                  "curriculum kept, ranking loss off (its predictor is never trained)"),
        Condition("random_init", "random init", "random_init", (), "a freshly initialised encoder, no pretraining"),
        Condition("fbank", "FBANK", "fbank", (), "s3prl's fbank upstream (-u fbank)"),
    )}


def parse_conditions(text: str) -> list[str]:
    known = list(default_conditions())
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"--conditions: unknown {unknown or 'empty list'}; choose from {','.join(known)}")
    return list(dict.fromkeys(names))


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"--seeds: expected comma-separated non-negative integers, got {text!r}")
    return list(dict.fromkeys(seeds))


# ---------------------------------------------------------------------------------------------------------
# Planning: the exact commands of one (condition, seed).


ABX_EVALUATIONS = 5  # phone ABX monitor points per pretraining run, besides update 0


def pretrain_argv(condition: Condition, seed: int, config: Path, manifest: Path, out_dir: Path, steps: int,
                  abx_data: Path | None = None) -> list[str]:
    """pretrain/run.py's argv: the same config, updates, warm-up and batch size for every arm; only the seed and
    the arm's own overrides differ. With `abx_data` the pretrainer's ABX monitor scores the student's layers on its
    dev-clean alignments during training."""
    monitor = [f"run.eval_data={abx_data}", f"run.eval_every={max(1, steps // ABX_EVALUATIONS)}",
               f"run.eval_max_files={ABX_FILES}", f"run.eval_splits=[{','.join(ABX_SPLITS)}]"] \
        if abx_data is not None else []
    return pretraining_argv(config, manifest, out_dir, steps, [f"run.seed={seed}", *condition.overrides, *monitor])


def plan_study_runs(condition: Condition, seed: int, tasks: Sequence[str], er_folds: Sequence[int],
                    root: Path, profile: str | None = None) -> list[DownstreamRun]:
    """One DownstreamRun per task (per ER fold) of an arm; s3prl's downstream seed follows the study seed."""
    upstream = ("-u", "fbank") if condition.source == "fbank" else ()
    runs = []
    for task in tasks:
        folds = er_folds if task == "er" else [None]
        for fold in folds:
            label = f"er_fold{fold}" if fold else task
            runs.append(DownstreamRun(label, task, root / label, fold=fold, upstream_argv=upstream,
                                      downstream_seed=seed, profile=profile))
    return runs


def export_random_init(path: Path, pretrain_config: Path, seed: int) -> Path:
    """A freshly initialised encoder of the pretraining config's shape, saved as an encoder export. The global
    RNG is forked so the caller's random state is untouched."""
    from pretrain.config import load_config
    from upstream_ehmam.checkpoint import export_encoder
    from upstream_ehmam.model import random_init_encoder

    export_encoder(random_init_encoder(load_config(pretrain_config).model, seed), path)
    return path


# ---------------------------------------------------------------------------------------------------------
# Running one arm.


def condition_dir(out: Path, condition: str, seed: int) -> Path:
    return out / f"seed{seed}" / condition


@dataclass
class ArmRun:
    """One (condition, seed) while the study runs: its folder, upstream checkpoint, stages and downstream runs."""

    condition: Condition
    seed: int
    cdir: Path
    checkpoint: Path | None = None
    stages: list[Stage] = field(default_factory=list)
    runs: list[DownstreamRun] = field(default_factory=list)


def build_upstream(condition: Condition, seed: int, args: argparse.Namespace, data: Path) -> ArmRun:
    """Pretrain the arm (or export its random init); `checkpoint` stays None for fbank and for a failed build."""
    cdir = condition_dir(args.out, condition.name, seed)
    cdir.mkdir(parents=True, exist_ok=True)
    arm = ArmRun(condition, seed, cdir)
    if condition.source == "pretrain":
        arm.stages.append(run_pretraining(pretrain_argv(condition, seed, args.pretrain_config,
                                                        pretrain_manifest(args, data), cdir / "pretrain",
                                                        args.steps, data), threads=1))
        arm.checkpoint = cdir / "pretrain" / "last.pt"
    elif condition.source == "random_init":
        arm.checkpoint = cdir / "random_init.pt"
        command = (f"results.study.export_random_init({repo_relative(arm.checkpoint)!r}, "
                   f"{repo_relative(args.pretrain_config)!r}, seed={seed})")
        arm.stages.append(timed(Stage("random init", command),
                                lambda: export_random_init(arm.checkpoint, args.pretrain_config, seed)))
    return arm


def probe_upstream(arm: ArmRun, args: argparse.Namespace, data: Path) -> None:
    """The layer-wise probes of an encoder arm, and phone ABX per layer (fbank: s3prl's fbank)."""
    cdir, checkpoint = arm.cdir, arm.checkpoint
    if checkpoint is not None:
        from results.layerwise import run_layerwise

        command = shown(["-m", "results.layerwise", "--ckpt", str(checkpoint), "--data", str(data), "--out",
                         str(cdir / "layerwise"), "--max-utterances", str(args.probe_utterances),
                         "--seed", str(arm.seed)])
        arm.stages.append(timed(Stage("layerwise", command),
                                lambda: run_layerwise(checkpoint, data, cdir / "layerwise",
                                                      max_utterances=args.probe_utterances, seed=arm.seed)))
    arm.stages.append(abx_stage(cdir / "abx", data, [checkpoint] if checkpoint else [],
                                [] if checkpoint else ["fbank"]))


def tabulate_arm(arm: ArmRun, data: Path) -> None:
    """The arm's SUPERB table (<arm dir>/superb.md) once its downstream runs are done; stages and their commands
    go to <arm dir>/condition.json."""
    cdir = arm.cdir
    downstream_stages = [s for run in arm.runs for s in run.stages]

    def table() -> None:
        from minisuperb import read_marker
        from results.tabulate import tabulate

        kind = "synthetic" if read_marker(data) is not None else "unstated"
        report = tabulate([cdir / "downstream"], f"{arm.condition.label}, seed {arm.seed}", kind)
        (cdir / "superb.md").write_text(report.markdown, encoding="utf-8")

    stages = arm.stages + downstream_stages
    stages.append(timed(Stage("tabulate", shown(["-m", "results.tabulate", str(cdir / "downstream"), "--out",
                                                   str(cdir), "--synthetic"])), table))
    _write_condition_json(cdir, arm.condition, arm.seed, stages, downstream_stages)


def run_study_arms(args: argparse.Namespace, data: Path) -> None:
    """Every (seed, condition): the main process pretrains and probes one arm while a DownstreamPool of --jobs
    workers runs the downstream tasks of the arms built before it."""
    import torch

    torch.set_num_threads(1)  # the probes and ABX of this process run beside the downstream workers
    conditions = default_conditions()
    pool = DownstreamPool(args.jobs)
    arms: list[ArmRun] = []
    for seed in args.seeds:
        for name in args.conditions:
            log.info("=== %s, seed %d ===", name, seed)
            arm = build_upstream(conditions[name], seed, args, data)
            if arm.checkpoint is not None and not arm.checkpoint.is_file():
                _write_condition_json(arm.cdir, arm.condition, seed, arm.stages, [])
                log.error("%s seed %d: no checkpoint, skipping its tasks and probes", name, seed)
                continue
            arm.runs = plan_study_runs(arm.condition, seed, args.tasks, args.er_folds, arm.cdir / "downstream",
                                       args.profile)
            pool.submit(slowest_first(arm.runs), arm.checkpoint, data, args.task_steps)
            probe_upstream(arm, args, data)
            arms.append(arm)
    pool.finish()
    for arm in arms:
        tabulate_arm(arm, data)


def _write_condition_json(cdir: Path, condition: Condition, seed: int, stages: Sequence[Stage],
                          downstream_stages: Sequence[Stage]) -> None:
    walls = {"pretrain": sum(s.wall_s for s in stages if s.name in ("pretrain", "random init")),
             "downstream": sum(s.wall_s for s in downstream_stages),
             "layerwise": sum(s.wall_s for s in stages if s.name == "layerwise")}
    record = {"condition": condition.name, "seed": seed, "wall_s": walls,
              "stages": [{"name": s.name, "command": s.command, "wall_s": round(s.wall_s, 2), "ok": s.ok,
                          "detail": s.detail} for s in stages]}
    (cdir / "condition.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# Collecting what an arm left on disk.


@dataclass
class ArmResult:
    """Everything the report needs from one (condition, seed)."""

    condition: str
    seed: int
    scores: dict[str, float] = field(default_factory=dict)  # TASKS + SF_CER -> score
    cells: dict[str, str] = field(default_factory=dict)  # TASKS -> the SUPERB table's cell: interval and chance
    training: list[dict] = field(default_factory=list)  # metrics.jsonl records (none without pretraining)
    rho_measured: dict[str, bool] = field(default_factory=dict)  # student_rho / teacher_rho -> logged for real
    layerwise: list[dict] = field(default_factory=list)  # layerwise.csv rows
    abx: list[dict] = field(default_factory=list)  # abx.csv rows: the arm's own representation and the references
    abx_monitor: list[dict] = field(default_factory=list)  # the pretrainer's {"step", "abx"} records
    updates: int = 0
    audio_seconds: float = 0.0
    train_seconds: float = 0.0  # pretraining time from the logged seconds per update
    wall_s: dict[str, float] = field(default_factory=dict)  # measured stage walls: pretrain, downstream, layerwise
    failed: list[str] = field(default_factory=list)


def task_scores(run_scores: Sequence) -> dict[str, float]:
    """tabulate RunScores -> one number per task (ER: mean of the folds scored; SF: F1 and SF_CER)."""
    scores: dict[str, float] = {}
    er = [r.values[0] for r in run_scores if r.run.task == "ER" and r.status == "ok"]
    if er:
        scores["ER"] = sum(er) / len(er)
    for r in run_scores:
        if r.status != "ok" or r.run.task == "ER":
            continue
        scores[r.run.task] = r.values[0]
        if r.run.task == "SF" and len(r.values) > 1:
            scores["SF_CER"] = r.values[1]
    return scores


def training_totals(records: Sequence[dict]) -> tuple[int, float, float]:
    """(updates, audio seconds, training seconds) from metrics.jsonl: each record averages the updates since
    the previous one, so the sums weight it by that step gap."""
    updates, audio, seconds, previous = 0, 0.0, 0.0, 0
    for record in sorted(records, key=lambda r: r["step"]):
        gap = record["step"] - previous
        audio += record.get("audio_sec_per_sec", 0.0) * record.get("sec_per_step", 0.0) * gap
        seconds += record.get("sec_per_step", 0.0) * gap
        previous = updates = record["step"]
    return updates, audio, seconds


def rho_measured(config: dict) -> dict[str, bool]:
    """Which rho columns the run really measured (the loop logs 0.0 otherwise): the student's predictor is
    trained only with the ranking loss; the teacher's exists when the curriculum or the ranking loss needs it."""
    aux = float((config.get("loss") or {}).get("aux_weight", 1.0))
    curriculum = (config.get("curriculum") or {}).get("mode", "progress")
    return {"student_rho": aux > 0, "teacher_rho": curriculum != "none" or aux > 0}


def collect_arm(out: Path, condition: str, seed: int) -> ArmResult:
    """Read one arm's run dirs, metrics, probes and stage record; what is missing stays empty and is noted."""
    cdir = condition_dir(out, condition, seed)
    arm = ArmResult(condition, seed)
    downstream = cdir / "downstream"
    if downstream.is_dir():
        from results.tabulate import tabulate

        report = tabulate([downstream], None, "unstated")
        arm.scores = task_scores(report.runs)
        arm.cells = {task: report.rows[0].text(task) for task in TASKS} if report.rows else {}
        arm.failed += [f"{r.run.task}{' ' + r.run.fold if r.run.fold else ''}: {r.status}" for r in report.runs
                       if r.status != "ok"]
    metrics = cdir / "pretrain" / METRICS_FILE
    if metrics.is_file():
        records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
        arm.training = [r for r in records if "abx" not in r]
        arm.abx_monitor = [r for r in records if "abx" in r]
        arm.updates, arm.audio_seconds, arm.train_seconds = training_totals(arm.training)
        config_path = cdir / "pretrain" / "config.yaml"
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
        arm.rho_measured = rho_measured(config or {})
    layerwise_csv = cdir / "layerwise" / "layerwise.csv"
    if layerwise_csv.is_file():
        from results.layerwise import read_csv

        arm.layerwise = read_csv(layerwise_csv)
    abx_csv = cdir / "abx" / "abx.csv"
    if abx_csv.is_file():
        from results.abx.report import read_csv as read_abx_csv

        arm.abx = read_abx_csv(abx_csv)
    record_path = cdir / "condition.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        arm.wall_s = record.get("wall_s", {})
        arm.failed += [f"{s['name']}: {s['detail']}" for s in record.get("stages", []) if not s.get("ok")]
    return arm


# ---------------------------------------------------------------------------------------------------------
# The report: pure functions of the collected numbers.


@dataclass(frozen=True)
class Summary:
    """Over seeds: mean, sample std (0 for one seed), min, max, count."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 2) -> str:
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def summarise(values: Sequence[float]) -> Summary:
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarise: no values")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Summary(statistics.fmean(values), std, min(values), max(values), len(values))


def score_summaries(arms: Sequence[ArmResult]) -> dict[str, dict[str, Summary]]:
    """condition -> metric -> Summary over the seeds that have the metric."""
    values: dict[str, dict[str, list[float]]] = {}
    for arm in arms:
        for metric, value in arm.scores.items():
            values.setdefault(arm.condition, {}).setdefault(metric, []).append(value)
    return {c: {m: summarise(v) for m, v in metrics.items()} for c, metrics in values.items()}


def better(metric: str, a: float, b: float) -> bool:
    return a < b if metric in LOWER_IS_BETTER else a > b


@dataclass(frozen=True)
class Comparison:
    """Task by task, condition A against condition B on the seed means."""

    wins: tuple[str, ...]
    losses: tuple[str, ...]
    ties: tuple[str, ...]
    clear_wins: tuple[str, ...]  # A's worst seed beats B's best seed
    clear_losses: tuple[str, ...]
    seeds: int = 0  # the fewest seeds behind any compared mean

    @property
    def compared(self) -> int:
        return len(self.wins) + len(self.losses) + len(self.ties)


def compare(a: dict[str, Summary], b: dict[str, Summary], tasks: Sequence[str] = TASKS) -> Comparison:
    wins, losses, ties, clear_wins, clear_losses = [], [], [], [], []
    seeds = []
    for task in tasks:
        if task not in a or task not in b:
            continue
        sa, sb = a[task], b[task]
        seeds.append(min(sa.n, sb.n))
        if better(task, sa.mean, sb.mean):
            wins.append(task)
            worst_a, best_b = (sa.high, sb.low) if task in LOWER_IS_BETTER else (sa.low, sb.high)
            if better(task, worst_a, best_b):
                clear_wins.append(task)
        elif better(task, sb.mean, sa.mean):
            losses.append(task)
            worst_b, best_a = (sb.high, sa.low) if task in LOWER_IS_BETTER else (sb.low, sa.high)
            if better(task, worst_b, best_a):
                clear_losses.append(task)
        else:
            ties.append(task)
    return Comparison(*map(tuple, (wins, losses, ties, clear_wins, clear_losses)), seeds=min(seeds, default=0))


def comparison_sentence(label_a: str, label_b: str, result: Comparison) -> str:
    """E.g. 'EH-MAM beats random masking on 4 of 7 tasks (mean over 2 seeds: KS, IC, SID, ER); ...'."""
    if result.compared == 0:
        return f"{label_a} vs {label_b}: no task has scores for both."
    n = result.seeds
    seeds = f"mean over {n} seed{'s' if n != 1 else ''}" if n > 1 else "one seed"
    listed = f": {', '.join(result.wins)}" if result.wins else ""
    sentence = (f"{label_a} beats {label_b} on {len(result.wins)} of {result.compared} tasks ({seeds}{listed}); "
                f"{label_b} is better on {len(result.losses)}")
    sentence += f" and they tie on {len(result.ties)}." if result.ties else "."
    if n > 1:
        sentence += (f" Beyond the seed spread (every seed of one better than every seed of the other): "
                     f"{label_a} on {len(result.clear_wins)}, {label_b} on {len(result.clear_losses)}.")
    else:
        sentence += " With one seed there is no spread, so no difference here is shown to exceed seed noise."
    return sentence


def score_table(summaries: dict[str, dict[str, Summary]], conditions: Sequence[str], labels: dict[str, str]) -> str:
    metrics = [*TASKS, "SF_CER"]
    lines = ["| condition | " + " | ".join(SCORE_COLUMNS[m] for m in metrics) + " |",
             "|---|" + "---:|" * len(metrics)]
    for condition in conditions:
        mine = summaries.get(condition, {})
        cells = [mine[m].text() if m in mine else "missing" for m in metrics]
        lines.append(f"| {labels.get(condition, condition)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sample_steps(records: Sequence[dict], fractions: Sequence[float] = CURVE_FRACTIONS) -> list[int]:
    """The logged steps nearest to each fraction of the last logged step (duplicates dropped)."""
    steps = sorted({r["step"] for r in records})
    if not steps:
        return []
    last = steps[-1]
    return list(dict.fromkeys(min(steps, key=lambda s: abs(s - f * last)) for f in fractions))


def training_means(arms: Sequence[ArmResult], condition: str) -> dict[int, dict[str, float]]:
    """step -> key -> mean over the seeds that logged that step (unmeasured rho columns left out)."""
    per_step: dict[int, dict[str, list[float]]] = {}
    for arm in arms:
        if arm.condition != condition:
            continue
        for record in arm.training:
            for key in TRAINING_KEYS:
                if key in record and arm.rho_measured.get(key, True):
                    per_step.setdefault(record["step"], {}).setdefault(key, []).append(float(record[key]))
    return {step: {k: statistics.fmean(v) for k, v in keys.items()} for step, keys in sorted(per_step.items())}


def training_table(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> str:
    lines = ["| condition | step | teacher rho | student rho | masked fraction | alpha |", "|---|---:|---:|---:|---:|---:|"]
    for condition in conditions:
        means = training_means(arms, condition)
        if not means:
            continue
        records = [{"step": s} for s in means]
        for step in sample_steps(records):
            row = means[step]
            cells = [f"{row[k]:.3f}" if k in row else "n/a" for k in TRAINING_KEYS]
            lines.append(f"| {labels.get(condition, condition)} | {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def training_sentences(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> list[str]:
    sentences = []
    for condition in conditions:
        means = training_means(arms, condition)
        if not means:
            continue
        steps = list(means)
        first, last = means[steps[0]], means[steps[-1]]
        label = labels.get(condition, condition)
        for key, what in (("teacher_rho", "teacher predictor"), ("student_rho", "student predictor")):
            if key in first and key in last:
                peak_step = max(steps, key=lambda s: means[s].get(key, -math.inf))
                sentences.append(
                    f"{label}: the {what}'s Spearman rho with the realised per-frame loss goes from "
                    f"{first[key]:.2f} (step {steps[0]}) to {last[key]:.2f} (step {steps[-1]}), peaking at "
                    f"{means[peak_step][key]:.2f} (step {peak_step}).")
        fractions = [means[s]["masked_fraction"] for s in steps if "masked_fraction" in means[s]]
        if fractions:
            sentences.append(f"{label}: realised masked fraction {min(fractions):.3f} to {max(fractions):.3f} "
                             f"over training.")
    return sentences


def layerwise_means(arms: Sequence[ArmResult], condition: str) -> dict[str, dict[int, float]]:
    """probe -> layer -> mean value over seeds."""
    values: dict[str, dict[int, list[float]]] = {}
    for arm in arms:
        if arm.condition == condition:
            for row in arm.layerwise:
                values.setdefault(row["probe"], {}).setdefault(row["layer"], []).append(row["value"])
    return {p: {layer: statistics.fmean(v) for layer, v in sorted(layers.items())} for p, layers in values.items()}


def layerwise_table(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> str:
    probes = [p for p in PROBE_ORDER if any(layerwise_means(arms, c).get(p) for c in conditions)]
    lines = ["| condition | " + " | ".join(f"{p}: best layer (value) / last layer" for p in probes) + " |",
             "|---|" + "---|" * len(probes)]
    for condition in conditions:
        means = layerwise_means(arms, condition)
        if not means:
            continue
        cells = []
        for probe in probes:
            curve = means.get(probe)
            if not curve:
                cells.append("n/a")
                continue
            best = max(curve, key=curve.get)
            cells.append(f"{best} ({curve[best]:.3f}) / {curve[max(curve)]:.3f}")
        lines.append(f"| {labels.get(condition, condition)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def layerwise_sentences(arms: Sequence[ArmResult], a: str, b: str, labels: dict[str, str]) -> list[str]:
    ma, mb = layerwise_means(arms, a), layerwise_means(arms, b)
    sentences = []
    for probe in PROBE_ORDER:
        if ma.get(probe) and mb.get(probe):
            ba, bb = max(ma[probe], key=ma[probe].get), max(mb[probe], key=mb[probe].get)
            va, vb = ma[probe][ba], mb[probe][bb]
            relation = "higher than" if va > vb else "lower than" if va < vb else "equal to"
            sentences.append(f"{probe} probe, best layer: {labels.get(a, a)} {va:.3f} (layer {ba}) is {relation} "
                             f"{labels.get(b, b)} {vb:.3f} (layer {bb}).")
    return sentences


def abx_means(arms: Sequence[ArmResult], condition: str) -> dict[int, dict[str, float]]:
    """layer -> ABX condition -> mean error over seeds, of the arm's own representation (references left out)."""
    from results.abx.features import REFERENCES

    values: dict[int, dict[str, list[float]]] = {}
    for arm in arms:
        if arm.condition == condition:
            for row in arm.abx:
                if row["representation"] not in REFERENCES:
                    values.setdefault(row["layer"], {}).setdefault(row["condition"], []).append(row["error"])
    return {layer: {c: statistics.fmean(v) for c, v in errors.items()} for layer, errors in sorted(values.items())}


def abx_table(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> str:
    """Best layer by mean across-speaker error, its within and across error, and the last layer's across error;
    then the reference rows of the first arm that scored them (the same items for every arm)."""
    from results.abx.features import REFERENCES
    from results.abx.report import best_layer

    lines = ["| representation | best layer | within % | across % | last layer across % |", "|---|---:|---:|---:|---:|"]
    for condition in conditions:
        means = abx_means(arms, condition)
        if means:
            best = best_layer(means)
            lines.append(f"| {labels.get(condition, condition)} | {best} | {means[best].get('within', math.nan):.1f} | "
                         f"{means[best].get('across', math.nan):.1f} | {means[max(means)].get('across', math.nan):.1f} |")
    references = next((a.abx for a in arms if any(r["representation"] in REFERENCES for r in a.abx)), [])
    for name in REFERENCES:
        errors = {r["condition"]: r["error"] for r in references if r["representation"] == name}
        if errors:
            lines.append(f"| {name} (reference) | – | {errors.get('within', math.nan):.1f} | "
                         f"{errors.get('across', math.nan):.1f} | – |")
    return "\n".join(lines) + "\n"


def abx_monitor_means(arms: Sequence[ArmResult], condition: str) -> dict[int, dict[str, float]]:
    """step -> best_within / best_across -> mean over seeds, from the pretrainer's ABX monitor."""
    per_step: dict[int, dict[str, list[float]]] = {}
    for arm in arms:
        if arm.condition == condition:
            for record in arm.abx_monitor:
                for key in ("best_within", "best_across"):
                    per_step.setdefault(record["step"], {}).setdefault(key, []).append(record["abx"][key])
    return {step: {k: statistics.fmean(v) for k, v in keys.items()} for step, keys in sorted(per_step.items())}


def abx_monitor_table(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> str:
    lines = ["| condition | step | best layer within % | best layer across % |", "|---|---:|---:|---:|"]
    for condition in conditions:
        for step, row in abx_monitor_means(arms, condition).items():
            lines.append(f"| {labels.get(condition, condition)} | {step} | {row['best_within']:.1f} | "
                         f"{row['best_across']:.1f} |")
    return "\n".join(lines) + "\n"


def abx_sentences(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> list[str]:
    from results.abx.report import best_layer

    sentences = []
    for condition in conditions:
        means = abx_means(arms, condition)
        if means:
            best = best_layer(means)
            sentences.append(f"{labels.get(condition, condition)}: best phone ABX layer {best}, "
                             f"{means[best].get('within', math.nan):.1f} % within / "
                             f"{means[best].get('across', math.nan):.1f} % across speaker (chance 50).")
    return sentences


def compute_table(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> str:
    lines = ["| condition | seeds | pretraining updates | audio seen (s) | pretraining time (s) | "
             "pretrain stage wall (s) | downstream wall (s) | layerwise wall (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for condition in conditions:
        mine = [a for a in arms if a.condition == condition]
        if not mine:
            continue

        def mean(values: list[float]) -> str:
            return f"{statistics.fmean(values):.0f}" if values else "0"

        lines.append(f"| {labels.get(condition, condition)} | {len(mine)} | {mean([a.updates for a in mine])} | "
                     f"{mean([a.audio_seconds for a in mine])} | {mean([a.train_seconds for a in mine])} | "
                     f"{mean([a.wall_s.get('pretrain', 0.0) for a in mine])} | "
                     f"{mean([a.wall_s.get('downstream', 0.0) for a in mine])} | "
                     f"{mean([a.wall_s.get('layerwise', 0.0) for a in mine])} |")
    return "\n".join(lines) + "\n"


@dataclass
class StudyMeta:
    """What the report says about how the study was run."""

    command: str
    seeds: list[int]
    conditions: list[str]
    labels: dict[str, str]
    about: dict[str, str]
    data: str
    scale: str
    steps: int
    task_steps: dict[str, int] | None  # task -> downstream updates; None: the profile's schedule
    er_folds: list[int] = field(default_factory=lambda: list(ALL_ER_FOLDS))
    pretrain_commands: dict[str, str] = field(default_factory=dict)  # condition -> one seed's command
    profile: str | None = None  # the downstream profile (downstream_configs/profiles/)


def er_folds_text(folds: Sequence[int]) -> str:
    if tuple(folds) == ALL_ER_FOLDS:
        return "ER: all five folds, averaged"
    return f"ER: fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))} of {ER_FOLD_COUNT}"


def downstream_text(profile: str | None, task_steps: dict[str, int] | None) -> str:
    schedule = describe_task_steps(task_steps) if task_steps else "the profile's schedule"
    return f"profile {profile}, {schedule}" if profile else f"official configs, {schedule}"


def build_report(meta: StudyMeta, arms: Sequence[ArmResult]) -> str:
    """study.md from the collected numbers; every comparative sentence is computed here."""
    labels, conditions = meta.labels, meta.conditions
    summaries = score_summaries(arms)
    parts = ["# Does easy-to-hard masking help? EH-MAM against its ablations", "",
             f"Command: `{meta.command}`", "",
             f"Seeds: {', '.join(map(str, meta.seeds))}. Corpus: `{meta.data}` ({meta.scale}). Pretraining: "
             f"{meta.steps} updates per arm, same config, batch size and warm-up for every pretrained arm. "
             f"Downstream: {downstream_text(meta.profile, meta.task_steps)} "
             f"({er_folds_text(meta.er_folds)}), s3prl --seed = study seed. "
             "Scores are test-set SUPERB units (%), mean ± sample std [min, max] over seeds.", ""]
    if "synthetic" in meta.scale or "mini-SUPERB" in meta.scale:
        parts += ["> Synthetic mini-SUPERB data and a few CPU updates: these numbers compare the arms with each "
                  "other under this budget; they are not SUPERB results.", ""]
    parts += ["## Arms", "", "| condition | what | pretraining command (first seed) |", "|---|---|---|"]
    for c in conditions:
        command = meta.pretrain_commands.get(c, "")
        parts.append(f"| {labels.get(c, c)} (`{c}`) | {meta.about.get(c, '')} | "
                     f"{'`' + command + '`' if command else '—'} |")
    parts += ["", "## Findings (computed from the tables below)", ""]
    reference = "ehmam"
    sentences = []
    if reference in summaries:
        for other in conditions:
            if other != reference and other in summaries:
                result = compare(summaries[reference], summaries[other])
                sentences.append(comparison_sentence(labels.get(reference, reference), labels.get(other, other),
                                                     result))
    else:
        sentences.append("EH-MAM has no scores, so no comparison is made.")
    if "random_mask" in conditions:
        sentences += layerwise_sentences(arms, reference, "random_mask", labels)
    sentences += training_sentences(arms, conditions, labels)
    sentences += abx_sentences(arms, conditions, labels)
    parts += [f"- {s}" for s in sentences] + [""]
    parts += ["## SUPERB tasks", "", score_table(summaries, conditions, labels)]
    parts += ["## Loss predictor and masking over training", "",
              "Spearman rho between predicted and realised per-frame loss (student: the predictor trained by the "
              "ranking loss; teacher: its EMA copy that picks the hard spans), realised masked fraction and the "
              "curriculum's alpha, mean over seeds at a few logged steps. n/a: not measured by that arm.", "",
              training_table(arms, conditions, labels), "![training curves](training_curves.png)", ""]
    parts += ["## What each layer knows", "",
              "Linear probes per hidden state on held-out speakers (results.layerwise): phone frame accuracy, "
              "keyword accuracy, R^2 of a ridge map to log-mel, speaker accuracy; mean over seeds.", "",
              layerwise_table(arms, conditions, labels), "![layer-wise probes](layerwise_curves.png)", ""]
    if any(a.abx for a in arms):
        parts += ["## Phone ABX per layer", "",
                  f"Triphone phone ABX error (results.abx) on the first {ABX_FILES} utterances of "
                  f"{', '.join(ABX_SPLITS)}, mean over "
                  "seeds; the best layer is the one with the lowest mean across-speaker error. Chance is 50.", "",
                  abx_table(arms, conditions, labels)]
    if any(a.abx_monitor for a in arms):
        parts += ["## Phone ABX during pretraining", "",
                  "The pretrainer's ABX monitor (run.eval_every): the best student layer's error at each "
                  "evaluation, mean over seeds.", "", abx_monitor_table(arms, conditions, labels)]
    parts += ["## Compute per arm (mean over seeds)", "", compute_table(arms, conditions, labels)]
    parts += ["## Per-run scores", "",
              "Each seed's SUPERB row with its 95 % interval and the chance level of the test set (as "
              "results.tabulate prints them; per-arm tables in seed*/<condition>/superb.md).", "",
              "| condition | seed | " + " | ".join(TASK_HEADERS[t] for t in TASKS) + " | problems |",
              "|---|---:|" + "---|" * len(TASKS) + "---|"]
    for arm in sorted(arms, key=lambda a: (conditions.index(a.condition) if a.condition in conditions else 99, a.seed)):
        cells = [arm.cells.get(t) or (f"{arm.scores[t]:.2f}" if t in arm.scores else "missing") for t in TASKS]
        problems = "; ".join(arm.failed).replace("|", "/")
        parts.append(f"| {labels.get(arm.condition, arm.condition)} | {arm.seed} | " + " | ".join(cells)
                     + f" | {problems} |")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Figures.


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_panels(plt, fig, axes, path: Path) -> None:
    """The same finish for every study figure: a light grid and a legend on each panel that has lines."""
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str], path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    for ax, key in zip(axes.flat, TRAINING_KEYS):
        for condition in conditions:
            means = training_means(arms, condition)
            points = [(s, v[key]) for s, v in means.items() if key in v]
            if points:
                ax.plot(*zip(*points), label=labels.get(condition, condition))
        ax.set_title(key.replace("_", " "), fontsize=9)
        ax.set_xlabel("update")
    _save_panels(plt, fig, axes.flat, path)


def plot_layerwise_curves(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str],
                          path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(PROBE_ORDER), figsize=(4 * len(PROBE_ORDER), 3.6), squeeze=False)
    for ax, probe in zip(axes[0], PROBE_ORDER):
        for condition in conditions:
            curve = layerwise_means(arms, condition).get(probe)
            if curve:
                ax.plot(list(curve), list(curve.values()), marker="o", label=labels.get(condition, condition))
        ax.set_title(f"{probe} ({'R^2' if probe == 'logmel' else 'accuracy'})", fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.0)  # 0-1 scale; a negative R^2 stays visible
    _save_panels(plt, fig, axes[0], path)


# ---------------------------------------------------------------------------------------------------------
# Entry point.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m results.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/study"))
    parser.add_argument("--data", type=Path, default=None,
                        help="corpus root (mini-SUPERB or real corpora); default: generate mini-SUPERB under OUT")
    parser.add_argument("--scale", choices=("ci", "demo", "small"), default="demo",
                        help="mini-SUPERB scale to generate (default demo: what the cpu profile learns on)")
    parser.add_argument("--corpus-seed", type=int, default=0, help="mini-SUPERB seed (the corpus is shared)")
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2], help="comma-separated study seeds")
    parser.add_argument("--steps", type=positive_int, default=1000, help="pretraining updates per arm")
    parser.add_argument("--profile", type=parse_profile, default="cpu",
                        help="downstream profile in downstream_configs/profiles/ (default cpu), or none: the "
                             "official configs with small CPU batches for --task-steps updates")
    parser.add_argument("--task-steps", type=parse_task_steps, default=None,
                        help="downstream updates per task: N, or N,TASK=M,... to give some tasks M "
                             "(default: the profile's schedule; without a profile 60)")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="downstream runs at a time beside the pretraining of the next arm (one thread each)")
    parser.add_argument("--conditions", type=parse_conditions, default=list(default_conditions()),
                        help="comma-separated arms: " + ",".join(default_conditions()))
    parser.add_argument("--tasks", type=parse_tasks, default=list(TASK_ORDER), help="comma-separated SUPERB tasks")
    parser.add_argument("--er-folds", type=parse_folds, default=list(ALL_ER_FOLDS))
    parser.add_argument("--pretrain-config", type=Path, default=REPO / "pretrain" / "cpu_recipe.yaml")
    parser.add_argument("--pretrain-manifest", type=Path, default=None,
                        help="fairseq TSV to pretrain every arm on (default: DATA/pretrain/train.tsv), e.g. the "
                             "pretraining set of a larger mini-SUPERB while the tasks run on a ci corpus")
    parser.add_argument("--probe-utterances", type=positive_int, default=200,
                        help="results.layerwise --max-utterances for each arm")
    parser.add_argument("--report-only", action="store_true", help="rebuild study.md and the figures from OUT")
    return parser


def write_report(args: argparse.Namespace, data: Path, command: str) -> Path:
    from minisuperb import read_marker

    conditions = default_conditions()
    arms = [collect_arm(args.out, c, s) for s in args.seeds for c in args.conditions
            if condition_dir(args.out, c, s).is_dir()]
    marker = read_marker(data) if data.is_dir() else None
    scale = f"mini-SUPERB synthetic, scale {marker.get('scale')}" if marker else "real corpora or unknown"
    labels = {name: c.label for name, c in conditions.items()}
    first = args.seeds[0]
    pretrain_commands = {
        name: shown(pretrain_argv(conditions[name], first, args.pretrain_config, pretrain_manifest(args, data),
                                  condition_dir(args.out, name, first) / "pretrain", args.steps,
                                  data if args.abx_monitor else None))
        for name in args.conditions if conditions[name].source == "pretrain"}
    meta = StudyMeta(command, list(args.seeds), list(args.conditions), labels,
                     {name: c.about for name, c in conditions.items()}, repo_relative(data), scale, args.steps,
                     args.task_steps, list(args.er_folds), pretrain_commands, args.profile)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_training(arms, args.conditions, labels, args.out / "training_curves.png")
    plot_layerwise_curves(arms, args.conditions, labels, args.out / "layerwise_curves.png")
    path = args.out / "study.md"
    path.write_text(build_report(meta, arms), encoding="utf-8")
    return path


STUDY_JSON = "study.json"


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args.out = args.out.absolute()
    args.pretrain_config = args.pretrain_config.absolute()
    record_path = args.out / STUDY_JSON
    if args.report_only:
        # the run's own settings, so the report describes what was run, not this command's defaults
        if not record_path.is_file():
            print(f"results.study: error: {record_path} is missing: no study was run in {args.out}", file=sys.stderr)
            return 2
        record = json.loads(record_path.read_text(encoding="utf-8"))
        for key in ("seeds", "conditions", "steps", "task_steps"):
            setattr(args, key, record[key])
        args.profile = record.get("profile")  # studies run before profiles: the official configs
        args.er_folds = record.get("er_folds", list(ALL_ER_FOLDS))
        args.abx_monitor = record.get("abx_monitor", False)  # studies run before the monitor existed
        if isinstance(args.task_steps, int):  # a study.json written before per-task counts
            args.task_steps = parse_task_steps(str(args.task_steps))
        args.pretrain_manifest = REPO / record["pretrain_manifest"] if record.get("pretrain_manifest") else None
        args.pretrain_config = REPO / record["pretrain_config"]
        data, command = REPO / record["data"], record["command"]  # relative paths: to the repository root
    else:
        command = shlex.join(["python", "-m", "results.study", *(repo_relative(a) for a in raw)])
        if args.profile is None and args.task_steps is None:
            args.task_steps = parse_task_steps("60")
        args.out.mkdir(parents=True, exist_ok=True)
        corpus_args = argparse.Namespace(data=args.data, out=args.out, scale=args.scale, seed=args.corpus_seed)
        data, _ = prepare_corpus(corpus_args)
        record = {"command": command, "seeds": args.seeds, "conditions": args.conditions, "steps": args.steps,
                  "profile": args.profile, "task_steps": args.task_steps, "er_folds": args.er_folds,
                  "data": repo_relative(data), "pretrain_config": repo_relative(args.pretrain_config),
                  "pretrain_manifest": repo_relative(pretrain_manifest(args, data)), "abx_monitor": True}
        args.abx_monitor = True
        record_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        start = time.monotonic()
        run_study_arms(args, data)
        log.info("all arms done in %.0f s", time.monotonic() - start)
    path = write_report(args, data, command)
    sys.stdout.write(path.read_text(encoding="utf-8"))
    print(f"wrote {path}, {args.out / 'training_curves.png'}, {args.out / 'layerwise_curves.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
