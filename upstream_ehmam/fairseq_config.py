"""cfg["model"] of a fairseq data2vec 2.0 audio checkpoint (or the EH-MAM release's) <-> the project's EncoderConfig,
heads and the fairseq layout (docs/published_checkpoints.md). Everything the encoder cannot compute is refused by the
name of the cfg key, before any weight is read."""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

from .config import EncoderConfig

MODEL_NAME = "data2vec_multi"
AUDIO = "AUDIO"
# The one LayerNorm eps the encoder uses everywhere; fairseq fixes its CNN, projection and positional-conv norms at it
# and uses cfg.model.norm_eps for the others, so only files with norm_eps equal to it compute the same function.
LAYER_NORM_EPS = 1e-5

# Defaults of fairseq's config dataclasses, used where a file lacks a key (hydra writes them all, so this is rare).
MODEL_DEFAULTS = {
    "depth": 8,
    "num_heads": 12,
    "norm_eps": 1e-6,
    "norm_affine": True,
    "encoder_dropout": 0.1,
    "post_mlp_drop": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "layerdrop": 0.0,
    "embed_dim": 768,
    "mlp_ratio": 4.0,
    "layer_norm_first": False,
    "average_top_k_layers": 8,
    "end_of_block_targets": False,
    "ema_encoder_only": True,
    "shared_decoder": None,
    "recon_loss": 0.0,
    "supported_modality": None,
}
AUDIO_DEFAULTS = {
    "type": AUDIO,
    "prenet_depth": 4,
    "prenet_layerdrop": 0.0,
    "prenet_dropout": 0.0,
    "num_extra_tokens": 0,
    "ema_local_encoder": False,
    "use_alibi_encoder": False,
    "learned_alibi": False,
    "learned_alibi_scale_per_layer": False,
    "num_alibi_heads": None,  # fairseq: model.num_heads
    "decoder": None,
    "extractor_mode": "layer_norm",
    "feature_encoder_spec": "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]",
    "conv_pos_width": 95,
    "conv_pos_groups": 16,
    "conv_pos_depth": 5,
    "conv_pos_pre_ln": False,
}
DECODER_DEFAULTS = {
    "decoder_dim": 384,
    "decoder_groups": 16,
    "decoder_kernel": 5,
    "decoder_layers": 5,
    "input_dropout": 0.1,
    "add_positions_masked": False,
    "add_positions_all": False,
    "decoder_residual": True,
    "projection_layers": 1,
}

# (key, the value this encoder needs, why another value cannot be computed here)
MODEL_REQUIREMENTS = (
    ("layer_norm_first", False, "pre-LN blocks; this encoder's blocks are post-LN"),
    ("norm_affine", True, "LayerNorms without weights; this encoder's have them"),
    ("end_of_block_targets", False, "targets from block outputs; the teacher here targets FFN outputs"),
    ("ema_encoder_only", False, "the EMA teacher holds only the main blocks, not the whole context encoder"),
    ("shared_decoder", None, "a decoder shared by modalities"),
)
AUDIO_REQUIREMENTS = (
    ("type", AUDIO, "a non-audio modality"),
    ("use_alibi_encoder", True, "no ALiBi attention bias; this encoder always applies one"),
    ("learned_alibi", False, "a learned ALiBi bias table instead of fixed slopes"),
    ("learned_alibi_scale_per_layer", False, "one ALiBi scale per layer; this encoder has one per head"),
    ("num_extra_tokens", 0, "extra (CLS-like) tokens before the frames"),
    ("extractor_mode", "layer_norm", "a CNN normalised by group norm; this encoder's CNN uses LayerNorm"),
    ("conv_pos_pre_ln", False, "a LayerNorm before the positional convolution"),
    ("ema_local_encoder", False, "a teacher with its own CNN; the teacher here reads the student's"),
)
DECODER_REQUIREMENTS = (
    ("decoder_residual", True, "a decoder without residual connections"),
    ("projection_layers", 1, "a multi-layer decoder projection"),
    ("add_positions_masked", False, "positions added to the decoder input"),
    ("add_positions_all", False, "positions added to the decoder input"),
)


@dataclass
class FairseqLayout:
    """What a fairseq file says beyond the encoder: where its blocks sit and what its decoder looks like."""

    prenet_depth: int  # blocks under modality_encoders.AUDIO.context_encoder.blocks (the EH-MAM release: 4)
    heads: dict | None  # the project's heads section (decoder_dim, kernel_size, groups, depth, input_dropout)
    top_k_layers: int


class FairseqConfigError(ValueError):
    pass


def _section(values: object, where: str) -> dict:
    if not isinstance(values, dict):
        raise FairseqConfigError(f"{where}: expected a mapping, found {type(values).__name__}")
    return values


def _number(value: object, key: str, kind: type = int) -> int | float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind is int and not float(value).is_integer())
    ):
        raise FairseqConfigError(f"{key}: expected {'an integer' if kind is int else 'a number'}, found {value!r}")
    return kind(value)


def parse_feature_encoder_spec(text: object, key: str) -> list[list[int]]:
    """fairseq's CNN spec, a Python list expression such as "[(512, 10, 5)] + [(512, 3, 2)] * 4", read as data: only
    lists and tuples of integers, `+` of lists and `*` by an integer (never evaluated as code)."""

    def value(node: ast.AST) -> object:
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [value(item) for item in node.elts]
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Add) and isinstance(left, list) and isinstance(right, list):
                return left + right
            if isinstance(node.op, ast.Mult) and isinstance(left, list) and isinstance(right, int):
                return left * right
        raise FairseqConfigError(f"{key}: {text!r} is not a list of (channels, kernel, stride) tuples")

    if not isinstance(text, str):
        raise FairseqConfigError(f"{key}: expected a string, found {type(text).__name__}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise FairseqConfigError(f"{key}: {text!r} is not a list expression") from None
    layers = value(tree.body)
    if not isinstance(layers, list) or not layers or not all(isinstance(v, list) and len(v) == 3 for v in layers):
        raise FairseqConfigError(f"{key}: {text!r} is not a list of (channels, kernel, stride) tuples")
    return layers


def _check(values: dict, requirements: tuple, where: str) -> None:
    for key, needed, why in requirements:
        if values[key] != needed and not (needed == AUDIO and str(values[key]).upper().endswith(AUDIO)):
            raise FairseqConfigError(f"{where}.{key} is {values[key]!r} ({why}); only {needed!r} can be read")


def read_fairseq_model_config(model_cfg: object, source: str) -> tuple[EncoderConfig, FairseqLayout]:
    """The EncoderConfig and layout of a data2vec 2.0 / EH-MAM release cfg["model"]; a FairseqConfigError naming
    `source` and the cfg key for everything the encoder cannot compute."""
    where = f"{source}: cfg.model"
    model = {**MODEL_DEFAULTS, **_section(model_cfg, where)}
    name = model.get("_name")
    if name not in (None, MODEL_NAME):
        raise FairseqConfigError(
            f"{where}._name is {name!r}; only data2vec 2.0 audio models ({MODEL_NAME}) and the EH-MAM release are "
            f"read (wav2vec 2.0, HuBERT and data2vec 1.0 have their own s3prl upstreams)"
        )
    modality = model["supported_modality"]
    if modality is None or str(modality).upper().rsplit(".", 1)[-1] != AUDIO:
        raise FairseqConfigError(f"{where}.supported_modality is {modality!r}; only audio models ({AUDIO}) are read")
    _check(model, MODEL_REQUIREMENTS, where)
    if _number(model["recon_loss"], f"{where}.recon_loss", float) > 0:
        raise FairseqConfigError(f"{where}.recon_loss is {model['recon_loss']!r} (a reconstruction head); only 0")
    modalities = _section(model.get("modalities", {}), f"{where}.modalities")
    audio = {**AUDIO_DEFAULTS, **_section(modalities.get("audio", {}), f"{where}.modalities.audio")}
    audio_where = f"{where}.modalities.audio"
    _check(audio, AUDIO_REQUIREMENTS, audio_where)
    norm_eps = _number(model["norm_eps"], f"{where}.norm_eps", float)
    if not math.isclose(norm_eps, LAYER_NORM_EPS, rel_tol=1e-9):
        raise FairseqConfigError(
            f"{where}.norm_eps is {norm_eps!r}; the encoder's LayerNorms all use {LAYER_NORM_EPS} (the released "
            f"models' value), so only that can be read"
        )
    embed_dim = _number(model["embed_dim"], f"{where}.embed_dim")
    num_heads = _number(model["num_heads"], f"{where}.num_heads")
    alibi_heads = audio["num_alibi_heads"]
    if alibi_heads is not None and _number(alibi_heads, f"{audio_where}.num_alibi_heads") != num_heads:
        raise FairseqConfigError(
            f"{audio_where}.num_alibi_heads is {alibi_heads!r} but cfg.model.num_heads is {num_heads}; ALiBi here "
            f"biases every head"
        )
    ffn = embed_dim * _number(model["mlp_ratio"], f"{where}.mlp_ratio", float)
    pos_depth = _number(audio["conv_pos_depth"], f"{audio_where}.conv_pos_depth")
    if pos_depth < 1:
        raise FairseqConfigError(f"{audio_where}.conv_pos_depth is {pos_depth}; at least one convolution is needed")
    kernel = max(3, _number(audio["conv_pos_width"], f"{audio_where}.conv_pos_width") // pos_depth)
    if kernel % 2 == 0:
        raise FairseqConfigError(
            f"{audio_where}.conv_pos_width {audio['conv_pos_width']} over conv_pos_depth {pos_depth} gives an even "
            f"kernel {kernel}, which fairseq trims by a frame; the encoder's positional kernel is odd"
        )
    prenet_depth = _number(audio["prenet_depth"], f"{audio_where}.prenet_depth")
    depth = _number(model["depth"], f"{where}.depth")
    config = EncoderConfig.from_dict(
        {
            "frontend": "cnn",
            "conv_layers": parse_feature_encoder_spec(
                audio["feature_encoder_spec"], f"{audio_where}.feature_encoder_spec"
            ),
            "embed_dim": embed_dim,
            "num_layers": prenet_depth + depth,
            "num_heads": num_heads,
            "ffn_dim": int(ffn),
            "pos_conv_depth": pos_depth,
            "pos_conv_kernel": kernel,
            "pos_conv_groups": _number(audio["conv_pos_groups"], f"{audio_where}.conv_pos_groups"),
            "dropout": _number(model["encoder_dropout"], f"{where}.encoder_dropout", float),
            "attention_dropout": _number(model["attention_dropout"], f"{where}.attention_dropout", float),
            "activation_dropout": _number(model["activation_dropout"], f"{where}.activation_dropout", float),
            "prenet_dropout": _number(audio["prenet_dropout"], f"{audio_where}.prenet_dropout", float),
            "layerdrop": _number(model["layerdrop"], f"{where}.layerdrop", float),
            "layer_norm_eps": LAYER_NORM_EPS,
        },
        where=f"{where} (as the encoder's model_config)",
    )
    heads = None
    if audio["decoder"] is not None:
        decoder = {**DECODER_DEFAULTS, **_section(audio["decoder"], f"{audio_where}.decoder")}
        _check(decoder, DECODER_REQUIREMENTS, f"{audio_where}.decoder")
        heads = {
            "decoder_dim": _number(decoder["decoder_dim"], f"{audio_where}.decoder.decoder_dim"),
            "kernel_size": _number(decoder["decoder_kernel"], f"{audio_where}.decoder.decoder_kernel"),
            "groups": _number(decoder["decoder_groups"], f"{audio_where}.decoder.decoder_groups"),
            "depth": _number(decoder["decoder_layers"], f"{audio_where}.decoder.decoder_layers"),
            "input_dropout": _number(decoder["input_dropout"], f"{audio_where}.decoder.input_dropout", float),
        }
        if heads["kernel_size"] % 2 == 0:
            raise FairseqConfigError(
                f"{audio_where}.decoder.decoder_kernel is {heads['kernel_size']}, even (fairseq trims a frame); "
                f"the decoder here needs an odd kernel"
            )
    top_k = _number(model["average_top_k_layers"], f"{where}.average_top_k_layers")
    return config, FairseqLayout(prenet_depth=prenet_depth, heads=heads, top_k_layers=top_k)


def _project_section(training_config: dict, name: str) -> dict:
    section = training_config.get(name)
    return section if isinstance(section, dict) else {}


def write_fairseq_model_config(
    config: EncoderConfig, heads: dict | None, has_teacher: bool, has_predictor: bool, training: dict, source: str
) -> dict:
    """cfg["model"] of a data2vec 2.0 audio model that computes `config` (all blocks under `blocks.*`, no prenet),
    with `heads` as its decoder; `training` is the project's pretraining config (or {}) for the training-only keys.
    A FairseqConfigError names what fairseq's model cannot express."""
    where = f"{source}: model_config"
    if config.frontend != "cnn":
        raise FairseqConfigError(
            f"{where}.frontend is {config.frontend!r}: fairseq's data2vec 2.0 has no log-mel front end, so only cnn "
            f"checkpoints convert to the fairseq layout"
        )
    if not math.isclose(config.layer_norm_eps, LAYER_NORM_EPS, rel_tol=1e-9):
        raise FairseqConfigError(
            f"{where}.layer_norm_eps is {config.layer_norm_eps}; fairseq fixes its CNN and projection LayerNorms at "
            f"{LAYER_NORM_EPS}"
        )
    mlp_ratio = config.ffn_dim / config.embed_dim
    if int(config.embed_dim * mlp_ratio) != config.ffn_dim:
        raise FairseqConfigError(f"{where}.ffn_dim {config.ffn_dim} is not embed_dim times a ratio fairseq can hold")
    if config.pos_conv_kernel < 3:
        raise FairseqConfigError(f"{where}.pos_conv_kernel is {config.pos_conv_kernel}; fairseq's is at least 3")
    mask, loss = _project_section(training, "mask"), _project_section(training, "loss")
    teacher, optim = _project_section(training, "teacher"), _project_section(training, "optim")
    decoder = None
    if heads is not None:
        decoder = {
            "decoder_dim": heads["decoder_dim"],
            "decoder_groups": heads["groups"],
            "decoder_kernel": heads["kernel_size"],
            "decoder_layers": heads["depth"],
            "input_dropout": heads["input_dropout"],
            **{key: DECODER_DEFAULTS[key] for key in ("add_positions_masked", "add_positions_all")},
            **{key: DECODER_DEFAULTS[key] for key in ("decoder_residual", "projection_layers")},
            "projection_ratio": 2.0,
        }
    audio = {
        "type": AUDIO,
        "prenet_depth": 0,
        "prenet_layerdrop": config.layerdrop,
        "prenet_dropout": config.prenet_dropout,
        "num_extra_tokens": 0,
        "mask_noise_std": mask.get("noise_std", 0.01),
        "mask_prob": mask.get("mask_prob", 0.5),
        "mask_length": mask.get("span_length", 5),
        "ema_local_encoder": False,
        "use_alibi_encoder": True,
        "alibi_scale": 1.0,
        "learned_alibi": False,
        "learned_alibi_scale": True,
        "learned_alibi_scale_per_head": True,
        "learned_alibi_scale_per_layer": False,
        "num_alibi_heads": config.num_heads,
        "model_depth": config.num_layers,
        "decoder": decoder,
        "extractor_mode": "layer_norm",
        "feature_encoder_spec": "[" + ", ".join(f"({c}, {k}, {s})" for c, k, s in config.conv_layers) + "]",
        "conv_pos_width": config.pos_conv_kernel * config.pos_conv_depth,
        "conv_pos_groups": config.pos_conv_groups,
        "conv_pos_depth": config.pos_conv_depth,
        "conv_pos_pre_ln": False,
    }
    model = {
        "_name": MODEL_NAME,
        "depth": config.num_layers,
        "num_heads": config.num_heads,
        "norm_eps": LAYER_NORM_EPS,
        "norm_affine": True,
        "encoder_dropout": config.dropout,
        "post_mlp_drop": config.dropout,
        "attention_dropout": config.attention_dropout,
        "activation_dropout": config.activation_dropout,
        "dropout_input": 0.0,
        "layerdrop": config.layerdrop,
        "embed_dim": config.embed_dim,
        "mlp_ratio": mlp_ratio,
        "layer_norm_first": False,
        "average_top_k_layers": loss.get("top_k_layers", min(8, config.num_layers)),
        "end_of_block_targets": False,
        "clone_batch": mask.get("clone_batch", 1),
        "instance_norm_target_layer": True,
        "ema_decay": teacher.get("ema_decay_start", 0.999),
        "ema_end_decay": teacher.get("ema_decay_end", 0.99999),
        "ema_anneal_end_step": teacher.get("ema_anneal_updates", 75_000),
        "ema_encoder_only": False,
        "max_update": optim.get("max_steps", 400_000),
        "modalities": {"audio": audio},
        "shared_decoder": None,
        "supported_modality": AUDIO,
        "skip_ema": not has_teacher,
        "recon_loss": 0.0,
    }
    if has_predictor:  # the EH-MAM release's weight of the ranking loss
        model["learning_loss"] = loss.get("aux_weight", 1.0)
    return model
