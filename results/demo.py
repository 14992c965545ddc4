"""The README's main command: mini-SUPERB corpus -> tiny EH-MAM pretraining -> phone ABX -> seven SUPERB tasks -> table.

    python -m results.demo --out demo_out
    python -m results.demo --out demo_out --data DIR --ckpt CKPT --tasks pr,asr --profile none --task-steps 100

Each stage is the command a user would type (they are printed): `python -m minisuperb`, `python pretrain/run.py`,
`python -m results.abx`, `python run_downstream.py -m train --profile cpu --cache-features` then `-m evaluate` per
task and upstream, and `python -m results.tabulate`. Beside the pretrained checkpoint the same tasks run on `-u fbank`
and on a randomly initialised encoder of the checkpoint's architecture (--baselines), so the table shows what
pretraining adds. The downstream runs go to --jobs worker processes of one thread each (s3prl is imported once per
worker); FBANK's runs start while the checkpoint pretrains. A task that fails is reported and shows as
missing/unfinished in the table, the others still run. A rerun reuses a complete corpus and a finished pretraining
under --out and redoes the downstream runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from results.paths import REPO, repo_relative
from superb.registry import ER_FOLDS, SLOWEST_FIRST, TASK_NAMES, run_name
from trainkit.cli import refuse_old_spellings

log = logging.getLogger("demo")

# Smaller batches and models where the official SUPERB config would not fit a few CPU steps on the ci corpus.
# Keys are s3prl override paths below config.downstream_expert.
CPU_SMOKE_OVERRIDES = {
    "pr": {"corpus.batch_size": 4},
    "asr": {
        "datarc.batch_size": 4,
        "datarc.train_batch_size": 4,
        "modelrc.project_dim": 64,
        "modelrc.RNNs.dim": [64, 64],
    },
    "ks": {"datarc.batch_size": 8},
    "ic": {"datarc.train_batch_size": 4, "datarc.eval_batch_size": 4},
    "sid": {"datarc.train_batch_size": 2},
    "er": {"datarc.train_batch_size": 2, "datarc.eval_batch_size": 2},
    "sf": {"corpus.batch_size": 4, "model.project_dim": 64, "model.RNNs.dim": [64, 64]},
}


def short_run_override(task: str, steps: int) -> str:
    """s3prl's `-o` string for a `steps`-update run of `task` with small CPU batches: evaluate on dev three times
    (so a dev-best checkpoint can be kept) and save the final state."""
    eval_every = max(1, steps // 3)
    runner = {
        "total_steps": steps,
        "eval_step": eval_every,
        "log_step": eval_every,
        "save_step": steps,
        "gradient_accumulate_steps": 1,
    }
    parts = [f"config.runner.{key}={value}" for key, value in runner.items()]
    parts += [
        f"config.downstream_expert.{key}={_override_value(value)}" for key, value in CPU_SMOKE_OVERRIDES[task].items()
    ]
    return ",,".join(parts)


def _override_value(value: object) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def steps_override(steps: int) -> str:
    """s3prl's `-o` string that shortens or lengthens a profile's schedule to `steps` updates, evaluated on dev
    (and saved) once at the end, as the profiles do."""
    runner = {"total_steps": steps, "eval_step": steps, "save_step": steps, "log_step": max(1, steps // 4)}
    return ",,".join(f"config.runner.{key}={value}" for key, value in runner.items())


def checkpoint_to_evaluate(expdir: Path, steps: int | None = None) -> Path:
    """The dev-best checkpoint s3prl kept (the SUPERB protocol), else the final state (states-<steps>.ckpt, or
    the newest states-*.ckpt when steps is None)."""
    best = sorted(expdir.glob("*best*.ckpt"))
    if best:
        return best[0]
    if steps is None:
        states = sorted(expdir.glob("states-*.ckpt"), key=lambda p: int(p.stem.split("-")[-1]))
        if not states:
            raise FileNotFoundError(f"{expdir}: training left neither a *best*.ckpt nor a states-*.ckpt")
        return states[-1]
    final = expdir / f"states-{steps}.ckpt"
    if not final.is_file():
        raise FileNotFoundError(f"{expdir}: training left neither a *best*.ckpt nor {final.name}")
    return final


@dataclass
class Stage:
    name: str
    command: str
    wall_s: float = 0.0
    ok: bool = False
    detail: str = ""


@dataclass
class DownstreamRun:
    """One `-d task` (one ER fold) of the demo: its train and evaluate argv for run_downstream.py."""

    label: str
    task: str
    expdir: Path
    fold: int | None = None
    upstream_argv: tuple[str, ...] = ()  # e.g. ("-u", "fbank"); default `-u ehmam -k <checkpoint>`
    downstream_seed: int | None = None  # s3prl's --seed; None keeps s3prl's default
    stages: list[Stage] = field(default_factory=list)
    profile: str | None = None  # run_downstream.py --profile; None: official config + CPU_SMOKE_OVERRIDES

    def train_argv(self, checkpoint: Path | None, data: Path, steps: int | None) -> list[str]:
        """With a profile, `steps` (if given) replaces the profile's schedule; without one it is required."""
        if self.upstream_argv:
            upstream = list(self.upstream_argv)
        elif checkpoint is None:
            raise ValueError(f"{self.label}: an ehmam run needs a checkpoint")
        else:
            upstream = ["-u", "ehmam", "-k", str(checkpoint)]
        # every upstream here is frozen, so each utterance is encoded once and its features reused
        argv = [
            "-m",
            "train",
            *upstream,
            "-d",
            self.task,
            "--data-root",
            str(data),
            "--workers",
            "0",
            "--cache-features",
            "-p",
            str(self.expdir),
        ]
        if self.profile:
            argv += ["--profile", self.profile] + (["-o", steps_override(steps)] if steps else [])
        elif steps is None:
            raise ValueError(f"{self.label}: without a profile the number of updates must be given")
        else:
            argv += ["-o", short_run_override(self.task, steps)]
        argv += ["--fold", str(self.fold)] if self.fold else []
        return argv + (["--seed", str(self.downstream_seed)] if self.downstream_seed is not None else [])

    def evaluate_argv(self, checkpoint: Path, data: Path) -> list[str]:
        argv = ["-m", "evaluate", "-e", str(checkpoint), "--data-root", str(data), "--workers", "0"]
        return argv + (["--fold", str(self.fold)] if self.fold else [])


def plan_downstream(
    tasks: Sequence[str],
    er_folds: Sequence[int],
    root: Path,
    *,
    profile: str | None = None,
    upstream_argv: tuple[str, ...] = (),
    prefix: str = "",
    downstream_seed: int | None = None,
) -> list[DownstreamRun]:
    """One run per task (ER: per fold) under `root`; `prefix` starts each label (e.g. "fbank ")."""
    runs = []
    for task in tasks:
        for fold in er_folds if task == "er" else [None]:
            name = run_name(task, fold)
            runs.append(
                DownstreamRun(
                    f"{prefix}{name}",
                    task,
                    root / name,
                    fold=fold,
                    profile=profile,
                    upstream_argv=upstream_argv,
                    downstream_seed=downstream_seed,
                )
            )
    return runs


def parse_tasks(text: str) -> list[str]:
    tasks = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown or not tasks:
        raise argparse.ArgumentTypeError(
            f"--tasks: unknown {unknown or 'empty list'}; choose from {','.join(TASK_NAMES)}"
        )
    return sorted(set(tasks), key=TASK_NAMES.index)


def parse_folds(text: str) -> list[int]:
    try:
        folds = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        folds = []
    if not folds or any(k not in ER_FOLDS for k in folds):
        raise argparse.ArgumentTypeError(
            f"--er-folds: expected comma-separated folds in {ER_FOLDS[0]}..{ER_FOLDS[-1]}, got {text!r}"
        )
    return folds


def parse_task_steps(text: str) -> dict[str, int]:
    """--task-steps: "60" gives every task 60 updates; "300,ks=2000,ic=2000" gives 300 to every task but the
    ones named (so cheap utterance-level tasks can get more updates than the sequence tasks)."""
    default, per_task = None, {}
    for part in (p.strip() for p in text.split(",")):
        name, _, value = part.rpartition("=")
        name = name.strip().lower()
        try:
            steps = positive_int(value)
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"--task-steps: {part!r} is not N or TASK=N with N a positive integer")
        if not name:
            default = steps
        elif name in TASK_NAMES:
            per_task[name] = steps
        else:
            raise argparse.ArgumentTypeError(f"--task-steps: unknown task {name!r}; choose from {','.join(TASK_NAMES)}")
    if default is None:
        raise argparse.ArgumentTypeError(
            f"--task-steps: {text!r} lacks the count for the other tasks (e.g. 300,ks=2000)"
        )
    return {task: per_task.get(task, default) for task in TASK_NAMES}


def describe_task_steps(steps: dict[str, int], tasks: Sequence[str] = TASK_NAMES) -> str:
    """ "60 updates per task" or "300 updates per task (KS 2000, IC 2000)"."""
    counts = [steps[t] for t in tasks]
    common = max(sorted(set(counts)), key=counts.count)
    others = ", ".join(f"{t.upper()} {steps[t]}" for t in tasks if steps[t] != common)
    return f"{common} updates per task" + (f" ({others})" if others else "")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m results.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for everything the demo writes")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="corpus root (mini-SUPERB or real corpora in their canonical folders); "
        "default: generate a mini-SUPERB (--scale) under OUT/minisuperb",
    )
    # small: 500 pretraining utterances (1.7 h) and 8 dev-clean speakers, enough for the recipe to learn and for
    # its phone ABX to be measured; demo: the test sets the cpu profile's intervals need
    parser.add_argument(
        "--scale",
        choices=("ci", "demo", "small"),
        default="demo",
        help="mini-SUPERB scale to generate (default demo: what the cpu profile learns on)",
    )
    parser.add_argument("--seed", type=int, default=0, help="mini-SUPERB seed")
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
        default=list(BASELINES),
        help="SUPERB rows beside the checkpoint: fbank (s3prl's -u fbank), random (an untrained "
        "encoder of the checkpoint's architecture), fbank,random (default), or none",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=min(os.cpu_count() or 1, 4),
        help="downstream runs at a time, one thread each (default: CPU count, at most 4)",
    )
    refuse_old_spellings(parser, "--checkpoint")
    return parser


BASELINES = ("fbank", "random")


def parse_profile(text: str) -> str | None:
    if text.strip().lower() == "none":
        return None
    from superb.tasks import available_profiles

    if text not in available_profiles():
        raise argparse.ArgumentTypeError(
            f"--profile: no profile {text!r}; choose from {', '.join(available_profiles() + ['none'])}"
        )
    return text


def parse_baselines(text: str) -> list[str]:
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in BASELINES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"--baselines: unknown {unknown or 'empty list'}; choose from {','.join(BASELINES)} or none"
        )
    return sorted(set(names), key=BASELINES.index)


def export_random_init(checkpoint: Path, path: Path, seed: int = 0) -> Path:
    """A freshly initialised encoder with the architecture (model_config) of `checkpoint`, saved as an encoder
    export: the "no pretraining" row. The global RNG is forked so the caller's random state is untouched."""
    from upstream_ehmam.checkpoint import export_encoder, load_checkpoint
    from upstream_ehmam.config import EncoderConfig
    from upstream_ehmam.model import random_init_encoder

    config = EncoderConfig.from_dict(load_checkpoint(checkpoint)["model_config"], where=f"{checkpoint}: model_config")
    export_encoder(random_init_encoder(config, seed), path)
    return path


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


def plan_checkpoint_runs(args: argparse.Namespace, checkpoint: Path) -> tuple[list[DownstreamRun], list[Stage]]:
    """The checkpoint's runs (OUT/downstream/<task>), then the random-init encoder's (OUT/downstream/random_init/
    <task>; the encoder is exported here)."""
    root = args.out / "downstream"
    runs = plan_downstream(args.tasks, args.er_folds, root, profile=args.profile)
    stages = []
    if "random" in args.baselines:
        random_init = args.out / "random_init.pt"
        command = f"results.demo.export_random_init({str(checkpoint)!r}, {str(random_init)!r})"
        stage = timed(Stage("random init", command), lambda: export_random_init(checkpoint, random_init))
        stages.append(stage)
        if stage.ok:
            runs += plan_downstream(
                args.tasks,
                args.er_folds,
                root / "random_init",
                profile=args.profile,
                upstream_argv=("-u", "ehmam", "-k", str(random_init)),
                prefix="random init ",
            )
    return runs, stages


def slowest_first(runs: Sequence[DownstreamRun]) -> list[DownstreamRun]:
    """Slowest task first, so that the workers of a DownstreamPool finish close together."""
    return sorted(runs, key=lambda run: SLOWEST_FIRST.index(run.task))


def shown(argv: Sequence[str]) -> str:
    """The command line as a user would type it from the repository root."""
    return shlex.join(["python", *(repo_relative(arg) for arg in argv)])


def timed(stage: Stage, action) -> Stage:
    log.info("$ %s", stage.command)
    start = time.monotonic()
    try:
        action()
        stage.ok = True
    except SystemExit as stop:  # our CLIs exit with a message on bad input
        stage.detail = f"exited: {stop.code}"
    except Exception as error:  # noqa: BLE001 - one failed task must not stop the others
        stage.detail = f"{type(error).__name__}: {error}"
        log.error("%s failed:\n%s", stage.name, traceback.format_exc())
    stage.wall_s = time.monotonic() - start
    if not stage.ok:
        log.error("%s failed: %s", stage.name, stage.detail)
    return stage


def prepare_corpus(data: Path | None, out: Path, scale: str, seed: int) -> tuple[Path, Stage | None]:
    """The corpus root: `data` as given, or a mini-SUPERB of `scale` and `seed` under `out` (a complete one there
    is reused)."""
    if data is not None:
        if not data.is_dir():
            raise SystemExit(f"results.demo: error: --data {data} is not a folder")
        return data.absolute(), None
    from minisuperb import generate, read_marker

    root = (out / "minisuperb").absolute()
    info = read_marker(root)
    if info and info.get("complete") and info.get("scale") == scale and info.get("seed") == seed:
        log.info("reusing the complete mini-SUPERB corpus in %s", root)
        return root, None
    command = shown(["-m", "minisuperb", "--out", str(root), "--scale", scale, "--seed", str(seed)])
    stage = timed(Stage("corpus", command), lambda: generate(root, scale, seed=seed, workers=2, force=info is not None))
    if not stage.ok:
        raise SystemExit(f"results.demo: error: generating mini-SUPERB failed: {stage.detail}")
    return root, stage


def pretrain_manifest(manifest: Path | None, data: Path) -> Path:
    """`manifest` (--pretrain-manifest), else the corpus's own pretraining set DATA/pretrain/train.tsv."""
    return (manifest or data / "pretrain" / "train.tsv").absolute()


def pretraining_argv(
    config: Path, manifest: Path, out_dir: Path, steps: int, extra_sets: Sequence[str] = ()
) -> list[str]:
    """pretrain/run.py's argv for a `steps`-update run with a 10 % warm-up; `extra_sets` are further --set values."""
    argv = [
        str(REPO / "pretrain" / "run.py"),
        "--config",
        str(config),
        "--set",
        f"data.manifest={manifest}",
        "--set",
        f"run.out_dir={out_dir}",
        "--set",
        f"optim.max_steps={steps}",
        "--set",
        f"optim.warmup_steps={max(1, steps // 10)}",
    ]
    for value in extra_sets:
        argv += ["--set", value]
    return argv


def run_pretraining(argv: Sequence[str], threads: int | None = None) -> Stage:
    """Run pretrain/run.py in its own process, exactly as a user runs it; a rerun continues or finds it finished.
    `threads` caps its intra-op threads (OMP_NUM_THREADS): set it when downstream workers share the cores, since
    oversubscribed OpenMP threads spin instead of working."""
    env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    shown_command = shown(argv) if threads is None else f"OMP_NUM_THREADS={threads} {shown(argv)}"

    def run() -> None:
        done = subprocess.run([sys.executable, *argv], cwd=REPO, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"pretrain/run.py exited with status {done.returncode}")

    return timed(Stage("pretrain", shown_command), run)


def pretrain(args: argparse.Namespace, data: Path) -> tuple[Path, Stage | None]:
    """Pretrain `--pretrain-config` for `--pretrain-steps` updates; returns the checkpoint (last.pt)."""
    if args.ckpt is not None:
        if not args.ckpt.is_file():
            raise SystemExit(f"results.demo: error: --ckpt {args.ckpt} is not a file")
        return args.ckpt.absolute(), None
    manifest = pretrain_manifest(args.pretrain_manifest, data)
    if not manifest.is_file():
        raise SystemExit(
            f"results.demo: error: pretraining manifest {manifest} is missing; make one with "
            f"`python -m pretrain.manifest AUDIO_ROOT --out train.tsv` and pass --pretrain-manifest, "
            f"or pass --ckpt"
        )
    out_dir = (args.out / "pretrain").absolute()
    monitor = [
        f"run.eval_data={data}",
        f"run.eval_every={max(1, args.pretrain_steps // 4)}",
        f"run.eval_max_files={ABX_FILES}",
        f"run.eval_splits=[{','.join(ABX_SPLITS)}]",
    ]  # update 0, quarters
    stage = run_pretraining(
        pretraining_argv(args.pretrain_config, manifest, out_dir, args.pretrain_steps, monitor), threads=1
    )  # FBANK's downstream runs use the other cores meanwhile
    checkpoint = out_dir / "last.pt"
    if not stage.ok or not checkpoint.is_file():
        raise SystemExit(
            f"results.demo: error: pretraining failed ({stage.detail or 'no last.pt'}); see the log above and {out_dir}"
        )
    return checkpoint, stage


ABX_FILES = 40  # utterances the demo and the study measure phone ABX on: the first of ABX_SPLITS
ABX_SPLITS = ("dev-clean", "test-clean")


def abx_stage(
    out: Path,
    data: Path,
    checkpoints: Sequence[Path] = (),
    upstreams: Sequence[str] = (),
    random_init: bool = False,
    conditions: Sequence[str] = ("within", "across"),
) -> Stage:
    """Phone ABX per layer (results.abx) of checkpoints and s3prl upstreams, beside the log-mel references, on the
    first ABX_FILES dev-clean utterances of `data`."""
    from results.abx.__main__ import run_abx

    argv = [
        "-m",
        "results.abx",
        *[a for c in checkpoints for a in ("--ckpt", str(c))],
        *[a for u in upstreams for a in ("--upstream", u)],
        *([] if random_init else ["--no-random-init"]),
        "--data",
        str(data),
        "--splits",
        ",".join(ABX_SPLITS),
        "--max-utterances",
        str(ABX_FILES),
        "--conditions",
        ",".join(conditions),
        "--out",
        str(out),
    ]
    return timed(
        Stage("abx", shown(argv)),
        lambda: run_abx(
            out,
            checkpoints,
            data=data,
            splits=ABX_SPLITS,
            max_files=ABX_FILES,
            upstreams=upstreams,
            random_init=random_init,
            conditions=conditions,
            command=shown(argv),
        ),
    )


def execute_run(run: DownstreamRun, checkpoint: Path | None, data: Path, steps: int | None) -> DownstreamRun:
    """Train then evaluate one run in this process; its stages record what happened (a failure is recorded,
    not raised). `steps` None keeps the run's profile schedule."""
    from superb.entry import main as run_downstream

    if run.expdir.exists():  # the demo's own output of an earlier call: redo it
        shutil.rmtree(run.expdir)
    argv = run.train_argv(checkpoint, data, steps)
    train = timed(Stage(f"{run.label} train", shown(["run_downstream.py", *argv])), lambda: run_downstream(argv))
    run.stages.append(train)
    if not train.ok:
        return run
    try:
        best = checkpoint_to_evaluate(run.expdir, steps)
    except FileNotFoundError as error:
        train.ok, train.detail = False, str(error)
        return run
    argv = run.evaluate_argv(best, data)
    run.stages.append(
        timed(Stage(f"{run.label} evaluate", shown(["run_downstream.py", *argv])), lambda: run_downstream(argv))
    )
    return run


def _single_threaded_worker() -> None:
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")


class DownstreamPool:
    """Downstream runs on `jobs` worker processes of one thread each (s3prl is imported once per worker).

    `submit` returns at once; `finish` waits for every run and copies each worker's stages back into the
    caller's DownstreamRun objects, in submission order.
    """

    def __init__(self, jobs: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._executor = ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_single_threaded_worker
        )
        self._pending: list[tuple[DownstreamRun, object]] = []

    def submit(
        self, runs: Sequence[DownstreamRun], checkpoint: Path | None, data: Path, task_steps: dict[str, int] | None
    ) -> None:
        for run in runs:
            steps = task_steps[run.task] if task_steps is not None else None
            self._pending.append((run, self._executor.submit(execute_run, run, checkpoint, data, steps)))

    def finish(self) -> None:
        for run, future in self._pending:
            try:
                run.stages[:] = future.result().stages
            except Exception as error:  # noqa: BLE001 - a crashed worker must not lose the other runs
                run.stages.append(Stage(f"{run.label} train", "", ok=False, detail=f"{type(error).__name__}: {error}"))
        self._pending.clear()
        self._executor.shutdown()


def abx_report(out: Path, pretrained: Path | None, ok: bool) -> str:
    """The phone ABX summary (best layer of each representation), and the pretraining monitor's curve when this
    demo pretrained."""
    if not ok:
        return "(no phone ABX table: results.abx failed)\n"
    from results.abx.report import read_csv, summary_table

    text = (
        "Phone ABX (triphone, %, chance 50; lower is better), best layer by across-speaker error; per layer in "
        f"{out / 'abx' / 'abx.md'}:\n\n" + summary_table(read_csv(out / "abx" / "abx.csv"))
    )
    curve = pretrained.parent / "abx_curve.tsv" if pretrained is not None else None
    if curve is not None and curve.is_file():
        rows = [line.split("\t") for line in curve.read_text().splitlines()[1:]]
        text += (
            "\nDuring pretraining (best student layer):\n\n| update | layer | within % | across % |\n"
            "|---:|---:|---:|---:|\n"
            + "".join(f"| {s} | {k} | {float(w):.1f} | {float(a):.1f} |\n" for s, k, w, a in rows)
        )
    return text


def tabulate_stage(runs: Path, table_dir: Path, title: str, synthetic: bool):
    """`python -m results.tabulate RUNS --out TABLE_DIR --title TITLE [--synthetic]`, in this process; returns the
    stage and the report (None when tabulating failed)."""
    from results.tabulate import tabulate, write_report

    argv = ["-m", "results.tabulate", str(runs), "--out", str(table_dir), "--title", title] + (
        ["--synthetic"] if synthetic else []
    )
    reports = []

    def make_table() -> None:
        reports.append(tabulate([runs], title, "synthetic" if synthetic else "unstated"))
        write_report(reports[0], table_dir, "superb")

    stage = timed(Stage("tabulate", shown(argv)), make_table)
    return stage, (reports[0] if reports else None)


def stage_records(stages: Sequence[Stage]) -> list[dict]:
    """The stages as demo.json and condition.json record them."""
    return [
        {"name": s.name, "command": s.command, "wall_s": round(s.wall_s, 2), "ok": s.ok, "detail": s.detail}
        for s in stages
    ]


def wall_time_table(stages: Sequence[Stage]) -> str:
    lines = ["| stage | wall s | status |", "|---|---:|---|"]
    for stage in stages:
        status = "ok" if stage.ok else f"FAILED ({stage.detail})"
        lines.append(f"| {stage.name} | {stage.wall_s:.1f} | {status.replace('|', '/')} |")
    total = sum(s.wall_s for s in stages)
    lines.append(f"| **total** | {total:.1f} | |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args.out = args.out.absolute()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    stages: list[Stage] = []

    data, corpus_stage = prepare_corpus(args.data, args.out, args.scale, args.seed)
    stages += [corpus_stage] if corpus_stage else []
    import torch

    torch.set_num_threads(1)  # this process's ABX and exports run beside the downstream workers
    if args.profile is None and args.task_steps is None:
        args.task_steps = parse_task_steps("60")
    # FBANK needs no checkpoint: its runs start while the checkpoint pretrains
    pool = DownstreamPool(args.jobs)
    fbank_runs = plan_fbank_runs(args)
    pool.submit(slowest_first(fbank_runs), None, data, args.task_steps)

    checkpoint, pretrain_stage = pretrain(args, data)
    stages += [pretrain_stage] if pretrain_stage else []
    abx = abx_stage(args.out / "abx", data, [checkpoint], ["fbank"], random_init=True)  # seconds: always all rows
    stages.append(abx)

    checkpoint_runs, random_stages = plan_checkpoint_runs(args, checkpoint)
    stages += random_stages
    pool.submit(slowest_first(checkpoint_runs), checkpoint, data, args.task_steps)
    pool.finish()
    runs = checkpoint_runs + fbank_runs
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
    print(abx_report(args.out, checkpoint if args.ckpt is None else None, abx.ok))
    print(timing)
    print(f"wrote {args.out / 'results'}/superb.md, superb.csv, superb_runs.csv, {args.out}/wall_times.md, demo.json")
    failed = [s.name for s in stages if not s.ok]
    if failed:
        print(f"FAILED stages: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
