"""Student heads (docs/design.md "Heads"): the conv regression decoder and the conv loss predictor, which share
one construction, and mask-token insertion."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBlock(nn.Module):
    """Conv1d -> LayerNorm over channels (no affine) -> GELU, plus a residual when in and out widths match."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, padding=kernel_size // 2, groups=groups)
        self.norm = nn.LayerNorm(out_dim, elementwise_affine=False)
        self.residual = in_dim == out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, C_out, T)
        y = self.conv(x).transpose(1, 2)  # (B, T, C_out) so LayerNorm normalises channels
        y = F.gelu(self.norm(y)).transpose(1, 2)  # (B, C_out, T)
        return x + y if self.residual else y


class ConvStack(nn.Module):
    """Input dropout (its own draw, out of place) then `depth` conv blocks: embed -> dec, then dec -> dec."""

    def __init__(
        self, embed_dim: int, decoder_dim: int, kernel_size: int, groups: int, depth: int, input_dropout: float
    ):
        super().__init__()
        self.input_dropout = input_dropout
        widths = [embed_dim] + [decoder_dim] * depth
        self.blocks = nn.ModuleList(ConvBlock(i, o, kernel_size, groups) for i, o in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, dec)
        # Out of place: the two heads read the same tensor and must each draw their own dropout.
        x = F.dropout(x, self.input_dropout, self.training).transpose(1, 2)  # (B, D, T)
        for block in self.blocks:
            x = block(x)
        return x.transpose(1, 2)  # (B, T, dec)


class ConvHead(nn.Module):
    """Conv stack -> LayerNorm(dec) if `with_norm` -> Linear(dec -> embed_dim); PyTorch's default init throughout."""

    with_norm = False

    def __init__(
        self,
        embed_dim: int = 768,
        decoder_dim: int = 384,
        kernel_size: int = 7,
        groups: int = 16,
        depth: int = 4,
        input_dropout: float = 0.1,
    ):
        super().__init__()
        self.stack = ConvStack(embed_dim, decoder_dim, kernel_size, groups, depth, input_dropout)
        self.norm = nn.LayerNorm(decoder_dim) if self.with_norm else nn.Identity()
        self.proj = nn.Linear(decoder_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Undo the encoder's BERT init on the heads: call after a whole-model init."""
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear, nn.LayerNorm)):
                module.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        return self.proj(self.norm(self.stack(x)))


class ConvDecoder(ConvHead):
    """Regression decoder: (B, T, D) -> (B, T, D); read at the masked frames to get y_hat."""


class LossPredictor(ConvHead):
    """Loss predictor: (B, T, D) -> (B, T), the channel mean of LayerNorm(dec, affine) -> Linear."""

    with_norm = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).mean(dim=-1)


def insert_mask_tokens(
    visible: torch.Tensor,
    visible_idx: torch.Tensor,
    num_frames: int,
    noise_std: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """(R, T, D): visible frames (R, Tv, D) scattered back to their positions, N(0, noise_std^2) noise elsewhere,
    drawn on visible.device from `generator` (None: that device's global RNG)."""
    R, Tv, D = visible.shape
    noise = torch.randn(R, num_frames, D, generator=generator, device=visible.device, dtype=visible.dtype)
    return noise.mul_(noise_std).scatter(1, visible_idx[:, :, None].expand(R, Tv, D), visible)
