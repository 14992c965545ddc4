"""Easy-to-hard curriculum (method §7): the share alpha of mask spans placed on predicted-hard frames.

Pure functions of the step (or the 1-based epoch), so resuming needs no replay.
"""
from __future__ import annotations

CURRICULUM_MODES = ("progress", "epoch", "none")


def _ramp_then_plateau(p: float, threshold: float, plateau: float) -> float:
    return p if p < threshold else plateau


def alpha_progress(update: int, total_updates: int, threshold: float = 0.7, plateau: float = 0.8) -> float:
    """Project default: p = update / total_updates; alpha = p below the threshold, else the plateau."""
    if total_updates <= 0:
        raise ValueError(f"total_updates must be > 0, got {total_updates}")
    if update < 0:
        raise ValueError(f"update must be >= 0, got {update}")
    return _ramp_then_plateau(update / total_updates, threshold, plateau)


def alpha_epoch(epoch: int, e_ref: int = 150, threshold: float = 0.7, plateau: float = 0.8) -> float:
    """The release rule on the 1-based epoch: e / e_ref below the threshold, else the plateau (0.8 from e = 105)."""
    if e_ref <= 0:
        raise ValueError(f"e_ref must be > 0, got {e_ref}")
    if epoch < 1:
        raise ValueError(f"epoch is 1-based, got {epoch}")
    return _ramp_then_plateau(epoch / e_ref, threshold, plateau)


def alpha_at(mode: str, update: int, total_updates: int, epoch: int, threshold: float, plateau: float,
             e_ref: int) -> float:
    """alpha for `curriculum.mode` in {"progress", "epoch", "none"}; "none" is the d2v2 baseline (alpha = 0)."""
    if mode == "progress":
        return alpha_progress(update, total_updates, threshold, plateau)
    if mode == "epoch":
        return alpha_epoch(epoch, e_ref, threshold, plateau)
    if mode == "none":
        return 0.0
    raise ValueError(f"curriculum.mode must be one of {CURRICULUM_MODES}, got {mode!r}")
