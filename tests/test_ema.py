"""Tests for pretrain/ehmam.py ema_update_: the fused EMA update against the plain loop and the float64 formula."""

import pytest
import torch

from pretrain.ehmam import ema_update_


@torch.no_grad()
def ema_update_reference_(teacher, student, decay):
    """The plain per-tensor loop the fused form is checked against."""
    for t, s in zip(teacher, student):
        t.mul_(decay).add_(s, alpha=1.0 - decay)


def _random_params(g, scale):
    shapes = [(64, 48), (48,), (7, 3, 5), ()]
    return [torch.randn(s, generator=g) * scale for s in shapes]


@pytest.mark.parametrize("decay", [0.999, 0.99999, 0.5])
def test_fused_matches_reference_loop(decay):
    """Fused lerp and the mul_/add_ loop agree to 1e-7 on weight-scale tensors and match the float64 formula."""
    g = torch.Generator().manual_seed(0)
    for scale, atol in ((0.02, 1e-7), (1.0, 1e-6)):  # 1e-6 at unit scale = a couple of fp32 ulps
        teacher, student = _random_params(g, scale), _random_params(g, scale)
        fused, loop = [t.clone() for t in teacher], [t.clone() for t in teacher]
        ema_update_(fused, student, decay)
        ema_update_reference_(loop, student, decay)
        for f, r, t, s in zip(fused, loop, teacher, student):
            torch.testing.assert_close(f, r, rtol=0, atol=atol)
            exact = (decay * t.double() + (1 - decay) * s.double()).float()
            torch.testing.assert_close(f, exact, rtol=0, atol=atol)
        assert not torch.equal(fused[0], teacher[0]), "the teacher must move"


def test_decay_one_leaves_teacher_unchanged_and_zero_copies_student():
    """decay = 1 keeps the teacher bit-exact; decay = 0 copies the student."""
    g = torch.Generator().manual_seed(1)
    teacher, student = _random_params(g, 1.0), _random_params(g, 1.0)
    kept = [t.clone() for t in teacher]
    ema_update_(kept, student, 1.0)
    assert all(torch.equal(k, t) for k, t in zip(kept, teacher))
    copied = [t.clone() for t in teacher]
    ema_update_(copied, student, 0.0)
    assert all(torch.equal(c, s) for c, s in zip(copied, student))


def test_updates_parameters_in_place_without_autograd():
    """Works on nn.Parameters that require grad (no autograd error) and updates them in place."""
    teacher = torch.nn.Linear(4, 3)
    student = torch.nn.Linear(4, 3)
    before = teacher.weight.data_ptr()
    ema_update_(list(teacher.parameters()), list(student.parameters()), 0.0)
    assert teacher.weight.data_ptr() == before
    assert torch.equal(teacher.weight, student.weight)


def test_mismatched_lists_raise_instead_of_truncating():
    """A student list of another length is a ValueError naming both counts, and the teacher is left untouched."""
    teacher = [torch.zeros(3)]
    with pytest.raises(ValueError, match="teacher has 1 tensors, student has 2"):
        ema_update_(teacher, [torch.ones(3), torch.ones(2)], 0.5)
    assert torch.equal(teacher[0], torch.zeros(3))
