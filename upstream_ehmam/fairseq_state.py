"""State-dict names and shapes of fairseq's data2vec 2.0 audio model (both layouts) against the project's modules, in
both directions (docs/published_checkpoints.md "Keys"). An unknown, missing or misshapen key names itself."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import EncoderConfig
from .model import EHMAMEncoder

AUDIO_PREFIX = "modality_encoders.AUDIO."
EMA_KEY = "_ema"
ALIBI_SCALE = AUDIO_PREFIX + "alibi_scale"
DECODER, PREDICTOR = "decoder", "decoder_pred"

# fairseq AltBlock parameter -> the project's TransformerBlock parameter
BLOCK_PARAMETERS = {
    "norm1": "norm1",
    "attn.qkv": "qkv",
    "attn.proj": "out_proj",
    "norm2": "norm2",
    "mlp.fc1": "fc1",
    "mlp.fc2": "fc2",
}
WEIGHT_AND_BIAS = ("weight", "bias")


def context_names(config: EncoderConfig, prenet_depth: int) -> dict[str, str]:
    """fairseq name (student; the teacher's has `_ema.` before it) -> ContextEncoder name. Blocks below
    `prenet_depth` live in the modality encoder's context_encoder (the EH-MAM release: 4), the rest under `blocks.`."""
    names = {ALIBI_SCALE: "alibi_scale"}
    for wb in WEIGHT_AND_BIAS:
        names[f"{AUDIO_PREFIX}context_encoder.norm.{wb}"] = f"pre_norm.{wb}"
        for k in range(config.pos_conv_depth):  # entries 0 and depth + 1 of fairseq's Sequential are transposes
            names[f"{AUDIO_PREFIX}relative_positional_encoder.{k + 1}.0.{wb}"] = f"pos_conv.convs.{k}.{wb}"
    for j in range(config.num_layers):
        where = f"{AUDIO_PREFIX}context_encoder.blocks.{j}" if j < prenet_depth else f"blocks.{j - prenet_depth}"
        for theirs, ours in BLOCK_PARAMETERS.items():
            for wb in WEIGHT_AND_BIAS:
                names[f"{where}.{theirs}.{wb}"] = f"blocks.{j}.{ours}.{wb}"
    return names


def local_names(config: EncoderConfig) -> dict[str, str]:
    """fairseq name -> LocalEncoder name (the CNN and the feature projection)."""
    names = {}
    for i in range(len(config.conv_layers)):
        names[f"{AUDIO_PREFIX}local_encoder.conv_layers.{i}.0.weight"] = f"convs.{i}.weight"
        for wb in WEIGHT_AND_BIAS:
            names[f"{AUDIO_PREFIX}local_encoder.conv_layers.{i}.2.1.{wb}"] = f"conv_norms.{i}.{wb}"
    for wb in WEIGHT_AND_BIAS:
        names[f"{AUDIO_PREFIX}project_features.1.{wb}"] = f"proj_norm.{wb}"
        names[f"{AUDIO_PREFIX}project_features.2.{wb}"] = f"proj.{wb}"
    return names


def head_names(module: str, heads: dict) -> dict[str, str]:
    """fairseq name -> the project's ConvDecoder (`decoder`) or LossPredictor (`decoder_pred`) name."""
    names = {}
    for wb in WEIGHT_AND_BIAS:
        for b in range(heads["depth"]):
            names[f"{AUDIO_PREFIX}{module}.blocks.{b}.0.{wb}"] = f"stack.blocks.{b}.conv.{wb}"
        if module == PREDICTOR:
            names[f"{AUDIO_PREFIX}{module}.proj.0.{wb}"] = f"norm.{wb}"
            names[f"{AUDIO_PREFIX}{module}.proj.1.{wb}"] = f"proj.{wb}"
        else:
            names[f"{AUDIO_PREFIX}{module}.proj.{wb}"] = f"proj.{wb}"
    return names


def head_shapes(embed_dim: int, heads: dict, with_norm: bool) -> dict[str, tuple]:
    """Shapes of the project's head state dict for the heads section `heads`."""
    dim, kernel, groups = heads["decoder_dim"], heads["kernel_size"], heads["groups"]
    shapes = {}
    for b in range(heads["depth"]):
        shapes[f"stack.blocks.{b}.conv.weight"] = (dim, (embed_dim if b == 0 else dim) // groups, kernel)
        shapes[f"stack.blocks.{b}.conv.bias"] = (dim,)
    if with_norm:
        shapes.update({"norm.weight": (dim,), "norm.bias": (dim,)})
    shapes.update({"proj.weight": (embed_dim, dim), "proj.bias": (embed_dim,)})
    return shapes


def encoder_shapes(config: EncoderConfig) -> dict[str, tuple]:
    """Shapes of EHMAMEncoder's state dict, from a model on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return {key: tuple(value.shape) for key, value in EHMAMEncoder(config).state_dict().items()}


@dataclass
class ProjectWeights:
    """A fairseq state dict in the project's modules; None where the file has no such part."""

    encoder: dict
    teacher_context: dict | None
    decoder: dict | None
    predictor: dict | None
    teacher_predictor: dict | None


class StateReader:
    """Takes named tensors out of one fairseq state dict, checking each one's type and shape, and reports the keys
    that nothing took."""

    def __init__(self, state: object, where: str):
        if not isinstance(state, dict):
            raise ValueError(f"{where}: expected a state dict, found {type(state).__name__}")
        self.state, self.where, self.taken = state, where, set()

    def take(self, names: dict[str, str], shapes: dict[str, tuple]) -> dict:
        out = {}
        for theirs, ours in names.items():
            if theirs not in self.state:
                raise ValueError(f"{self.where} is missing key '{theirs}' (the project's '{ours}')")
            value = self.state[theirs]
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{self.where} key '{theirs}' must be a tensor, found {type(value).__name__}")
            expected = shapes[ours]
            if theirs.endswith(ALIBI_SCALE):  # (1, 1, H, 1, 1); older files (1, H, 1, 1); one scale for all heads
                if value.numel() not in (1, expected[0]) or any(size != 1 for size in value.shape[:-3]):
                    raise ValueError(
                        f"{self.where} key '{theirs}' has shape {tuple(value.shape)}; expected one ALiBi scale per "
                        f"head ({expected[0]}) or one for all"
                    )
                value = value.reshape(-1).expand(expected[0]).clone()
            elif tuple(value.shape) != expected:
                raise ValueError(
                    f"{self.where} key '{theirs}' has shape {tuple(value.shape)}, expected {expected} (from cfg.model)"
                )
            out[ours] = value
            self.taken.add(theirs)
        return out

    def has_prefix(self, prefix: str) -> bool:
        return any(isinstance(key, str) and key.startswith(prefix) for key in self.state)

    def check_all_taken(self, ignore: tuple = ()) -> None:
        left = [key for key in self.state if key not in self.taken and key not in ignore]
        if left:
            raise ValueError(
                f"{self.where} has unexpected key '{left[0]}' ({len(left)} unexpected in all); it is not part of the "
                f"data2vec 2.0 audio model its cfg.model describes"
            )


def read_fairseq_state(
    state: object, config: EncoderConfig, prenet_depth: int, heads: dict | None, source: str
) -> ProjectWeights:
    """Split fairseq's `model` (student, `_ema` teacher, decoder, the release's `decoder_pred`) into the project's
    state dicts; every key of the file must be taken."""
    student = StateReader(state, f"{source}: model")
    shapes = encoder_shapes(config)
    context_shapes = {k[len("context.") :]: v for k, v in shapes.items() if k.startswith("context.")}
    local_shapes = {k[len("local.") :]: v for k, v in shapes.items() if k.startswith("local.")}
    context = context_names(config, prenet_depth)
    encoder = {
        **{f"local.{k}": v for k, v in student.take(local_names(config), local_shapes).items()},
        **{f"context.{k}": v for k, v in student.take(context, context_shapes).items()},
    }
    decoder = predictor = teacher_context = teacher_predictor = None
    has_predictor = student.has_prefix(f"{AUDIO_PREFIX}{PREDICTOR}.")
    if heads is not None:
        decoder = student.take(head_names(DECODER, heads), head_shapes(config.embed_dim, heads, False))
        if has_predictor:
            predictor = student.take(head_names(PREDICTOR, heads), head_shapes(config.embed_dim, heads, True))
    if EMA_KEY in state:
        teacher = StateReader(state[EMA_KEY], f"{source}: model['{EMA_KEY}']")
        teacher_context = teacher.take(context, context_shapes)
        if predictor is not None:
            teacher_predictor = teacher.take(head_names(PREDICTOR, heads), head_shapes(config.embed_dim, heads, True))
        teacher.check_all_taken()
    student.check_all_taken(ignore=(EMA_KEY,))
    return ProjectWeights(encoder, teacher_context, decoder, predictor, teacher_predictor)


def write_fairseq_state(
    weights: ProjectWeights,
    config: EncoderConfig,
    prenet_depth: int,
    heads: dict | None,
    alibi_per_head: bool,
    source: str,
) -> dict:
    """The inverse of read_fairseq_state: fairseq's `model` dict (with `_ema` when there is a teacher)."""

    def rename(names: dict[str, str], values: dict, prefix: str = "") -> dict:
        out = {}
        for theirs, ours in names.items():
            value = values[prefix + ours]
            if theirs == ALIBI_SCALE:
                if not alibi_per_head:
                    if not bool((value == value[0]).all()):
                        raise ValueError(
                            f"{source}: the ALiBi scales differ by head, but the fairseq cfg holds one scale for all"
                        )
                    value = value[:1]
                value = value.reshape(1, 1, -1, 1, 1)
            out[theirs] = value
        return out

    context = context_names(config, prenet_depth)
    state = {**rename(local_names(config), weights.encoder, "local."), **rename(context, weights.encoder, "context.")}
    if weights.decoder is not None:
        state.update(rename(head_names(DECODER, heads), weights.decoder))
    if weights.predictor is not None:
        state.update(rename(head_names(PREDICTOR, heads), weights.predictor))
    if weights.teacher_context is not None:
        teacher = rename(context, weights.teacher_context)
        if weights.teacher_predictor is not None:
            teacher.update(rename(head_names(PREDICTOR, heads), weights.teacher_predictor))
        state[EMA_KEY] = teacher
    return state
