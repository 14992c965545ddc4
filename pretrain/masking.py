"""Span masking (docs/design.md "Masking"): `draw_mask_plan` draws a step's mask randomness on the host; a plan's
`mask` turns it and the predicted loss into the mask on the device (grid: no host sync)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from .mask_budget import expected_masked_frames

# N_rand = floor(N * (1 - alpha)) is evaluated with this slack so that e.g. N = 100, alpha = 0.8 gives
# 20 random spans (as the formula means) and not 19 (1 - 0.8 = 0.19999999999999996 in binary).
_FLOOR_SLACK = 1e-9


def num_hard_spans(num_spans: int, alpha: float) -> int:
    """N_hard = N - floor(N * (1 - alpha))."""
    return num_spans - math.floor(num_spans * (1.0 - alpha) + _FLOOR_SLACK)


class DrawnMask(NamedTuple):
    """A step's mask on the device: which frames are masked, which of those lie in hard-picked spans, and the
    masked count per row (host-known). `span_length` is L when the masked frames, in ascending order, form whole
    spans of L (the grid), else None (the release sampler's spans overlap and are trimmed)."""

    mask: torch.Tensor  # (R, T) bool
    hard: torch.Tensor  # (R, T) bool, a subset of mask
    num_masked: int
    span_length: int | None


def span_counts(
    frame_lengths: Sequence[int], mask_prob: float, span_length: int, generator: torch.Generator
) -> list[int]:
    """N_b = max(1, floor(P * T_b / L + U_b)) per row, U_b ~ U[0, 1) drawn from `generator` (one draw per row)."""
    u = torch.rand(len(frame_lengths), generator=generator, dtype=torch.float64, device=generator.device).cpu()
    return [max(1, math.floor(mask_prob * int(t) / span_length + float(ub))) for t, ub in zip(frame_lengths, u)]


@dataclass
class GridMaskPlan:
    """Host-drawn randomness of the grid sampler for R rows; the device code is deterministic given it."""

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

    def to(self, device: torch.device | str) -> "GridMaskPlan":
        return replace(
            self,
            offsets=self.offsets.to(device, non_blocking=True),
            cell_scores=self.cell_scores.to(device, non_blocking=True),
        )

    def select_rows(self, rows: Sequence[int]) -> "GridMaskPlan":
        """Some rows of the plan, with N, N_hard and C of the whole plan: a DDP process keeps its rows of the
        global batch's plan, so every process masks the count a single process would."""
        index = torch.as_tensor(list(rows), dtype=torch.long)
        return replace(self, offsets=self.offsets[index], cell_scores=self.cell_scores[index])

    def mask(self, predicted_loss: torch.Tensor | None, device: torch.device) -> DrawnMask:
        mask, hard = grid_mask_with_hard(predicted_loss, self.to(device))
        return DrawnMask(mask, hard, self.num_masked, self.span_length)


BUDGETS = ("overlapping", "exact")


def grid_span_count(
    frame_lengths: Sequence[int], mask_prob: float, span_length: int, budget: str, generator: torch.Generator
) -> int:
    """N, the spans of every row. `exact`: the minimum over rows of N_b = max(1, floor(P T_b / L + U_b)), i.e. a
    share of about P. `overlapping`: N = max(1, floor(E / L + U)) with one U for the plan, where E is the count
    data2vec 2.0's overlapping sampler masks per row on rows of these lengths in expectation
    (`expected_masked_frames`), so that the grid masks the same share."""
    if budget == "exact":
        return min(span_counts(frame_lengths, mask_prob, span_length, generator))
    if budget != "overlapping":
        raise ValueError(f"mask.budget must be one of {', '.join(BUDGETS)}, found {budget!r}")
    expected = expected_masked_frames([int(t) for t in frame_lengths], float(mask_prob), int(span_length))
    u = float(torch.rand((), generator=generator, dtype=torch.float64, device=generator.device))
    return max(1, math.floor(expected / span_length + u))


def plan_grid_mask(
    frame_lengths: Sequence[int],
    mask_prob: float,
    span_length: int,
    alpha: float,
    generator: torch.Generator,
    *,
    num_frames: int | None = None,
    budget: str = "exact",
) -> GridMaskPlan:
    """The grid plan for rows of these valid lengths padded to `num_frames` (default: the longest). Draw order
    from `generator`: the count's U (`grid_span_count`), then offsets (R,), then cell scores (R, C)."""
    L = int(span_length)
    T = max(frame_lengths) if num_frames is None else int(num_frames)
    N = grid_span_count(frame_lengths, mask_prob, L, budget, generator)
    t_min = min(frame_lengths)
    C = (t_min - (L - 1)) // L
    if N > C:  # the data, not the config: a crop shorter than data.min_samples allows
        raise ValueError(
            f"grid mask needs N={N} spans of L={L} frames but the shortest row (T={t_min} frames) only "
            f"has C=floor((T-(L-1))/L)={C} cells (mask_prob={mask_prob}); use longer crops or a smaller "
            f"mask_prob"
        )
    R = len(frame_lengths)
    offsets = torch.randint(0, L, (R,), generator=generator, device=generator.device).cpu()
    cell_scores = torch.rand(R, C, generator=generator, device=generator.device).cpu()
    return GridMaskPlan(
        num_frames=T,
        span_length=L,
        num_spans=N,
        num_hard=num_hard_spans(N, alpha),
        num_cells=C,
        offsets=offsets,
        cell_scores=cell_scores,
    )


def grid_mask(predicted_loss: torch.Tensor | None, plan: GridMaskPlan) -> torch.Tensor:
    """Grid mask (R, T), True = masked: top-N_hard cells by mean predicted loss, the rest random. No host sync."""
    return grid_mask_with_hard(predicted_loss, plan)[0]


def grid_mask_with_hard(predicted_loss: torch.Tensor | None, plan: GridMaskPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """(grid mask, its hard-picked frames), both (R, T) bool."""
    R, C, L, T = plan.offsets.shape[0], plan.num_cells, plan.span_length, plan.num_frames
    device = plan.offsets.device
    if plan.num_hard > 0 and predicted_loss is None:
        raise ValueError(f"plan has num_hard={plan.num_hard} hard spans but predicted_loss is None")
    starts = plan.offsets[:, None] + torch.arange(C, device=device) * L  # (R, C) first frame of each cell
    scores = plan.cell_scores.clone()  # (R, C)
    hard = None
    if plan.num_hard > 0:
        window_mean = F.avg_pool1d(predicted_loss.detach().float()[:, None, :], L, stride=1)[:, 0]  # (R, T-L+1)
        cell_loss = window_mean.gather(1, starts)  # (R, C) mean predicted loss over each cell
        hard = cell_loss.topk(plan.num_hard, dim=1).indices  # (R, N_hard)
        scores.scatter_(1, hard, float("-inf"))
    rand = scores.topk(plan.num_spans - plan.num_hard, dim=1).indices  # (R, N_rand)
    cells = rand if hard is None else torch.cat([hard, rand], dim=1)  # (R, N)
    frames = (plan.offsets[:, None, None] + cells[:, :, None] * L + torch.arange(L, device=device)).reshape(
        R, -1
    )  # (R, N*L), the hard cells' frames first
    mask = torch.zeros(R, T, dtype=torch.bool, device=device).scatter_(1, frames, True)
    hard_frames = torch.zeros(R, T, dtype=torch.bool, device=device).scatter_(1, frames[:, : plan.num_hard * L], True)
    return mask, hard_frames


@dataclass
class ReleaseMaskPlan:
    """Host-drawn randomness of the authors' span sampler (`release.span_sampler`) for R rows."""

    frame_lengths: list[int]  # valid frames per row
    span_length: int  # L
    num_spans: list[int]  # N_b per row
    num_hard: list[int]  # N_hard_b per row
    candidate_scores: torch.Tensor  # (R, T) uniform: a random order of the candidate starts
    trim_scores: torch.Tensor  # (R, T) uniform: which masked frames survive the batch-min trim

    def mask(self, predicted_loss: torch.Tensor | None, device: torch.device) -> DrawnMask:
        """Reads the masked count to the host (the one sync); hard = masked frames inside a hard-started span."""
        mask, hard_starts = release_mask_with_hard_starts(predicted_loss, self, device)
        return DrawnMask(mask, spans_from_starts(hard_starts, self.span_length) & mask, int(mask[0].sum()), None)


def plan_release_mask(
    frame_lengths: Sequence[int],
    mask_prob: float,
    span_length: int,
    alpha: float,
    generator: torch.Generator,
    *,
    num_frames: int | None = None,
) -> ReleaseMaskPlan:
    """Draw order from `generator`: U_b (R,), candidate scores (R, T), trim scores (R, T)."""
    lengths, L = [int(t) for t in frame_lengths], int(span_length)
    n_spans = span_counts(lengths, mask_prob, L, generator)
    for t, n in zip(lengths, n_spans):
        if t - L < n:
            raise ValueError(
                f"release mask: a row of T={t} frames has only T-L={t - L} candidate starts "
                f"for N={n} spans of L={L}; use longer crops"
            )
    shape = (len(lengths), max(lengths) if num_frames is None else int(num_frames))
    candidates = torch.rand(*shape, generator=generator, device=generator.device)
    trims = torch.rand(*shape, generator=generator, device=generator.device)
    return ReleaseMaskPlan(lengths, L, n_spans, [num_hard_spans(n, alpha) for n in n_spans], candidates, trims)


def spans_from_starts(starts: torch.Tensor, span_length: int) -> torch.Tensor:
    """(R, T) bool: the union of the right-extending spans of L frames from each True of `starts`."""
    starts = starts.to(torch.int8)
    spans = starts.clone()
    for shift in range(1, span_length):
        spans[:, shift:] |= starts[:, :-shift]
    return spans.bool()


def release_mask(
    predicted_loss: torch.Tensor | None, plan: ReleaseMaskPlan, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The authors' sampler, rows equalised to the batch-min count: (R, T) True = masked; one host read."""
    return release_mask_with_hard_starts(predicted_loss, plan, device)[0]


def release_mask_with_hard_starts(
    predicted_loss: torch.Tensor | None, plan: ReleaseMaskPlan, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the release sampler's mask, its hard span starts), both (R, T) bool."""
    lengths, L, n_hard = plan.frame_lengths, plan.span_length, plan.num_hard
    R, T = plan.candidate_scores.shape
    positions = torch.arange(T, device=device)  # (T,)
    valid = positions < torch.tensor(lengths, device=device)[:, None]  # (R, T)
    # 1. hard starts: the N_hard_b highest predicted frames per row, padding excluded.
    hard_starts = torch.zeros(R, T, dtype=torch.bool, device=device)
    if max(n_hard) > 0:
        if predicted_loss is None:
            raise ValueError(f"the plan asks for {max(n_hard)} hard spans but predicted_loss is None")
        ranked = predicted_loss.detach().float().masked_fill(~valid, float("-inf")).argsort(dim=1, descending=True)
        take = positions < torch.tensor(n_hard, device=device)[:, None]  # (R, T)
        hard_starts.scatter_(1, ranked, take)
    # 2. random starts: N_b candidates from {0..T_b-L-1} (a uniform random order), minus hard starts, first N_rand_b.
    in_range = positions < torch.tensor([t - L for t in lengths], device=device)[:, None]  # (R, T)
    order = plan.candidate_scores.to(device).masked_fill(~in_range, -1.0).argsort(dim=1, descending=True)
    is_candidate = positions < torch.tensor(plan.num_spans, device=device)[:, None]  # first N_b of the order
    kept = is_candidate & ~hard_starts.gather(1, order)
    n_rand = torch.tensor([n - h for n, h in zip(plan.num_spans, n_hard)], device=device)[:, None]
    chosen = kept & (kept.cumsum(dim=1) <= n_rand)  # (R, T) in "order" coordinates
    random_starts = torch.zeros(R, T, dtype=torch.bool, device=device).scatter_(1, order, chosen)
    # 3. union of right-extending spans, clipped to valid frames.
    mask = spans_from_starts(hard_starts | random_starts, L) & valid
    # 4. equalise to the batch minimum by keeping a uniformly random subset of each row's masked frames.
    min_count = int(mask.sum(dim=1).min().item())  # the one host sync of this reproduction mode
    keep = plan.trim_scores.to(device).masked_fill(~mask, -1.0).topk(min_count, dim=1).indices
    return torch.zeros(R, T, dtype=torch.bool, device=device).scatter_(1, keep, True), hard_starts


def draw_mask_plan(
    frame_lengths: Sequence[int],
    positions: Sequence[int],
    world_size: int,
    clones: int,
    mask_prob: float,
    span_length: int,
    alpha: float,
    release_sampler: bool,
    generator: torch.Generator,
    budget: str = "exact",
) -> GridMaskPlan | ReleaseMaskPlan:
    """The mask plan of this process's B * clones rows (row b * clones + c), for crops of one length: the grid's is
    drawn for the global batch and cut to this process's positions, the release's for the local rows only."""
    rows = [length for length in frame_lengths for _ in range(clones)]
    if release_sampler:
        return plan_release_mask(rows, mask_prob, span_length, alpha, generator)
    plan = plan_grid_mask([rows[0]] * (len(rows) * world_size), mask_prob, span_length, alpha, generator, budget=budget)
    return plan.select_rows([p * clones + c for p in positions for c in range(clones)])


def visible_indices(mask: torch.Tensor, num_visible: int) -> torch.Tensor:
    """(R, num_visible) ascending positions of the unmasked frames; every row must have num_visible of them."""
    # A stable sort puts the 0s (visible) first, in their original, ascending order.
    return torch.sort(mask.to(torch.int8), dim=1, stable=True).indices[:, :num_visible]


def masked_indices(mask: torch.Tensor, num_masked: int) -> torch.Tensor:
    """(R, num_masked) ascending positions of the masked frames; every row must have num_masked of them."""
    return torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :num_masked]
