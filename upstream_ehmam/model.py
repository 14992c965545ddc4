"""The EH-MAM encoder (docs/design.md "Encoder"): CNN + projection (LocalEncoder), positional conv + ALiBi post-LN
transformer (ContextEncoder), and their composition (EHMAMEncoder) used for pretraining and for SUPERB.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import TransformerBlock, alibi_slopes, attention_bias
from .config import EncoderConfig
from .frontend import MelLocalEncoder


def valid_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool, True at frames t < lengths[b]."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls run in: the autocast dtype when autocast is on for x's device, else x's dtype."""
    return torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype


def draw_layer_skips(num_layers: int, prob: float, generator: torch.Generator | None) -> list[bool]:
    """Host-side layerdrop decisions: True = skip the block. Drawn on the CPU, so no device sync."""
    return (torch.rand(num_layers, generator=generator) < prob).tolist() if prob > 0.0 else [False] * num_layers


class LocalEncoder(nn.Module):
    """CNN waveform encoder (7 bias-free convs -> LayerNorm over channels -> GELU) + LN/Linear projection."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.config = cfg
        widths = [1] + [channels for channels, _, _ in cfg.conv_layers]
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=False)
            for c_in, (c_out, kernel, stride) in zip(widths, cfg.conv_layers)
        )
        self.conv_norms = nn.ModuleList(nn.LayerNorm(c, eps=cfg.layer_norm_eps) for c in widths[1:])
        self.proj_norm = nn.LayerNorm(widths[-1], eps=cfg.layer_norm_eps)
        self.proj = nn.Linear(widths[-1], cfg.embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """CNN Kaiming-normal (wav2vec2 feature extractor); the projection Linear gets PyTorch's default."""
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight)
        self.proj.reset_parameters()

    def forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wav (B, S), wav_lengths (B,) -> features (B, T, D) with padded frames zeroed, frame_lengths (B,)."""
        # A valid frame reads no padding, so only the output's padded frames are zeroed. The convs run as 2-D convs
        # on channels-last (B, C, 1, T): the LayerNorm over channels reads contiguous memory (bench/RESULTS.md).
        x = wav[:, None, None, :]  # (B, 1, 1, S)
        for conv, norm in zip(self.convs, self.conv_norms):
            x = F.conv2d(x, conv.weight.unsqueeze(2), stride=(1, conv.stride[0]))  # (B, C, 1, T_l)
            x = x.contiguous(memory_format=torch.channels_last)
            h = F.gelu(norm(x.permute(0, 2, 3, 1)))  # (B, 1, T_l, C), contiguous
            x = h.permute(0, 3, 1, 2)  # (B, C, 1, T_l), channels-last
        frame_lengths = self.config.frames_for_samples(wav_lengths)
        x = self.proj(self.proj_norm(x[:, :, 0, :].transpose(1, 2)))  # (B, T, D)
        x = x.masked_fill(~valid_mask(frame_lengths, x.shape[1])[..., None], 0.0)
        return x, frame_lengths


class PositionalConv(nn.Module):
    """Stack of grouped convs (conv with bias -> LayerNorm without affine -> GELU); returns pos(x), no residual."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        D = cfg.embed_dim
        self.eps = cfg.layer_norm_eps
        self.convs = nn.ModuleList(
            nn.Conv1d(D, D, cfg.pos_conv_kernel, padding=cfg.pos_conv_kernel // 2, groups=cfg.pos_conv_groups)
            for _ in range(cfg.pos_conv_depth)
        )

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), valid (B, T) bool -> (B, T, D), padded frames re-zeroed before every conv."""
        pad = ~valid[:, :, None]  # (B, T, 1)
        for conv in self.convs:
            # channels-last 2-D conv: (B, T, D) memory is read and written without transposed copies
            x_in = x.masked_fill(pad, 0.0).permute(0, 2, 1).unsqueeze(2)  # (B, D, 1, T) view
            out = F.conv2d(x_in, conv.weight.unsqueeze(2), conv.bias, padding=(0, conv.padding[0]), groups=conv.groups)
            x = out.contiguous(memory_format=torch.channels_last)[:, :, 0, :].permute(0, 2, 1)  # (B, T, D)
            x = F.gelu(F.layer_norm(x, (x.shape[-1],), eps=self.eps))
        return x


@dataclass
class ContextOutput:
    """Full-sequence outputs: hidden_states (L+1) x (B, T, D), ffn_outputs L x (B, T, D)."""

    hidden_states: list[torch.Tensor]
    ffn_outputs: list[torch.Tensor]


class ContextEncoder(nn.Module):
    """Positional conv, pre-encoder LayerNorm + dropout, learned per-head ALiBi scale, post-LN blocks."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.config = cfg
        self.pos_conv = PositionalConv(cfg)
        self.pre_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.prenet_dropout = nn.Dropout(cfg.prenet_dropout)
        self.alibi_scale = nn.Parameter(torch.ones(cfg.num_heads))  # clamped >= 0 when used; no weight decay
        self.register_buffer("alibi_slopes", alibi_slopes(cfg.num_heads), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.num_layers))

    def head_scales(self) -> torch.Tensor:
        """(H,) effective ALiBi slopes: fixed slope x learned scale clamped at 0."""
        return self.alibi_slopes.float() * self.alibi_scale.float().clamp(min=0.0)

    def forward(self, x: torch.Tensor, frame_lengths: torch.Tensor) -> ContextOutput:
        """Full-sequence path (teacher, inference). x (B, T, D). Never drops layers."""
        T = x.shape[1]
        valid = valid_mask(frame_lengths, T)  # (B, T)
        x = x + self.pos_conv(x, valid)
        h = self.prenet_dropout(self.pre_norm(x))
        positions = torch.arange(T, device=x.device)[None, :]  # (1, T)
        bias = attention_bias(positions, valid, self.head_scales(), compute_dtype(h))  # (B, H, T, T)
        hidden_states, ffn_outputs = [h], []
        for block in self.blocks:
            h, f = block(h, bias)
            hidden_states.append(h)
            ffn_outputs.append(f)
        return ContextOutput(hidden_states, ffn_outputs)

    def forward_visible(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        visible_idx: torch.Tensor,
        frame_lengths: torch.Tensor,
        layerdrop_generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Student path (docs/design.md "One training step", step 4): x (B, T, D), mask (B, T) True = masked,
        visible_idx (B, Tv) ascending positions of the kept frames -> last block output (B, Tv, D)."""
        B, T, D = x.shape
        valid = valid_mask(frame_lengths, T)  # (B, T)
        x = x.masked_fill(mask[..., None], 0.0)
        x = x + self.pos_conv(x, valid)
        x = torch.gather(x, 1, visible_idx[..., None].expand(-1, -1, D))  # (B, Tv, D)
        h = self.prenet_dropout(self.pre_norm(x))
        key_valid = visible_idx < frame_lengths[:, None]  # (B, Tv)
        bias = attention_bias(visible_idx, key_valid, self.head_scales(), compute_dtype(h))  # (B, H, Tv, Tv)
        prob = self.config.layerdrop if self.training else 0.0
        skips = draw_layer_skips(len(self.blocks), prob, layerdrop_generator)
        for block, skip in zip(self.blocks, skips):
            if not skip:
                h, _ = block(h, bias)
        return h


def frontend_of_state(state: dict, prefix: str = "local.") -> str | None:
    """Which front end wrote an encoder state dict (cnn: convs; mel: only `proj`); None: no front-end weights."""
    keys = [k[len(prefix) :] for k in state if isinstance(k, str) and k.startswith(prefix)]
    if any(k.startswith("convs.") or k.startswith("conv_norms.") for k in keys):
        return "cnn"
    if any(k.startswith("proj.") for k in keys) and not any(k.startswith("proj_norm.") for k in keys):
        return "mel"
    return "cnn" if keys else None


def check_frontend(expected: str | None, state: dict, source: str, prefix: str = "local.") -> None:
    """A clear error when `state` holds the other front end's weights (instead of a list of missing keys)."""
    found = frontend_of_state(state, prefix)
    if expected and found and found != expected:
        raise ValueError(
            f"{source} holds model.frontend={found} weights, but the model has model.frontend={expected}; "
            f"a {found} checkpoint cannot be loaded into a {expected} model (build the model from the "
            f"checkpoint's own model_config)"
        )


class EHMAMEncoder(nn.Module):
    """Front end (`local`: LocalEncoder or MelLocalEncoder) + ContextEncoder: the student, the SUPERB upstream."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.config = cfg
        self.local = MelLocalEncoder(cfg) if cfg.frontend == "mel" else LocalEncoder(cfg)
        self.context = ContextEncoder(cfg)
        init_weights(self)
        self._register_load_state_dict_pre_hook(self._check_frontend_before_load)

    def _check_frontend_before_load(self, state_dict, prefix, *args) -> None:
        check_frontend(self.config.frontend, state_dict, "load_state_dict", prefix=prefix + "local.")

    def extract_features(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """wav (B, S) normalised and zero-padded -> ([L+1] x (B, T, D) with padded frames zeroed, frame_lengths)."""
        features, frame_lengths = self.local(wav, wav_lengths)
        out = self.context(features, frame_lengths)
        pad = ~valid_mask(frame_lengths, features.shape[1])[..., None]  # (B, T, 1)
        return [h.masked_fill(pad, 0.0) for h in out.hidden_states], frame_lengths

    def truncate_layers(self, k: int) -> None:
        """Keep only the first k transformer blocks (drop the top ones, e.g. for SUPERB)."""
        n = len(self.context.blocks)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
            raise ValueError(f"num_layers must be an int in 1..{n}, found {k!r}")
        self.context.blocks = self.context.blocks[:k]
        self.config = self.local.config = self.context.config = dataclasses.replace(self.config, num_layers=k)


def normalize_waveform(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the whole (T,) utterance: fairseq `normalize: true` (a layer norm, eps 1e-5)."""
    return F.layer_norm(x, x.shape, eps=1e-5)


def normalize_waveforms(wavs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D float tensors, each normalised over its own samples, zero-padded: ((B, S) float32, lengths (B,))."""
    normed = [normalize_waveform(w.float()) for w in wavs]
    lengths = torch.tensor([w.shape[0] for w in normed], dtype=torch.long, device=normed[0].device)
    return nn.utils.rnn.pad_sequence(normed, batch_first=True), lengths


def init_weights(module: nn.Module) -> None:
    """The data2vec 2.0 init of a whole tree (docs/design.md "Encoder"), front ends re-initialised last."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, (LocalEncoder, MelLocalEncoder)):
            m.reset_parameters()


def random_init_encoder(cfg: EncoderConfig, seed: int) -> EHMAMEncoder:
    """An untrained encoder initialised as pretraining does, from `seed` (the caller's RNG state is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return EHMAMEncoder(cfg).eval()
