"""ALiBi attention for the context encoder (docs/design.md "Encoder"): slopes, the additive bias (built once per
forward in the compute dtype, shared by all blocks), and the post-LN block."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig

# CUDA SDPA (memory-efficient kernel) pads, i.e. copies, a float mask whose strides are not multiples of 8
# elements; allocating the key dimension rounded up to 16 avoids that copy in every block.
_MASK_ALIGNMENT = 16


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi head slopes (H,), as docs/design.md "Encoder" says: the 2^(-8i/n) sequence for the largest power of two
    n <= H heads, then every other slope of the sequence for 2n heads."""
    if num_heads <= 0:
        raise ValueError(f"num_heads must be positive, found {num_heads}")
    below = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = [2.0 ** (-8.0 * (i + 1) / below) for i in range(below)]
    slopes += [2.0 ** (-8.0 * (i + 1) / (2 * below)) for i in range(0, 2 * (num_heads - below), 2)]
    return torch.tensor(slopes, dtype=torch.float32)


def attention_bias(
    positions: torch.Tensor, key_valid: torch.Tensor, head_scales: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Additive float mask (B, H, T, T) for SDPA: -head_scales[h] * |p_i - p_j| from positions (B or 1, T), -inf at
    keys not in key_valid (B, T); a row without any valid key attends to all keys so it stays finite."""
    B, T = key_valid.shape
    T_alloc = -(-T // _MASK_ALIGNMENT) * _MASK_ALIGNMENT
    key_positions = F.pad(positions, (0, T_alloc - T))  # (B|1, T_alloc)
    key_valid = key_valid | ~key_valid.any(dim=1, keepdim=True)
    key_valid = F.pad(key_valid, (0, T_alloc - T), value=False)  # (B, T_alloc)
    distance = (positions[:, :, None] - key_positions[:, None, :]).abs().to(dtype)  # (B|1, T, T_alloc)
    bias = distance[:, None] * (-head_scales.to(dtype))[None, :, None, None]  # (B|1, H, T, T_alloc)
    bias = bias.masked_fill(~key_valid[:, None, None, :], float("-inf"))  # (B, H, T, T_alloc)
    return bias[..., :T]


class TransformerBlock(nn.Module):
    """Post-LN block: h1 = LN1(h + Drop(Attn(h))); f = FFN(h1); out = LN2(h1 + Drop(f)). Returns (out, f)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        D = cfg.embed_dim
        self.num_heads = cfg.num_heads
        self.attention_dropout = cfg.attention_dropout
        self.qkv = nn.Linear(D, 3 * D)
        self.out_proj = nn.Linear(D, D)
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm1 = nn.LayerNorm(D, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(D, cfg.ffn_dim)
        self.activation_dropout = nn.Dropout(cfg.activation_dropout)
        self.fc2 = nn.Linear(cfg.ffn_dim, D)
        self.norm2 = nn.LayerNorm(D, eps=cfg.layer_norm_eps)

    def attention(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        H = self.num_heads
        q, k, v = self.qkv(x).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)  # each (B, H, T, D/H)
        p = self.attention_dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=p)  # (B, H, T, D/H)
        return self.out_proj(a.transpose(1, 2).reshape(B, T, D))

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = self.norm1(x + self.dropout(self.attention(x, attn_bias)))
        # target tap: the FFN output before residual and LN2
        f = self.fc2(self.activation_dropout(F.gelu(self.fc1(h1))))
        return self.norm2(h1 + self.dropout(f)), f
