"""Fine-tuning checkpoints: an encoder checkpoint (kind ehmam-encoder, so upstream_ehmam's loaders and the s3prl
expert read the fine-tuned encoder) plus a `ctc` entry: the head, its symbols, the resolved config, the data
location, and for resuming the optimiser and the loop state. Written atomically; loaded with weights_only=True.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from trainkit.files import git_sha
from upstream_ehmam.checkpoint import (
    FORMAT_VERSION,
    KIND_ENCODER,
    build_encoder,
    check_state_dict,
    load_checkpoint,
    save_atomic,
)

from .config import FinetuneConfig, config_from_dict
from .model import CTCModel

LAST, BEST = "last.pt", "best.pt"


@dataclass
class FinetuneState:
    update: int = 0  # optimiser updates done
    batches_consumed: int = 0  # global micro-batches of the training subset taken so far
    skipped_updates: int = 0  # updates skipped for a non-finite loss or gradient (or no usable audio)
    consecutive_skips: int = 0
    bad_audio: dict = field(default_factory=dict)  # path -> [problem, times met] (pretrain.data.BadAudioLog)
    best_wer: float = -1.0  # best validation WER so far (-1: none yet)
    best_update: int = -1


def checkpoint_dict(
    model: CTCModel,
    config: FinetuneConfig,
    symbols: list[str],
    state: FinetuneState,
    optimizer: torch.optim.Optimizer | None,
) -> dict:
    ctc = {
        "head": model.head.state_dict(),
        "symbols": list(symbols),
        "config": config.to_dict(),
        "manifest_dir": str(Path(config.data.manifest_dir).absolute()),
        "state": asdict(state),
    }
    if optimizer is not None:
        ctc["optimizer"] = optimizer.state_dict()
    return {
        "format_version": FORMAT_VERSION,
        "kind": KIND_ENCODER,
        "model_config": model.encoder.config.to_dict(),
        "encoder": model.encoder.state_dict(),
        "ctc": ctc,
        "git_sha": git_sha(),
    }


def save(
    path: Path,
    model: CTCModel,
    config: FinetuneConfig,
    symbols: list[str],
    state: FinetuneState,
    optimizer: torch.optim.Optimizer | None,
) -> None:
    save_atomic(checkpoint_dict(model, config, symbols, state, optimizer), path)


def _ctc_entry(ckpt: dict, path: Path, keys: tuple[str, ...]) -> dict:
    ctc = ckpt.get("ctc")
    if not isinstance(ctc, dict):
        raise ValueError(
            f"{path}: missing key 'ctc'; not a fine-tuning checkpoint (python -m finetune.run writes them)"
        )
    for key in keys:
        if key not in ctc:
            raise ValueError(f"{path}: missing key 'ctc.{key}'")
    return ctc


def restore(
    path: Path, model: CTCModel, optimizer: torch.optim.Optimizer, symbols: list[str]
) -> tuple[FinetuneState, dict]:
    """Load encoder, head, optimiser and loop state from `path` into the configured model (shapes checked first);
    returns the loop state and the config the checkpoint was written under (a dict)."""
    ckpt = load_checkpoint(path)
    ctc = _ctc_entry(ckpt, path, ("head", "symbols", "state", "optimizer"))
    if list(ctc["symbols"]) != list(symbols):
        raise ValueError(f"{path}: was trained with symbols {ctc['symbols']}, the dictionary now gives {symbols}")
    check_state_dict(model.encoder.state_dict(), ckpt["encoder"], str(path), "encoder")
    check_state_dict(model.head.state_dict(), ctc["head"], str(path), "ctc.head")
    model.encoder.load_state_dict(ckpt["encoder"], strict=True)
    model.head.load_state_dict(ctc["head"], strict=True)
    try:
        optimizer.load_state_dict(ctc["optimizer"])
        return FinetuneState(**ctc["state"]), ctc["config"] if isinstance(ctc.get("config"), dict) else {}
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: the optimizer or loop state does not fit the configured run: {err}") from None


def load_for_decoding(path: Path) -> tuple[CTCModel, list[str], FinetuneConfig]:
    """The fine-tuned model in eval mode on the CPU, its output symbols and the config it was trained with."""
    ckpt = load_checkpoint(path)
    ctc = _ctc_entry(ckpt, path, ("head", "symbols", "config"))
    model = CTCModel(build_encoder(ckpt, source=str(path)), len(ctc["symbols"]))
    check_state_dict(model.head.state_dict(), ctc["head"], str(path), "ctc.head")
    model.head.load_state_dict(ctc["head"], strict=True)
    config = config_from_dict(ctc["config"], source=f"{path}: ctc.config")
    if "manifest_dir" in ctc:
        config.data.manifest_dir = ctc["manifest_dir"]
    return model.eval(), list(ctc["symbols"]), config
