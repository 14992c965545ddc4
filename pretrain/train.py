"""The pretraining loop: schedules -> forward -> backward/clip/step -> EMA -> log -> checkpoint.

Every random draw of a step derives from (run.seed, update, micro-step), so a resumed run continues the
uninterrupted one exactly with no replay. Started by torchrun, it runs DDP (NCCL on GPUs, gloo on CPU).

DDP computes the single-process function (tests/test_ddp.py). The sampler forms one global batch per micro-step
and gives rank r its positions r, r+W, ...; crops derive from (seed, epoch, utterance); the grid-mask plan is
drawn for the whole global batch from (seed, update, micro) and each rank keeps its rows; layerdrop derives from
(seed, update, micro). So every rank holds B/W rows of one length T with the same masked count N*L (N is the
minimum over the global batch), and the DDP gradient average of the per-rank means is the global mean of L_rec,
and of L_aux with pair_mean (equal valid-pair counts, unless two realised losses tie exactly) (method.md §8.4).
Not rank-invariant: dropout and mask-token noise (drawn per rank: the same law, other values), aux_norm "sum"
(a per-rank sum, averaged), aux_norm "flat_batch_mean" (pairs within a rank), mask.mode "release" (per-rank
equalisation).

Faults: an update whose loss or gradient norm is not finite is skipped (no optimiser step, no EMA) and counted;
run.max_nonfinite_skips skips in a row stop the run and leave the last checkpoint as it was. The check is one
scalar host read per update (after backward, also carrying the stop flag; all-reduced under DDP), which only
delays the next update's launch by the time the device takes to finish the backward. SIGTERM/SIGINT finish the
current update, write a checkpoint and exit; SIGKILL loses at most the updates since the last checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import logging
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

from .checkpointing import (LAST, TrainState, remove_stale_temporaries, restore_training_checkpoint,
                            save_training_checkpoint)
from .config import PretrainConfig, save_config
from .curriculum import alpha_at
from .data import BadAudioLog, build_loader, unwrap_worker_error
from .ehmam import EHMAMPretrainModel, StepOutput
from .masking import MaskPlan, plan_grid_mask
from .monitor import ABXMonitor, log_abx
from .schedules import ema_decay_at, lr_at

log = logging.getLogger("pretrain")

METRICS = "metrics.jsonl"
# derive_seed(run.seed, update, micro, stream[, rank]): one stream per kind of randomness
_MASK_STREAM, _LAYERDROP_STREAM, _DROPOUT_STREAM = 1, 2, 3


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
        try:
            for batch in loader:
                state.batch_in_epoch += 1
                yield batch
        except (ValueError, FileNotFoundError) as err:  # e.g. data.bad_audio=error, raised in a loader worker
            unwrapped = unwrap_worker_error(err)
            if unwrapped is err:
                raise
            raise unwrapped from err
        state.epoch += 1
        state.batch_in_epoch = 0


class StopSignal:
    """SIGTERM/SIGINT ask the loop to checkpoint and exit after the current update; a second one acts at once
    (the handlers in place before are restored and the signal is raised again)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous = {}

    def __enter__(self) -> "StopSignal":
        for sig in (signal.SIGTERM, signal.SIGINT):
            # a SIGINT ignored at start-up (nohup, `cmd &` from a script) stays ignored, as Unix jobs expect
            if sig == signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN:
                continue
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            self.__exit__()
            signal.raise_signal(signum)
            return
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def train(config: PretrainConfig, resume: bool = False, dry_run: bool = False) -> Path:
    """Run (or continue) pretraining; returns the run directory.

    A run directory holding last.pt is always continued (resume=True only makes its absence an error).
    """
    runtime = init_runtime(config)
    out_dir = Path(config.run.out_dir)
    torch.manual_seed(config.run.seed)  # the same initial weights on every rank
    model = EHMAMPretrainModel(config).to(runtime.device)
    if config.run.compile_blocks:
        model.compile_blocks()
    optimizer = torch.optim.AdamW(model.optimizer_groups(config.optim.weight_decay), lr=config.optim.lr,
                                  betas=tuple(config.optim.betas), eps=config.optim.eps,
                                  fused=runtime.device.type == "cuda")
    # data.max_batch_samples is per device; the sampler forms global batches and shards them by rank
    loader, sampler = build_loader(Path(config.data.manifest), config.data.max_batch_samples * runtime.world_size,
                                   config.data.min_samples, config.data.max_samples, config.run.seed,
                                   config.data.num_workers, rank=runtime.rank, world_size=runtime.world_size,
                                   pin_memory=runtime.device.type == "cuda", bad_audio=config.data.bad_audio)
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
    if runtime.world_size > 1:
        _check_ranks_agree(state, out_dir, runtime)
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in remove_stale_temporaries(out_dir):
            log.info("removed %s, left by a save that was killed", path)
        save_config(config, out_dir / "config.yaml")
        # a run without a checkpoint starts over: its metrics go too (an update-0 ABX record included)
        truncate_metrics(out_dir / METRICS, state.update if last.exists() else -1)
    try:
        _train_loop(model, optimizer, loader, sampler, state, config, runtime, out_dir)
    finally:
        if runtime.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return out_dir


def _check_ranks_agree(state: TrainState, out_dir: Path, runtime: Runtime) -> None:
    """Every rank must continue from the same update: run.out_dir has to be on a file system all nodes see."""
    span = torch.tensor([state.update, -state.update], dtype=torch.float64,
                        device=runtime.device if runtime.device.type == "cuda" else "cpu")
    dist.all_reduce(span, op=dist.ReduceOp.MAX)
    highest, lowest = int(span[0]), -int(span[1])
    if highest != lowest:
        raise ValueError(f"run.out_dir {out_dir}: the ranks found checkpoints of updates {lowest} to {highest} "
                         f"(rank {runtime.rank}: {state.update}); the run directory must be shared by all nodes")


def truncate_metrics(path: Path, update: int) -> None:
    """Keep the records of updates <= `update`: a killed run logged updates past its last checkpoint, which the
    resumed run logs again, and its last line may be torn. Rewritten atomically."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= update:
            kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def _wrap(model: EHMAMPretrainModel, config: PretrainConfig, runtime: Runtime) -> torch.nn.Module:
    if runtime.world_size == 1:
        return model
    # Layerdrop skips the same blocks on every rank; a predictor outside the loss has no gradient at all.
    unused = config.model.layerdrop > 0 or (model.predictor is not None and config.loss.aux_weight == 0)
    return DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None,
                                   find_unused_parameters=unused)


def mask_source_for(batch: dict, frame_lengths_host: list[int], alpha: float, config: PretrainConfig,
                    world_size: int, seed: int) -> MaskPlan | torch.Generator:
    """Grid mode: the plan of the whole global batch (B * world_size rows of T frames, times clone_batch), drawn
    from `seed`, cut to this process's rows (its global positions). Release mode: a generator for this process."""
    generator = torch.Generator().manual_seed(seed)
    if config.mask.mode != "grid":
        return generator
    if len(set(frame_lengths_host)) != 1:
        raise ValueError(f"pretraining batches must hold crops of one length, got frame lengths {frame_lengths_host}")
    clones = config.mask.clone_batch
    positions = batch["position"].tolist()
    global_rows = len(positions) * world_size * clones
    plan = plan_grid_mask([frame_lengths_host[0]] * global_rows, config.mask.mask_prob, config.mask.span_length,
                          alpha, generator)
    return plan.select_rows([p * clones + c for p in positions for c in range(clones)])


def _grad_norm_(params: list[torch.Tensor], clip: float) -> torch.Tensor:
    """Total gradient norm as a device tensor (no host read), clipping to `clip` when > 0."""
    if clip > 0:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=params[0].device)


def _update_flags(grad_norm: torch.Tensor, loss_sum: torch.Tensor, stop_received: bool,
                  runtime: Runtime) -> tuple[bool, bool]:
    """(non-finite, stop) for this update, the same on every rank; the one host read of an update."""
    nonfinite = ~(torch.isfinite(grad_norm) & torch.isfinite(loss_sum))
    flags = torch.stack([nonfinite.float(), torch.tensor(float(stop_received), device=nonfinite.device)])
    if runtime.world_size > 1:
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    nonfinite_any, stop_any = flags.tolist()
    return nonfinite_any > 0, stop_any > 0


def _train_loop(model: EHMAMPretrainModel, optimizer, loader, sampler, state: TrainState,
                config: PretrainConfig, runtime: Runtime, out_dir: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    optim, run = config.optim, config.run
    wrapped = _wrap(model, config, runtime)
    params = [p for p in model.parameters() if p.requires_grad]
    bad_audio = BadAudioLog(state.bad_audio)
    state.bad_audio = bad_audio.files  # the same dict: checkpoints carry the record so far
    last_saved = state.update if (out_dir / LAST).exists() else None
    autocast = (torch.autocast(runtime.device.type, dtype=runtime.autocast_dtype)
                if runtime.autocast_dtype is not None else contextlib.nullcontext())
    batches = _batches(loader, sampler, state)
    with contextlib.ExitStack() as stack:
        writer = metrics_file = None
        if runtime.is_main:
            # purge_step drops the TensorBoard events a killed run wrote past its last checkpoint
            writer = stack.enter_context(contextlib.closing(
                SummaryWriter(str(out_dir / "tb"), purge_step=state.update + 1 if state.update else None)))
            metrics_file = stack.enter_context((out_dir / METRICS).open("a"))
        progress = stack.enter_context(contextlib.closing(tqdm(
            total=optim.max_steps, initial=state.update, disable=not runtime.is_main, desc="pretrain",
            dynamic_ncols=True)))
        stop = stack.enter_context(StopSignal())
        stack.callback(_report_faults, bad_audio, state)  # also when a health check stops the run
        postfix: dict[str, str] = {}
        monitor = ABXMonitor(config, runtime.device) if run.eval_data and runtime.is_main else None

        def evaluate_abx() -> float:
            """Score the student's layers (main process only); returns the seconds it took."""
            record = monitor.evaluate(model.encoder, state.update)
            log_abx(record, writer, metrics_file, out_dir, out_dir / METRICS)
            postfix["abx"] = f"{record['abx']['best_across']:.1f}"
            progress.set_postfix(**postfix)
            return record["abx"]["seconds"]

        if monitor is not None and state.update == 0:
            evaluate_abx()
        model.train()
        tick, audio_seconds, steps_since_log = time.perf_counter(), 0.0, 0
        while state.update < optim.max_steps:
            # 1. schedules: pure functions of the update count
            lr = lr_at(state.update, optim.lr, optim.warmup_steps, optim.max_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            alpha = alpha_at(config.curriculum.mode, state.update, optim.max_steps, state.epoch,
                             config.curriculum.threshold, config.curriculum.plateau, config.curriculum.e_ref)

            # 2-4. forward, losses, backward over the micro-batches
            loss_sum = torch.zeros((), device=runtime.device)
            for micro in range(optim.grad_accum):
                batch = next(batches)
                bad_audio.record(batch["bad_audio"])
                torch.manual_seed(derive_seed(run.seed, state.update, micro, _DROPOUT_STREAM, runtime.rank))
                layerdrop_generator = torch.Generator().manual_seed(
                    derive_seed(run.seed, state.update, micro, _LAYERDROP_STREAM))  # the same on every rank
                frame_lengths_host = [int(n) for n in config.model.frames_for_samples(batch["wav_lengths"])]
                mask_source = mask_source_for(batch, frame_lengths_host, alpha, config, runtime.world_size,
                                              derive_seed(run.seed, state.update, micro, _MASK_STREAM))
                wav = batch["wav"].to(runtime.device, non_blocking=True)
                wav_lengths = batch["wav_lengths"].to(runtime.device, non_blocking=True)
                sync = (micro == optim.grad_accum - 1 or runtime.world_size == 1)
                with (contextlib.nullcontext() if sync else wrapped.no_sync()), autocast:
                    out = wrapped(wav, wav_lengths, frame_lengths_host, alpha, mask_source, layerdrop_generator)
                    (out.loss / optim.grad_accum).backward()
                loss_sum += out.loss.detach()
                audio_seconds += float(batch["wav_lengths"].sum()) / 16000 * runtime.world_size
            grad_norm = _grad_norm_(params, optim.clip_grad_norm)
            nonfinite, stop_requested = _update_flags(grad_norm, loss_sum, stop.received is not None, runtime)

            if nonfinite:
                # 5'. skip: the weights, the optimiser moments and the teacher stay as they were
                optimizer.zero_grad(set_to_none=True)
                _count_skip(state, config, out_dir, last_saved)
            else:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state.update += 1
                state.consecutive_skips = 0

                # 5. EMA teacher, right after the optimiser step
                decay = ema_decay_at(state.update, config.teacher.ema_decay_start, config.teacher.ema_decay_end,
                                     config.teacher.ema_anneal_updates)
                model.update_teacher(decay)
                progress.update(1)

                # 6. log (the only other host reads of device values), health checks
                steps_since_log += 1
                if state.update % run.log_every == 0 or state.update == optim.max_steps or state.update == 1:
                    seconds = (time.perf_counter() - tick) / steps_since_log
                    scalars = _log_scalars(state, out, lr, alpha, decay, seconds, audio_seconds / steps_since_log,
                                           grad_norm, bad_audio, runtime)
                    tick, audio_seconds, steps_since_log = time.perf_counter(), 0.0, 0
                    if runtime.is_main:
                        postfix.update(loss=f"{scalars['loss']:.4f}", aux=f"{scalars['aux_loss']:.3f}",
                                       alpha=f"{alpha:.2f}", rho=f"{scalars['teacher_rho']:.2f}")
                        progress.set_postfix(**postfix)
                        for key, value in scalars.items():
                            if key not in ("step", "epoch"):
                                writer.add_scalar(f"train/{key}", value, state.update)
                        metrics_file.write(json.dumps(scalars) + "\n")
                        metrics_file.flush()
                    _check_health(scalars, config, state)
                # before the checkpoint of the same update, so that a resume never misses an evaluation
                if monitor is not None and monitor.due(state.update, optim.max_steps):
                    tick += evaluate_abx()  # kept out of the logged seconds per update

            # 7. checkpoint on schedule, at the last update, and when asked to stop
            periodic = not nonfinite and (state.update % run.save_every == 0 or state.update == optim.max_steps)
            if periodic or stop_requested:
                if runtime.is_main:
                    save_training_checkpoint(out_dir, model, optimizer, state, config, run.keep_checkpoints)
                last_saved = state.update
            if stop_requested:
                log.warning("stop signal: checkpoint written at update %d, exiting; rerun the same command to resume",
                            state.update)
                break


def _report_faults(bad_audio: BadAudioLog, state: TrainState) -> None:
    """End-of-run summary of what was skipped (nothing is printed for a clean run)."""
    if bad_audio.num_files:
        log.warning("%s", bad_audio.summary())
    if state.skipped_updates:
        log.warning("%d update(s) skipped for a non-finite loss or gradient norm", state.skipped_updates)


def _count_skip(state: TrainState, config: PretrainConfig, out_dir: Path, last_saved: int | None) -> None:
    state.skipped_updates += 1
    state.consecutive_skips += 1
    limit = config.run.max_nonfinite_skips
    log.warning("update %d: non-finite loss or gradient norm; update skipped (%d in a row, %d in all, stop at %d in "
                "a row)", state.update + 1, state.consecutive_skips, state.skipped_updates, limit)
    if state.consecutive_skips >= limit:
        kept = (f"the last checkpoint {out_dir / LAST} (update {last_saved}) is intact; rerunning resumes from it"
                if last_saved is not None else "no checkpoint had been written yet")
        raise TrainingAborted(
            f"{state.consecutive_skips} updates in a row had a non-finite loss or gradient norm "
            f"(run.max_nonfinite_skips={limit}), stopping before update {state.update + 1}; {kept}. "
            f"Lower optim.lr, set optim.clip_grad_norm, or check the data (data.bad_audio)")


def _log_scalars(state: TrainState, out: StepOutput, lr: float, alpha: float, decay: float,
                 seconds_per_step: float, audio_seconds: float, grad_norm: torch.Tensor, bad_audio: BadAudioLog,
                 runtime: Runtime) -> dict:
    """The dense log record; under DDP the step's device scalars are averaged over ranks (one all-reduce)."""
    values = torch.stack([out.loss.detach(), out.rec_loss, out.aux_loss, out.masked_fraction, out.target_std,
                          out.prediction_std, out.student_rho, out.teacher_rho,
                          grad_norm.to(out.rec_loss.device)]).float()
    if runtime.world_size > 1:
        dist.all_reduce(values)
        values /= runtime.world_size
    (loss, rec_loss, aux_loss, masked_fraction, target_std, prediction_std, student_rho, teacher_rho,
     grad_norm_value) = values.tolist()
    return {
        "step": state.update, "epoch": state.epoch,
        "loss": loss, "rec_loss": rec_loss, "aux_loss": aux_loss,
        "lr": lr, "alpha": alpha, "ema_decay": decay, "grad_norm": grad_norm_value,
        "masked_fraction": masked_fraction, "num_masked": out.num_masked,
        "target_std": target_std, "prediction_std": prediction_std,
        "student_rho": student_rho, "teacher_rho": teacher_rho,
        "skipped_updates": state.skipped_updates, "bad_audio_files": bad_audio.num_files,
        "sec_per_step": seconds_per_step, "audio_sec_per_sec": audio_seconds / max(seconds_per_step, 1e-9),
    }


def _check_health(scalars: dict, config: PretrainConfig, state: TrainState) -> None:
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
    frames = [int(n) for n in config.model.frames_for_samples(batch["wav_lengths"])]
    model.train()
    with torch.no_grad():
        out = model(batch["wav"].to(runtime.device), batch["wav_lengths"].to(runtime.device), frames, 0.5,
                    torch.Generator().manual_seed(0), torch.Generator().manual_seed(0))
    print(f"one batch: wav {tuple(batch['wav'].shape)} ({batch['wav'].shape[1] / 16000:.2f} s each), "
          f"frames {frames[0]}, clones {config.mask.clone_batch}, masked frames per row {out.num_masked} "
          f"(fraction {out.masked_fraction.item():.3f}), loss {out.loss.item():.4f}")
    return Path(config.run.out_dir)
