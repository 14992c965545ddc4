"""Downstream runs of an experiment: one `run_downstream.py -m train` then `-m evaluate` per task (per ER fold) and
upstream, planned as DownstreamRun objects and executed on a pool of one-thread worker processes."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from experiments.stages import Stage, timed
from results.paths import shown
from superb.registry import SLOWEST_FIRST, run_name

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


def slowest_first(runs: Sequence[DownstreamRun]) -> list[DownstreamRun]:
    """Slowest task first, so that the workers of a DownstreamPool finish close together."""
    return sorted(runs, key=lambda run: SLOWEST_FIRST.index(run.task))


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

    def cancel(self) -> None:
        """Drop the runs not yet started and stop the workers now: the experiment is stopping (its pretraining
        failed), and at exit the executor would otherwise wait for every submitted run."""
        # Python 3.14's ProcessPoolExecutor.terminate_workers does this; before it, the worker processes are only
        # reachable through the executor's `_processes`, which shutdown empties
        workers = list((getattr(self._executor, "_processes", None) or {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()
        self._pending.clear()
