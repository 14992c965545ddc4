"""The EH-MAM pretraining model: student (encoder + heads), EMA teacher, and one forward that returns the losses
(docs/design.md "One training step", steps 1-6)."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from upstream_ehmam.model import EHMAMEncoder

from .config import PretrainConfig
from .heads import ConvDecoder, LossPredictor, insert_mask_tokens
from .losses import hardness_lift, ranking_loss, regression_loss_per_frame, span_means, spearman_rho
from .masking import DrawnMask, GridMaskPlan, ReleaseMaskPlan, masked_indices, visible_indices
from .targets import make_targets

NOT_MEASURED = float("nan")  # a health scalar the configured step does not compute (e.g. rho without a predictor)


@dataclass
class StepOutput:
    """Everything one forward produces; all tensors stay on the device (read them only when logging)."""

    loss: Tensor
    rec_loss: Tensor
    aux_loss: Tensor  # NaN when the ranking loss is off
    masked_fraction: Tensor
    target_std: Tensor
    prediction_std: Tensor
    student_rho: Tensor  # Spearman rho of the student's predicted vs the realised per-frame loss (NaN: no loss)
    teacher_rho: Tensor  # the same for the teacher's prediction, which chose the hard spans (NaN: no predictor)
    teacher_span_rho: Tensor  # the teacher's rho per span: mean prediction vs mean realised loss (NaN: no spans)
    student_span_rho: Tensor  # the same for the student's predictor (which, unlike the teacher, sees the mask)
    hardness_lift: Tensor  # realised loss in hard-picked spans / in random ones, same rows (NaN: not both kinds)
    num_masked: int  # masked frames per row (host-known)


class TeacherModel(nn.Module):
    """EMA copy of the parts the teacher owns: context encoder and loss predictor."""

    def __init__(self, context: nn.Module, predictor: nn.Module | None):
        super().__init__()
        self.context = copy.deepcopy(context)
        self.predictor = copy.deepcopy(predictor)  # None stays None
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "TeacherModel":
        return super().train(False)  # no dropout or layerdrop in the teacher, ever


@torch.no_grad()
def ema_update_(teacher_params: Sequence[Tensor], student_params: Sequence[Tensor], decay: float) -> None:
    """In place, fused: lerp(teacher, student, 1 - decay) == decay * teacher + (1 - decay) * student."""
    teacher, student = list(teacher_params), list(student_params)
    if len(teacher) != len(student):
        raise ValueError(f"EMA: teacher has {len(teacher)} tensors, student has {len(student)}")
    if teacher:
        torch._foreach_lerp_(teacher, student, 1.0 - decay)


def gather_frames(x: Tensor, index: Tensor) -> Tensor:
    """x (R, T, ...) gathered at index (R, N) along time -> (R, N, ...)."""
    return torch.gather(x, 1, index if x.dim() == 2 else index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class EHMAMPretrainModel(nn.Module):
    def __init__(self, config: PretrainConfig):
        super().__init__()
        self.config = config
        sizes = dict(embed_dim=config.model.embed_dim, **asdict(config.heads))  # the heads section
        self.encoder = EHMAMEncoder(config.model)
        self.decoder = ConvDecoder(**sizes)
        self.predictor = LossPredictor(**sizes) if config.uses_loss_predictor else None
        self.teacher = TeacherModel(self.encoder.context, self.predictor)

    def compile_blocks(self) -> None:
        """torch.compile every student and teacher block in place (state dict names unchanged), dynamic shapes."""
        for block in [*self.encoder.context.blocks, *self.teacher.context.blocks]:
            block.compile(dynamic=True)

    @torch.no_grad()
    def update_teacher(self, decay: float) -> None:
        """The context encoder moves with `decay`; the predictor with teacher.predictor_ema_decay when it is set."""
        ema_update_(self.teacher.context.parameters(), self.encoder.context.parameters(), decay)
        if self.predictor is not None:
            own = self.config.teacher.predictor_ema_decay
            ema_update_(self.teacher.predictor.parameters(), self.predictor.parameters(), decay if own is None else own)

    @torch.no_grad()
    def teacher_targets(self, features: Tensor, frame_lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        """The teacher on the detached features, unmasked: targets (B, T, D) fp32, predicted loss (B, T) or None."""
        out = self.teacher.context(features.detach(), frame_lengths)
        targets = make_targets(out.ffn_outputs, frame_lengths, self.config.loss.top_k_layers)
        if self.teacher.predictor is None:
            return targets, None
        selector_input = targets if self.config.release.predictor_on_targets else out.hidden_states[-1]
        return targets, self.teacher.predictor(selector_input).float()

    def forward(
        self,
        wav: Tensor,
        wav_lengths: Tensor,
        mask_plan: GridMaskPlan | ReleaseMaskPlan,
        layerdrop_generator: torch.Generator,
    ) -> StepOutput:
        """B waveforms (B, S) -> losses and health scalars; `mask_plan` masks their B * clone_batch rows."""
        clones = self.config.mask.clone_batch
        features, frame_lengths = self.encoder.local(wav, wav_lengths)  # (B, T, D)
        T = features.shape[1]
        targets, scores = self.teacher_targets(features, frame_lengths)
        scores_rows = scores.repeat_interleave(clones, 0) if scores is not None else None
        drawn = mask_plan.mask(scores_rows, features.device)
        mask, num_masked = drawn.mask, drawn.num_masked  # (R, T)
        visible_idx = visible_indices(mask, T - num_masked)  # (R, Tv)
        masked_idx = masked_indices(mask, num_masked)  # (R, Nm)
        lengths_rows = frame_lengths.repeat_interleave(clones, 0)
        encoded = self.encoder.context.forward_visible(
            features.repeat_interleave(clones, 0), mask, visible_idx, lengths_rows, layerdrop_generator
        )  # (R, Tv, D)
        # the heads read the scattered sequence with noise mask tokens, each with its own dropout draw
        head_input = insert_mask_tokens(encoded, visible_idx, T, self.config.mask.noise_std, None)  # (R, T, D)
        prediction = gather_frames(self.decoder(head_input), masked_idx)  # (R, Nm, D)
        target = gather_frames(targets.repeat_interleave(clones, 0), masked_idx)  # (R, Nm, D)
        out = self.losses(prediction, target, head_input, masked_idx, scores_rows, drawn)
        with torch.no_grad():
            out.masked_fraction = (mask.sum(1).float() / lengths_rows.float()).mean()
            out.target_std = targets.std(dim=1).mean()
        return out

    def losses(
        self,
        prediction: Tensor,
        target: Tensor,
        head_input: Tensor,
        masked_idx: Tensor,
        teacher_scores: Tensor | None,
        drawn: DrawnMask,
    ) -> StepOutput:
        """L = L_rec + lambda * L_aux at the masked frames, and the health scalars: rho, hardness lift, std."""
        cfg = self.config.loss
        R, num_masked, D = prediction.shape
        frame_loss = regression_loss_per_frame(prediction.reshape(-1, D), target.reshape(-1, D)).view(R, num_masked)
        rec_loss = frame_loss.mean()
        not_measured = rec_loss.new_full((), NOT_MEASURED).detach()
        loss, aux_loss, student_rho, teacher_rho, span_rho, student_span_rho = (rec_loss,) + (not_measured,) * 5
        spans = drawn.span_length if drawn.span_length is not None and num_masked >= 2 * drawn.span_length else None
        if self.predictor is not None and cfg.aux_weight > 0:
            predictor_input = head_input if cfg.aux_grad_to_encoder else head_input.detach()
            student_scores = gather_frames(self.predictor(predictor_input), masked_idx).float()  # (R, Nm)
            aux_loss = ranking_loss(student_scores, frame_loss.detach(), self.config.release.aux_norm)
            student_rho = spearman_rho(student_scores.detach(), frame_loss.detach())
            if spans is not None:
                student_span_rho = spearman_rho(
                    span_means(student_scores.detach(), spans), span_means(frame_loss.detach(), spans)
                )
            loss = rec_loss + cfg.aux_weight * aux_loss
        with torch.no_grad():
            realised = frame_loss.detach()
            lift = hardness_lift(realised, gather_frames(drawn.hard, masked_idx))
            if teacher_scores is not None:
                teacher_at_masked = gather_frames(teacher_scores, masked_idx)
                teacher_rho = spearman_rho(teacher_at_masked, realised)
                if spans is not None:
                    span_rho = spearman_rho(span_means(teacher_at_masked, spans), span_means(realised, spans))
            prediction_std = prediction.detach().float().reshape(-1, D).std(dim=0).mean()
        return StepOutput(
            loss=loss,
            rec_loss=rec_loss.detach(),
            aux_loss=aux_loss.detach(),
            masked_fraction=not_measured,
            target_std=not_measured,
            prediction_std=prediction_std,
            student_rho=student_rho,
            teacher_rho=teacher_rho,
            teacher_span_rho=span_rho,
            student_span_rho=student_span_rho,
            hardness_lift=lift,
            num_masked=num_masked,
        )

    def parameter_counts(self) -> dict[str, int]:
        def count(module: nn.Module | None) -> int:
            return 0 if module is None else sum(p.numel() for p in module.parameters())

        encoder = self.encoder
        return {
            f"{encoder.config.frontend}+projection (local)": count(encoder.local),
            "context encoder (pos-conv, LN, ALiBi, blocks)": count(encoder.context),
            "encoder total (SUPERB upstream)": count(encoder),
            "regression decoder": count(self.decoder),
            "loss predictor": count(self.predictor),
            "student total": count(encoder) + count(self.decoder) + count(self.predictor),
            "teacher (EMA, no gradients)": count(self.teacher),
        }

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Decay matrices only; biases, norms and the ALiBi scales (all 1-D) get none."""
        params = [
            p
            for m in (self.encoder, self.decoder, self.predictor)
            if m is not None
            for p in m.parameters()
            if p.requires_grad
        ]
        return [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
