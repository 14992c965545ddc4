"""Regression targets (docs/design.md "Targets"): the average of the instance-normalised FFN outputs of the top-K
teacher blocks."""

from __future__ import annotations

from typing import Sequence

import torch

_EPS = 1e-5


def make_targets(ffn_outputs: Sequence[torch.Tensor], frame_lengths: torch.Tensor, top_k: int) -> torch.Tensor:
    """(B, T, D) fp32 targets; statistics over valid frames only (biased variance, eps 1e-5); padded frames are 0."""
    shape = ffn_outputs[-1].shape
    if len(shape) != 3 or any(a.shape != shape for a in ffn_outputs):
        raise ValueError(f"ffn_outputs must all be (B, T, D) of one shape, got {[tuple(a.shape) for a in ffn_outputs]}")
    B, T, _ = shape
    if frame_lengths.shape != (B,):
        raise ValueError(f"frame_lengths has shape {tuple(frame_lengths.shape)}, expected ({B},)")
    device = ffn_outputs[-1].device
    lengths = frame_lengths.to(device)
    valid = (torch.arange(T, device=device) < lengths[:, None]).unsqueeze(-1).float()  # (B, T, 1)
    count = lengths.to(torch.float32).clamp(min=1.0)[:, None, None]  # (B, 1, 1)
    y = torch.zeros(shape, dtype=torch.float32, device=device)
    for a in ffn_outputs[-top_k:]:
        a = a.float() * valid  # (B, T, D), padded frames out of the statistics
        mean = a.sum(dim=1, keepdim=True) / count  # (B, 1, D)
        var = ((a - mean) * valid).square().sum(dim=1, keepdim=True) / count  # (B, 1, D) biased
        y += (a - mean) * torch.rsqrt(var + _EPS)
    return y.div_(top_k).mul_(valid)
