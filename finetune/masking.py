"""Fine-tuning masks: spans of time frames and of feature channels, drawn on the host from an explicit generator.

A row of n positions gets floor(prob * n / span + u) spans (u uniform in [0, 1)) at distinct start positions drawn
uniformly from 0..n - span, so spans may overlap: with prob 0.65 and span 10 about 48 % of the frames are masked.
A row shorter than one span is left unmasked.
"""

from __future__ import annotations

import math

import torch


def span_mask(lengths: list[int], size: int, prob: float, span: int, generator: torch.Generator) -> torch.Tensor:
    """(B, size) bool on the CPU, True = masked; row b covers only its first lengths[b] positions."""
    mask = torch.zeros(len(lengths), size, dtype=torch.bool)
    if prob <= 0:
        return mask
    for row, n in enumerate(lengths):
        starts = n - span + 1
        if starts < 1:
            continue
        count = min(starts, math.floor(prob * n / span + float(torch.rand((), generator=generator))))
        for start in torch.randperm(starts, generator=generator)[:count].tolist():
            mask[row, start : start + span] = True
    return mask


def expected_masked_fraction(n: int, prob: float, span: int) -> float:
    """The exact expectation of span_mask's masked share of a row of n positions (for tests and reports)."""
    starts = n - span + 1
    if starts < 1 or prob <= 0:
        return 0.0
    a = prob * n / span
    low, frac = math.floor(a), a - math.floor(a)
    counts = [(min(low, starts), 1 - frac), (min(low + 1, starts), frac)]
    total = 0.0
    for t in range(n):
        covering = min(t, starts - 1) - max(0, t - span + 1) + 1  # start positions whose span covers frame t
        for count, weight in counts:
            uncovered = math.comb(starts - covering, count) / math.comb(starts, count)
            total += weight * (1.0 - uncovered)
    return total / n
