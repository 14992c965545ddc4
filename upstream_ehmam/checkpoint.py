"""Checkpoint format (one versioned dict, weights_only-loadable), atomic saving, and encoder building/export.
Read here: format_version, kind, model_config, encoder, teacher_context; the pretrainer's other keys are ignored.
fairseq data2vec 2.0 and EH-MAM release files load too (fairseq_checkpoint.py)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import torch

from .config import EncoderConfig
from .model import EHMAMEncoder, check_frontend, frontend_of_state
from .safe_load import read_checkpoint_file

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
KIND_PRETRAIN = "ehmam-pretrain"
KIND_ENCODER = "ehmam-encoder"
KINDS = (KIND_PRETRAIN, KIND_ENCODER)
WEIGHTS = ("student", "teacher")


def save_atomic(obj: object, path: str | os.PathLike) -> None:
    """torch.save via a fsynced temporary file renamed over `path`: a crash leaves the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 (not mkstemp's 0o600) so the checkpoint gets the usual umask permissions.
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict of `path`, read without running code (safe_load), then checked: the project's format, or a
    fairseq data2vec 2.0 / EH-MAM release file (recognised by its content) converted to it in memory."""
    from .fairseq_checkpoint import from_fairseq, is_fairseq_checkpoint  # that module builds on this one

    ckpt = read_checkpoint_file(path)
    if is_fairseq_checkpoint(ckpt):
        ckpt = from_fairseq(ckpt, str(path))
    validate_checkpoint(ckpt, str(path))
    return ckpt


def validate_checkpoint(ckpt: object, source: str = "<checkpoint>") -> EncoderConfig:
    """The model_config of a usable EH-MAM checkpoint dict, else a ValueError naming `source` and the problem."""
    if not isinstance(ckpt, dict):
        raise ValueError(f"{source}: expected a checkpoint dict, found {type(ckpt).__name__}")
    if "format_version" not in ckpt:
        raise ValueError(f"{source}: missing key 'format_version'; not an EH-MAM checkpoint")
    version = ckpt["format_version"]
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(
            f"{source}: format_version {version!r} is not supported; supported versions: "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    for key in ("kind", "model_config", "encoder"):
        if key not in ckpt:
            raise ValueError(f"{source}: missing key '{key}'")
    if ckpt["kind"] not in KINDS:
        raise ValueError(f"{source}: unknown kind {ckpt['kind']!r}; expected one of {', '.join(KINDS)}")
    if ckpt["kind"] == KIND_PRETRAIN and "teacher_context" not in ckpt:
        raise ValueError(f"{source}: missing key 'teacher_context' (required for kind {KIND_PRETRAIN})")
    for key in ("encoder", "teacher_context"):
        if key in ckpt and not isinstance(ckpt[key], dict):
            raise ValueError(f"{source}: '{key}' must be a state dict, found {type(ckpt[key]).__name__}")
    return EncoderConfig.from_dict(ckpt["model_config"], where=f"{source}: model_config")


def check_state_dict(expected: dict, found: dict, source: str, what: str) -> None:
    """Strict key and shape comparison with a message naming the key, both shapes and the source."""
    if not isinstance(found, dict):
        raise ValueError(f"{source}: {what} must be a state dict, found {type(found).__name__}")
    check_frontend(frontend_of_state(expected), found, f"{source}: {what}")
    missing = [k for k in expected if k not in found]
    if missing:
        raise ValueError(f"{source}: {what} is missing key '{missing[0]}' ({len(missing)} missing in all)")
    unexpected = [k for k in found if k not in expected]
    if unexpected:
        raise ValueError(f"{source}: {what} has unexpected key '{unexpected[0]}' ({len(unexpected)} unexpected in all)")
    for key, ref in expected.items():
        value = found[key]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: {what} key '{key}' must be a tensor, found {type(value).__name__}")
        if value.shape != ref.shape:
            raise ValueError(
                f"{source}: {what} key '{key}' has shape {tuple(value.shape)}, expected "
                f"{tuple(ref.shape)} (from model_config)"
            )


def build_encoder(checkpoint: dict, weights: str = "student", source: str = "<checkpoint>") -> EHMAMEncoder:
    """EHMAMEncoder of the checkpoint's model_config in eval mode: `encoder` ('student'), or the student's front end
    (the teacher has none) with `teacher_context` ('teacher')."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, found {weights!r}")
    model = EHMAMEncoder(validate_checkpoint(checkpoint, source))
    state = checkpoint["encoder"]
    if weights == "teacher":
        teacher = checkpoint.get("teacher_context")
        if teacher is None:
            where = (
                "the fairseq file has no model['_ema']"
                if "fairseq_cfg_model" in checkpoint
                else "no key 'teacher_context'"
            )
            raise ValueError(f"{source}: no teacher weights ({where}); use the student's (weights='student')")
        check_state_dict(model.context.state_dict(), teacher, source, "teacher_context")
        state = {
            **{k: v for k, v in state.items() if not k.startswith("context.")},
            **{f"context.{k}": v for k, v in teacher.items()},
        }
    check_state_dict(model.state_dict(), state, source, "encoder")
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_encoder(path: str | os.PathLike, weights: str = "student") -> EHMAMEncoder:
    """load_checkpoint + build_encoder: the encoder in eval mode on the CPU."""
    return build_encoder(load_checkpoint(path), weights=weights, source=str(path))


def export_encoder(encoder: EHMAMEncoder, path: str | os.PathLike, teacher_context: dict | None = None) -> None:
    """Write an encoder-only checkpoint (kind ehmam-encoder) atomically; tensors are moved to the CPU."""
    state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    ckpt = {
        "format_version": FORMAT_VERSION,
        "kind": KIND_ENCODER,
        "model_config": encoder.config.to_dict(),
        "encoder": state,
    }
    if teacher_context is not None:
        check_state_dict(encoder.context.state_dict(), teacher_context, str(path), "teacher_context")
        ckpt["teacher_context"] = {k: v.detach().cpu() for k, v in teacher_context.items()}
    save_atomic(ckpt, path)
