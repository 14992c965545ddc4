"""Easy-to-hard curriculum (docs/design.md "Curriculum"): the share alpha of mask spans placed on predicted-hard
frames, a pure function of the update (or of the 1-based epoch), so resuming needs no replay."""
from __future__ import annotations

from .config import PretrainConfig


def alpha_progress(update: int, total_updates: int, threshold: float = 0.7, plateau: float = 0.8) -> float:
    """Project default: p = update / total_updates; alpha = p below the threshold, else the plateau."""
    p = update / total_updates
    return p if p < threshold else plateau


def alpha_epoch(epoch: int, e_ref: int = 150, threshold: float = 0.7, plateau: float = 0.8) -> float:
    """The release rule on the 1-based epoch: e / e_ref below the threshold, else the plateau (0.8 from e = 105)."""
    return alpha_progress(epoch, e_ref, threshold, plateau)


def alpha_at(config: PretrainConfig, update: int, epoch: int) -> float:
    """alpha of the update about to run: 0 for curriculum.mode none (the random-masking baseline), the release's
    epoch rule under release.epoch_curriculum, else training progress."""
    curriculum = config.curriculum
    if curriculum.mode == "none":
        return 0.0
    if config.release.epoch_curriculum:
        return alpha_epoch(epoch, config.release.epoch_curriculum, curriculum.threshold, curriculum.plateau)
    return alpha_progress(update, config.optim.max_steps, curriculum.threshold, curriculum.plateau)
