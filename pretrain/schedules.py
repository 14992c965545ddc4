"""Learning-rate and EMA-decay schedules as pure functions of the update count (docs/design.md "Optimiser and
data", "Teacher")."""
from __future__ import annotations

import math


def lr_at(update: int, peak_lr: float, warmup_updates: int, total_updates: int) -> float:
    """LR for the step about to run (`update` is its 0-based index).

    Warm-up: peak * (update + 1) / warmup_updates for update < warmup_updates, so the first step already
    moves and step warmup_updates - 1 runs at the peak. Then a cosine from the peak at update = warmup_updates
    to 0 at update = total_updates (the last step, total_updates - 1, runs at a small positive LR); 0 after.
    """
    if update < warmup_updates:
        return peak_lr * (update + 1) / warmup_updates
    if update >= total_updates:
        return 0.0
    progress = (update - warmup_updates) / (total_updates - warmup_updates)
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay_at(update: int, start: float = 0.999, end: float = 0.99999, anneal_updates: int = 75000) -> float:
    """tau(u) = end - (end - start) * max(0, 1 - u / U); u = updates done after the step (1-based)."""
    return end - (end - start) * max(0.0, 1.0 - update / anneal_updates)
