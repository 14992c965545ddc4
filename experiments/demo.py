"""The README's main command: mini-SUPERB corpus -> tiny EH-MAM pretraining -> phone ABX -> seven SUPERB tasks -> table.

    python -m experiments.demo --out demo_out
    python -m experiments.demo --out demo_out --data DIR --ckpt CKPT --tasks pr,asr --profile none --task-steps 100

Each stage is the command a user would type (they are printed): `python -m minisuperb`, `python pretrain/run.py`,
`python -m results.abx`, `python run_downstream.py -m train --profile cpu --cache-features` then `-m evaluate` per
task and upstream, and `python -m results.tabulate`. Beside the pretrained checkpoint the same tasks run
on a randomly initialised encoder of the checkpoint's architecture, so the table shows what pretraining adds, and
with `--baselines fbank,random` also on s3prl's `-u fbank`. The downstream runs go to --jobs worker processes of
one thread each (s3prl is imported once per worker); the baselines' runs need no trained weights, so they start
while the checkpoint pretrains. A task that fails is reported and shows as missing/unfinished in the table, the
others still run. A rerun reuses a complete corpus and a finished pretraining under --out and redoes the downstream
runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from experiments.corpus import add_corpus_flags, prepare_corpus
from experiments.downstream import DownstreamPool, DownstreamRun, plan_downstream, slowest_first
from experiments.options import (
    parse_baselines,
    parse_folds,
    parse_profile,
    parse_task_steps,
    parse_tasks,
    positive_int,
)
from experiments.pretraining import (
    AbxMonitor,
    pretrain_manifest,
    pretraining_argv,
    random_init_like_checkpoint,
    random_init_like_config,
    run_pretraining,
)
from experiments.report_stages import abx_stage, tabulate_stage
from experiments.stages import Stage, stage_records, timed, wall_time_table
from results.abx.report import summary_with_curve
from results.paths import REPO
from results.study_report import describe_task_steps
from superb.registry import ER_FOLDS, TASK_NAMES
from trainkit.cli import refuse_old_spellings

log = logging.getLogger("demo")

PROG = "experiments.demo"
ABX_EVALUATIONS = 4  # the pretraining monitor scores update 0 and every quarter of the run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for everything the demo writes")
    add_corpus_flags(parser)
    parser.add_argument(
        "--ckpt",
        type=Path,
        default=None,
        help="an EH-MAM pretraining checkpoint to evaluate instead of pretraining one",
    )
    parser.add_argument("--pretrain-config", type=Path, default=REPO / "pretrain" / "cpu_recipe.yaml")
    parser.add_argument(
        "--pretrain-manifest",
        type=Path,
        default=None,
        help="fairseq TSV manifest to pretrain on (default: DATA/pretrain/train.tsv)",
    )
    parser.add_argument("--pretrain-steps", type=positive_int, default=1000, help="pretraining updates")
    parser.add_argument("--tasks", type=parse_tasks, default=list(TASK_NAMES), help="comma-separated SUPERB tasks")
    parser.add_argument(
        "--er-folds",
        type=parse_folds,
        default=list(ER_FOLDS),
        help="ER folds to run; SUPERB's ER score is the mean of all five",
    )
    parser.add_argument(
        "--profile",
        type=parse_profile,
        default="cpu",
        help="downstream settings: a profile in downstream_configs/profiles/ (default cpu: learns on "
        "mini-SUPERB demo in minutes), or none: the official configs with small CPU batches for "
        "--task-steps updates (default 60), a smoke test of the pipeline",
    )
    parser.add_argument(
        "--task-steps",
        type=parse_task_steps,
        default=None,
        help="downstream updates per task: N, or N,TASK=M,... to give some tasks M (default: the profile's)",
    )
    parser.add_argument(
        "--baselines",
        type=parse_baselines,
        default=["random"],  # FBANK's seven tasks were a third of the demo's CPU time
        help="SUPERB rows beside the checkpoint: random (default: an untrained encoder of the checkpoint's "
        "architecture), fbank (s3prl's -u fbank: its seven tasks add about a third to the demo's time), "
        "fbank,random, or none",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=min(os.cpu_count() or 1, 4),
        help="downstream runs at a time, one thread each (default: CPU count, at most 4)",
    )
    refuse_old_spellings(parser, "--checkpoint", "--seed")
    return parser


def plan_fbank_runs(args: argparse.Namespace) -> list[DownstreamRun]:
    """The FBANK baseline's runs (OUT/downstream/fbank/<task>); they need no checkpoint."""
    if "fbank" not in args.baselines:
        return []
    return plan_downstream(
        args.tasks,
        args.er_folds,
        args.out / "downstream" / "fbank",
        profile=args.profile,
        upstream_argv=("-u", "fbank"),
        prefix="fbank ",
    )


def plan_random_init_runs(args: argparse.Namespace) -> tuple[list[DownstreamRun], list[Stage]]:
    """The random-init encoder's runs (OUT/downstream/random_init/<task>). The encoder is exported here, before any
    pretraining, from the architecture of --ckpt or else of --pretrain-config, the one the checkpoint will record
    (`check_random_init_architecture` checks that once it exists)."""
    if "random" not in args.baselines:
        return [], []
    random_init = args.out / "random_init.pt"
    if args.ckpt is not None:
        source = args.ckpt
        command = f"experiments.pretraining.random_init_like_checkpoint({str(source)!r}, {str(random_init)!r})"
        stage = timed(Stage("random init", command), lambda: random_init_like_checkpoint(source, random_init))
    else:
        source = args.pretrain_config
        command = f"experiments.pretraining.random_init_like_config({str(source)!r}, {str(random_init)!r}, 0)"
        stage = timed(Stage("random init", command), lambda: random_init_like_config(source, random_init, 0))
    if not stage.ok:
        return [], [stage]
    runs = plan_downstream(
        args.tasks,
        args.er_folds,
        args.out / "downstream" / "random_init",
        profile=args.profile,
        upstream_argv=("-u", "ehmam", "-k", str(random_init)),
        prefix="random init ",
    )
    return runs, [stage]


def check_random_init_architecture(random_init: Path, checkpoint: Path) -> None:
    """The random-init row is only a baseline of the checkpoint's own architecture."""
    from upstream_ehmam.checkpoint import load_checkpoint

    exported, trained = (load_checkpoint(p)["model_config"] for p in (random_init, checkpoint))
    if exported != trained:
        differing = sorted(k for k in exported.keys() | trained.keys() if exported.get(k) != trained.get(k))
        raise SystemExit(
            f"{PROG}: error: {checkpoint} records another architecture than --pretrain-config gave the random-init "
            f"row ({random_init}): model_config {', '.join(differing)} differ; rerun with a new --out"
        )


def pretrain(args: argparse.Namespace, data: Path) -> tuple[Path, Stage | None]:
    """Pretrain `--pretrain-config` for `--pretrain-steps` updates; returns the checkpoint (last.pt)."""
    if args.ckpt is not None:
        return args.ckpt, None
    manifest = pretrain_manifest(args.pretrain_manifest, data)
    if not manifest.is_file():
        raise SystemExit(
            f"{PROG}: error: pretraining manifest {manifest} is missing; make one with "
            f"`python -m pretrain.manifest AUDIO_ROOT --out train.tsv` and pass --pretrain-manifest, "
            f"or pass --ckpt"
        )
    out_dir = (args.out / "pretrain").absolute()
    monitor = AbxMonitor.evaluations(data, args.pretrain_steps, ABX_EVALUATIONS)
    argv = pretraining_argv(args.pretrain_config, manifest, out_dir, steps=args.pretrain_steps, monitor=monitor)
    stage = run_pretraining(argv, threads=1)  # FBANK's downstream runs use the other cores meanwhile
    checkpoint = out_dir / "last.pt"
    if not stage.ok or not checkpoint.is_file():
        raise SystemExit(
            f"{PROG}: error: pretraining failed ({stage.detail or 'no last.pt'}); see the log above and {out_dir}"
        )
    return checkpoint, stage


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args.out = args.out.absolute()
    if args.ckpt is not None:
        if not args.ckpt.is_file():
            raise SystemExit(f"{PROG}: error: --ckpt {args.ckpt} is not a file")
        args.ckpt = args.ckpt.absolute()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    stages: list[Stage] = []

    data, corpus_stage = prepare_corpus(args.data, args.out, args.scale, args.corpus_seed)
    stages += [corpus_stage] if corpus_stage else []
    import torch

    torch.set_num_threads(1)  # this process's ABX and exports run beside the downstream workers
    if args.profile is None and args.task_steps is None:
        args.task_steps = parse_task_steps("60")
    # the baselines need no trained weights: their runs start while the checkpoint pretrains
    pool = DownstreamPool(args.jobs)
    random_runs, random_stages = plan_random_init_runs(args)
    stages += random_stages
    baseline_runs = random_runs + plan_fbank_runs(args)
    pool.submit(slowest_first(baseline_runs), None, data, args.task_steps)

    try:
        checkpoint, pretrain_stage = pretrain(args, data)
        if random_runs and args.ckpt is None:  # with --ckpt the random init was exported from the checkpoint
            check_random_init_architecture(args.out / "random_init.pt", checkpoint)
    except SystemExit:
        pool.cancel()  # the baselines' runs would be tabulated beside no checkpoint
        raise
    stages += [pretrain_stage] if pretrain_stage else []
    abx = abx_stage(args.out / "abx", data, [checkpoint], ["fbank"], random_init=True)  # seconds: always all rows
    stages.append(abx)

    checkpoint_runs = plan_downstream(args.tasks, args.er_folds, args.out / "downstream", profile=args.profile)
    pool.submit(slowest_first(checkpoint_runs), checkpoint, data, args.task_steps)
    pool.finish()
    runs = checkpoint_runs + baseline_runs
    stages += [stage for run in runs for stage in run.stages]

    from minisuperb import read_marker

    synthetic = read_marker(data) is not None
    schedule = (f"profile {args.profile}" if args.profile else "official configs") + (
        f", {describe_task_steps(args.task_steps, args.tasks)}" if args.task_steps else ""
    )
    table, report = tabulate_stage(
        args.out / "downstream", args.out / "results", f"EH-MAM ({checkpoint.name}), downstream: {schedule}", synthetic
    )
    stages.append(table)
    timing = wall_time_table(stages)
    (args.out / "wall_times.md").write_text(timing, encoding="utf-8")
    summary = {
        "data": str(data),
        "checkpoint": str(checkpoint),
        "synthetic": synthetic,
        "pretrain_steps": None if args.ckpt else args.pretrain_steps,
        "profile": args.profile,
        "task_steps": args.task_steps,
        "baselines": args.baselines,
        "total_wall_s": round(time.monotonic() - start, 1),
        "stages": stage_records(stages),
    }
    (args.out / "demo.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")

    print("\n" + (report.markdown if report else "(no table: tabulation failed)\n"))
    curve = checkpoint.parent / "abx_curve.tsv" if args.ckpt is None else None
    print(summary_with_curve(args.out / "abx", curve) if abx.ok else "(no phone ABX table: results.abx failed)\n")
    print(timing)
    print(f"wrote {args.out / 'results'}/superb.md, superb.csv, superb_runs.csv, {args.out}/wall_times.md, demo.json")
    failed = [s.name for s in stages if not s.ok]
    if failed:
        print(f"FAILED stages: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
