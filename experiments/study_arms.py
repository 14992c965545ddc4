"""Running the study's arms: pretrain (or export) each arm's upstream, run its downstream tasks on a pool of
workers, probe its layers, and leave everything under OUT/seed<k>/<condition>/. `python -m experiments.study` is the
command line; below it every function takes typed arguments."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from experiments.downstream import DownstreamPool, DownstreamRun, plan_downstream, slowest_first
from experiments.pretraining import (
    AbxMonitor,
    pretrain_manifest,
    pretraining_argv,
    random_init_like_config,
    run_pretraining,
)
from experiments.report_stages import abx_stage, tabulate_stage
from experiments.stages import Stage, stage_records, timed
from results.paths import REPO, repo_relative, shown
from results.study_collect import condition_dir
from superb.registry import ER_FOLDS, TASK_NAMES

log = logging.getLogger("study")


@dataclass(frozen=True)
class Condition:
    """One arm of the study. `source`: pretrain (pretrain/run.py with `overrides`), random_init (a freshly
    initialised encoder of the same shape, exported), or fbank (s3prl's `-u fbank`, no encoder)."""

    name: str
    label: str
    source: str
    overrides: tuple[str, ...] = ()
    about: str = ""


def baseline_overrides(
    baseline: Path, reference: Path, sections: Sequence[str] = ("mask", "curriculum", "loss", "teacher", "heads")
) -> tuple[str, ...]:
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
    return {
        c.name: c
        for c in (
            Condition("ehmam", "EH-MAM", "pretrain", (), "the pretraining config as is"),
            Condition(
                "random_mask",
                "random masking",
                "pretrain",
                random_mask,
                "pretrain/random_mask.yaml's changes relative to ehmam.yaml: " + ", ".join(random_mask),
            ),
            Condition(
                "no_aux",
                "EH-MAM w/o aux loss",
                "pretrain",
                ("loss.aux_weight=0.0",),
                "curriculum kept, ranking loss off (its predictor is never trained)",
            ),
            Condition("random_init", "random init", "random_init", (), "a freshly initialised encoder, no pretraining"),
            Condition("fbank", "FBANK", "fbank", (), "s3prl's fbank upstream (-u fbank)"),
        )
    }


@dataclass
class StudySettings:
    """What a study runs: study.json records these (paths relative to the repository root), and --report-only
    reads them back, so the report describes what was run."""

    out: Path
    seeds: list[int]
    conditions: list[str]
    steps: int  # pretraining updates per arm
    pretrain_config: Path
    pretrain_manifest: Path | None = None  # None: DATA/pretrain/train.tsv
    profile: str | None = None  # downstream profile; None: the official configs
    task_steps: dict[str, int] | None = None  # task -> downstream updates; None: the profile's schedule
    tasks: list[str] = field(default_factory=lambda: list(TASK_NAMES))
    er_folds: list[int] = field(default_factory=lambda: list(ER_FOLDS))
    jobs: int = 1  # downstream runs at a time beside the pretraining of the next arm
    probe_utterances: int = 200  # results.layerwise --max-utterances
    abx_monitor: bool = True  # the pretrainer's phone ABX monitor (studies before it existed: False)

    def record(self, command: str, data: Path) -> dict:
        """study.json's content."""
        return {
            "command": command,
            "seeds": self.seeds,
            "conditions": self.conditions,
            "steps": self.steps,
            "profile": self.profile,
            "task_steps": self.task_steps,
            "er_folds": self.er_folds,
            "data": repo_relative(data),
            "pretrain_config": repo_relative(self.pretrain_config),
            "pretrain_manifest": repo_relative(pretrain_manifest(self.pretrain_manifest, data)),
            "abx_monitor": self.abx_monitor,
            "tasks": self.tasks,
        }


ABX_EVALUATIONS = 5  # phone ABX monitor points per pretraining run, besides update 0


def pretrain_argv(
    condition: Condition,
    seed: int,
    config: Path,
    manifest: Path,
    out_dir: Path,
    steps: int,
    abx_data: Path | None = None,
) -> list[str]:
    """pretrain/run.py's argv: the same config, updates, warm-up and batch size for every arm; only the seed and
    the arm's own overrides differ. With `abx_data` the pretrainer's ABX monitor scores the student's layers on its
    dev-clean alignments during training."""
    monitor = AbxMonitor.evaluations(abx_data, steps, ABX_EVALUATIONS) if abx_data is not None else None
    sets = [f"run.seed={seed}", *condition.overrides]
    return pretraining_argv(config, manifest, out_dir, steps=steps, sets=sets, monitor=monitor)


def plan_study_runs(
    condition: Condition,
    seed: int,
    tasks: Sequence[str],
    er_folds: Sequence[int],
    root: Path,
    profile: str | None = None,
) -> list[DownstreamRun]:
    """One DownstreamRun per task (per ER fold) of an arm; s3prl's downstream seed follows the study seed."""
    upstream = ("-u", "fbank") if condition.source == "fbank" else ()
    return plan_downstream(tasks, er_folds, root, profile=profile, upstream_argv=upstream, downstream_seed=seed)


# ---------------------------------------------------------------------------------------------------------
# Running one arm.


@dataclass
class ArmRun:
    """One (condition, seed) while the study runs: its folder, upstream checkpoint, stages and downstream runs."""

    condition: Condition
    seed: int
    cdir: Path
    checkpoint: Path | None = None
    stages: list[Stage] = field(default_factory=list)
    runs: list[DownstreamRun] = field(default_factory=list)


def build_upstream(condition: Condition, seed: int, settings: StudySettings, data: Path) -> ArmRun:
    """Pretrain the arm (or export its random init); `checkpoint` stays None for fbank and for a failed build."""
    cdir = condition_dir(settings.out, condition.name, seed)
    cdir.mkdir(parents=True, exist_ok=True)
    arm = ArmRun(condition, seed, cdir)
    if condition.source == "pretrain":
        argv = pretrain_argv(
            condition,
            seed,
            settings.pretrain_config,
            pretrain_manifest(settings.pretrain_manifest, data),
            cdir / "pretrain",
            settings.steps,
            data if settings.abx_monitor else None,
        )
        arm.stages.append(run_pretraining(argv, threads=1))
        arm.checkpoint = cdir / "pretrain" / "last.pt"
    elif condition.source == "random_init":
        arm.checkpoint = cdir / "random_init.pt"
        command = (
            f"experiments.pretraining.random_init_like_config({repo_relative(settings.pretrain_config)!r}, "
            f"{repo_relative(arm.checkpoint)!r}, seed={seed})"
        )
        arm.stages.append(
            timed(
                Stage("random init", command),
                lambda: random_init_like_config(settings.pretrain_config, arm.checkpoint, seed),
            )
        )
    return arm


def probe_upstream(arm: ArmRun, data: Path, probe_utterances: int) -> None:
    """The layer-wise probes of an encoder arm, and phone ABX per layer (fbank: s3prl's fbank)."""
    cdir, checkpoint = arm.cdir, arm.checkpoint
    if checkpoint is not None:
        from results.layerwise import run_layerwise

        command = shown(
            [
                "-m",
                "results.layerwise",
                "--ckpt",
                str(checkpoint),
                "--data",
                str(data),
                "--out",
                str(cdir / "layerwise"),
                "--max-utterances",
                str(probe_utterances),
                "--seed",
                str(arm.seed),
            ]
        )
        arm.stages.append(
            timed(
                Stage("layerwise", command),
                lambda: run_layerwise(
                    checkpoint, data, cdir / "layerwise", max_utterances=probe_utterances, seed=arm.seed
                ),
            )
        )
    arm.stages.append(
        abx_stage(cdir / "abx", data, [checkpoint] if checkpoint else [], [] if checkpoint else ["fbank"])
    )


def tabulate_arm(arm: ArmRun, data: Path) -> None:
    """The arm's SUPERB table (<arm dir>/superb.md, .csv) once its downstream runs are done; stages and their
    commands go to <arm dir>/condition.json."""
    from minisuperb import read_marker

    downstream_stages = [s for run in arm.runs for s in run.stages]
    table, _ = tabulate_stage(
        arm.cdir / "downstream",
        arm.cdir,
        f"{arm.condition.label}, seed {arm.seed}",
        synthetic=read_marker(data) is not None,
    )
    write_condition_json(arm, [*arm.stages, *downstream_stages, table], downstream_stages)


def run_study_arms(settings: StudySettings, data: Path) -> None:
    """Every (seed, condition): the main process pretrains and probes one arm while a DownstreamPool of
    `settings.jobs` workers runs the downstream tasks of the arms built before it."""
    import torch

    torch.set_num_threads(1)  # the probes and ABX of this process run beside the downstream workers
    conditions = default_conditions()
    pool = DownstreamPool(settings.jobs)
    arms: list[ArmRun] = []
    for seed in settings.seeds:
        for name in settings.conditions:
            log.info("=== %s, seed %d ===", name, seed)
            arm = build_upstream(conditions[name], seed, settings, data)
            if arm.checkpoint is not None and not arm.checkpoint.is_file():
                write_condition_json(arm, arm.stages, [])
                log.error("%s seed %d: no checkpoint, skipping its tasks and probes", name, seed)
                continue
            arm.runs = plan_study_runs(
                arm.condition, seed, settings.tasks, settings.er_folds, arm.cdir / "downstream", settings.profile
            )
            pool.submit(slowest_first(arm.runs), arm.checkpoint, data, settings.task_steps)
            probe_upstream(arm, data, settings.probe_utterances)
            arms.append(arm)
    pool.finish()
    for arm in arms:
        tabulate_arm(arm, data)


def write_condition_json(arm: ArmRun, stages: Sequence[Stage], downstream_stages: Sequence[Stage]) -> None:
    """<arm dir>/condition.json: every stage with the command that ran, and the wall time per kind of stage."""
    walls = {
        "pretrain": sum(s.wall_s for s in stages if s.name in ("pretrain", "random init")),
        "downstream": sum(s.wall_s for s in downstream_stages),
        "layerwise": sum(s.wall_s for s in stages if s.name == "layerwise"),
    }
    record = {"condition": arm.condition.name, "seed": arm.seed, "wall_s": walls, "stages": stage_records(stages)}
    (arm.cdir / "condition.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
