"""The per-layer summary of ABX rows: errors by representation and layer, and the best layer."""

from __future__ import annotations

import math
from typing import Sequence


def by_representation(rows: Sequence[dict]) -> dict[str, dict[int, dict[str, float]]]:
    """{representation: {layer: {condition: error}}}, in the rows' order."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for r in rows:
        out.setdefault(r["representation"], {}).setdefault(int(r["layer"]), {})[r["condition"]] = float(r["error"])
    return out


def best_layer(layers: dict[int, dict[str, float]], condition: str = "across") -> int:
    """The layer with the lowest error in `condition` (the first one on a tie); NaN errors never win."""
    finite = {k: v[condition] for k, v in layers.items() if math.isfinite(v.get(condition, math.nan))}
    if not finite:
        return min(layers)
    return min(finite, key=lambda k: (finite[k], k))
