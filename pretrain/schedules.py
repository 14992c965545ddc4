"""Schedules as pure functions of the update count, so that resuming needs no replay: learning rate, EMA decay
(docs/design.md "Optimiser and data", "Teacher") and the curriculum's share alpha of hard spans ("Curriculum")."""
from __future__ import annotations

import math

from .config import PretrainConfig


def lr_at(update: int, peak_lr: float, warmup_updates: int, total_updates: int) -> float:
    """LR of the step about to run (`update` is its 0-based index): warm-up peak * (update + 1) / warmup_updates, so
    the first step already moves, then a cosine from the peak to 0 at update = total_updates; 0 after."""
    if update < warmup_updates:
        return peak_lr * (update + 1) / warmup_updates
    if update >= total_updates:
        return 0.0
    progress = (update - warmup_updates) / (total_updates - warmup_updates)
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay_at(update: int, start: float = 0.999, end: float = 0.99999, anneal_updates: int = 75000) -> float:
    """tau(u) = end - (end - start) * max(0, 1 - u / U); u = updates done after the step (1-based)."""
    return end - (end - start) * max(0.0, 1.0 - update / anneal_updates)


def alpha_progress(update: int, total_updates: int, threshold: float = 0.7, plateau: float = 0.8) -> float:
    """alpha = p below the threshold, else the plateau; p = update / U (the release: 1-based epoch / e_ref)."""
    p = update / total_updates
    return p if p < threshold else plateau


def alpha_at(config: PretrainConfig, update: int, epoch: int) -> float:
    """alpha of the update about to run: 0 (curriculum.mode none), the release's epoch rule, or progress."""
    curriculum = config.curriculum
    if curriculum.mode == "none":
        return 0.0
    if config.release.epoch_curriculum:
        return alpha_progress(epoch, config.release.epoch_curriculum, curriculum.threshold, curriculum.plateau)
    return alpha_progress(update, config.optim.max_steps, curriculum.threshold, curriculum.plateau)
