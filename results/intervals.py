"""95 % intervals and chance levels for the SUPERB scores, from per-utterance results.

* accuracies (KS, IC, SID, ER): the Wilson score interval of k correct out of n;
* corpus-level ratios (PER, WER, slot-value CER): a percentile bootstrap over utterances, resampling
  (errors, reference length) pairs together so the ratio is recomputed on each resample;
* per-utterance means (slot-type F1): the same bootstrap on the per-utterance values.

Chance is what an answer that ignores the audio scores on the same test set:
* accuracy: the share of the most frequent test label (always answering it);
* PER/WER: the best constant hypothesis "t t ... t" (one token repeated n times, n = 0 is the empty
  hypothesis) over every token of the references and every n;
* slot-type F1: the best constant set of slot types, grown greedily.
All values are in percent. The bootstrap is seeded, so a table is the same on every run.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Estimate:
    """A score with its 95 % interval and chance level, in percent."""

    value: float
    low: float
    high: float
    n: int  # test utterances behind it
    method: str  # "Wilson" or "bootstrap"
    chance: float | None = None

    def interval_text(self) -> str:
        return f"{self.low:.1f}–{self.high:.1f}"


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of `successes` out of `n`, in percent.

    Unlike the normal approximation it stays inside [0, 100] and is not empty at 0 or n.
    """
    if n <= 0:
        raise ValueError(f"Wilson interval needs at least one trial, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"Wilson interval: successes={successes} is outside 0..n={n}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # clamp the rounding error at the ends (the exact bounds at 0 and n are 0 and 100)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return 100.0 * low, 100.0 * high


def wilson_half_width(n: int, p: float = 0.5, z: float = Z95) -> float:
    """Half the width of the Wilson interval at accuracy p for n utterances, in points (widest at p=0.5)."""
    low, high = wilson(round(p * n), n, z)
    return (high - low) / 2


def _resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    if n <= 0:
        raise ValueError("a bootstrap needs at least one utterance")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """95 % percentile bootstrap interval (percent) of sum(numerators) / sum(denominators), resampling
    utterances; a resample whose denominators sum to 0 is skipped (the ratio is undefined there)."""
    num, den = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if num.shape != den.shape or num.ndim != 1:
        raise ValueError(f"need two equally long lists, got {num.shape} and {den.shape}")
    if den.sum() <= 0:
        raise ValueError("every denominator is 0: the ratio is undefined")
    idx = _resample_indices(len(num), resamples, seed)
    totals = den[idx].sum(axis=1)
    ratios = num[idx].sum(axis=1)[totals > 0] / totals[totals > 0]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return 100.0 * float(low), 100.0 * float(high)


def bootstrap_mean(
    values: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """95 % percentile bootstrap interval (percent) of the mean of per-utterance fractions."""
    vals = np.asarray(values, dtype=float)
    if vals.ndim != 1:
        raise ValueError(f"need a flat list of values, got shape {vals.shape}")
    means = vals[_resample_indices(len(vals), resamples, seed)].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return 100.0 * float(low), 100.0 * float(high)


# --- chance levels ------------------------------------------------------------------------------


def majority_rate(labels: Sequence[Hashable]) -> float:
    """Accuracy (percent) of always answering the most frequent label."""
    if not labels:
        raise ValueError("no test labels: the chance level is undefined")
    return 100.0 * max(Counter(labels).values()) / len(labels)


def constant_hypothesis_error(references: Sequence[Sequence[str]]) -> tuple[float, str, int]:
    """(error rate %, token, repeats) of the best audio-independent hypothesis `token * repeats`.

    The edit distance between n copies of t and a reference of length L holding c copies of t is
    max(n, L) - min(n, c): the longest common subsequence is min(n, c) and every other position
    costs one edit. repeats = 0 is the empty hypothesis (100 %).
    """
    lengths = np.array([len(r) for r in references])
    total = int(lengths.sum())
    if total == 0:
        raise ValueError("every reference is empty: the error rate is undefined")
    best = (100.0, "", 0)
    repeats = np.arange(1, int(lengths.max()) + 1)[:, None]  # (n, 1)
    for token in sorted({t for r in references for t in r}):
        counts = np.array([r.count(token) for r in references])
        errors = (np.maximum(repeats, lengths) - np.minimum(repeats, counts)).sum(axis=1)
        n = int(errors.argmin())
        rate = 100.0 * float(errors[n]) / total
        if rate < best[0] - 1e-12:
            best = (rate, token, n + 1)
    return best


def set_f1(hyp: set, ref: set) -> float:
    """F1 between two sets; 1 when both are empty (SUPERB's slot-type F1 per utterance)."""
    if not hyp and not ref:
        return 1.0
    common = len(hyp & ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(hyp), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def constant_slot_types_f1(references: Sequence[set]) -> tuple[float, frozenset]:
    """(mean slot-type F1 %, slot types) of the best constant set of slot types, grown greedily from
    the empty set by the type that raises the mean F1 most, while one does."""
    if not references:
        raise ValueError("no test utterances: the chance level is undefined")
    types = sorted({t for r in references for t in r})

    def score(chosen: set) -> float:
        return sum(set_f1(chosen, r) for r in references) / len(references)

    chosen: set = set()
    best = score(chosen)
    while True:
        gains = [(score(chosen | {t}), t) for t in types if t not in chosen]
        if not gains:
            break
        value, token = max(gains, key=lambda g: g[0])  # the first (alphabetical) type wins ties
        if value <= best + 1e-12:
            break
        chosen.add(token)
        best = value
    return 100.0 * best, frozenset(chosen)
