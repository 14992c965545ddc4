"""Tests for pretrain/masking.py: grid-mask invariants, the release sampler, and index helpers."""

import pytest
import torch

from pretrain.masking import (
    GridMaskPlan,
    draw_mask_plan,
    grid_mask,
    masked_indices,
    num_hard_spans,
    plan_grid_mask,
    plan_release_mask,
    release_mask,
    span_counts,
    visible_indices,
)

P, L = 0.5, 5
LENGTHS = [200, 173, 150, 199]  # padded to T = 200


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cells_of(mask_row: torch.Tensor, offset: int) -> list[int]:
    """Grid cells (relative to `offset`) touched by the masked frames of one row."""
    return sorted({(t - offset) // L for t in mask_row.nonzero().flatten().tolist()})


def _top_cells_naive(loss_row: torch.Tensor, offset: int, num_cells: int, k: int) -> set[int]:
    means = [sum(float(loss_row[offset + c * L + j]) for j in range(L)) / L for c in range(num_cells)]
    return set(sorted(range(num_cells), key=lambda c: -means[c])[:k])


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_grid_mask_invariants(alpha):
    """Every row masks exactly N*L frames as whole grid cells, never padding; the top N_hard cells are among them."""
    for seed in range(5):
        plan = plan_grid_mask(LENGTHS, P, L, alpha, _gen(seed))
        loss = torch.randn(len(LENGTHS), plan.num_frames, generator=_gen(100 + seed))
        mask = grid_mask(loss, plan)
        assert mask.shape == (len(LENGTHS), max(LENGTHS)) and mask.dtype == torch.bool
        assert plan.num_hard == num_hard_spans(plan.num_spans, alpha)
        for b, t_b in enumerate(LENGTHS):
            assert int(mask[b].sum()) == plan.num_masked
            assert not mask[b, t_b:].any(), "padded frames must never be masked"
            phi = int(plan.offsets[b])
            assert 0 <= phi < L
            cells = _cells_of(mask[b], phi)
            assert len(cells) == plan.num_spans, "spans must not overlap"
            assert min(cells) >= 0 and max(cells) < plan.num_cells
            for c in cells:  # each chosen cell is fully masked, i.e. spans sit on the row's grid
                assert mask[b, phi + c * L : phi + (c + 1) * L].all()
            hard = _top_cells_naive(loss[b], phi, plan.num_cells, plan.num_hard)
            assert hard <= set(cells), "the top-N_hard cells by mean predicted loss must be masked"


def test_grid_mask_alpha_one_is_top_cells():
    """At alpha = 1 the masked cells are exactly the top-N cells by mean predicted loss."""
    plan = plan_grid_mask(LENGTHS, P, L, 1.0, _gen(3))
    assert plan.num_hard == plan.num_spans
    loss = torch.rand(len(LENGTHS), plan.num_frames, generator=_gen(4))
    mask = grid_mask(loss, plan)
    for b in range(len(LENGTHS)):
        phi = int(plan.offsets[b])
        assert set(_cells_of(mask[b], phi)) == _top_cells_naive(loss[b], phi, plan.num_cells, plan.num_spans)


def test_grid_mask_alpha_zero_ignores_predicted_loss():
    """At alpha = 0 the mask depends only on the plan: two predicted losses (or none) give the same mask."""
    plan = plan_grid_mask(LENGTHS, P, L, 0.0, _gen(5))
    a = grid_mask(torch.randn(len(LENGTHS), plan.num_frames, generator=_gen(6)), plan)
    b = grid_mask(torch.randn(len(LENGTHS), plan.num_frames, generator=_gen(7)), plan)
    assert torch.equal(a, b)
    assert torch.equal(a, grid_mask(None, plan))


def test_grid_mask_hard_cells_follow_predicted_loss():
    """At alpha = 0.5 a different predicted loss moves the hard cells (so the loss is actually used)."""
    plan = plan_grid_mask(LENGTHS, P, L, 0.5, _gen(5))
    a = grid_mask(torch.randn(len(LENGTHS), plan.num_frames, generator=_gen(6)), plan)
    b = grid_mask(torch.randn(len(LENGTHS), plan.num_frames, generator=_gen(7)), plan)
    assert not torch.equal(a, b)


def test_grid_mask_realised_fraction_matches_mask_prob():
    """Over many draws the realised masked fraction at T = 999 is within 0.02 of P, for single rows and batches."""
    for mask_prob in (0.5, 0.65):
        singles = [plan_grid_mask([999], mask_prob, L, 0.0, _gen(s)).num_masked / 999 for s in range(300)]
        batches = [plan_grid_mask([999] * 8, mask_prob, L, 0.5, _gen(s)).num_masked / 999 for s in range(300)]
        assert abs(sum(singles) / len(singles) - mask_prob) < 0.02
        assert abs(sum(batches) / len(batches) - mask_prob) < 0.02


def test_plan_is_seeded_and_shaped():
    """The plan is a pure function of the generator's seed and carries host shapes for the device code."""
    a, b = plan_grid_mask(LENGTHS, P, L, 0.3, _gen(9)), plan_grid_mask(LENGTHS, P, L, 0.3, _gen(9))
    assert torch.equal(a.offsets, b.offsets) and torch.equal(a.cell_scores, b.cell_scores)
    assert a.num_spans == b.num_spans
    assert a.offsets.dtype == torch.int64 and a.offsets.shape == (len(LENGTHS),)
    assert a.cell_scores.shape == (len(LENGTHS), a.num_cells)
    assert a.num_cells == (min(LENGTHS) - (L - 1)) // L
    assert a.num_masked == a.num_spans * L and a.num_frames == max(LENGTHS)
    assert a.num_spans == min(span_counts(LENGTHS, P, L, _gen(9)))
    moved = a.to("meta")
    assert isinstance(moved, GridMaskPlan) and moved.offsets.device.type == "meta" and a.offsets.device.type == "cpu"


def test_grid_mask_needs_no_data_dependent_shapes():
    """grid_mask and the index helpers run on the meta device, so they cannot read device data back to the host."""
    plan = plan_grid_mask(LENGTHS, P, L, 0.5, _gen(1)).to("meta")
    mask = grid_mask(torch.empty(len(LENGTHS), plan.num_frames, device="meta"), plan)
    assert mask.shape == (len(LENGTHS), plan.num_frames)
    assert visible_indices(mask, plan.num_frames - plan.num_masked).shape == (
        len(LENGTHS),
        plan.num_frames - plan.num_masked,
    )
    assert masked_indices(mask, plan.num_masked).shape == (len(LENGTHS), plan.num_masked)


def test_num_hard_spans_formula():
    """N_hard = N - floor(N (1 - alpha)), with N = 100, alpha = 0.8 giving 80 hard spans despite float rounding."""
    assert num_hard_spans(100, 0.8) == 80
    assert num_hard_spans(100, 0.0) == 0 and num_hard_spans(100, 1.0) == 100
    assert num_hard_spans(99, 1 / 150) == 99 - int(99 * (1 - 1 / 150))
    assert num_hard_spans(7, 0.5) == 4


def test_grid_mask_bad_input_raises():
    """Too many spans for the shortest row, or hard spans without a predicted loss, raise ValueError."""
    with pytest.raises(ValueError, match="T=12"):
        plan_grid_mask([12], 0.8, L, 0.0, _gen(0))
    with pytest.raises(ValueError, match="predicted_loss is None"):
        grid_mask(None, plan_grid_mask(LENGTHS, P, L, 0.5, _gen(0)))


def _spans_from_starts(starts: torch.Tensor, length: int, t_pad: int) -> torch.Tensor:
    covered = torch.zeros(t_pad, dtype=torch.bool)
    for s in starts.tolist():
        covered[s : min(s + L, length)] = True
    return covered


def test_release_mask_single_row_alpha_one_is_union_of_top_spans():
    """One row (no trim), alpha = 1: the mask is the union of right spans at the top-N valid frames, padding skipped."""
    t_len, t_pad = 120, 140
    loss = torch.rand(1, t_pad, generator=_gen(1))
    loss[0, t_len:] = 5.0 + torch.arange(t_pad - t_len)  # padded frames predicted hardest: must be ignored
    (n,) = span_counts([t_len], P, L, _gen(2))  # same first draw as release_mask
    mask = release_mask(loss, plan_release_mask([t_len], P, L, 1.0, _gen(2), num_frames=t_pad))
    expected = _spans_from_starts(loss[0, :t_len].topk(n).indices, t_len, t_pad)
    assert torch.equal(mask[0], expected)


def test_release_mask_batch_properties():
    """Release mode: equal masked counts per row, padding never masked, hard spans start at top predicted frames."""
    loss = torch.rand(len(LENGTHS), max(LENGTHS), generator=_gen(3))
    for b, t_b in enumerate(LENGTHS):  # padded frames get the largest values: they must still never be chosen
        loss[b, t_b:] = 10.0 + torch.arange(max(LENGTHS) - t_b)
    for alpha in (0.0, 0.5, 1.0):
        mask = release_mask(loss, plan_release_mask(LENGTHS, P, L, alpha, _gen(4)))
        counts = mask.sum(dim=1)
        assert (counts == counts[0]).all() and int(counts[0]) > 0
        for b, t_b in enumerate(LENGTHS):
            assert not mask[b, t_b:].any()
        if alpha == 1.0:  # every masked frame lies in a span started at one of the top-N_b valid frames
            counts_n = span_counts(LENGTHS, P, L, _gen(4))
            for b, t_b in enumerate(LENGTHS):
                allowed = _spans_from_starts(loss[b, :t_b].topk(counts_n[b]).indices, t_b, max(LENGTHS))
                assert not (mask[b] & ~allowed).any()


def test_release_mask_is_seeded_and_needs_loss_for_hard_spans():
    """Same generator seed, same mask; hard spans without a predicted loss raise ValueError."""
    loss = torch.rand(len(LENGTHS), max(LENGTHS), generator=_gen(3))
    first = release_mask(loss, plan_release_mask(LENGTHS, P, L, 0.5, _gen(8)))
    assert torch.equal(first, release_mask(loss, plan_release_mask(LENGTHS, P, L, 0.5, _gen(8))))
    assert not torch.equal(first, release_mask(loss, plan_release_mask(LENGTHS, P, L, 0.5, _gen(9))))
    assert release_mask(None, plan_release_mask(LENGTHS, P, L, 0.0, _gen(8))).shape == (len(LENGTHS), max(LENGTHS))
    with pytest.raises(ValueError, match="predicted_loss is None"):
        release_mask(None, plan_release_mask(LENGTHS, P, L, 0.5, _gen(8)))


def test_visible_and_masked_indices_are_complementary_and_sorted():
    """visible_indices and masked_indices partition 0..T-1 and are ascending per row."""
    plan = plan_grid_mask(LENGTHS, P, L, 0.5, _gen(11))
    mask = grid_mask(torch.randn(len(LENGTHS), plan.num_frames, generator=_gen(12)), plan)
    vis, msk = visible_indices(mask, plan.num_frames - plan.num_masked), masked_indices(mask, plan.num_masked)
    assert vis.shape == (len(LENGTHS), plan.num_frames - plan.num_masked) and msk.shape == (
        len(LENGTHS),
        plan.num_masked,
    )
    assert (vis.diff(dim=1) > 0).all() and (msk.diff(dim=1) > 0).all()
    assert not mask.gather(1, vis).any() and mask.gather(1, msk).all()
    together = torch.cat([vis, msk], dim=1).sort(dim=1).values
    assert torch.equal(together, torch.arange(plan.num_frames).expand_as(together))


def test_release_mask_single_row_mixed_alpha():
    """One row, alpha = 0.5: the N_hard top spans are all masked; random spans start in 0..T-L-1 (right end unused)."""
    t_len = 300
    loss = torch.rand(1, t_len, generator=_gen(21))
    loss[0, -L:] = -1.0  # keep hard spans away from the right end so only random spans could reach it
    for seed in range(5):
        (n,) = span_counts([t_len], P, L, _gen(seed))
        n_hard = num_hard_spans(n, 0.5)
        mask = release_mask(loss, plan_release_mask([t_len], P, L, 0.5, _gen(seed)))[0]
        hard = _spans_from_starts(loss[0].topk(n_hard).indices, t_len, t_len)
        assert (mask | ~hard).all()
        assert not mask[-1], "random starts are drawn from 0..T-L-1, so the last frame stays visible"
        assert int(mask.sum()) > int(hard.sum()), "random spans are added on top of the hard ones"


def test_select_rows_keeps_the_global_span_count():
    """A process's rows of a global plan: their offsets and cell scores, with N, N_hard and C of the whole batch,
    so its mask rows equal the global mask's rows (the DDP sharding of pretrain/train.py)."""
    plan = plan_grid_mask([150] * 6, P, L, 0.5, _gen(13))
    part = plan.select_rows([4, 1])
    assert torch.equal(part.offsets, plan.offsets[[4, 1]]) and torch.equal(part.cell_scores, plan.cell_scores[[4, 1]])
    assert (part.num_spans, part.num_hard, part.num_cells, part.num_frames) == (
        plan.num_spans,
        plan.num_hard,
        plan.num_cells,
        plan.num_frames,
    )
    loss = torch.randn(6, 150, generator=_gen(14))
    assert torch.equal(grid_mask(loss[[4, 1]], part), grid_mask(loss, plan)[[4, 1]])


def test_draw_mask_plan_owns_the_choice_of_sampler_and_the_row_layout():
    """draw_mask_plan gives clone c of utterance b row b * clones + c: the grid plan of two processes is the single
    process's plan at their positions; the release plan is drawn for the local rows and masks the same count in
    every row."""
    lengths, clones = [150, 150], 2
    whole = draw_mask_plan(lengths * 2, [0, 1, 2, 3], 1, clones, P, L, 0.5, False, _gen(5))
    part = draw_mask_plan(lengths, [1, 3], 2, clones, P, L, 0.5, False, _gen(5))
    assert torch.equal(part.offsets, whole.offsets[[2, 3, 6, 7]]) and part.num_spans == whole.num_spans
    release = draw_mask_plan(lengths, [0, 1], 1, clones, P, L, 0.5, True, _gen(5))
    mask, hard, count, span_length = release.mask(torch.rand(4, 150, generator=_gen(6)), torch.device("cpu"))
    assert mask.shape == (4, 150) and (mask.sum(1) == count).all() and 0 < count < 150
    assert span_length is None and hard.any() and not (hard & ~mask).any()  # hard frames are masked frames
