"""EMA teacher update: teacher <- tau * teacher + (1 - tau) * student, fused (tests/test_ema.py holds the plain
loop it is checked against)."""
from __future__ import annotations

from typing import Sequence

import torch


@torch.no_grad()
def ema_update_(teacher_params: Sequence[torch.Tensor], student_params: Sequence[torch.Tensor], decay: float) -> None:
    """In place: lerp(teacher, student, 1 - decay) == decay * teacher + (1 - decay) * student."""
    teacher, student = list(teacher_params), list(student_params)
    if len(teacher) != len(student):
        raise ValueError(f"EMA: teacher has {len(teacher)} tensors, student has {len(student)}")
    if teacher:
        torch._foreach_lerp_(teacher, student, 1.0 - decay)
