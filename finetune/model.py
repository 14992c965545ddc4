"""The CTC model: an EH-MAM encoder (front end frozen, context encoder frozen or not) and a Linear to the letters.

`encoder_for_finetuning(config.model, seed)` builds the encoder from a pretraining checkpoint (student or teacher
weights), an exported encoder, or a random init (`random:FILE`, FILE a checkpoint or a pretraining YAML that gives
the architecture), with the fine-tuning dropouts and layerdrop, then drops the blocks above `model.num_layers` and
re-initialises the top `model.reset_top` (keep_and_reset_blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from upstream_ehmam.checkpoint import build_encoder, load_checkpoint
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.model import EHMAMEncoder, random_init_encoder

from .config import RANDOM_PREFIX, MaskConfig, ModelConfig
from .letters import BLANK
from .masking import span_mask

REGULARISATION_KEYS = ("dropout", "attention_dropout", "activation_dropout", "prenet_dropout", "layerdrop")


@dataclass
class FeatureMasks:
    """Training masks of one micro-batch (CPU bool): time (B, T) frames and channels (B, D), True = zeroed."""

    time: torch.Tensor
    channels: torch.Tensor


def draw_masks(
    frame_lengths: list[int], num_frames: int, num_channels: int, mask: MaskConfig, generator: torch.Generator
) -> FeatureMasks:
    """Time spans over each row's valid frames, then channel spans (one draw per row, constant over time)."""
    time = span_mask(frame_lengths, num_frames, mask.mask_prob, mask.span_length, generator)
    channels = span_mask(
        [num_channels] * len(frame_lengths), num_channels, mask.channel_prob, mask.channel_length, generator
    )
    return FeatureMasks(time, channels)


class CTCModel(nn.Module):
    """encoder -> last block -> Linear(D, symbols). The front end never trains (no gradients, no graph)."""

    def __init__(self, encoder: EHMAMEncoder, num_symbols: int):
        super().__init__()
        self.encoder = encoder
        self.encoder.local.requires_grad_(False)
        self.head = nn.Linear(encoder.config.embed_dim, num_symbols)
        nn.init.xavier_uniform_(self.head.weight)  # as fairseq's CTC projection
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        wav: torch.Tensor,
        wav_lengths: torch.Tensor,
        masks: FeatureMasks | None = None,
        encoder_grad: bool = True,
        layerdrop_generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """wav (B, S) normalised, zero-padded -> logits (B, T, V), frame_lengths (B,). With encoder_grad False the
        whole encoder runs under no_grad (the freeze period); masks are applied only when given."""
        with torch.no_grad():
            features, frame_lengths = self.encoder.local(wav, wav_lengths)  # (B, T, D)
        B, T, D = features.shape
        with torch.set_grad_enabled(encoder_grad and torch.is_grad_enabled()):
            time_mask = torch.zeros(B, T, dtype=torch.bool, device=features.device)
            if masks is not None:
                time_mask = masks.time.to(features.device)
                features = features.masked_fill(masks.channels.to(features.device)[:, None, :], 0.0)
            positions = torch.arange(T, device=features.device).expand(B, T)  # every frame stays in the sequence
            # masked frames are zeroed before the positional conv, as the pretraining student's are
            h = self.encoder.context.forward_visible(
                features, time_mask, positions, frame_lengths, layerdrop_generator
            )  # (B, T, D)
        return self.head(h), frame_lengths


def ctc_loss_sum(
    logits: torch.Tensor, frame_lengths: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor
) -> torch.Tensor:
    """CTC loss summed over the sentences, computed in fp32 whatever the autocast dtype; impossible alignments
    (more letters than frames) contribute 0 (zero_infinity)."""
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, V)
    with torch.autocast(logits.device.type, enabled=False):
        return F.ctc_loss(
            log_probs, targets, frame_lengths, target_lengths, blank=BLANK, reduction="sum", zero_infinity=True
        )


def architecture_of(path: Path) -> dict:
    """The encoder model_config of a checkpoint, or the `model` section of a pretraining YAML."""
    if Path(path).suffix in (".yaml", ".yml"):
        from pretrain.config import load_config

        return load_config(path).model.to_dict()
    return load_checkpoint(path)["model_config"]


def encoder_for_finetuning(model: ModelConfig, seed: int) -> EHMAMEncoder:
    """The encoder `model.init` names, with the fine-tuning regularisation in place of the pretraining one."""
    if not model.init:
        raise ValueError(
            "model.init: no encoder given; pass --ckpt CHECKPOINT (a pretraining checkpoint or an "
            "exported encoder) or --ckpt random:FILE"
        )
    encoder = _initial_encoder(model, seed)
    keep_and_reset_blocks(encoder, model.num_layers, model.reset_top, seed, model.init)
    return encoder


def keep_and_reset_blocks(encoder: EHMAMEncoder, num_layers: int, reset_top: int, seed: int, source: str) -> None:
    """Drop the blocks above `num_layers` (0 keeps all), then give the top `reset_top` kept blocks the weights a
    fresh init of the kept architecture from `seed` gives them (random_init_encoder), so a reset block starts where
    the random-init run's does; everything below stays bit-identical to `source`."""
    depth = len(encoder.context.blocks)
    if num_layers > depth:
        raise ValueError(f"model.num_layers: {num_layers} exceeds the depth of {source} ({depth} blocks)")
    if num_layers:
        encoder.truncate_layers(num_layers)
    kept = len(encoder.context.blocks)
    if reset_top > kept:
        raise ValueError(
            f"model.reset_top: {reset_top} exceeds the depth of the encoder ({kept} blocks of {source} kept)"
        )
    if reset_top == 0:
        return
    fresh = random_init_encoder(encoder.config, seed)
    for index in range(kept - reset_top, kept):
        encoder.context.blocks[index].load_state_dict(fresh.context.blocks[index].state_dict())


def _initial_encoder(model: ModelConfig, seed: int) -> EHMAMEncoder:
    regularisation = {key: getattr(model, key) for key in REGULARISATION_KEYS}
    if model.init.startswith(RANDOM_PREFIX):
        source = Path(model.init[len(RANDOM_PREFIX) :])
        if not source.is_file():
            raise FileNotFoundError(
                f"model.init: {source} not found (random:FILE needs a checkpoint or a "
                f"pretraining YAML for the architecture)"
            )
        cfg = EncoderConfig.from_dict({**architecture_of(source), **regularisation}, where=f"{source}: model")
        return random_init_encoder(cfg, seed)
    checkpoint = load_checkpoint(model.init)
    checkpoint = {**checkpoint, "model_config": {**checkpoint["model_config"], **regularisation}}
    return build_encoder(checkpoint, weights=model.weights, source=model.init)


def greedy_indices(logits: torch.Tensor, frame_lengths: torch.Tensor) -> list[list[int]]:
    """Viterbi (best path) CTC decoding: per utterance, the argmax symbols with repeats merged and blanks removed."""
    best = logits.argmax(dim=-1).cpu()  # (B, T)
    out = []
    for row, n in zip(best, frame_lengths.tolist()):
        path = torch.unique_consecutive(row[:n])
        out.append([i for i in path.tolist() if i != BLANK])
    return out
