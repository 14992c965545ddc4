"""EMA teacher update (method §9): teacher <- tau * teacher + (1 - tau) * student, fused and a plain reference."""
from __future__ import annotations

from typing import Sequence

import torch


def _check_pairs(teacher_params: Sequence[torch.Tensor], student_params: Sequence[torch.Tensor],
                 decay: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    teacher, student = list(teacher_params), list(student_params)
    if len(teacher) != len(student):
        raise ValueError(f"EMA: teacher has {len(teacher)} tensors, student has {len(student)}")
    for i, (t, s) in enumerate(zip(teacher, student)):
        if t.shape != s.shape:
            raise ValueError(f"EMA: tensor {i} has teacher shape {tuple(t.shape)}, student shape {tuple(s.shape)}")
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
    return teacher, student


@torch.no_grad()
def ema_update_(teacher_params: Sequence[torch.Tensor], student_params: Sequence[torch.Tensor], decay: float) -> None:
    """Fused in-place EMA: lerp(teacher, student, 1 - decay) == decay * teacher + (1 - decay) * student."""
    teacher, student = _check_pairs(teacher_params, student_params, decay)
    if teacher:
        torch._foreach_lerp_(teacher, student, 1.0 - decay)


@torch.no_grad()
def ema_update_reference_(teacher_params: Sequence[torch.Tensor], student_params: Sequence[torch.Tensor],
                          decay: float) -> None:
    """Plain per-tensor loop, the reference the fused form is tested against."""
    teacher, student = _check_pairs(teacher_params, student_params, decay)
    for t, s in zip(teacher, student):
        t.mul_(decay).add_(s, alpha=1.0 - decay)
