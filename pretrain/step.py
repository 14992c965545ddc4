"""One optimiser update (`train_step`, docs/design.md "One training step"), shared by the loop (pretrain/train.py)
and the benchmark (bench/train_step.py); every random draw derives from (run.seed, update, micro-step)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Sequence

import torch
import torch.distributed as dist

from trainkit.runtime import Runtime, derive_seed

from .config import PretrainConfig
from .ehmam import EHMAMPretrainModel, StepOutput
from .masking import GridMaskPlan, ReleaseMaskPlan, draw_mask_plan
from .schedules import alpha_at, ema_decay_at, lr_at

# derive_seed(run.seed, update, micro, stream[, rank]): one stream per kind of randomness
MASK_STREAM, LAYERDROP_STREAM, DROPOUT_STREAM = 1, 2, 3


@dataclass
class StepResult:
    out: StepOutput  # the last micro-batch's forward
    lr: float
    alpha: float
    decay: float  # the EMA decay applied (NaN when the update was skipped)
    grad_norm: torch.Tensor  # on the device
    nonfinite: bool  # skipped: no optimiser step, no EMA
    stop: bool  # some rank received a stop signal


def mask_plan_for(
    config: PretrainConfig,
    frame_lengths: Sequence[int],
    positions: Sequence[int],
    alpha: float,
    world_size: int,
    seed: int,
) -> GridMaskPlan | ReleaseMaskPlan:
    """This process's mask plan for a micro-batch whose rows sit at `positions` of the global batch."""
    mask = config.mask
    return draw_mask_plan(
        frame_lengths,
        positions,
        world_size,
        mask.clone_batch,
        mask.mask_prob,
        mask.span_length,
        alpha,
        config.release.span_sampler,
        torch.Generator().manual_seed(seed),
        mask.budget,
    )


def update_flags(
    grad_norm: torch.Tensor, loss_sum: torch.Tensor, stop_received: bool, runtime: Runtime
) -> tuple[bool, bool]:
    """(non-finite, stop) for this update, the same on every rank; the one host read of an update."""
    nonfinite = ~(torch.isfinite(grad_norm) & torch.isfinite(loss_sum))
    flags = torch.stack([nonfinite.float(), torch.tensor(float(stop_received), device=nonfinite.device)])
    if runtime.world_size > 1:
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return tuple(flag > 0 for flag in flags.tolist())


def forward_backward(
    wrapped: torch.nn.Module,
    config: PretrainConfig,
    runtime: Runtime,
    batch: dict,
    update: int,
    micro: int,
    alpha: float,
    phase: Callable[[str], ContextManager],
) -> StepOutput:
    """One micro-batch: seeds, mask plan, forward, backward of loss / grad_accum (DDP syncs on the last one)."""
    seed, accum = config.run.seed, config.optim.grad_accum
    with phase("schedules + mask plan (host)"):
        torch.manual_seed(derive_seed(seed, update, micro, DROPOUT_STREAM, runtime.rank))
        layerdrop = torch.Generator().manual_seed(derive_seed(seed, update, micro, LAYERDROP_STREAM))  # all ranks
        frame_lengths = [int(n) for n in config.model.frames_for_samples(batch["wav_lengths"])]
        plan = mask_plan_for(
            config,
            frame_lengths,
            batch["position"].tolist(),
            alpha,
            runtime.world_size,
            derive_seed(seed, update, micro, MASK_STREAM),
        )
    sync = micro == accum - 1 or runtime.world_size == 1
    autocast = (
        torch.autocast(runtime.device.type, dtype=runtime.autocast_dtype)
        if runtime.autocast_dtype is not None
        else contextlib.nullcontext()
    )
    with contextlib.nullcontext() if sync else wrapped.no_sync():
        with phase("forward"), autocast:
            wav = batch["wav"].to(runtime.device, non_blocking=True)
            wav_lengths = batch["wav_lengths"].to(runtime.device, non_blocking=True)
            out = wrapped(wav, wav_lengths, plan, layerdrop)
        with phase("backward"):
            (out.loss / accum).backward()
    return out


def train_step(
    model: EHMAMPretrainModel,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[dict],
    update: int,
    epoch: int,
    config: PretrainConfig,
    runtime: Runtime,
    *,
    wrapped: torch.nn.Module | None = None,
    stop_received: bool = False,
    phase: Callable[[str], ContextManager] = contextlib.nullcontext,
) -> StepResult:
    """Update `update` (0-based) on optim.grad_accum host micro-batches of data epoch `epoch`; `wrapped` is the DDP
    wrapper of `model` (default: the model), `phase(name)` is entered around each part for a profiler's labels."""
    optim = config.optim
    lr = lr_at(update, optim.lr, optim.warmup_steps, optim.max_steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    alpha = alpha_at(config, update, epoch)
    loss_sum = torch.zeros((), device=runtime.device)
    for micro, batch in enumerate(micro_batches):
        out = forward_backward(wrapped or model, config, runtime, batch, update, micro, alpha, phase)
        loss_sum += out.loss.detach()
    with phase("grad norm + finite check (host read)"):
        params = [p for p in model.parameters() if p.requires_grad]
        if optim.clip_grad_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, optim.clip_grad_norm)
        else:  # the total norm as a device tensor, no host read
            grads = [p.grad for p in params if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=params[0].device)
        nonfinite, stop = update_flags(grad_norm, loss_sum, stop_received, runtime)
    decay = float("nan")
    if not nonfinite:
        with phase("optimiser"):
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if not nonfinite:
        with phase("EMA"):  # right after the optimiser step; u = updates done, 1-based
            decay = ema_decay_at(
                update + 1,
                config.teacher.ema_decay_start,
                config.teacher.ema_decay_end,
                config.teacher.ema_anneal_updates,
            )
            model.update_teacher(decay)
    return StepResult(out, lr, alpha, decay, grad_norm, nonfinite, stop)
