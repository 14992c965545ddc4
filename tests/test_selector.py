"""The hard-span selector and its measures: the hardness lift and span means on hand-made batches, and each
`teacher` option reading the predictor copy and the input it names."""

import math
from pathlib import Path

import pytest
import torch

from pretrain.config import load_config
from pretrain.ehmam import EHMAMPretrainModel
from pretrain.losses import hardness_lift, span_means
from pretrain.masking import GridMaskPlan, masked_indices
from pretrain.step import mask_plan_for

ROOT = Path(__file__).resolve().parent.parent


def test_hardness_lift_of_a_known_plan_and_known_losses():
    """One row of 20 frames cut into 4 cells of 5 (offset 0): cell 2 has the highest predicted loss and is the hard
    span; the random score picks cell 0. Realised loss 3 in cell 2 and 1.5 in cell 0: lift 2. A second row with the
    hard cell 1 (loss 1) and random cell 3 (loss 4): lift 0.25. The batch's lift is the mean of the rows', 1.125."""
    plan = GridMaskPlan(
        num_frames=20,
        span_length=5,
        num_spans=2,
        num_hard=1,
        num_cells=4,
        offsets=torch.tensor([0, 0]),
        cell_scores=torch.tensor([[0.9, 0.1, 0.5, 0.2], [0.1, 0.2, 0.3, 0.9]]),
    )
    predicted = torch.zeros(2, 20)
    predicted[0, 10:15] = 1.0
    predicted[1, 5:10] = 1.0
    drawn = plan.mask(predicted, torch.device("cpu"))
    assert drawn.mask[0].nonzero().flatten().tolist() == list(range(0, 5)) + list(range(10, 15))
    assert drawn.hard[0].nonzero().flatten().tolist() == list(range(10, 15))
    assert drawn.hard[1].nonzero().flatten().tolist() == list(range(5, 10))
    realised_per_frame = torch.zeros(2, 20)
    realised_per_frame[0, 0:5], realised_per_frame[0, 10:15] = 1.5, 3.0
    realised_per_frame[1, 5:10], realised_per_frame[1, 15:20] = 1.0, 4.0
    index = masked_indices(drawn.mask, drawn.num_masked)
    realised, hard = realised_per_frame.gather(1, index), drawn.hard.gather(1, index)
    assert hardness_lift(realised, hard).item() == pytest.approx((2.0 + 0.25) / 2)
    assert span_means(realised, 5).tolist() == [[1.5, 3.0], [1.0, 4.0]]


def test_hardness_lift_is_nan_without_hard_or_without_random_spans():
    realised = torch.rand(3, 10)
    assert math.isnan(hardness_lift(realised, torch.zeros(3, 10, dtype=torch.bool)).item())
    assert math.isnan(hardness_lift(realised, torch.ones(3, 10, dtype=torch.bool)).item())
    with pytest.raises(ValueError, match="whole spans"):
        span_means(realised, 4)


def _model(*overrides: str) -> tuple[EHMAMPretrainModel, object]:
    config = load_config(ROOT / "pretrain" / "tiny.yaml", ["data.max_samples=32000", *overrides])
    torch.manual_seed(0)
    return EHMAMPretrainModel(config), config


def _nudge_student(model: EHMAMPretrainModel) -> None:
    with torch.no_grad():
        for p in [*model.encoder.context.parameters(), *model.predictor.parameters()]:
            p.add_(0.1)


@pytest.mark.parametrize("own_decay, expected", [(None, 0.9), (0.0, 0.0), (0.5, 0.5)])
def test_predictor_ema_decay_names_the_copy_the_teacher_reads(own_decay, expected):
    """The encoder copy moves with the update's decay (0.9) whatever the option; the predictor copy with its own
    decay: null follows the encoder, 0 is the student's current predictor, 0.5 its own EMA."""
    model, _ = _model(f"teacher.predictor_ema_decay={'null' if own_decay is None else own_decay}")
    _nudge_student(model)
    context_before = [t.clone() for t in model.teacher.context.parameters()]
    predictor_before = [t.clone() for t in model.teacher.predictor.parameters()]
    model.update_teacher(0.9)
    for t, old, s in zip(model.teacher.context.parameters(), context_before, model.encoder.context.parameters()):
        torch.testing.assert_close(t, 0.9 * old + 0.1 * s)
    for t, old, s in zip(model.teacher.predictor.parameters(), predictor_before, model.predictor.parameters()):
        torch.testing.assert_close(t, expected * old + (1 - expected) * s)
    if own_decay == 0.0:
        assert all(
            torch.equal(t, s) for t, s in zip(model.teacher.predictor.parameters(), model.predictor.parameters())
        )


@pytest.mark.parametrize("on_targets", [True, False])
def test_teacher_predictor_reads_the_input_it_is_given(on_targets):
    """The selector reads the teacher's last block, or the targets with release.predictor_on_targets."""
    model, config = _model(f"release.predictor_on_targets={str(on_targets).lower()}")
    seen = []
    model.teacher.predictor.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    features, frame_lengths = model.encoder.local(torch.randn(2, 32000), torch.tensor([32000, 32000]))
    targets, _ = model.teacher_targets(features, frame_lengths)
    last_block = model.teacher.context(features, frame_lengths).hidden_states[-1]
    assert torch.equal(seen[0], targets if on_targets else last_block)


def test_a_step_logs_the_lift_and_the_span_rho():
    """A forward at alpha 0.5 measures both (finite); at alpha 0 the lift is NaN (no hard spans), span rho is not."""
    model, config = _model()
    wav, lengths = torch.randn(2, 32000), torch.tensor([32000, 32000])
    frames = [int(n) for n in config.model.frames_for_samples(lengths)]
    for alpha, lift_finite in ((0.5, True), (0.0, False)):
        plan = mask_plan_for(config, frames, [0, 1], alpha, world_size=1, seed=0)
        out = model(wav, lengths, plan, torch.Generator().manual_seed(1))
        assert math.isfinite(out.hardness_lift.item()) == lift_finite
        assert -1 <= out.teacher_span_rho.item() <= 1 and -1 <= out.student_span_rho.item() <= 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("teacher.predictor_ema_decay=1.5", "teacher.predictor_ema_decay: must be null or in \\[0, 1\\)"),
        ("teacher.predictor_ema_decay=fast", "teacher.predictor_ema_decay: expected float"),
        ("mask.budget=fairseq", "mask.budget: must be one of overlapping, exact"),
        ("teacher.predictor_input=targets", "release.predictor_on_targets: true restores"),
    ],
)
def test_selector_and_budget_settings_are_checked_by_name(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(ROOT / "pretrain" / "tiny.yaml", [override])
