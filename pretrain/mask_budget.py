"""The span budget of the grid (docs/design.md "Masking"): how many frames data2vec 2.0's overlapping span sampler
masks, so that the grid can mask that share with non-overlapping cells.

The overlapping sampler (fairseq's `compute_mask_indices` with data2vec 2.0's audio arguments: static spans,
min_masks 1, require_same_masks) draws per row N = max(1, floor(P * T / L + U)) distinct starts uniformly from
0..T-L-1, masks L frames from each start (spans overlap, so fewer than N * L frames), then trims every row of the
batch to the smallest count. Its masked share is therefore below P and falls with the number of rows trimmed
together. `overlapping_share` computes its expectation exactly from the distribution of the union of the spans.
"""

from __future__ import annotations

import collections
import functools
import math
from typing import Sequence

import numpy as np


def _log_comb(n: np.ndarray | int, k: np.ndarray | int) -> np.ndarray:
    """log C(n, k) elementwise; -inf where k < 0 or k > n."""
    n, k = np.asarray(n, dtype=np.float64), np.asarray(k, dtype=np.float64)
    ok = (k >= 0) & (k <= n)
    safe_n, safe_k = np.where(ok, n, 1.0), np.where(ok, k, 0.0)
    lgamma = np.vectorize(math.lgamma, otypes=[np.float64])
    value = lgamma(safe_n + 1) - lgamma(safe_k + 1) - lgamma(safe_n - safe_k + 1)
    return np.where(ok, value, -np.inf)


def _log_bounded_compositions(parts: int, most: int) -> list[np.ndarray]:
    """[log of the number of ways to write a as an ordered sum of n parts, each in 1..most, for a = 0..n*most]
    for n = 0..parts (entry n has n * most + 1 values)."""
    table = [np.zeros(1)]  # n = 0: only a = 0, one way
    for n in range(1, parts + 1):
        previous = table[-1]
        shifted = np.full((most, n * most + 1), -np.inf)
        for part in range(1, most + 1):  # the n-th part takes the value `part`
            shifted[part - 1, part : part + previous.size] = previous
        table.append(np.logaddexp.reduce(shifted, axis=0))
    return table


def union_size_distribution(num_frames: int, num_spans: int, span_length: int) -> np.ndarray:
    """P(union = u) for u = 0..num_frames: N distinct starts drawn uniformly from 0..T-L-1, L frames from each.

    With the starts sorted, the union is L plus, for each of the N-1 gaps g between neighbouring starts, min(g, L).
    Counting the subsets with j gaps longer than L and the short gaps summing to a: C(N-1, j) ways to place the
    long gaps, compositions of a into N-1-j parts in 1..L for the short ones, and C(M - a - jL, j+1) for the first
    start and the long gaps' excesses together (M = T - L starts; a hockey-stick sum). The union is then
    L + a + jL; every subset is counted once, so the counts add up to C(M, N)."""
    T, N, L = int(num_frames), int(num_spans), int(span_length)
    M = T - L
    if N < 1 or L < 1 or M < N:
        raise ValueError(
            f"overlapping sampler: N={N} spans of L={L} need at least N start positions, but T={T} frames give T-L={M}"
        )
    compositions = _log_bounded_compositions(N - 1, L)
    log_total = float(_log_comb(M, N))
    probability = np.zeros(T + 1)
    for long_gaps in range(N):
        short = N - 1 - long_gaps
        a = np.arange(short * L + 1)
        log_count = (
            float(_log_comb(N - 1, long_gaps)) + compositions[short] + _log_comb(M - a - long_gaps * L, long_gaps + 1)
        )
        union = L + a + long_gaps * L
        keep = np.isfinite(log_count) & (union <= T)
        np.add.at(probability, union[keep], np.exp(log_count[keep] - log_total))
    return probability


@functools.lru_cache(maxsize=4096)
def _union_at_least(num_frames: int, mask_prob: float, span_length: int) -> np.ndarray:
    """P(a row's union >= u) for u = 0..T, with N = max(1, floor(P T / L + U)) for that row."""
    T, L = int(num_frames), int(span_length)
    x = mask_prob * T / L
    low = math.floor(x)
    counts: dict[int, float] = {}  # floor(x + U) is low + 1 with probability x - low, else low; max(1, .) = min_masks
    for n, weight in ((max(1, low), 1.0 - (x - low)), (max(1, low + 1), x - low)):
        counts[n] = counts.get(n, 0.0) + weight
    per_row = sum(weight * union_size_distribution(T, n, L) for n, weight in counts.items() if weight > 0)
    return np.clip(np.cumsum(per_row[::-1])[::-1], 0.0, 1.0)


def expected_masked_frames(frame_lengths: Sequence[int], mask_prob: float, span_length: int) -> float:
    """Frames per row the overlapping sampler masks in expectation on rows of these valid lengths, once every row is
    trimmed to the smallest count: E[min over rows of the union] = sum over u >= 1 of prod over rows P(union >= u)."""
    if len(frame_lengths) < 1:
        raise ValueError("expected_masked_frames: no rows")
    longest = max(int(t) for t in frame_lengths)
    all_at_least = np.ones(longest + 1)
    for T, rows in collections.Counter(int(t) for t in frame_lengths).items():
        at_least = np.zeros(longest + 1)
        at_least[: T + 1] = _union_at_least(T, float(mask_prob), int(span_length))
        all_at_least *= at_least**rows
    return float(all_at_least[1:].sum())


def overlapping_share(num_frames: int, mask_prob: float, span_length: int, rows: int) -> float:
    """Expected masked share of T frames under the overlapping sampler when `rows` rows of T frames are trimmed
    to their smallest count."""
    if rows < 1:
        raise ValueError(f"overlapping_share: rows must be >= 1, found {rows}")
    return expected_masked_frames([num_frames] * rows, mask_prob, span_length) / num_frames
