"""Pretraining checkpoints: one versioned dict (upstream_ehmam/checkpoint.py format plus the training state).

Written atomically from the unwrapped model (temporary file, fsync, rename); `last.pt` is a hard link to (or a
copy of) the newest periodic file, so it never points at a partial write, and a kill at any moment leaves the
previous checkpoint loadable. Loaded with `weights_only=True`; a checkpoint that does not fit the configured model
is a ValueError naming the file and the difference.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from upstream_ehmam.checkpoint import FORMAT_VERSION, check_state_dict, load_checkpoint, save_atomic

from .config import PretrainConfig
from .ehmam import EHMAMPretrainModel

LAST = "last.pt"
ARCHITECTURE_KEYS = ("frontend", "conv_layers", "mel_bins", "mel_norm", "mel_mean", "mel_std", "embed_dim",
                     "num_layers", "num_heads", "ffn_dim", "pos_conv_depth", "pos_conv_kernel", "pos_conv_groups")
SAVED_DEFAULTS = {"frontend": "cnn"}  # what a checkpoint written before the key existed was trained with


@dataclass
class TrainState:
    update: int = 0          # optimiser updates done
    epoch: int = 1           # 1-based data epoch
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed
    skipped_updates: int = 0       # updates skipped for a non-finite loss or gradient, in all
    consecutive_skips: int = 0     # ... in a row, up to now
    bad_audio: dict = field(default_factory=dict)  # path -> [problem, times replaced] (data.BadAudioLog.files)


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


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Delete the temporary files a killed save leaves behind (never a complete checkpoint); returns them."""
    stale = [p for p in Path(out_dir).glob(".*")
             if p.is_file() and (p.name.endswith(".tmp") or p.name == f".{LAST}.link")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def restore_training_checkpoint(path: Path, model: EHMAMPretrainModel, optimizer: torch.optim.Optimizer) -> TrainState:
    """Load model, teacher, heads, optimiser and RNG state from `path`; returns the loop state to continue from.

    Checks before touching the model: the kind, the keys resume needs, the model config (a checkpoint of another
    architecture names the first differing model.* key), and every state dict's keys and shapes.
    """
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "ehmam-pretrain":
        raise ValueError(f"{path}: kind {ckpt.get('kind')!r} is not a pretraining checkpoint (ehmam-pretrain); "
                         f"an encoder export cannot be resumed")
    for key in ("heads", "optimizer", "train_state", "rng"):
        if key not in ckpt:
            raise ValueError(f"{path}: missing key '{key}' needed to resume training")
    configured = model.config.model.to_dict()
    for key in ARCHITECTURE_KEYS:  # dropout rates may change between runs; shapes may not
        value = configured[key]
        saved = ckpt["model_config"].get(key, SAVED_DEFAULTS.get(key, value))
        if saved != value:
            raise ValueError(f"{path}: was trained with model.{key}={saved!r}, but the config says "
                             f"model.{key}={value!r}; resume needs the same architecture")
    parts = [(model.encoder, ckpt["encoder"], "encoder"), (model.teacher.context, ckpt["teacher_context"],
                                                            "teacher_context")]
    heads = ckpt["heads"] if isinstance(ckpt["heads"], dict) else {}
    head_names = ["decoder"] + (["predictor", "teacher_predictor"] if model.predictor is not None else [])
    head_modules = {"decoder": model.decoder, "predictor": model.predictor,
                    "teacher_predictor": model.teacher.predictor}
    for name in head_names:
        if name not in heads:
            raise ValueError(f"{path}: missing key 'heads.{name}' (is loss.aux_weight / curriculum.mode the same as "
                             f"in the run that wrote it?)")
        parts.append((head_modules[name], heads[name], f"heads.{name}"))
    for module, state, what in parts:
        check_state_dict(module.state_dict(), state, str(path), what)
    for module, state, _ in parts:
        module.load_state_dict(state, strict=True)
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: the optimizer state does not match the configured model: {err}") from None
    rng = ckpt["rng"]
    if isinstance(rng, dict) and isinstance(rng.get("torch"), torch.Tensor):
        torch.set_rng_state(rng["torch"])
    if isinstance(rng, dict) and "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    try:
        return TrainState(**ckpt["train_state"])
    except TypeError as err:
        raise ValueError(f"{path}: train_state is not a valid loop state: {err}") from None
