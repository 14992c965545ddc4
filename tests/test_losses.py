"""Tests for pretrain/losses.py: regression loss, ranking loss vs a brute-force loop, and Spearman rho."""

import math

import pytest
import scipy.stats
import torch

from pretrain.losses import ranking_loss, regression_loss_per_frame, spearman_rho


def _log_sigmoid(z: float) -> float:
    return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))


def _brute_force_ranking(scores, realised, norm):
    """Double Python loop over ordered pairs (i, j) within each row, as docs/design.md "Losses" writes the sum."""
    rows_p, rows_l = scores.double().tolist(), realised.double().tolist()
    if norm == "flat_batch_mean":
        rows_p, rows_l = [sum(rows_p, [])], [sum(rows_l, [])]
    total, valid = 0.0, 0
    for p, ell in zip(rows_p, rows_l):
        for i in range(len(p)):
            for j in range(len(p)):
                if ell[j] > ell[i]:
                    total -= _log_sigmoid(p[j] - p[i])
                elif ell[j] < ell[i]:
                    total -= _log_sigmoid(-(p[j] - p[i]))  # log(1 - sigmoid(z)) = log sigmoid(-z)
                else:
                    continue
                valid += 1
    return total if norm == "sum" else total / max(valid, 1)


def test_regression_loss_per_frame():
    """Per-frame loss is sum_d (pred - target)^2 / sqrt(D), in fp32 even for bf16 inputs."""
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(7, 16, generator=g), torch.randn(7, 16, generator=g)
    loss = regression_loss_per_frame(pred, target)
    expected = torch.tensor([sum((pred[n, d] - target[n, d]) ** 2 for d in range(16)) / 4.0 for n in range(7)])
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    low = regression_loss_per_frame(pred.bfloat16(), target.bfloat16())
    assert low.dtype == torch.float32 and low.shape == (7,)
    with pytest.raises(ValueError, match="prediction and target"):
        regression_loss_per_frame(pred, target[:, :8])


@pytest.mark.parametrize("norm", ["pair_mean", "sum", "flat_batch_mean"])
def test_ranking_loss_matches_brute_force(norm):
    """Vectorised ranking loss equals the double loop on random data with ties, for every normalisation."""
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 9, generator=g) * 3
    realised = torch.randint(0, 5, (3, 9), generator=g).float()  # few distinct values: many ties
    realised[2] = 1.0  # an all-tied row contributes nothing
    loss = ranking_loss(scores, realised, norm)
    assert loss.dim() == 0 and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_brute_force_ranking(scores, realised, norm), rel=1e-5)


def test_ranking_loss_edge_cases():
    """All ties give 0 (not NaN) under pair_mean; realised gets no gradient."""
    scores = torch.randn(2, 5, requires_grad=True)
    assert ranking_loss(scores, torch.ones(2, 5)).item() == 0.0
    realised = torch.rand(2, 5, requires_grad=True)
    ranking_loss(scores, realised).backward()
    assert realised.grad is None and scores.grad is not None


def test_ranking_loss_gradient_learns_the_order():
    """A few SGD steps on the ranking loss raise Spearman rho(scores, realised) from about 0 to > 0.9."""
    g = torch.Generator().manual_seed(2)
    realised = torch.rand(4, 64, generator=g)
    scores = torch.randn(4, 64, generator=g).requires_grad_(True)
    before = spearman_rho(scores, realised).item()
    assert abs(before) < 0.2
    opt = torch.optim.SGD([scores], lr=200.0)
    for _ in range(30):
        opt.zero_grad()
        ranking_loss(scores, realised).backward()
        opt.step()
    assert spearman_rho(scores, realised).item() > 0.9


def test_spearman_matches_scipy_on_tie_free_data():
    """Row-mean Spearman rho equals scipy.stats.spearmanr row by row, and is a 0-dim tensor."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 40, generator=g)
    y = x + torch.randn(5, 40, generator=g)
    rho = spearman_rho(x, y)
    assert rho.dim() == 0
    expected = sum(scipy.stats.spearmanr(x[r].numpy(), y[r].numpy())[0] for r in range(5)) / 5
    assert rho.item() == pytest.approx(expected, abs=1e-6)
    assert spearman_rho(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert spearman_rho(x, -x).item() == pytest.approx(-1.0, abs=1e-6)
