"""The tri-stage learning rate and the split of an update's micro-batches over processes, as pure functions."""

from __future__ import annotations

import math

from trainkit.logs import value_jumps


def tri_stage_lr_at(
    update: int,
    peak_lr: float,
    total_updates: int,
    phase_ratio=(0.1, 0.4, 0.5),
    init_lr_scale: float = 0.01,
    final_lr_scale: float = 0.05,
) -> float:
    """LR of the update with 0-based index `update`.

    Warm-up: int(r0 U) updates linear from init_lr_scale * peak towards the peak; hold: int(r1 U) updates at the
    peak; decay: int(r2 U) updates, peak * exp(ln(final_lr_scale) * k / decay) for k = 0..decay, reaching
    final_lr_scale * peak; that value from then on.
    """
    if update < 0:
        raise ValueError(f"update must be >= 0, got {update}")
    warmup, hold, decay = (int(r * total_updates) for r in phase_ratio)
    if update < warmup:
        start = init_lr_scale * peak_lr
        return start + (peak_lr - start) * update / warmup
    k = update - warmup
    if k < hold:
        return peak_lr
    k -= hold
    if k <= decay and decay > 0:
        return peak_lr * math.exp(math.log(final_lr_scale) * k / decay)
    return final_lr_scale * peak_lr


def micro_batch_slots(micro_batches: int, world_size: int, rank: int) -> list[int | None]:
    """The global micro-batch slots (0..micro_batches-1) that `rank` processes, one per accumulation step; None
    where the slots ran out. Every slot goes to exactly one process, so the global batch of an update is the same
    micro_batches micro-batches for any number of processes (ceil(micro_batches / world_size) steps each)."""
    if micro_batches < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"need micro_batches >= 1 and 0 <= rank < world_size, got {micro_batches}, {rank}, {world_size}"
        )
    steps = -(-micro_batches // world_size)
    return [m * world_size + rank if m * world_size + rank < micro_batches else None for m in range(steps)]


# the settings the tri-stage schedule and the freeze read: changing one on resume moves the run to another schedule
SCHEDULE_KEYS = (
    "optim.lr",
    "optim.max_steps",
    "optim.phase_ratio",
    "optim.init_lr_scale",
    "optim.final_lr_scale",
    "model.freeze_updates",
)


def schedule_jumps(saved: dict, current: dict, update: int) -> list[str]:
    """What resuming at `update` under config dict `current` instead of `saved` changes at once: the learning rate
    and whether the encoder is frozen, each as 'name old -> new' (keys `saved` lacks are taken as unchanged)."""

    def values(config: dict) -> dict[str, float]:
        optim = {**current["optim"], **(config.get("optim") or {})}
        model = {**current["model"], **(config.get("model") or {})}
        return {
            "learning rate": tri_stage_lr_at(
                update,
                optim["lr"],
                optim["max_steps"],
                optim["phase_ratio"],
                optim["init_lr_scale"],
                optim["final_lr_scale"],
            ),
            "encoder frozen": float(update < model["freeze_updates"]),
        }

    return value_jumps(values(saved), values(current))
