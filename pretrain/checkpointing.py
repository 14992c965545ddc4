"""Pretraining checkpoints: the upstream_ehmam/checkpoint.py format plus the training state, written and checked
as docs/design.md "Checkpoints and faults" says."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from trainkit.files import LAST, git_sha
from upstream_ehmam.checkpoint import FORMAT_VERSION, check_state_dict, load_checkpoint, save_atomic

from .config import PretrainConfig
from .ehmam import EHMAMPretrainModel

ARCHITECTURE_KEYS = (
    "frontend",
    "conv_layers",
    "mel_bins",
    "mel_norm",
    "mel_mean",
    "mel_std",
    "embed_dim",
    "num_layers",
    "num_heads",
    "ffn_dim",
    "pos_conv_depth",
    "pos_conv_kernel",
    "pos_conv_groups",
)
SAVED_DEFAULTS = {"frontend": "cnn"}  # what a checkpoint written before the key existed was trained with


@dataclass
class TrainState:
    update: int = 0  # optimiser updates done
    epoch: int = 1  # 1-based data epoch
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed
    skipped_updates: int = 0  # updates skipped for a non-finite loss or gradient, in all
    consecutive_skips: int = 0  # ... in a row, up to now
    bad_audio: dict = field(default_factory=dict)  # path -> [problem, times replaced] (data.BadAudioLog.files)


def checkpointed_modules(model: EHMAMPretrainModel) -> dict[str, torch.nn.Module]:
    """The modules a pretraining checkpoint holds, by key ('heads.NAME' is NAME in the 'heads' dict)."""
    modules = {"encoder": model.encoder, "teacher_context": model.teacher.context, "heads.decoder": model.decoder}
    if model.predictor is not None:
        modules.update({"heads.predictor": model.predictor, "heads.teacher_predictor": model.teacher.predictor})
    return modules


def checkpoint_dict(
    model: EHMAMPretrainModel, optimizer: torch.optim.Optimizer, state: TrainState, config: PretrainConfig
) -> dict:
    states = {key: module.state_dict() for key, module in checkpointed_modules(model).items()}
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "format_version": FORMAT_VERSION,
        "kind": "ehmam-pretrain",
        "model_config": config.model.to_dict(),
        "encoder": states["encoder"],
        "teacher_context": states["teacher_context"],
        "heads": {key[len("heads.") :]: value for key, value in states.items() if key.startswith("heads.")},
        "optimizer": optimizer.state_dict(),
        "train_state": asdict(state),
        "rng": rng,
        "config": config.to_dict(),
        "git_sha": git_sha(),
    }


def save_training_checkpoint(
    out_dir: Path,
    model: EHMAMPretrainModel,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    config: PretrainConfig,
    keep: int,
) -> Path:
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
    for old in sorted(out_dir.glob("checkpoint_*.pt"))[: -max(keep, 1)]:  # the newest stays (last.pt's file)
        old.unlink(missing_ok=True)
    return path


def architecture_mismatch(saved_config: dict, model: EHMAMPretrainModel) -> tuple[str, object, object] | None:
    """The first ARCHITECTURE_KEYS entry (key, saved, configured) in which a checkpoint's model_config differs from
    the model's config, or None; dropout rates may change between runs, shapes may not."""
    configured = model.config.model.to_dict()
    for key in ARCHITECTURE_KEYS:
        saved = saved_config.get(key, SAVED_DEFAULTS.get(key, configured[key]))
        if saved != configured[key]:
            return key, saved, configured[key]
    return None


def restore_training_checkpoint(
    path: Path, model: EHMAMPretrainModel, optimizer: torch.optim.Optimizer
) -> tuple[TrainState, dict]:
    """Load model, teacher, heads, optimiser and RNG state from `path` (all checked before the model is touched);
    returns the loop state to continue from and the config the checkpoint was written under (a dict)."""
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "ehmam-pretrain":
        raise ValueError(
            f"{path}: kind {ckpt.get('kind')!r} is not a pretraining checkpoint (ehmam-pretrain); "
            f"an encoder export cannot be resumed"
        )
    for key in ("heads", "optimizer", "train_state", "rng"):
        if key not in ckpt:
            raise ValueError(f"{path}: missing key '{key}' needed to resume training")
    mismatch = architecture_mismatch(ckpt["model_config"], model)
    if mismatch:
        key, saved, configured = mismatch
        raise ValueError(
            f"{path}: was trained with model.{key}={saved!r}, but the config says "
            f"model.{key}={configured!r}; resume needs the same architecture"
        )
    heads = ckpt["heads"] if isinstance(ckpt["heads"], dict) else {}
    modules = checkpointed_modules(model)
    states = {key: heads.get(key[len("heads.") :]) if key.startswith("heads.") else ckpt[key] for key in modules}
    for key, module in modules.items():
        if states[key] is None:
            raise ValueError(
                f"{path}: missing key '{key}' (is loss.aux_weight / curriculum.mode the same as in the "
                f"run that wrote it?)"
            )
        check_state_dict(module.state_dict(), states[key], str(path), key)
    for key, module in modules.items():
        module.load_state_dict(states[key], strict=True)
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: the optimizer state does not match the configured model: {err}") from None
    rng = ckpt["rng"] if isinstance(ckpt["rng"], dict) else {}
    if isinstance(rng.get("torch"), torch.Tensor):
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    try:
        state = TrainState(**ckpt["train_state"])
    except TypeError as err:
        raise ValueError(f"{path}: train_state is not a valid loop state: {err}") from None
    return state, ckpt["config"] if isinstance(ckpt.get("config"), dict) else {}


def initialise_from(path: Path, model: EHMAMPretrainModel) -> list[str]:
    """run.init_from: the weights of any checkpoint the project reads (its own, or a fairseq data2vec 2.0 / EH-MAM
    release file) into a new run; everything is checked before the model is touched. Without teacher weights the
    teacher starts as a copy of the student, as a new run does; parts the file lacks keep their fresh
    initialisation. Returns what was loaded and what was not, for the log."""
    ckpt = load_checkpoint(path)
    mismatch = architecture_mismatch(ckpt["model_config"], model)
    if mismatch:
        key, saved, configured = mismatch
        raise ValueError(
            f"run.init_from {path}: has model.{key}={saved!r}, but the config says "
            f"model.{key}={configured!r}; the run must have the checkpoint's architecture"
        )
    heads = ckpt.get("heads") if isinstance(ckpt.get("heads"), dict) else {}
    student_context = {k[len("context.") :]: v for k, v in ckpt["encoder"].items() if k.startswith("context.")}
    found = {
        "encoder": ckpt["encoder"],
        "teacher_context": ckpt.get("teacher_context") or student_context,
        "heads.decoder": heads.get("decoder"),
        "heads.predictor": heads.get("predictor"),
        "heads.teacher_predictor": heads.get("teacher_predictor") or heads.get("predictor"),
    }
    modules = checkpointed_modules(model)
    states = {key: found[key] for key in modules if found[key] is not None}
    for key, state in states.items():
        check_state_dict(modules[key].state_dict(), state, f"run.init_from {path}", key)
    for key, state in states.items():
        modules[key].load_state_dict(state, strict=True)
    notes = [f"weights from {path}: {', '.join(states)}"]
    if "teacher_context" not in ckpt:
        notes.append("the file has no teacher: the teacher starts as a copy of the student")
    fresh = [key for key in modules if key not in states]
    if fresh:
        notes.append(f"not in the file, freshly initialised: {', '.join(fresh)}")
    unused = [f"heads.{name}" for name in heads if f"heads.{name}" not in modules]
    if unused:
        notes.append(f"in the file but not part of this run's model, left out: {', '.join(unused)}")
    return notes
