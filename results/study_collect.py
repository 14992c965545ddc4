"""Collecting what a study arm left on disk (OUT/seed<k>/<condition>/): SUPERB scores and cells, pretraining
metrics, layer-wise probes, phone ABX and the stage record. Whatever is missing stays empty and is noted."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from superb.registry import BY_LABEL, TASK_LABELS
from trainkit.logs import METRICS_FILE


def condition_dir(out: Path, condition: str, seed: int) -> Path:
    """Where a study leaves one arm: OUT/seed<k>/<condition>/."""
    return out / f"seed{seed}" / condition


@dataclass
class ArmResult:
    """Everything the report needs from one (condition, seed)."""

    condition: str
    seed: int
    scores: dict[str, float] = field(default_factory=dict)  # metric key (superb.registry.METRICS) -> score
    cells: dict[str, str] = field(default_factory=dict)  # task label -> the SUPERB table's cell: interval and chance
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
    """RunScores -> one number per metric key (ER: mean of the folds scored; SF: "SF" its F1, "SF_CER" its CER)."""
    scores: dict[str, float] = {}
    er = [r.values[0] for r in run_scores if r.run.task == "ER" and r.status == "ok"]
    if er:
        scores["ER"] = sum(er) / len(er)
    for r in run_scores:
        if r.status != "ok" or r.run.task == "ER":
            continue
        for metric, value in zip(BY_LABEL[r.run.task].metrics, r.values):
            scores[metric.key] = value
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
    """Which rho columns the run really measured (the loop logs NaN otherwise; runs before that logged 0.0, so
    the config decides): the student's predictor is
    trained only with the ranking loss; the teacher's exists when the curriculum or the ranking loss needs it."""
    aux = float((config.get("loss") or {}).get("aux_weight", 1.0))
    curriculum = (config.get("curriculum") or {}).get("mode", "progress")
    teacher = curriculum != "none" or aux > 0
    return {"student_rho": aux > 0, "student_span_rho": aux > 0, "teacher_rho": teacher, "teacher_span_rho": teacher}


def collect_arm(out: Path, condition: str, seed: int) -> ArmResult:
    """Read one arm's run dirs, metrics, probes and stage record; what is missing stays empty and is noted."""
    cdir = condition_dir(out, condition, seed)
    arm = ArmResult(condition, seed)
    downstream = cdir / "downstream"
    if downstream.is_dir():
        from results.tabulate import tabulate

        report = tabulate([downstream], None, "unstated")
        arm.scores = task_scores(report.runs)
        arm.cells = {task: report.rows[0].text(task) for task in TASK_LABELS} if report.rows else {}
        arm.failed += [
            f"{r.run.task}{' ' + r.run.fold if r.run.fold else ''}: {r.status}" for r in report.runs if r.status != "ok"
        ]
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
