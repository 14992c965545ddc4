"""Student heads (method §3.8-§3.10): conv regression decoder, conv loss predictor, mask-token insertion."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBlock(nn.Module):
    """Conv1d -> LayerNorm over channels (no affine) -> GELU, plus a residual when in and out widths match."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, groups: int):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd so the length is kept, got {kernel_size}")
        if in_dim % groups or out_dim % groups:
            raise ValueError(f"groups={groups} must divide both widths {in_dim} and {out_dim}")
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, padding=kernel_size // 2, groups=groups)
        self.norm = nn.LayerNorm(out_dim, elementwise_affine=False)
        self.residual = in_dim == out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, C_out, T)
        y = self.conv(x).transpose(1, 2)  # (B, T, C_out) so LayerNorm normalises channels
        y = F.gelu(self.norm(y)).transpose(1, 2)  # (B, C_out, T)
        return x + y if self.residual else y


class ConvStack(nn.Module):
    """Input dropout (its own draw, out of place) then `depth` conv blocks: embed -> dec, then dec -> dec."""

    def __init__(self, embed_dim: int, decoder_dim: int, kernel_size: int, groups: int, depth: int,
                 input_dropout: float):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.input_dropout = input_dropout
        widths = [embed_dim] + [decoder_dim] * depth
        self.blocks = nn.ModuleList(ConvBlock(i, o, kernel_size, groups) for i, o in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, dec)
        # Out of place: the two heads read the same tensor and must each draw their own dropout (method §14.7).
        x = F.dropout(x, self.input_dropout, self.training).transpose(1, 2)  # (B, D, T)
        for block in self.blocks:
            x = block(x)
        return x.transpose(1, 2)  # (B, T, dec)


class ConvDecoder(nn.Module):
    """Regression decoder (§3.8): conv stack -> Linear(dec -> embed_dim); read at masked frames to get y_hat."""

    def __init__(self, embed_dim: int = 768, decoder_dim: int = 384, kernel_size: int = 7, groups: int = 16,
                 depth: int = 4, input_dropout: float = 0.1):
        super().__init__()
        self.stack = ConvStack(embed_dim, decoder_dim, kernel_size, groups, depth, input_dropout)
        self.proj = nn.Linear(decoder_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch default init for every conv and the output Linear (§3.10); call after a whole-model BERT init."""
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear, nn.LayerNorm)):
                module.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        return self.proj(self.stack(x))


class LossPredictor(nn.Module):
    """Loss predictor (§3.9): conv stack -> LayerNorm(dec, affine) -> Linear(dec -> embed_dim) -> channel mean."""

    def __init__(self, embed_dim: int = 768, decoder_dim: int = 384, kernel_size: int = 7, groups: int = 16,
                 depth: int = 4, input_dropout: float = 0.1):
        super().__init__()
        self.stack = ConvStack(embed_dim, decoder_dim, kernel_size, groups, depth, input_dropout)
        self.norm = nn.LayerNorm(decoder_dim)
        self.proj = nn.Linear(decoder_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialised like the decoder (project choice, §3.10): PyTorch defaults; LayerNorm weight 1, bias 0."""
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear, nn.LayerNorm)):
                module.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T)
        return self.proj(self.norm(self.stack(x))).mean(dim=-1)


def insert_mask_tokens(visible: torch.Tensor, visible_idx: torch.Tensor, num_frames: int, noise_std: float,
                       generator: torch.Generator | None) -> torch.Tensor:
    """(R, T, D): visible frames scattered back to their positions, N(0, noise_std^2) noise elsewhere. No sync.

    The noise is drawn on visible.device, so `generator` must live there (a CUDA generator for CUDA tensors);
    None uses the global RNG of that device.
    """
    if visible.dim() != 3 or visible_idx.shape != visible.shape[:2]:
        raise ValueError(f"visible must be (R, Tv, D) and visible_idx (R, Tv), got {tuple(visible.shape)} "
                         f"and {tuple(visible_idx.shape)}")
    R, Tv, D = visible.shape
    if Tv > num_frames:
        raise ValueError(f"{Tv} visible frames do not fit in num_frames={num_frames}")
    if generator is not None and generator.device.type != visible.device.type:
        raise ValueError(f"generator is on {generator.device} but visible is on {visible.device}")
    noise = torch.randn(R, num_frames, D, generator=generator, device=visible.device, dtype=visible.dtype)
    return noise.mul_(noise_std).scatter(1, visible_idx[:, :, None].expand(R, Tv, D), visible)
