"""The pretraining loop on a tiny model and a tiny synthetic corpus: it learns, checkpoints, and resumes exactly."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrain.config import load_config
from pretrain.ehmam import EHMAMPretrainModel
from pretrain.schedules import schedule_jumps, with_saved_schedule
from pretrain.step import mask_plan_for
from pretrain.train import train
from trainkit.config import config_changes
from upstream_ehmam.checkpoint import load_encoder

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def manifest(harmonic_manifest: Path) -> Path:
    return harmonic_manifest


def _config(manifest: Path, out_dir: Path, *extra: str):
    return load_config(
        ROOT / "pretrain" / "tiny.yaml",
        [
            f"data.manifest={manifest}",
            f"run.out_dir={out_dir}",
            "optim.max_steps=12",
            "optim.warmup_steps=3",
            "run.log_every=1",
            "run.save_every=6",
            "run.keep_checkpoints=5",
            "data.max_samples=32000",
            "data.max_batch_samples=128000",
            "run.collapse_check_after=100000",
            *extra,
        ],
    )


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_pretraining_lowers_the_loss(manifest, tmp_path):
    """Twenty updates of the full EH-MAM step on CPU lower the regression loss markedly."""
    run_dir = train(_config(manifest, tmp_path / "run", "optim.max_steps=20", "run.save_every=20"))
    metrics = _metrics(run_dir)
    losses = [m["rec_loss"] for m in metrics]
    assert len(losses) == 20
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
    assert all(np.isfinite([m["aux_loss"] for m in metrics]))
    assert all(m["skipped_updates"] == 0 and np.isfinite(m["grad_norm"]) for m in metrics)


def test_resume_continues_exactly(manifest, tmp_path):
    """A run resumed from its update-4 checkpoint (mid-epoch: 3 batches per epoch) produces the same losses and
    parameters as the uninterrupted run. (Resume after SIGTERM/SIGKILL of a real process: tests/test_faults.py.)"""
    steps = ("optim.max_steps=8", "run.save_every=4")
    full = train(_config(manifest, tmp_path / "full", *steps))
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copy(full / "checkpoint_00000004.pt", resumed_dir / "last.pt")
    resumed = train(_config(manifest, resumed_dir, *steps), resume=True)
    tail_full = [m["loss"] for m in _metrics(full)][4:]
    tail_resumed = [m["loss"] for m in _metrics(resumed)]
    assert len(tail_resumed) == 4
    np.testing.assert_allclose(tail_resumed, tail_full, rtol=0, atol=1e-6)
    a = torch.load(full / "last.pt", weights_only=True)
    b = torch.load(resumed / "last.pt", weights_only=True)
    for key in a["encoder"]:
        torch.testing.assert_close(a["encoder"][key], b["encoder"][key], rtol=0, atol=1e-6)
    for key in a["teacher_context"]:
        torch.testing.assert_close(a["teacher_context"][key], b["teacher_context"][key], rtol=0, atol=1e-6)


def test_checkpoints_load_safely_and_feed_the_upstream(manifest, tmp_path):
    """last.pt loads with weights_only=True, holds the training state, and builds student and teacher encoders."""
    run_dir = train(_config(manifest, tmp_path / "run", "optim.max_steps=6"))
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    assert ckpt["train_state"]["update"] == 6 and ckpt["kind"] == "ehmam-pretrain"
    assert {"optimizer", "rng", "config", "heads"} <= set(ckpt)
    assert (run_dir / "config.yaml").is_file() and (run_dir / "tb").is_dir()
    student = load_encoder(run_dir / "last.pt", weights="student")
    teacher = load_encoder(run_dir / "last.pt", weights="teacher")
    wav = torch.randn(1, 16000)
    hs_student, _ = student.extract_features(wav, torch.tensor([16000]))
    hs_teacher, _ = teacher.extract_features(wav, torch.tensor([16000]))
    assert len(hs_student) == 5
    assert not torch.allclose(hs_student[-1], hs_teacher[-1])


def test_teacher_gets_no_gradients_and_follows_the_ema(manifest):
    """After backward the teacher has no gradients; after the update it equals the EMA of its old self and
    the student."""
    config = _config(manifest, Path("unused"))
    model = EHMAMPretrainModel(config)
    wav = torch.randn(2, 32000)
    lengths = torch.tensor([32000, 32000])
    plan = mask_plan_for(config, [99, 99], [0, 1], 0.5, world_size=1, seed=0)
    out = model(wav, lengths, plan, torch.Generator().manual_seed(1))
    out.loss.backward()
    teacher = [*model.teacher.context.parameters(), *model.teacher.predictor.parameters()]
    student = [*model.encoder.context.parameters(), *model.predictor.parameters()]
    assert all(not t.requires_grad and t.grad is None for t in model.teacher.parameters())
    assert all(s.grad is not None for s in model.predictor.parameters())  # the ranking loss reaches the predictor
    with torch.no_grad():
        for s in student:
            s.add_(0.1)
    before = [t.clone() for t in teacher]
    model.update_teacher(0.9)
    for t, old, s in zip(teacher, before, student):
        torch.testing.assert_close(t, 0.9 * old + 0.1 * s)


def test_dry_run_prints_parts(manifest, tmp_path, capsys):
    """--dry-run prints parameter counts per part and one batch's shapes, and trains nothing."""
    train(_config(manifest, tmp_path / "dry"), dry_run=True)
    printed = capsys.readouterr().out
    assert "encoder total (SUPERB upstream)" in printed and "one batch: wav" in printed
    assert not (tmp_path / "dry" / "last.pt").exists()


def test_a_cnn_other_than_base_gets_its_own_frame_counts(manifest, tmp_path):
    """Host frame counts (masks, padding) follow config.model.conv_layers, not the Base stack: a 6-conv
    stack with a 400x total stride trains, and its masks are planned over its own frame count."""
    conv = "[[64,10,5],[64,3,2],[64,3,2],[64,3,2],[64,3,2],[64,5,5]]"
    config = _config(
        manifest,
        tmp_path / "run",
        f"model.conv_layers={conv}",
        "optim.max_steps=2",
        "optim.warmup_steps=1",
        "mask.budget=exact",
    )
    train(config)
    records = _metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2]
    assert all(np.isfinite(r["loss"]) and 0.4 < r["masked_fraction"] < 0.6 for r in records)


def test_config_changes_name_every_differing_key():
    saved = {"optim": {"lr": 1e-3, "max_steps": 400}, "run": {"seed": 0}, "old": {"gone": 1}}
    current = {"optim": {"lr": 1e-3, "max_steps": 200, "eps": 1e-6}, "run": {"seed": 0}}
    assert config_changes(saved, current) == [
        ("optim.max_steps", 400, 200),
        ("optim.eps", None, 1e-6),
        ("old.gone", 1, None),
    ]
    assert config_changes(current, current) == []


def test_schedule_jumps_say_what_moves_at_the_resumed_update():
    """Halving optim.max_steps at update 100 of 400 moves the learning rate and alpha (0.25 -> 0.5), not the EMA
    decay; a change that leaves this update's values alone reports nothing."""
    base = load_config(ROOT / "pretrain" / "tiny.yaml", ["optim.max_steps=400", "optim.warmup_steps=10"])
    saved = base.to_dict()
    shorter = load_config(ROOT / "pretrain" / "tiny.yaml", ["optim.max_steps=200", "optim.warmup_steps=10"])
    jumps = schedule_jumps(with_saved_schedule(shorter, saved), shorter, update=100, epoch=0)
    assert [j.split(" ")[0] for j in jumps] == ["learning", "alpha"]
    assert jumps[1].endswith("0.25 -> 0.5")
    assert schedule_jumps(with_saved_schedule(base, saved), base, update=100, epoch=0) == []


def test_resume_with_other_settings_names_them_and_warns_of_the_jump(manifest, tmp_path, caplog):
    """Resuming the last checkpoint of a 6-update run with optim.max_steps 6 -> 12 and another seed logs both keys,
    and warns that the learning rate (0 at the end of the cosine) and alpha (0.8 -> 0.5) jump."""
    run_dir = train(_config(manifest, tmp_path / "run", "optim.max_steps=6"))
    with caplog.at_level(logging.INFO, logger="trainkit"):
        train(_config(manifest, run_dir, "optim.max_steps=12", "run.seed=3"), resume=True)
    text = caplog.text
    assert "optim.max_steps: 6 -> 12" in text and "run.seed: 0 -> 3" in text
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "jump" in r.getMessage())
    assert "optim.max_steps" in warning and "learning rate" in warning and "alpha" in warning
