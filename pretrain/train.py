"""The pretraining loop: schedules -> forward -> backward/clip/step -> EMA -> log -> checkpoint.

Every random draw of a step derives from (run.seed, update, micro-step), so a resumed run continues the
uninterrupted one exactly with no replay. Started by torchrun, it runs DDP (NCCL on GPUs, gloo on CPU).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from upstream_ehmam.config import frames_for_samples

from .checkpointing import LAST, TrainState, restore_training_checkpoint, save_training_checkpoint
from .config import PretrainConfig, save_config
from .curriculum import alpha_at
from .data import build_loader
from .ehmam import EHMAMPretrainModel, StepOutput
from .schedules import ema_decay_at, lr_at

log = logging.getLogger("pretrain")


class TrainingAborted(RuntimeError):
    """A health check stopped the run; the last good checkpoint is left untouched."""


@dataclass
class Runtime:
    device: torch.device
    rank: int
    world_size: int
    local_rank: int
    autocast_dtype: torch.dtype | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def derive_seed(*values: int) -> int:
    """A 63-bit seed from integers, stable across platforms and processes."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def init_runtime(config: PretrainConfig) -> Runtime:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wanted = config.run.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"run.device: {config.run.device!r} asked for CUDA but no GPU is visible")
    device = torch.device(f"cuda:{local_rank}" if wanted == "cuda" and world_size > 1 else wanted)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    precision = config.run.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    autocast_dtype = torch.bfloat16 if precision == "bf16" else None
    return Runtime(device, rank, world_size, local_rank, autocast_dtype)


def _batches(loader, sampler, state: TrainState) -> Iterator[dict]:
    """Endless micro-batches; the data position lives in `state` so that a resume continues mid-epoch."""
    while True:
        sampler.set_epoch(state.epoch, start_batch=state.batch_in_epoch)
        for batch in loader:
            state.batch_in_epoch += 1
            yield batch
        state.epoch += 1
        state.batch_in_epoch = 0


class StopSignal:
    """SIGTERM/SIGINT ask the loop to checkpoint and exit after the current update."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous = {}

    def __enter__(self) -> "StopSignal":
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _log_scalars(state: TrainState, out: StepOutput, lr: float, alpha: float, decay: float,
                 seconds_per_step: float, audio_seconds: float) -> dict:
    return {
        "step": state.update, "epoch": state.epoch,
        "loss": out.loss.item(), "rec_loss": out.rec_loss.item(), "aux_loss": out.aux_loss.item(),
        "lr": lr, "alpha": alpha, "ema_decay": decay,
        "masked_fraction": out.masked_fraction.item(), "num_masked": out.num_masked,
        "target_std": out.target_std.item(), "prediction_std": out.prediction_std.item(),
        "student_rho": out.student_rho.item(), "teacher_rho": out.teacher_rho.item(),
        "sec_per_step": seconds_per_step, "audio_sec_per_sec": audio_seconds / max(seconds_per_step, 1e-9),
    }


def train(config: PretrainConfig, resume: bool = False, dry_run: bool = False) -> Path:
    """Run (or continue) pretraining; returns the run directory."""
    runtime = init_runtime(config)
    out_dir = Path(config.run.out_dir)
    torch.manual_seed(config.run.seed)
    model = EHMAMPretrainModel(config).to(runtime.device)
    optimizer = torch.optim.AdamW(model.optimizer_groups(config.optim.weight_decay), lr=config.optim.lr,
                                  betas=tuple(config.optim.betas), eps=config.optim.eps,
                                  fused=runtime.device.type == "cuda")
    # data.max_batch_samples is per device; the sampler forms global batches and shards them by rank
    loader, sampler = build_loader(Path(config.data.manifest), config.data.max_batch_samples * runtime.world_size,
                                   config.data.min_samples, config.data.max_samples, config.run.seed,
                                   config.data.num_workers, rank=runtime.rank, world_size=runtime.world_size,
                                   pin_memory=runtime.device.type == "cuda")
    state = TrainState()
    if dry_run:
        return _dry_run(model, loader, sampler, state, config, runtime)

    last = out_dir / LAST
    if last.exists():
        state = restore_training_checkpoint(last, model, optimizer)
        log.info("resuming %s at update %d (epoch %d, batch %d)", last, state.update, state.epoch,
                 state.batch_in_epoch)
    elif resume:
        raise FileNotFoundError(f"--resume: no {LAST} in {out_dir}")
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, out_dir / "config.yaml")
    _train_loop(model, optimizer, loader, sampler, state, config, runtime, out_dir)
    if runtime.world_size > 1:
        dist.destroy_process_group()
    return out_dir


def _train_loop(model: EHMAMPretrainModel, optimizer, loader, sampler, state: TrainState,
                config: PretrainConfig, runtime: Runtime, out_dir: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    optim, run = config.optim, config.run
    wrapped = model
    if runtime.world_size > 1:
        wrapped = DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda"
                                          else None, find_unused_parameters=config.model.layerdrop > 0)
    writer = SummaryWriter(str(out_dir / "tb")) if runtime.is_main else None
    metrics_file = (out_dir / "metrics.jsonl").open("a") if runtime.is_main else None
    autocast = (torch.autocast(runtime.device.type, dtype=runtime.autocast_dtype)
                if runtime.autocast_dtype is not None else contextlib.nullcontext())
    batches = _batches(loader, sampler, state)
    progress = tqdm(total=optim.max_steps, initial=state.update, disable=not runtime.is_main, desc="pretrain",
                    dynamic_ncols=True)
    model.train()
    tick, audio_seconds, steps_since_log = time.perf_counter(), 0.0, 0
    with StopSignal() as stop:
        while state.update < optim.max_steps:
            # 1. schedules: pure functions of the update count
            lr = lr_at(state.update, optim.lr, optim.warmup_steps, optim.max_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            alpha = alpha_at(config.curriculum.mode, state.update, optim.max_steps, state.epoch,
                             config.curriculum.threshold, config.curriculum.plateau, config.curriculum.e_ref)

            # 2-4. forward, losses, backward over the micro-batches
            for micro in range(optim.grad_accum):
                batch = next(batches)
                step_seed = derive_seed(run.seed, state.update, micro, runtime.rank)
                torch.manual_seed(step_seed)  # dropout and mask-token noise
                mask_generator = torch.Generator().manual_seed(derive_seed(step_seed, 1))
                layerdrop_generator = torch.Generator().manual_seed(derive_seed(run.seed, state.update, micro, 2))
                frame_lengths_host = [int(n) for n in frames_for_samples(batch["wav_lengths"])]
                wav = batch["wav"].to(runtime.device, non_blocking=True)
                wav_lengths = batch["wav_lengths"].to(runtime.device, non_blocking=True)
                sync = (micro == optim.grad_accum - 1 or runtime.world_size == 1)
                with (contextlib.nullcontext() if sync else wrapped.no_sync()), autocast:
                    out = wrapped(wav, wav_lengths, frame_lengths_host, alpha, mask_generator, layerdrop_generator)
                    (out.loss / optim.grad_accum).backward()
                audio_seconds += float(batch["wav_lengths"].sum()) / 16000 * runtime.world_size
            if optim.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), optim.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.update += 1

            # 5. EMA teacher, right after the optimiser step
            decay = ema_decay_at(state.update, config.teacher.ema_decay_start, config.teacher.ema_decay_end,
                                 config.teacher.ema_anneal_updates)
            model.update_teacher(decay)
            progress.update(1)

            # 6. log (the only host reads of device values), health checks, checkpoints
            last_step = state.update == optim.max_steps
            steps_since_log += 1
            if state.update % run.log_every == 0 or last_step or state.update == 1:
                seconds = (time.perf_counter() - tick) / steps_since_log
                scalars = _log_scalars(state, out, lr, alpha, decay, seconds, audio_seconds / steps_since_log)
                tick, audio_seconds, steps_since_log = time.perf_counter(), 0.0, 0
                if runtime.is_main:
                    progress.set_postfix(loss=f"{scalars['loss']:.4f}", aux=f"{scalars['aux_loss']:.3f}",
                                         alpha=f"{alpha:.2f}", rho=f"{scalars['teacher_rho']:.2f}")
                    for key, value in scalars.items():
                        if key not in ("step", "epoch"):
                            writer.add_scalar(f"train/{key}", value, state.update)
                    metrics_file.write(json.dumps(scalars) + "\n")
                    metrics_file.flush()
                _check_health(scalars, config, state)
            if runtime.is_main and (state.update % run.save_every == 0 or last_step or stop.received):
                save_training_checkpoint(out_dir, model, optimizer, state, config, run.keep_checkpoints)
            if stop.received:
                log.warning("signal %d: checkpoint written at update %d, exiting", stop.received, state.update)
                break
    progress.close()
    if writer is not None:
        writer.close()
        metrics_file.close()


def _check_health(scalars: dict, config: PretrainConfig, state: TrainState) -> None:
    if not math.isfinite(scalars["loss"]):
        raise TrainingAborted(f"non-finite loss {scalars['loss']} at update {state.update}; "
                              f"the last checkpoint in {config.run.out_dir} is intact")
    if state.update < config.run.collapse_check_after:
        return
    if scalars["target_std"] < config.run.min_target_std:
        raise TrainingAborted(f"target collapse at update {state.update}: target std {scalars['target_std']:.4f} "
                              f"< run.min_target_std {config.run.min_target_std}")
    if scalars["prediction_std"] < config.run.min_prediction_std:
        raise TrainingAborted(f"prediction collapse at update {state.update}: prediction std "
                              f"{scalars['prediction_std']:.4f} < run.min_prediction_std "
                              f"{config.run.min_prediction_std}")


def _dry_run(model: EHMAMPretrainModel, loader, sampler, state: TrainState, config: PretrainConfig,
             runtime: Runtime) -> Path:
    print("parameters:")
    for name, count in model.parameter_counts().items():
        print(f"  {name:48s} {count:>13,d}")
    print(f"batches per epoch (this rank): {len(sampler)}")
    batch = next(_batches(loader, sampler, state))
    frames = [int(n) for n in frames_for_samples(batch["wav_lengths"])]
    model.train()
    with torch.no_grad():
        out = model(batch["wav"].to(runtime.device), batch["wav_lengths"].to(runtime.device), frames, 0.5,
                    torch.Generator().manual_seed(0), torch.Generator().manual_seed(0))
    print(f"one batch: wav {tuple(batch['wav'].shape)} ({batch['wav'].shape[1] / 16000:.2f} s each), "
          f"frames {frames[0]}, clones {config.mask.clone_batch}, masked frames per row {out.num_masked} "
          f"(fraction {out.masked_fraction.item():.3f}), loss {out.loss.item():.4f}")
    return Path(config.run.out_dir)
