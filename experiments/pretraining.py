"""The pretraining stage, built one way for every experiment: `pretraining_argv` is the one builder of the
pretrain/run.py command line (the demo, each study arm and each recipe-search arm), `run_pretraining` runs it in
its own process exactly as a user would, and `export_random_init` writes the "no pretraining" encoder."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from experiments.stages import Stage, timed
from results.abx import ABX_FILES, ABX_SPLITS
from results.paths import REPO, shown
from upstream_ehmam.config import EncoderConfig


@dataclass(frozen=True)
class AbxMonitor:
    """The pretrainer's phone ABX monitor: the student's layers scored on the first `max_files` utterances of
    `splits` (None: the pretrainer's default) of the aligned corpus `data`, at update 0 and every `every`."""

    data: Path
    every: int
    max_files: int = ABX_FILES
    splits: tuple[str, ...] | None = ABX_SPLITS

    @classmethod
    def evaluations(cls, data: Path, steps: int, count: int) -> "AbxMonitor":
        """`count` evaluations spread over a `steps`-update run, besides update 0."""
        return cls(data, max(1, steps // count))

    def sets(self) -> list[str]:
        values = [f"run.eval_data={self.data}", f"run.eval_every={self.every}", f"run.eval_max_files={self.max_files}"]
        return values + ([f"run.eval_splits=[{','.join(self.splits)}]"] if self.splits else [])


def pretrain_manifest(manifest: Path | None, data: Path) -> Path:
    """`manifest` (--pretrain-manifest), else the corpus's own pretraining set DATA/pretrain/train.tsv."""
    return (manifest or data / "pretrain" / "train.tsv").absolute()


def pretraining_argv(
    config: Path,
    manifest: Path,
    out_dir: Path,
    *,
    steps: int | None = None,
    sets: Sequence[str] = (),
    monitor: AbxMonitor | None = None,
) -> list[str]:
    """pretrain/run.py's argv. `steps`: that many updates with a 10 % warm-up (None: the config's own schedule);
    `sets`: further --set values (seed, an arm's method settings); `monitor`: the phone ABX monitor."""
    values = [f"data.manifest={manifest}", f"run.out_dir={out_dir}"]
    if steps is not None:
        values += [f"optim.max_steps={steps}", f"optim.warmup_steps={max(1, steps // 10)}"]
    values += [*(monitor.sets() if monitor else []), *sets]  # an explicit --set wins over the monitor's
    argv = [str(REPO / "pretrain" / "run.py"), "--config", str(config)]
    for value in values:
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


def export_random_init(config: EncoderConfig, path: Path, seed: int) -> Path:
    """A freshly initialised encoder of the architecture `config`, saved as an encoder export: the "no
    pretraining" row. The global RNG is forked so the caller's random state is untouched."""
    from upstream_ehmam.checkpoint import export_encoder
    from upstream_ehmam.model import random_init_encoder

    export_encoder(random_init_encoder(config, seed), path)
    return path


def random_init_like_checkpoint(checkpoint: Path, path: Path, seed: int = 0) -> Path:
    """A random init of the architecture a checkpoint records (its model_config), exported to `path`."""
    from upstream_ehmam.checkpoint import load_checkpoint

    config = EncoderConfig.from_dict(load_checkpoint(checkpoint)["model_config"], where=f"{checkpoint}: model_config")
    return export_random_init(config, path, seed)


def random_init_like_config(pretrain_config: Path, path: Path, seed: int) -> Path:
    """A random init of the encoder a pretraining config describes, exported to `path`."""
    from pretrain.config import load_config

    return export_random_init(load_config(pretrain_config).model, path, seed)
