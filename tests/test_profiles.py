"""Downstream profiles (`run_downstream.py --profile cpu`): the rewrite into -o entries, the checks on
profile files, and one end-to-end run: FBANK beats chance on KS under the cpu profile."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import pytest
import yaml

from superb import profiles, tasks
from superb.registry import TASKS
from superb.tasks import parse_overrides, plan_argv

PROFILES = tasks.available_profiles()


def plan(argv, **kwargs):
    return plan_argv(argv, {}, cuda_available=False, cpu_count=2, **kwargs)


def overrides(argv) -> dict[str, str]:
    return dict(parse_overrides([argv[argv.index("-o") + 1]]))


@pytest.fixture
def profile_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "profiles"
    folder.mkdir()
    monkeypatch.setattr(profiles, "PROFILE_DIR", folder)  # where profile_overrides reads it
    return folder


def test_the_cpu_profile_exists_and_covers_every_task():
    assert "cpu" in PROFILES
    profile = yaml.safe_load((tasks.PROFILE_DIR / "cpu.yaml").read_text())
    assert sorted(k for k in profile if not k.startswith("_")) == sorted(TASKS)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", sorted(TASKS))
def test_profile_entries_reach_s3prls_config(profile, name, data_root):
    """Every profile setting becomes an -o entry that s3prl's own override() turns back into the value
    the YAML holds; the data paths and worker count are still ours."""
    from s3prl.utility.helper import override

    argv = plan(["-m", "train", "-u", "fbank", "-d", name, "--data-root", str(data_root), "--profile", profile]).argv
    entries = overrides(argv)
    assert entries[TASKS[name].workers_key] == "2"
    section = yaml.safe_load((tasks.PROFILE_DIR / f"{profile}.yaml").read_text())[name]
    config = yaml.safe_load(TASKS[name].config.read_text())
    override(argv[argv.index("-o") + 1], argparse.Namespace(), config)

    def check(expected, actual, where):
        if isinstance(expected, dict) and expected:
            for key, value in expected.items():
                check(value, actual[key], f"{where}.{key}")
        else:
            assert actual == expected, where

    check(section, config, name)


def test_user_overrides_win_over_the_profile(data_root):
    argv = plan(
        [
            "-m",
            "train",
            "-u",
            "fbank",
            "-d",
            "ks",
            "--data-root",
            str(data_root),
            "--profile",
            "cpu",
            "-o",
            "config.optimizer.lr=5e-5",
        ]
    ).argv
    entries = overrides(argv)
    assert entries["config.optimizer.lr"] == "5e-5"
    assert list(entries).index("config.optimizer.lr") == len(entries) - 1


def test_without_a_profile_the_official_config_is_untouched(data_root):
    entries = overrides(plan(["-m", "train", "-u", "fbank", "-d", "ks", "--data-root", str(data_root)]).argv)
    assert not any(key.startswith(("config.runner.", "config.optimizer.")) for key in entries)


def test_bad_profiles_and_misuse_are_named(profile_dir, data_root):
    base = ["-m", "train", "-u", "fbank", "-d", "ks", "--data-root", str(data_root), "--profile"]
    with pytest.raises(ValueError, match="no such profile.*choose from none"):
        plan(base + ["fast"])
    (profile_dir / "typo.yaml").write_text("ks:\n  runner:\n    totl_steps: 5\n")
    with pytest.raises(ValueError, match=r"typo\.yaml: ks\.runner\.totl_steps: ks\.yaml has no key"):
        plan(base + ["typo"])
    (profile_dir / "task.yaml").write_text("kws:\n  runner:\n    total_steps: 5\n")
    with pytest.raises(ValueError, match="unknown task.*kws"):
        plan(base + ["task"])
    (profile_dir / "part.yaml").write_text("pr:\n  runner:\n    total_steps: 5\n")
    with pytest.raises(ValueError, match="no settings for task 'ks'"):
        plan(base + ["part"])
    (profile_dir / "section.yaml").write_text("ks:\n  upstream:\n    x: 1\n")
    with pytest.raises(ValueError, match="sets only runner"):
        plan(base + ["section"])
    (profile_dir / "broken.yaml").write_text("ks: [\n")
    with pytest.raises(ValueError, match="unreadable YAML"):
        plan(base + ["broken"])
    (profile_dir / "ok.yaml").write_text("ks:\n  runner:\n    total_steps: 5\n  optimizer:\n    weight_decay: 0.01\n")
    entries = overrides(plan(base + ["ok"]).argv)
    assert entries["config.runner.total_steps"] == "5" and entries["config.optimizer.weight_decay"] == "0.01"
    with pytest.raises(ValueError, match="with -e the run takes them from the checkpoint"):
        plan(["-m", "evaluate", "-e", "/x/dev-best.ckpt", "--profile", "ok"], checkpoint_task=lambda _: TASKS["ks"])


def test_run_downstream_reports_a_bad_profile_without_a_traceback(data_root, capsys):
    from superb.entry import main

    with pytest.raises(SystemExit) as stop:
        main(["-m", "train", "-u", "fbank", "-d", "ks", "--data-root", str(data_root), "--profile", "nope"])
    assert "run_downstream.py: error: --profile 'nope': no such profile" in str(stop.value.code)


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_fbank_beats_chance_on_ks_under_the_cpu_profile(tmp_path, monkeypatch):
    """Generate the demo scale's Speech Commands, train and evaluate `-u fbank -d ks --profile cpu
    --cache-features` (as the demo runs it) with s3prl's runner, and tabulate: the chance level equals the hand
    count of the test folders, and the lower end of the accuracy's 95 % interval is above it."""
    import minisuperb
    from experiments.downstream import checkpoint_to_evaluate
    from results import tabulate
    from superb.entry import main as run_downstream

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = tmp_path / "data"
    minisuperb.generate(data, "demo", workers=2, corpora=["speech_commands"], progress=False)
    expdir = tmp_path / "ks"
    run_downstream(
        [
            "-m",
            "train",
            "-u",
            "fbank",
            "-d",
            "ks",
            "--profile",
            "cpu",
            "--cache-features",
            "--data-root",
            str(data),
            "--workers",
            "0",
            "-p",
            str(expdir),
        ]
    )
    steps = yaml.safe_load((tasks.PROFILE_DIR / "cpu.yaml").read_text())["ks"]["runner"]["total_steps"]
    run_downstream(
        ["-m", "evaluate", "-e", str(checkpoint_to_evaluate(expdir, steps)), "--data-root", str(data), "--workers", "0"]
    )

    counts = Counter(p.parent.name for p in (data / "speech_commands_test_set_v0.01").glob("*/*.wav"))
    assert len(counts) == 12 and sum(counts.values()) >= 267  # wide enough for +-6 points
    report = tabulate.tabulate([expdir], data_kind="synthetic")
    (run,) = report.runs
    estimate = run.estimates[0]
    assert estimate.n == sum(counts.values())
    assert estimate.chance == pytest.approx(100.0 * max(counts.values()) / sum(counts.values()))
    assert estimate.high - estimate.low <= 12.0
    assert estimate.low > estimate.chance, report.rows[0].text("KS")


# --- the demo runs every task under the profile for the checkpoint and its baselines ---------------------


def test_demo_plans_checkpoint_fbank_and_random_init_under_the_profile(tmp_path):
    """`experiments.demo` (defaults: --profile cpu --baselines random; fbank on request): the baselines are fbank and
    random init (an untrained encoder of the checkpoint's architecture, exported before any pretraining), each task
    once per upstream (ER once per fold), all tabulated from one root, every frozen upstream's features cached."""
    import torch

    from experiments import demo
    from experiments.downstream import plan_downstream, slowest_first
    from experiments.pretraining import random_init_like_config

    checkpoint = random_init_like_config(demo.REPO / "pretrain" / "tiny.yaml", tmp_path / "trained.pt", seed=1)
    defaults = demo.build_parser().parse_args([])
    assert defaults.profile == "cpu" and defaults.baselines == ["random"] and defaults.task_steps is None
    assert defaults.scale == "demo"
    args = demo.build_parser().parse_args(
        ["--out", str(tmp_path / "out"), "--tasks", "ks,er", "--er-folds", "2", "--baselines", "fbank,random"]
    )
    args.ckpt = checkpoint
    random_runs, stages = demo.plan_random_init_runs(args)
    runs = plan_downstream(args.tasks, args.er_folds, args.out / "downstream", profile=args.profile)
    runs += random_runs + demo.plan_fbank_runs(args)
    assert [s.ok for s in stages] == [True]
    assert [(r.label, r.expdir.relative_to(tmp_path / "out")) for r in runs] == [
        ("ks", Path("downstream/ks")),
        ("er_fold2", Path("downstream/er_fold2")),
        ("random init ks", Path("downstream/random_init/ks")),
        ("random init er_fold2", Path("downstream/random_init/er_fold2")),
        ("fbank ks", Path("downstream/fbank/ks")),
        ("fbank er_fold2", Path("downstream/fbank/er_fold2")),
    ]
    assert [r.task for r in slowest_first(runs)] == ["ks", "ks", "ks", "er", "er", "er"]
    argv = runs[4].train_argv(None, tmp_path, None)
    assert argv[:3] == ["-m", "train", "-u"] and argv[3] == "fbank" and "--profile" in argv and "-o" not in argv
    assert "--cache-features" in argv
    random_argv = runs[3].train_argv(None, tmp_path, 40)
    assert random_argv[random_argv.index("-k") + 1] == str(tmp_path / "out" / "random_init.pt")
    assert random_argv[-2:] == ["--fold", "2"]
    assert "config.runner.total_steps=40" in random_argv[random_argv.index("-o") + 1]
    demo.check_random_init_architecture(tmp_path / "out" / "random_init.pt", checkpoint)

    trained = torch.load(checkpoint, weights_only=True)
    untrained = torch.load(tmp_path / "out" / "random_init.pt", weights_only=True)
    assert untrained["model_config"] == trained["model_config"]
    assert {k: v.shape for k, v in untrained["encoder"].items()} == {k: v.shape for k, v in trained["encoder"].items()}
    assert any(not torch.equal(untrained["encoder"][k], trained["encoder"][k]) for k in trained["encoder"])

    with pytest.raises(SystemExit):
        demo.build_parser().parse_args(["--baselines", "mfcc"])
    with pytest.raises(SystemExit):
        demo.build_parser().parse_args(["--profile", "gpu"])
    assert demo.build_parser().parse_args(["--profile", "none", "--baselines", "none"]).baselines == []


def test_demo_exports_the_random_init_from_the_pretraining_config_before_pretraining(tmp_path):
    """Without --ckpt the random-init row's encoder comes from --pretrain-config (its runs start beside pretraining):
    the same bytes as the random init of the checkpoint that config trains; a checkpoint of another architecture
    stops the demo with both model_config keys named."""
    from experiments import demo
    from experiments.pretraining import random_init_like_checkpoint, random_init_like_config

    config = demo.REPO / "pretrain" / "tiny_mel.yaml"
    args = demo.build_parser().parse_args(
        ["--out", str(tmp_path / "out"), "--tasks", "ks", "--pretrain-config", str(config)]
    )
    args.out.mkdir()
    runs, stages = demo.plan_random_init_runs(args)
    assert [s.ok for s in stages] == [True] and [r.label for r in runs] == ["random init ks"]
    trained = random_init_like_config(config, tmp_path / "trained.pt", seed=3)  # stands for the pretrained checkpoint
    exported = args.out / "random_init.pt"
    assert exported.read_bytes() == random_init_like_checkpoint(trained, tmp_path / "like.pt").read_bytes()
    demo.check_random_init_architecture(exported, trained)

    other = random_init_like_config(demo.REPO / "pretrain" / "tiny.yaml", tmp_path / "other.pt", seed=0)
    with pytest.raises(SystemExit, match="frontend"):
        demo.check_random_init_architecture(exported, other)
    assert demo.build_parser().parse_args(["--baselines", "none"]).baselines == []
