"""Losses (docs/design.md "Losses"): per-frame L2 regression loss, the pairwise ranking loss of the predictor,
Spearman rho."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def regression_loss_per_frame(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) fp32: sum_d (prediction - target)^2 / sqrt(D)."""
    if prediction.shape != target.shape or prediction.dim() != 2:
        raise ValueError(
            f"prediction and target must both be (N, D), got {tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    return (prediction.float() - target.float()).square().sum(dim=-1) / math.sqrt(prediction.shape[-1])


def ranking_loss(scores: torch.Tensor, realised: torch.Tensor, norm: str = "pair_mean") -> torch.Tensor:
    """Pairwise logistic (RankNet) loss over ordered pairs of a row's masked frames, ties contributing nothing,
    normalised by `norm` (docs/design.md "Losses": pair_mean, sum or flat_batch_mean)."""
    if scores.shape != realised.shape or scores.dim() != 2:
        raise ValueError(
            f"scores and realised must both be (R, M), got {tuple(scores.shape)} and {tuple(realised.shape)}"
        )
    p, ell = scores.float(), realised.detach().float()
    if norm == "flat_batch_mean":
        p, ell = p.reshape(1, -1), ell.reshape(1, -1)
    # [b, i, j] = value_j - value_i over ordered pairs within a row
    order = torch.sign(ell[:, None, :] - ell[:, :, None])  # (R, M, M): +1 if l_j > l_i, -1 if l_j < l_i, 0 tie
    margin = p[:, None, :] - p[:, :, None]  # (R, M, M)
    total = -(F.logsigmoid(order * margin) * order.abs()).sum()  # log(1 - sigma(z)) = logsigmoid(-z)
    return total if norm == "sum" else total / order.abs().sum().clamp(min=1.0)


def spearman_rho(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """0-dim tensor: mean over rows of the Spearman rank correlation of x and y (R, M), no host sync; ties get
    distinct, arbitrary ranks, so it matches scipy only on tie-free rows."""
    if x.shape != y.shape or x.dim() != 2 or x.shape[1] < 2:
        raise ValueError(f"x and y must both be (R, M) with M >= 2, got {tuple(x.shape)} and {tuple(y.shape)}")
    rx, ry = (v.detach().argsort(dim=1).argsort(dim=1).float() for v in (x, y))  # ranks by double argsort
    rx, ry = rx - rx.mean(dim=1, keepdim=True), ry - ry.mean(dim=1, keepdim=True)
    rho = (rx * ry).sum(dim=1) / (rx.square().sum(dim=1) * ry.square().sum(dim=1)).sqrt()
    return rho.mean()


def hardness_lift(realised: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """0-dim tensor: per row, the mean realised loss of the masked frames in hard-picked spans over that of the
    masked frames in randomly picked spans, averaged over the rows that have both (NaN when none does); 1.0 = the
    hard spans are no harder than chance. realised (R, M) and hard (R, M) bool at the same masked frames."""
    if realised.shape != hard.shape or realised.dim() != 2:
        raise ValueError(f"realised and hard must both be (R, M), got {tuple(realised.shape)} and {tuple(hard.shape)}")
    loss, hard = realised.detach().float(), hard.float()
    easy = 1.0 - hard
    hard_mean = (loss * hard).sum(dim=1) / hard.sum(dim=1)  # NaN (0/0) in a row without hard frames
    random_mean = (loss * easy).sum(dim=1) / easy.sum(dim=1)
    return torch.nanmean(hard_mean / random_mean)


def span_means(x: torch.Tensor, span_length: int) -> torch.Tensor:
    """(R, M) values at masked frames that form whole spans of L in order -> (R, M / L) mean per span."""
    R, M = x.shape
    if M % span_length:
        raise ValueError(f"{M} masked frames per row do not form whole spans of {span_length}")
    return x.reshape(R, M // span_length, span_length).float().mean(dim=2)
