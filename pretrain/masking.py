"""Span masking for EH-MAM (method §6): the default sync-free "grid" mode and the authors' "release" mode.

The host draws every random number (`plan_grid_mask`, for a whole global batch; `MaskPlan.select_rows` gives
a process its rows); the device turns the plan and the teacher's predicted loss into a mask (`grid_mask`)
without reading anything back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F

# N_rand = floor(N * (1 - alpha)) is evaluated with this slack so that e.g. N = 100, alpha = 0.8 gives
# 20 random spans (as the formula means) and not 19 (1 - 0.8 = 0.19999999999999996 in binary).
_FLOOR_SLACK = 1e-9


def _check_common(frame_lengths: Sequence[int], mask_prob: float, span_length: int, alpha: float) -> list[int]:
    lengths = [int(t) for t in frame_lengths]
    if len(lengths) == 0:
        raise ValueError("frame_lengths is empty: need at least one row to mask")
    if any(t < 1 for t in lengths):
        raise ValueError(f"frame_lengths must all be >= 1, got min {min(lengths)}")
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
    if int(span_length) != span_length or span_length < 1:
        raise ValueError(f"span_length must be a positive integer, got {span_length}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (share of hard spans) must be in [0, 1], got {alpha}")
    return lengths


def num_hard_spans(num_spans: int, alpha: float) -> int:
    """N_hard = N - floor(N * (1 - alpha)) (method §6.1)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (share of hard spans) must be in [0, 1], got {alpha}")
    return num_spans - math.floor(num_spans * (1.0 - alpha) + _FLOOR_SLACK)


def span_counts(frame_lengths: Sequence[int], mask_prob: float, span_length: int,
                generator: torch.Generator) -> list[int]:
    """N_b = max(1, floor(P * T_b / L + U_b)) per row, U_b ~ U[0, 1) drawn from `generator` (one draw per row)."""
    lengths = _check_common(frame_lengths, mask_prob, span_length, 0.0)
    u = torch.rand(len(lengths), generator=generator, dtype=torch.float64, device=generator.device).cpu()
    return [max(1, math.floor(mask_prob * t / span_length + float(ub))) for t, ub in zip(lengths, u)]


@dataclass
class MaskPlan:
    """Host-drawn randomness for one batch of R rows (R = B * clones); the device code is deterministic given it."""

    num_frames: int  # T, padded length of the batch
    span_length: int  # L
    num_spans: int  # N, equal for all rows (min over the batch)
    num_hard: int  # N_hard = N - floor(N * (1 - alpha))
    num_cells: int  # C, grid cells per row (min over the batch)
    offsets: torch.Tensor  # (R,) int64 grid offsets phi in [0, L)
    cell_scores: torch.Tensor  # (R, C) uniform scores that pick the random cells

    @property
    def num_masked(self) -> int:
        return self.num_spans * self.span_length

    @property
    def num_visible(self) -> int:
        return self.num_frames - self.num_masked

    def to(self, device: torch.device | str) -> "MaskPlan":
        return replace(self, offsets=self.offsets.to(device, non_blocking=True),
                       cell_scores=self.cell_scores.to(device, non_blocking=True))

    def select_rows(self, rows: Sequence[int]) -> "MaskPlan":
        """The plan of some rows only: a process of a DDP run takes its rows of the global batch's plan.

        N, N_hard and C stay those of the whole plan, so every process masks the same count per row and
        N runs, as a single process would compute it, as the minimum over the global batch.
        """
        index = torch.as_tensor(list(rows), dtype=torch.long)
        if index.numel() == 0 or int(index.min()) < 0 or int(index.max()) >= self.offsets.shape[0]:
            raise ValueError(f"rows must be a non-empty selection of 0..{self.offsets.shape[0] - 1}, got {list(rows)}")
        return replace(self, offsets=self.offsets[index], cell_scores=self.cell_scores[index])

    def pin_memory(self) -> "MaskPlan":
        # DataLoader(pin_memory=True) calls this, so the later non_blocking copy is truly asynchronous.
        return replace(self, offsets=self.offsets.pin_memory(), cell_scores=self.cell_scores.pin_memory())


def plan_grid_mask(frame_lengths: Sequence[int], mask_prob: float, span_length: int, alpha: float,
                   generator: torch.Generator, *, num_frames: int | None = None) -> MaskPlan:
    """Draw the grid-mask plan (method §6.2) for rows with the given valid lengths.

    Draw order from `generator`: U_b (R,) float64, then offsets (R,), then cell scores (R, C).
    `num_frames` is the padded length T (default: max(frame_lengths)).
    """
    lengths = _check_common(frame_lengths, mask_prob, span_length, alpha)
    L = int(span_length)
    T = max(lengths) if num_frames is None else int(num_frames)
    if T < max(lengths):
        raise ValueError(f"num_frames={T} is shorter than the longest row ({max(lengths)} frames)")
    counts = span_counts(lengths, mask_prob, L, generator)
    N = min(counts)
    t_min = min(lengths)
    C = (t_min - (L - 1)) // L
    if N > C:
        raise ValueError(
            f"grid mask needs N={N} spans of L={L} frames but the shortest row (T={t_min} frames) only has "
            f"C=floor((T-(L-1))/L)={C} cells (mask_prob={mask_prob}); use longer crops or a smaller mask_prob")
    R = len(lengths)
    offsets = torch.randint(0, L, (R,), generator=generator, device=generator.device).cpu()
    cell_scores = torch.rand(R, C, generator=generator, device=generator.device).cpu()
    return MaskPlan(num_frames=T, span_length=L, num_spans=N, num_hard=num_hard_spans(N, alpha),
                    num_cells=C, offsets=offsets, cell_scores=cell_scores)


def grid_mask(predicted_loss: torch.Tensor | None, plan: MaskPlan) -> torch.Tensor:
    """Grid mask (R, T), True = masked: top-N_hard cells by mean predicted loss, the rest random. No host sync."""
    R, C, L, T = plan.offsets.shape[0], plan.num_cells, plan.span_length, plan.num_frames
    device = plan.offsets.device
    if plan.cell_scores.shape != (R, C):
        raise ValueError(f"plan.cell_scores has shape {tuple(plan.cell_scores.shape)}, expected {(R, C)}")
    if not 1 <= plan.num_spans <= C or not 0 <= plan.num_hard <= plan.num_spans:
        raise ValueError(f"inconsistent plan: num_spans={plan.num_spans}, num_hard={plan.num_hard}, num_cells={C}")
    starts = plan.offsets[:, None] + torch.arange(C, device=device) * L  # (R, C) first frame of each cell

    if predicted_loss is not None:
        if predicted_loss.shape != (R, T):
            raise ValueError(f"predicted_loss has shape {tuple(predicted_loss.shape)}, expected (R, T)={(R, T)}")
        if predicted_loss.device != device:
            raise ValueError(f"predicted_loss is on {predicted_loss.device} but the plan is on {device}; "
                             "call plan.to(device) first")
    elif plan.num_hard > 0:
        raise ValueError(f"plan has num_hard={plan.num_hard} hard spans but predicted_loss is None")

    scores = plan.cell_scores.clone()  # (R, C)
    hard = None
    if plan.num_hard > 0:
        window_mean = F.avg_pool1d(predicted_loss.detach().float()[:, None, :], L, stride=1)[:, 0]  # (R, T-L+1)
        cell_loss = window_mean.gather(1, starts)  # (R, C) mean predicted loss over each cell
        hard = cell_loss.topk(plan.num_hard, dim=1).indices  # (R, N_hard)
        scores.scatter_(1, hard, float("-inf"))
    rand = scores.topk(plan.num_spans - plan.num_hard, dim=1).indices  # (R, N_rand)
    cells = rand if hard is None else torch.cat([hard, rand], dim=1)  # (R, N)
    frames = (plan.offsets[:, None, None] + cells[:, :, None] * L
              + torch.arange(L, device=device)).reshape(R, -1)  # (R, N*L)
    mask = torch.zeros(R, T, dtype=torch.bool, device=device)
    return mask.scatter_(1, frames, True)


def release_mask(predicted_loss: torch.Tensor | None, frame_lengths: Sequence[int], mask_prob: float,
                 span_length: int, alpha: float, generator: torch.Generator) -> torch.Tensor:
    """The authors' span sampler (method §6.3), rows equalised to the batch-min count. Reads one scalar to the host.

    Draw order from `generator`: U_b (R,), candidate scores (R, T), trim scores (R, T).
    """
    lengths = _check_common(frame_lengths, mask_prob, span_length, alpha)
    L, R = int(span_length), len(lengths)
    T = max(lengths) if predicted_loss is None else predicted_loss.shape[1]
    device = torch.device("cpu") if predicted_loss is None else predicted_loss.device
    if predicted_loss is not None and predicted_loss.shape[0] != R:
        raise ValueError(f"predicted_loss has {predicted_loss.shape[0]} rows but frame_lengths has {R}")
    if T < max(lengths):
        raise ValueError(f"predicted_loss has T={T} frames, shorter than the longest row ({max(lengths)})")
    n_spans = span_counts(lengths, mask_prob, L, generator)
    n_hard = [num_hard_spans(n, alpha) for n in n_spans]
    for t, n in zip(lengths, n_spans):
        if t - L < n:
            raise ValueError(f"release mask: a row of T={t} frames has only T-L={t - L} candidate starts "
                             f"for N={n} spans of L={L}; use longer crops")
    positions = torch.arange(T, device=device)  # (T,)
    valid = positions < torch.tensor(lengths, device=device)[:, None]  # (R, T)

    # 1. hard starts: the N_hard_b highest predicted frames per row, padding excluded.
    hard_starts = torch.zeros(R, T, dtype=torch.bool, device=device)
    if max(n_hard) > 0:
        if predicted_loss is None:
            raise ValueError(f"alpha={alpha} asks for hard spans but predicted_loss is None")
        ranked = predicted_loss.detach().float().masked_fill(~valid, float("-inf")).argsort(dim=1, descending=True)
        take = torch.arange(T, device=device) < torch.tensor(n_hard, device=device)[:, None]  # (R, T)
        hard_starts.scatter_(1, ranked, take)

    # 2. random starts: N_b candidates from {0..T_b-L-1} (a uniform random order), minus hard starts, first N_rand_b.
    cand_scores = torch.rand(R, T, generator=generator, device=generator.device).to(device)
    in_range = positions < torch.tensor([t - L for t in lengths], device=device)[:, None]  # (R, T)
    order = cand_scores.masked_fill(~in_range, -1.0).argsort(dim=1, descending=True)  # (R, T)
    is_candidate = positions < torch.tensor(n_spans, device=device)[:, None]  # first N_b of the order
    kept = is_candidate & ~hard_starts.gather(1, order)
    n_rand = torch.tensor([n - h for n, h in zip(n_spans, n_hard)], device=device)[:, None]
    chosen = kept & (kept.cumsum(dim=1) <= n_rand)  # (R, T) in "order" coordinates
    random_starts = torch.zeros(R, T, dtype=torch.bool, device=device).scatter_(1, order, chosen)

    # 3. union of right-extending spans, clipped to valid frames.
    starts = (hard_starts | random_starts).to(torch.int8)
    mask = starts.clone()
    for shift in range(1, L):
        mask[:, shift:] |= starts[:, :-shift]
    mask = mask.bool() & valid

    # 4. equalise to the batch minimum by keeping a uniformly random subset of each row's masked frames.
    trim_scores = torch.rand(R, T, generator=generator, device=generator.device).to(device)
    min_count = int(mask.sum(dim=1).min().item())  # the one host sync of this ablation mode
    keep = trim_scores.masked_fill(~mask, -1.0).topk(min_count, dim=1).indices
    return torch.zeros(R, T, dtype=torch.bool, device=device).scatter_(1, keep, True)


def visible_indices(mask: torch.Tensor, num_visible: int) -> torch.Tensor:
    """(R, num_visible) ascending positions of the unmasked frames; every row must have num_visible of them."""
    if mask.dim() != 2 or not 0 <= num_visible <= mask.shape[1]:
        raise ValueError(f"need a (R, T) mask and 0 <= num_visible <= T, got {tuple(mask.shape)}, {num_visible}")
    # A stable sort puts the 0s (visible) first, in their original, ascending order.
    return torch.sort(mask.to(torch.int8), dim=1, stable=True).indices[:, :num_visible]


def masked_indices(mask: torch.Tensor, num_masked: int) -> torch.Tensor:
    """(R, num_masked) ascending positions of the masked frames; every row must have num_masked of them."""
    if mask.dim() != 2 or not 0 <= num_masked <= mask.shape[1]:
        raise ValueError(f"need a (R, T) mask and 0 <= num_masked <= T, got {tuple(mask.shape)}, {num_masked}")
    return torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :num_masked]
