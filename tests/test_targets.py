"""Tests for pretrain/targets.py against a naive float64 loop reference."""

import math

import pytest
import torch

from pretrain.targets import make_targets


def _naive_targets(layers, lengths, top_k):
    """Explicit loops in float64: instance norm over each utterance's valid frames, per channel, then average."""
    B, T, D = layers[0].shape
    out = torch.zeros(B, T, D, dtype=torch.float64)
    for b in range(B):
        n = int(lengths[b])
        for layer in layers[-top_k:]:
            a = layer[b].double()
            for c in range(D):
                values = [float(a[t, c]) for t in range(n)]
                mean = sum(values) / n
                var = sum((v - mean) ** 2 for v in values) / n
                for t in range(n):
                    out[b, t, c] += (values[t] - mean) / math.sqrt(var + 1e-5) / top_k
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_targets_match_naive_reference_with_padding(dtype):
    """make_targets equals the float64 reference (valid-frame stats, padded frames 0) and returns fp32."""
    g = torch.Generator().manual_seed(0)
    B, T, D, n_layers, top_k = 3, 11, 6, 5, 3
    layers = [(torch.randn(B, T, D, generator=g) * (i + 1) + i).to(dtype) for i in range(n_layers)]
    lengths = torch.tensor([11, 7, 4])
    for b, n in enumerate(lengths.tolist()):  # garbage in the padding must not leak into the statistics
        for layer in layers:
            layer[b, n:] = 1e3
    y = make_targets(layers, lengths, top_k)
    assert y.dtype == torch.float32 and y.shape == (B, T, D)
    ref = _naive_targets([a.float() for a in layers], lengths, top_k)
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    assert (y[1, 7:] == 0).all() and (y[2, 4:] == 0).all()


def test_targets_use_only_the_last_k_layers():
    """Changing a layer below the top K leaves the targets unchanged; changing one inside it does not."""
    g = torch.Generator().manual_seed(1)
    layers = [torch.randn(2, 9, 4, generator=g) for _ in range(4)]
    lengths = torch.tensor([9, 9])
    y = make_targets(layers, lengths, 2)
    layers_low = [torch.randn(2, 9, 4, generator=g)] + layers[1:]
    assert torch.equal(make_targets(layers_low, lengths, 2), y)
    layers_top = layers[:-1] + [torch.randn(2, 9, 4, generator=g)]
    assert not torch.allclose(make_targets(layers_top, lengths, 2), y)


def test_targets_bad_input_raises():
    """Mismatched shapes raise ValueError naming the argument (top_k is checked once, at config load)."""
    layers = [torch.zeros(2, 5, 3)] * 3
    with pytest.raises(ValueError, match="frame_lengths"):
        make_targets(layers, torch.tensor([5, 5, 5]), 2)
    with pytest.raises(ValueError, match="one shape"):
        make_targets(layers + [torch.zeros(2, 6, 3)], torch.tensor([5, 5]), 2)
