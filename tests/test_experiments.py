"""experiments.pretraining: the one builder of the pretraining command line that the demo, the study and the
recipe search share, and the random-init exports of a checkpoint's and of a config's architecture."""

from __future__ import annotations

from pathlib import Path

import torch

from experiments import demo, recipe_search, study_arms
from experiments.pretraining import (
    AbxMonitor,
    pretraining_argv,
    random_init_like_checkpoint,
    random_init_like_config,
)
from results.abx import ABX_FILES, ABX_SPLITS
from results.paths import REPO
from upstream_ehmam.checkpoint import load_checkpoint


def sets(argv):
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]


def test_builder_schedule_monitor_then_explicit_sets(tmp_path):
    config, manifest, out = REPO / "pretrain" / "tiny.yaml", tmp_path / "train.tsv", tmp_path / "run"
    argv = pretraining_argv(
        config, manifest, out, steps=250, sets=["run.seed=4", "run.eval_every=7"], monitor=AbxMonitor(tmp_path, 50)
    )
    assert argv[:3] == [str(REPO / "pretrain" / "run.py"), "--config", str(config)]
    assert sets(argv) == [
        f"data.manifest={manifest}",
        f"run.out_dir={out}",
        "optim.max_steps=250",
        "optim.warmup_steps=25",
        f"run.eval_data={tmp_path}",
        "run.eval_every=50",
        f"run.eval_max_files={ABX_FILES}",
        f"run.eval_splits=[{','.join(ABX_SPLITS)}]",
        "run.seed=4",
        "run.eval_every=7",  # after the monitor's: the explicit setting wins (the pretrainer applies --set in order)
    ]
    # without steps the config's own schedule is kept; a monitor without splits leaves the pretrainer's default
    bare = pretraining_argv(config, manifest, out, monitor=AbxMonitor(tmp_path, 9, splits=None))
    assert not any(s.startswith(("optim.", "run.eval_splits")) for s in sets(bare))
    assert AbxMonitor.evaluations(tmp_path, 1000, 4).every == 250 and AbxMonitor.evaluations(tmp_path, 3, 5).every == 1


def test_every_experiment_builds_its_command_with_the_builder(tmp_path):
    """The study's arms and the recipe search's arms differ from a plain builder call only by what they add."""
    config, manifest = REPO / "pretrain" / "tiny.yaml", tmp_path / "train.tsv"
    ehmam = study_arms.default_conditions()["random_mask"]
    arm = study_arms.pretrain_argv(ehmam, 2, config, manifest, tmp_path / "a", 500, abx_data=tmp_path)
    expected = pretraining_argv(
        config,
        manifest,
        tmp_path / "a",
        steps=500,
        sets=["run.seed=2", *ehmam.overrides],
        monitor=AbxMonitor.evaluations(tmp_path, 500, study_arms.ABX_EVALUATIONS),
    )
    assert arm == expected
    search_arm = recipe_search.Arm("x", "pretrain/tiny.yaml", ("optim.lr=1e-3",))
    argv = recipe_search.arm_argv(search_arm, tmp_path, tmp_path / "runs" / "x", 100)
    assert argv == pretraining_argv(
        config,
        (tmp_path / "pretrain" / "train.tsv").absolute(),
        tmp_path / "runs" / "x",
        sets=("optim.lr=1e-3",),
        monitor=AbxMonitor(tmp_path.absolute(), 100, splits=None),
    )
    assert demo.ABX_EVALUATIONS == 4


def test_random_init_of_a_checkpoint_has_its_architecture(tmp_path):
    """A random init of a checkpoint's architecture equals the random init of the config it was made from (same
    seed), and another seed gives other weights."""
    config = REPO / "pretrain" / "tiny.yaml"
    from_config = random_init_like_config(config, tmp_path / "a.pt", seed=0)
    like = random_init_like_checkpoint(from_config, tmp_path / "b.pt", seed=0)
    other = random_init_like_checkpoint(from_config, tmp_path / "c.pt", seed=1)
    a, b, c = (load_checkpoint(Path(p))["encoder"] for p in (from_config, like, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_downstream_pool_cancel_stops_the_running_run_and_drops_the_queued_ones():
    """When an experiment stops (its pretraining failed), `DownstreamPool.cancel` ends the worker now instead of
    leaving the exit to wait for every submitted run."""
    import time

    from experiments.downstream import DownstreamPool

    pool = DownstreamPool(1)
    runs = [pool._executor.submit(time.sleep, 120) for _ in range(5)]  # stand for long downstream runs
    deadline = time.monotonic() + 60
    while not pool._executor._processes and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = list(pool._executor._processes.values())
    assert len(workers) == 1
    start = time.monotonic()
    pool.cancel()
    while (workers[0].is_alive() or not all(run.done() for run in runs)) and time.monotonic() - start < 60:
        time.sleep(0.1)
    assert not workers[0].is_alive()
    assert all(run.done() for run in runs)  # none of them sleeps its 120 s
    assert all(run.cancelled() or run.exception() is not None for run in runs)


def test_demo_stops_with_the_pretraining_error_while_baseline_runs_are_queued(tmp_path):
    """The random init's runs are submitted before pretraining; a missing pretraining manifest still ends the demo
    at once with the manifest named, the queued runs dropped."""
    import time

    import pytest

    data = tmp_path / "corpus"
    data.mkdir()
    argv = ["--out", str(tmp_path / "out"), "--data", str(data), "--tasks", "sf,asr,pr", "--jobs", "1"]
    argv += ["--pretrain-manifest", str(tmp_path / "missing.tsv")]
    start = time.monotonic()
    with pytest.raises(SystemExit, match="missing.tsv"):
        demo.main(argv)
    assert time.monotonic() - start < 60
    assert (tmp_path / "out" / "random_init.pt").is_file()
