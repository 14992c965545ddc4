"""Tests for pretrain/mask_budget.py and the grid's `overlapping` budget: the exact union distribution against
enumeration, the expected share against an independent simulation of the overlapping sampler, and the grid's
realised share and per-row count."""

import itertools

import numpy as np
import pytest
import torch

from pretrain.mask_budget import overlapping_share, union_size_distribution
from pretrain.masking import draw_mask_plan, grid_mask, plan_grid_mask

P, L = 0.5, 5


def simulate_overlapping_sampler(
    num_frames: int, mask_prob: float, span_length: int, rows: int, batches: int, seed: int
) -> float:
    """Mean masked share of data2vec 2.0's sampler, row by row as it is specified: N = max(1, floor(P T / L + U))
    distinct starts from 0..T-L-1, L frames from each, then every row trimmed to the batch's smallest count."""
    rng = np.random.default_rng(seed)
    shares = []
    for _ in range(batches):
        counts = []
        for _ in range(rows):
            n = max(1, int(mask_prob * num_frames / span_length + rng.random()))
            starts = rng.choice(num_frames - span_length, n, replace=False)
            counts.append(len({int(s) + k for s in starts for k in range(span_length)}))
        shares.append(min(counts) / num_frames)
    return float(np.mean(shares))


@pytest.mark.parametrize("frames, spans, length", [(17, 3, 3), (20, 4, 2), (12, 1, 5), (14, 9, 1)])
def test_union_distribution_equals_enumeration(frames, spans, length):
    """Every subset of starts enumerated: the derived distribution of the union size is exact and sums to 1."""
    counts = np.zeros(frames + 1)
    for starts in itertools.combinations(range(frames - length), spans):
        counts[len({s + k for s in starts for k in range(length)})] += 1
    derived = union_size_distribution(frames, spans, length)
    np.testing.assert_allclose(derived, counts / counts.sum(), atol=1e-12)


@pytest.mark.parametrize("frames", [50, 100, 200, 500, 1000])
@pytest.mark.parametrize("rows", [1, 8])
def test_expected_share_matches_a_simulation_of_the_overlapping_sampler(frames, rows):
    """Within 0.01 of 2,000 simulated rows (batches of `rows`); spans overlap, so the share is below P, and
    trimming 8 rows to their smallest count lowers it further."""
    simulated = simulate_overlapping_sampler(frames, P, L, rows, 2000 // rows, seed=frames + rows)
    share = overlapping_share(frames, P, L, rows)
    assert abs(share - simulated) < 0.01
    assert share < P - 0.05


def test_expected_share_falls_with_more_rows_and_rises_with_length():
    assert overlapping_share(200, P, L, 32) < overlapping_share(200, P, L, 8) < overlapping_share(200, P, L, 1)
    assert overlapping_share(50, P, L, 8) < overlapping_share(200, P, L, 8) < overlapping_share(1000, P, L, 8)


def test_too_few_start_positions_are_refused_by_name():
    with pytest.raises(ValueError, match="start positions"):
        union_size_distribution(8, 4, 5)
    with pytest.raises(ValueError, match="rows"):
        overlapping_share(100, P, L, 0)


@pytest.mark.parametrize("frames", [50, 73, 100, 199, 300, 500, 1000])
def test_grid_with_the_overlapping_budget_masks_the_samplers_share(frames):
    """At alpha 0 the grid's mean share over 400 plans of 8 rows is within 0.01 of the simulated sampler on
    8 rows, and every row of a plan masks exactly N * L frames."""
    rows = 8
    shares = []
    for seed in range(400):
        plan = plan_grid_mask([frames] * rows, P, L, 0.0, torch.Generator().manual_seed(seed), budget="overlapping")
        mask = grid_mask(None, plan)
        assert (mask.sum(dim=1) == plan.num_masked).all()
        shares.append(plan.num_masked / frames)
    simulated = simulate_overlapping_sampler(frames, P, L, rows, 300, seed=frames)
    assert abs(float(np.mean(shares)) - simulated) < 0.01


def test_exact_budget_keeps_the_share_p():
    shares = [
        plan_grid_mask([999], P, L, 0.0, torch.Generator().manual_seed(s), budget="exact").num_masked / 999
        for s in range(300)
    ]
    assert abs(float(np.mean(shares)) - P) < 0.01
    with pytest.raises(ValueError, match="mask.budget"):
        plan_grid_mask([999], P, L, 0.0, torch.Generator().manual_seed(0), budget="fairseq")


def test_overlapping_budget_plans_are_the_same_for_one_process_and_two():
    """The count depends on the global batch, so two processes keep the single process's plan at their rows."""
    lengths, clones = [150, 150], 2
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    whole = draw_mask_plan(lengths * 2, [0, 1, 2, 3], 1, clones, P, L, 0.0, False, gen(), "overlapping")
    part = draw_mask_plan(lengths, [1, 3], 2, clones, P, L, 0.0, False, gen(), "overlapping")
    assert part.num_spans == whole.num_spans and torch.equal(part.offsets, whole.offsets[[2, 3, 6, 7]])
