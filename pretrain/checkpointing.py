"""Pretraining checkpoints: one versioned dict (upstream_ehmam/checkpoint.py format plus the training state).

Written atomically from the unwrapped model; `last.pt` is a hard link to (or a copy of) the newest periodic file,
so it never points at a partial write. Loaded with `weights_only=True`.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from upstream_ehmam.checkpoint import FORMAT_VERSION, load_checkpoint, save_atomic

from .config import PretrainConfig
from .ehmam import EHMAMPretrainModel

LAST = "last.pt"


@dataclass
class TrainState:
    update: int = 0          # optimiser updates done
    epoch: int = 1           # 1-based data epoch
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def checkpoint_dict(model: EHMAMPretrainModel, optimizer: torch.optim.Optimizer, state: TrainState,
                    config: PretrainConfig) -> dict:
    heads = {"decoder": model.decoder.state_dict()}
    if model.predictor is not None:
        heads["predictor"] = model.predictor.state_dict()
        heads["teacher_predictor"] = model.teacher.predictor.state_dict()
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "format_version": FORMAT_VERSION,
        "kind": "ehmam-pretrain",
        "model_config": config.model.to_dict(),
        "encoder": model.encoder.state_dict(),
        "teacher_context": model.teacher.context.state_dict(),
        "heads": heads,
        "optimizer": optimizer.state_dict(),
        "train_state": asdict(state),
        "rng": rng,
        "config": config.to_dict(),
        "git_sha": git_sha(),
    }


def save_training_checkpoint(out_dir: Path, model: EHMAMPretrainModel, optimizer: torch.optim.Optimizer,
                             state: TrainState, config: PretrainConfig, keep: int) -> Path:
    """Write checkpoint_<update>.pt atomically, point last.pt at it, prune old periodic files."""
    path = out_dir / f"checkpoint_{state.update:08d}.pt"
    save_atomic(checkpoint_dict(model, optimizer, state, config), path)
    tmp = out_dir / f".{LAST}.link"
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:  # file systems without hard links: a second atomic write
        save_atomic(checkpoint_dict(model, optimizer, state, config), tmp)
    os.replace(tmp, out_dir / LAST)
    periodic = sorted(out_dir.glob("checkpoint_*.pt"))
    for old in periodic[:-keep] if keep > 0 else periodic[:-1]:
        old.unlink(missing_ok=True)
    return path


def restore_training_checkpoint(path: Path, model: EHMAMPretrainModel, optimizer: torch.optim.Optimizer) -> TrainState:
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "ehmam-pretrain":
        raise ValueError(f"{path}: kind {ckpt.get('kind')!r} is not a pretraining checkpoint (ehmam-pretrain)")
    for key in ("heads", "optimizer", "train_state"):
        if key not in ckpt:
            raise ValueError(f"{path}: missing key '{key}' needed to resume training")
    try:
        model.encoder.load_state_dict(ckpt["encoder"])
        model.teacher.context.load_state_dict(ckpt["teacher_context"])
        model.decoder.load_state_dict(ckpt["heads"]["decoder"])
        if model.predictor is not None:
            model.predictor.load_state_dict(ckpt["heads"]["predictor"])
            model.teacher.predictor.load_state_dict(ckpt["heads"]["teacher_predictor"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, KeyError) as err:
        raise ValueError(f"{path}: does not match the configured model: {err}") from None
    torch.set_rng_state(ckpt["rng"]["torch"])
    if "cuda" in ckpt["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    return TrainState(**ckpt["train_state"])
