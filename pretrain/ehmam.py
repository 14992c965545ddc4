"""The EH-MAM pretraining model: student (encoder + heads), EMA teacher, and one forward that returns the losses.

The order of `forward` is method.md §2: local features once -> teacher on the unmasked input -> mask from the
teacher's predicted loss -> student on visible frames -> heads -> L = L_rec + lambda * L_aux.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from upstream_ehmam.model import EHMAMEncoder

from .config import PretrainConfig
from .ema import ema_update_
from .heads import ConvDecoder, LossPredictor, insert_mask_tokens
from .losses import ranking_loss, regression_loss_per_frame, spearman_rho
from .masking import MaskPlan, grid_mask, masked_indices, num_hard_spans, plan_grid_mask, release_mask, visible_indices
from .targets import make_targets


@dataclass
class StepOutput:
    """Everything one forward produces; all tensors stay on the device (read them only when logging)."""
    loss: Tensor
    rec_loss: Tensor
    aux_loss: Tensor
    masked_fraction: Tensor
    target_std: Tensor
    prediction_std: Tensor
    student_rho: Tensor     # Spearman rho between the student's predicted and the realised per-frame loss
    teacher_rho: Tensor     # the same for the teacher's prediction, which chose the hard spans
    num_masked: int         # masked frames per row (host-known)


class TeacherModel(nn.Module):
    """EMA copy of the parts the teacher owns (method.md §4): context encoder and loss predictor."""

    def __init__(self, context: nn.Module, predictor: nn.Module | None):
        super().__init__()
        self.context = copy.deepcopy(context)
        self.predictor = copy.deepcopy(predictor) if predictor is not None else None
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "TeacherModel":
        return super().train(False)  # no dropout or layerdrop in the teacher, ever


def _check_plan(plan: MaskPlan, rows: int, num_frames: int, alpha: float) -> None:
    if plan.offsets.shape[0] != rows or plan.num_frames != num_frames:
        raise ValueError(f"mask plan is for {plan.offsets.shape[0]} rows of {plan.num_frames} frames, the batch has "
                         f"{rows} rows (B * clone_batch) of {num_frames} frames")
    if plan.num_hard != num_hard_spans(plan.num_spans, alpha):
        raise ValueError(f"mask plan has {plan.num_hard} hard spans of {plan.num_spans}, alpha={alpha} asks for "
                         f"{num_hard_spans(plan.num_spans, alpha)}")


def _gather_frames(x: Tensor, index: Tensor) -> Tensor:
    """x (R, T, ...) gathered at index (R, N) along time -> (R, N, ...)."""
    if x.dim() == 2:
        return torch.gather(x, 1, index)
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class EHMAMPretrainModel(nn.Module):
    def __init__(self, config: PretrainConfig):
        super().__init__()
        self.config = config
        heads = config.heads
        head_args = dict(embed_dim=config.model.embed_dim, decoder_dim=heads.decoder_dim,
                         kernel_size=heads.kernel_size, groups=heads.groups, depth=heads.depth,
                         input_dropout=heads.input_dropout)
        self.encoder = EHMAMEncoder(config.model)
        self.decoder = ConvDecoder(**head_args)
        self.predictor = LossPredictor(**head_args) if config.uses_loss_predictor else None
        self.teacher = TeacherModel(self.encoder.context, self.predictor)

    def compile_blocks(self) -> None:
        """torch.compile every transformer block of the student and the teacher in place. Parameter names do not
        change, so checkpoints, the EMA and DDP see the same model; dynamic shapes, so a new crop length (the
        length-bucketed loader makes few) does not recompile."""
        for block in [*self.encoder.context.blocks, *self.teacher.context.blocks]:
            block.compile(dynamic=True)

    # -- EMA ---------------------------------------------------------------------------------------------
    def ema_pairs(self) -> tuple[list[Tensor], list[Tensor]]:
        """(teacher tensors, matching student tensors), in the same order."""
        teacher = list(self.teacher.context.parameters())
        student = list(self.encoder.context.parameters())
        if self.predictor is not None:
            teacher += list(self.teacher.predictor.parameters())
            student += list(self.predictor.parameters())
        return teacher, student

    @torch.no_grad()
    def update_teacher(self, decay: float) -> None:
        teacher, student = self.ema_pairs()
        ema_update_(teacher, student, decay)

    # -- the step ----------------------------------------------------------------------------------------
    def forward(self, wav: Tensor, wav_lengths: Tensor, frame_lengths_host: Sequence[int], alpha: float,
                mask_source: torch.Generator | MaskPlan, layerdrop_generator: torch.Generator) -> StepOutput:
        """One training step's forward for B waveforms (B, S) -> losses and health scalars (method.md §2).

        mask_source: a torch.Generator the mask randomness of these rows is drawn from, or (grid mode) a MaskPlan
        already drawn for exactly these B * clone_batch rows (row b * clone_batch + c). The training loop draws
        one plan for the whole global batch and gives each DDP process its rows, so that N processes mask as one.
        """
        cfg = self.config
        clones = cfg.mask.clone_batch

        # 1. local features (CNN or log-mel front end), once, with gradient; the teacher reads them detached
        # (release runs the CNN twice)
        features, frame_lengths = self.encoder.local(wav, wav_lengths)            # (B, T, D)
        B, T, D = features.shape

        # 2. teacher on the unmasked input
        with torch.no_grad():
            teacher_out = self.teacher.context(features.detach(), frame_lengths)
            targets = make_targets(teacher_out.ffn_outputs, frame_lengths, cfg.loss.top_k_layers)  # (B,T,D) fp32
            teacher_scores = None
            if self.teacher.predictor is not None:
                predictor_input = targets if cfg.teacher.predictor_input == "targets" else teacher_out.hidden_states[-1]
                teacher_scores = self.teacher.predictor(predictor_input).float()            # (B, T)

        # 3. mask: same masked count in every row; grid mode needs no host sync
        rows_lengths = [length for length in frame_lengths_host for _ in range(clones)]
        scores_rows = teacher_scores.repeat_interleave(clones, 0) if teacher_scores is not None else None
        if cfg.mask.mode == "grid":
            plan = mask_source
            if not isinstance(plan, MaskPlan):
                plan = plan_grid_mask(rows_lengths, cfg.mask.mask_prob, cfg.mask.span_length, alpha, mask_source)
            _check_plan(plan, len(rows_lengths), T, alpha)
            plan = plan.to(features.device)
            mask = grid_mask(scores_rows if plan.num_hard > 0 else None, plan)                  # (R, T)
            num_masked = plan.num_masked
        else:
            if isinstance(mask_source, MaskPlan):
                raise ValueError("mask.mode=release draws its own mask: pass a torch.Generator, not a MaskPlan")
            mask = release_mask(scores_rows, rows_lengths, cfg.mask.mask_prob, cfg.mask.span_length, alpha,
                                mask_source)
            num_masked = int(mask[0].sum())  # ablation mode: one host read accepted (method.md §6.3)
        visible_idx = visible_indices(mask, T - num_masked)                                   # (R, Tv)
        masked_idx = masked_indices(mask, num_masked)                                         # (R, Nm)

        # 4. student encoder on the visible frames only
        features_rows = features.repeat_interleave(clones, 0)
        lengths_rows = frame_lengths.repeat_interleave(clones, 0)
        encoded = self.encoder.context.forward_visible(features_rows, mask, visible_idx, lengths_rows,
                                                       layerdrop_generator)                   # (R, Tv, D)

        # 5. heads read the scattered sequence with noise mask tokens, each with its own dropout draw
        head_input = insert_mask_tokens(encoded, visible_idx, T, cfg.mask.noise_std, None)    # (R, T, D)
        prediction = _gather_frames(self.decoder(head_input), masked_idx)                     # (R, Nm, D)
        target = _gather_frames(targets.repeat_interleave(clones, 0), masked_idx)             # (R, Nm, D)

        # 6. losses
        frame_loss = regression_loss_per_frame(prediction.reshape(-1, D), target.reshape(-1, D))
        frame_loss = frame_loss.view(-1, num_masked)                                          # (R, Nm)
        rec_loss = frame_loss.mean()
        zero = rec_loss.new_zeros(())
        aux_loss, student_rho = zero, zero
        if self.predictor is not None and cfg.loss.aux_weight > 0:
            predictor_input = head_input if cfg.loss.aux_grad_to_encoder else head_input.detach()
            student_scores = _gather_frames(self.predictor(predictor_input), masked_idx).float()  # (R, Nm)
            aux_loss = ranking_loss(student_scores, frame_loss.detach(), cfg.loss.aux_norm)
            student_rho = spearman_rho(student_scores.detach(), frame_loss.detach())
        loss = rec_loss + cfg.loss.aux_weight * aux_loss

        with torch.no_grad():
            teacher_rho = zero
            if scores_rows is not None:
                teacher_rho = spearman_rho(_gather_frames(scores_rows, masked_idx), frame_loss.detach())
            masked_fraction = (mask.sum(1).float() / lengths_rows.float()).mean()
            target_std = targets.std(dim=1).mean()
            prediction_std = prediction.detach().float().reshape(-1, D).std(dim=0).mean()
        return StepOutput(loss=loss, rec_loss=rec_loss.detach(), aux_loss=aux_loss.detach(),
                          masked_fraction=masked_fraction, target_std=target_std, prediction_std=prediction_std,
                          student_rho=student_rho, teacher_rho=teacher_rho, num_masked=num_masked)

    # -- bookkeeping -------------------------------------------------------------------------------------
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
        """Decay matrices only; biases, norms and the ALiBi scales (all 1-D) get none (method.md §10)."""
        decay, no_decay = [], []
        for module in (self.encoder, self.decoder, self.predictor):
            if module is None:
                continue
            for p in module.parameters():
                if p.requires_grad:
                    (decay if p.dim() >= 2 else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
