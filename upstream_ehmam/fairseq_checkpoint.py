"""fairseq data2vec 2.0 audio checkpoints and the EH-MAM release's, read as the project's checkpoint dicts and written
back (docs/published_checkpoints.md). Only cfg["model"] and model (with model["_ema"]) are read; the rest of a
fairseq file (its other cfg sections, optimiser and trainer state) is left alone."""

from __future__ import annotations

import torch

from .checkpoint import FORMAT_VERSION, KIND_ENCODER, KIND_PRETRAIN, check_state_dict, validate_checkpoint
from .fairseq_config import read_fairseq_model_config, write_fairseq_model_config
from .fairseq_state import (
    EMA_KEY,
    ProjectWeights,
    encoder_shapes,
    head_shapes,
    read_fairseq_state,
    write_fairseq_state,
)
from .safe_load import ForeignValue

# The cfg["model"] a converted file came from: written back unchanged by to_fairseq while it still describes the model.
FAIRSEQ_MODEL_CFG = "fairseq_cfg_model"


def is_fairseq_checkpoint(obj: object) -> bool:
    """A fairseq trainer file (a `model` state dict next to `cfg` or `args`), not one of the project's."""
    return isinstance(obj, dict) and "format_version" not in obj and "model" in obj and ("cfg" in obj or "args" in obj)


def _refuse_foreign_values(value: object, where: str) -> None:
    """cfg["model"] must be plain data: a numpy value or Namespace there cannot be read (it was never unpickled)."""
    if isinstance(value, ForeignValue):
        raise ValueError(f"{where} holds a numpy or argparse value; cfg.model must hold plain numbers and strings")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_foreign_values(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _refuse_foreign_values(item, f"{where}[{i}]")


def from_fairseq(obj: dict, source: str) -> dict:
    """The project's checkpoint dict for a fairseq file: kind ehmam-pretrain when it has an EMA teacher (`_ema`),
    else ehmam-encoder; heads (decoder, the release's predictor and its EMA copy) when it has them."""
    cfg = obj.get("cfg")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        if obj.get("args") is not None:
            raise ValueError(
                f"{source}: a fairseq checkpoint from before hydra configs (it has `args`, no cfg['model']): "
                f"wav2vec 2.0 / data2vec 1.0 era; only data2vec 2.0 audio files and the EH-MAM release are read"
            )
        raise ValueError(f"{source}: a fairseq-style file without cfg['model']; cannot tell what model it holds")
    _refuse_foreign_values(cfg["model"], f"{source}: cfg.model")
    config, layout = read_fairseq_model_config(cfg["model"], source)
    weights = read_fairseq_state(obj["model"], config, layout.prenet_depth, layout.heads, source)
    training = {"model": config.to_dict(), "loss": {"top_k_layers": layout.top_k_layers}}
    ckpt = {
        "format_version": FORMAT_VERSION,
        "kind": KIND_PRETRAIN if weights.teacher_context is not None else KIND_ENCODER,
        "model_config": config.to_dict(),
        "encoder": weights.encoder,
        "config": training,
        FAIRSEQ_MODEL_CFG: cfg["model"],
    }
    if weights.teacher_context is not None:
        ckpt["teacher_context"] = weights.teacher_context
    if layout.heads is not None:
        training["heads"] = dict(layout.heads)
        heads = {
            "decoder": weights.decoder,
            "predictor": weights.predictor,
            "teacher_predictor": weights.teacher_predictor,
        }
        ckpt["heads"] = {name: state for name, state in heads.items() if state is not None}
    return ckpt


def _heads_section(ckpt: dict) -> dict | None:
    training = ckpt.get("config")
    heads = training.get("heads") if isinstance(training, dict) else None
    return heads if isinstance(heads, dict) else None


def _stored_model_cfg(ckpt: dict, source: str) -> dict | None:
    """The fairseq cfg["model"] a converted file carries, if it still describes exactly this checkpoint's model."""
    stored = ckpt.get(FAIRSEQ_MODEL_CFG)
    if not isinstance(stored, dict):
        return None
    try:
        config, layout = read_fairseq_model_config(stored, source)
    except ValueError:
        return None
    heads = _heads_section(ckpt) if ckpt.get("heads") else None
    return stored if config.to_dict() == ckpt["model_config"] and layout.heads == heads else None


def to_fairseq(ckpt: dict, source: str) -> dict:
    """A fairseq trainer file (data2vec 2.0 layout) for one of the project's checkpoint dicts: student, `_ema`
    teacher when there is one, decoder, and the release's `decoder_pred` when there is a predictor."""
    config = validate_checkpoint(ckpt, source)
    heads_state = ckpt.get("heads") if isinstance(ckpt.get("heads"), dict) else {}
    heads = _heads_section(ckpt) if heads_state else None
    if heads_state and heads is None:
        raise ValueError(f"{source}: has heads but no config.heads section to describe them")
    teacher = ckpt.get("teacher_context")
    weights = ProjectWeights(ckpt["encoder"], teacher, heads_state.get("decoder"), heads_state.get("predictor"), None)
    if weights.predictor is not None and teacher is not None:
        weights.teacher_predictor = heads_state.get("teacher_predictor")
    if weights.predictor is not None and weights.decoder is None:
        raise ValueError(f"{source}: has a predictor but no decoder; fairseq's layout needs the decoder")
    shapes = encoder_shapes(config)
    check_state_dict(meta_tensors(shapes), weights.encoder, source, "encoder")
    if teacher is not None:
        context = {k[len("context.") :]: v for k, v in shapes.items() if k.startswith("context.")}
        check_state_dict(meta_tensors(context), teacher, source, "teacher_context")
    for name, state in (("decoder", weights.decoder), ("predictor", weights.predictor)):
        if state is not None:
            expected = head_shapes(config.embed_dim, heads, with_norm=name == "predictor")
            check_state_dict(meta_tensors(expected), state, source, f"heads.{name}")
    if weights.teacher_predictor is not None:
        expected = head_shapes(config.embed_dim, heads, with_norm=True)
        check_state_dict(meta_tensors(expected), weights.teacher_predictor, source, "heads.teacher_predictor")
    stored = _stored_model_cfg(ckpt, source)
    if stored is not None:
        model_cfg = stored
    else:
        model_cfg = write_fairseq_model_config(
            config,
            heads if weights.decoder is not None else None,
            teacher is not None,
            weights.predictor is not None,
            ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {},
            source,
        )
    audio = model_cfg.get("modalities", {}).get("audio", {})
    state = write_fairseq_state(
        weights,
        config,
        audio.get("prenet_depth", 0),
        heads,
        bool(audio.get("learned_alibi_scale_per_head", True)),
        source,
    )
    if teacher is None:
        state.pop(EMA_KEY, None)
    train_state = ckpt.get("train_state") if isinstance(ckpt.get("train_state"), dict) else {}
    return {
        "args": None,
        "cfg": {
            "_name": None,
            "common": {"user_dir": "examples/data2vec", "seed": model_cfg.get("seed", 1)},
            "task": {"_name": "audio_pretraining", "data": "", "sample_rate": 16000, "normalize": True},
            "model": model_cfg,
            "criterion": {"_name": "model", "log_keys": []},
        },
        "model": state,
        "criterion": None,
        "optimizer_history": [
            {
                "criterion_name": "ModelCriterion",
                "optimizer_name": "FairseqAdam",
                "lr_scheduler_state": {},
                "num_updates": int(train_state.get("update", 0)),
            }
        ],
        "task_state": {},
        "extra_state": {"train_iterator": {"epoch": int(train_state.get("epoch", 1))}},
    }


def meta_tensors(shapes: dict[str, tuple]) -> dict:
    """check_state_dict compares against tensors: meta tensors of the given shapes cost nothing."""
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
