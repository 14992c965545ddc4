"""Schedules as pure functions of the update count, so that resuming needs no replay: learning rate, EMA decay
(docs/design.md "Optimiser and data", "Teacher") and the curriculum's share alpha of hard spans ("Curriculum")."""

from __future__ import annotations

import dataclasses
import math

from trainkit.logs import value_jumps

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


# the settings the schedules above read: changing one on resume moves the run to another schedule
SCHEDULE_KEYS = (
    "optim.lr",
    "optim.warmup_steps",
    "optim.max_steps",
    "teacher.ema_decay_start",
    "teacher.ema_decay_end",
    "teacher.ema_anneal_updates",
    "curriculum.mode",
    "curriculum.threshold",
    "curriculum.plateau",
    "release.epoch_curriculum",
)


def with_saved_schedule(config: PretrainConfig, saved: dict) -> PretrainConfig:
    """`config` with the schedule settings a checkpoint's config dict recorded (keys it lacks keep config's)."""
    sections = {}
    for dotted in SCHEDULE_KEYS:
        section, key = dotted.split(".")
        if key in (saved.get(section) or {}):
            sections.setdefault(section, {})[key] = saved[section][key]
    return dataclasses.replace(
        config, **{name: dataclasses.replace(getattr(config, name), **values) for name, values in sections.items()}
    )


def schedule_jumps(saved: PretrainConfig, current: PretrainConfig, update: int, epoch: int) -> list[str]:
    """What resuming at `update` under `current` instead of `saved` changes at once: the learning rate, the EMA
    decay and alpha of the update about to run, each as 'name old -> new' (nothing that stays the same)."""

    def values(config: PretrainConfig) -> dict[str, float]:
        optim, teacher = config.optim, config.teacher
        return {
            "learning rate": lr_at(update, optim.lr, optim.warmup_steps, optim.max_steps),
            "EMA decay": ema_decay_at(
                update + 1, teacher.ema_decay_start, teacher.ema_decay_end, teacher.ema_anneal_updates
            ),
            "alpha (share of hard spans)": alpha_at(config, update, epoch),
        }

    return value_jumps(values(saved), values(current))
