"""Tests for pretrain/schedules.py: alpha, learning rate and EMA decay at chosen steps."""

import math

import pytest

from pretrain.config import config_from_dict
from pretrain.schedules import alpha_at, alpha_progress, ema_decay_at, lr_at

U = 400_000


def test_alpha_progress_values():
    """Progress form: alpha = u/U below 0.7, then the 0.8 plateau."""
    assert alpha_progress(0, U) == 0.0
    assert alpha_progress(int(0.35 * U), U) == pytest.approx(0.35, abs=1e-12)
    assert alpha_progress(U // 2, U) == pytest.approx(0.5, abs=1e-12)
    assert alpha_progress(int(0.7 * U) - 1, U) == pytest.approx(0.7 - 1 / U, abs=1e-12)
    assert alpha_progress(int(0.7 * U), U) == 0.8
    assert alpha_progress(U, U) == 0.8
    assert alpha_progress(10, 100, threshold=0.05, plateau=0.6) == 0.6


def test_alpha_epoch_release_rule():
    """Release rule (release.epoch_curriculum: 150): e/150 up to epoch 104, then 0.8 from epoch 105 on."""
    release = config_from_dict({"optim": {"max_steps": U}, "release": {"epoch_curriculum": 150}})
    assert alpha_at(release, 0, 1) == pytest.approx(1 / 150)
    assert alpha_at(release, 0, 104) == pytest.approx(104 / 150)
    assert alpha_at(release, 0, 105) == 0.8
    assert alpha_at(release, 0, 600) == 0.8
    assert alpha_progress(10, 20) == pytest.approx(0.5)


def test_alpha_at_follows_the_configured_rule():
    """alpha_at: progress u/U by default, the release's epoch rule under release.epoch_curriculum, 0 for mode none."""
    progress = config_from_dict({"optim": {"max_steps": U}})
    epoch = config_from_dict({"optim": {"max_steps": U}, "release": {"epoch_curriculum": 150}})
    none = config_from_dict({"optim": {"max_steps": U}, "curriculum": {"mode": "none"}})
    assert alpha_at(progress, U // 4, 104) == pytest.approx(0.25)
    assert alpha_at(epoch, U // 4, 104) == pytest.approx(104 / 150)
    assert alpha_at(none, U - 1, 200) == 0.0


def test_lr_warmup_and_cosine_endpoints():
    """LR ramps linearly to the peak over warm-up, then follows a cosine to 0 at total_updates."""
    peak, warm, total = 7.5e-4, 8000, 400_000
    assert lr_at(0, peak, warm, total) == pytest.approx(peak / warm)
    assert lr_at(warm // 2 - 1, peak, warm, total) == pytest.approx(peak / 2)
    assert lr_at(warm - 1, peak, warm, total) == pytest.approx(peak)
    assert lr_at(warm, peak, warm, total) == pytest.approx(peak)
    mid = warm + (total - warm) // 2
    assert lr_at(mid, peak, warm, total) == pytest.approx(peak / 2)
    assert 0 < lr_at(total - 1, peak, warm, total) < 1e-12
    assert lr_at(total, peak, warm, total) == 0.0
    assert lr_at(total + 5, peak, warm, total) == 0.0
    quarter = warm + (total - warm) // 4
    assert lr_at(quarter, peak, warm, total) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi / 4)))
    lrs = [lr_at(u, peak, warm, total) for u in range(0, total, 997)]
    top = lrs.index(max(lrs))
    assert all(a <= b for a, b in zip(lrs[:top], lrs[1 : top + 1]))  # rises, then never rises again
    assert all(a >= b for a, b in zip(lrs[top:], lrs[top + 1 :]))
    assert lr_at(0, peak, 0, total) == pytest.approx(peak)  # no warm-up


def test_ema_decay_schedule_values():
    """tau goes linearly from 0.999 to 0.99999 over 75k updates and stays there."""
    assert ema_decay_at(0) == pytest.approx(0.999, abs=1e-15)
    assert ema_decay_at(37_500) == pytest.approx((0.999 + 0.99999) / 2, abs=1e-15)
    assert ema_decay_at(75_000) == pytest.approx(0.99999, abs=1e-15)
    assert ema_decay_at(1_000_000) == pytest.approx(0.99999, abs=1e-15)
    assert ema_decay_at(10, start=0.9, end=1.0, anneal_updates=100) == pytest.approx(0.91)
