"""The pretraining loop: data -> train_step (pretrain/step.py) -> log -> checkpoint, with exact resume, DDP, and the
fault handling of docs/design.md "Checkpoints and faults"."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from trainkit.config import save_config
from trainkit.faults import BadAudioLog, count_skip, unwrap_worker_error
from trainkit.files import LAST, remove_stale_temporaries, write_text_atomic
from trainkit.logs import METRICS_FILE, open_run_logs, report_config_changes, truncate_metrics
from trainkit.runtime import Runtime, StopSignal, TrainingAborted, init_runtime, process_group_lifetime
from upstream_ehmam.frontend import SAMPLE_RATE

from .checkpointing import TrainState, initialise_from, restore_training_checkpoint, save_training_checkpoint
from .config import PretrainConfig
from .data import build_loader
from .ehmam import EHMAMPretrainModel
from .monitor import CURVE, MONITOR_CONDITIONS, ABXMonitor, abx_records
from .schedules import SCHEDULE_KEYS, schedule_jumps, with_saved_schedule
from .step import StepResult, mask_plan_for, train_step

log = logging.getLogger("pretrain")

# StepOutput scalars logged every run.log_every updates (averaged over ranks)
DEVICE_SCALARS = (
    "loss",
    "rec_loss",
    "aux_loss",
    "masked_fraction",
    "target_std",
    "prediction_std",
    "student_rho",
    "teacher_rho",
    "teacher_span_rho",
    "student_span_rho",
    "hardness_lift",
)


def _batches(loader, sampler, state: TrainState) -> Iterator[dict]:
    """Endless micro-batches; the data position lives in `state` so that a resume continues mid-epoch."""
    while True:
        sampler.set_epoch(state.epoch, start_batch=state.batch_in_epoch)
        try:
            for batch in loader:
                state.batch_in_epoch += 1
                yield batch
        except (ValueError, FileNotFoundError) as err:  # e.g. data.bad_audio=error, raised in a loader worker
            raise unwrap_worker_error(err) from err
        state.epoch += 1
        state.batch_in_epoch = 0


def train(config: PretrainConfig, resume: bool = False, dry_run: bool = False) -> Path:
    """Run, or continue a run directory holding last.pt (resume=True: its absence is an error); returns the dir."""
    runtime = init_runtime(config.run.device, config.run.precision)
    out_dir = Path(config.run.out_dir)
    torch.manual_seed(config.run.seed)  # the same initial weights on every rank
    model = EHMAMPretrainModel(config).to(runtime.device)
    if config.run.compile_blocks:
        model.compile_blocks()
    optimizer = torch.optim.AdamW(
        model.optimizer_groups(config.optim.weight_decay),
        lr=config.optim.lr,
        betas=tuple(config.optim.betas),
        eps=config.optim.eps,
        fused=runtime.device.type == "cuda",
    )
    # data.max_batch_samples is per device; the sampler forms global batches and shards them by rank
    loader, sampler = build_loader(
        Path(config.data.manifest),
        config.data.max_batch_samples * runtime.world_size,
        config.data.min_samples,
        config.data.max_samples,
        config.run.seed,
        config.data.num_workers,
        rank=runtime.rank,
        world_size=runtime.world_size,
        pin_memory=runtime.device.type == "cuda",
        bad_audio=config.data.bad_audio,
    )
    state = TrainState()
    if dry_run:
        return _dry_run(model, loader, sampler, state, config, runtime)

    last = out_dir / LAST
    if last.exists():
        state, saved = restore_training_checkpoint(last, model, optimizer)
        log.info("resuming %s at update %d (epoch %d, batch %d)", last, state.update, state.epoch, state.batch_in_epoch)
        report_config_changes(
            saved,
            config.to_dict(),
            SCHEDULE_KEYS,
            state.update,
            schedule_jumps(with_saved_schedule(config, saved), config, state.update, state.epoch),
        )
    elif resume:
        raise FileNotFoundError(f"--resume: no {LAST} in {out_dir}")
    elif config.run.init_from:
        for note in initialise_from(Path(config.run.init_from), model):
            log.info("run.init_from: %s", note)
    if runtime.world_size > 1:  # every rank must continue from the same update: run.out_dir is shared by all nodes
        span = torch.tensor(
            [state.update, -state.update],
            dtype=torch.float64,
            device=runtime.device if runtime.device.type == "cuda" else "cpu",
        )
        dist.all_reduce(span, op=dist.ReduceOp.MAX)
        highest, lowest = int(span[0]), -int(span[1])
        if highest != lowest:
            raise ValueError(
                f"run.out_dir {out_dir}: the ranks found checkpoints of updates {lowest} to {highest} "
                f"(rank {runtime.rank}: {state.update}); the run directory must be shared by all nodes"
            )
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in remove_stale_temporaries(out_dir):
            log.info("removed %s, left by a save that was killed", path)
        save_config(config, out_dir / "config.yaml")
        # a run without a checkpoint starts over: its metrics go too (an update-0 ABX record included)
        truncate_metrics(out_dir / METRICS_FILE, state.update if last.exists() else -1)
    with process_group_lifetime(runtime):
        _train_loop(model, optimizer, loader, sampler, state, config, runtime, out_dir)
    return out_dir


class RunReport:
    """TensorBoard, metrics.jsonl, progress bar and ABX monitor of the main process; every rank's health checks."""

    def __init__(
        self, stack: contextlib.ExitStack, config: PretrainConfig, runtime: Runtime, out_dir: Path, update: int
    ) -> None:
        self.config, self.runtime, self.out_dir = config, runtime, out_dir
        self.writer, self.metrics_file, self.progress = open_run_logs(
            stack, out_dir, update, config.optim.max_steps, runtime.is_main, "pretrain"
        )
        self.monitor = ABXMonitor(config, runtime.device) if runtime.is_main and config.run.eval_data else None
        self.postfix: dict[str, str] = {}
        self.tick, self.audio_seconds, self.steps_since_log = time.perf_counter(), 0.0, 0

    def append(self, record: dict) -> None:
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()

    def evaluate_abx(self, model: EHMAMPretrainModel, update: int) -> None:
        """Score the student's layers and log them; the seconds it takes stay out of the logged seconds per update."""
        abx = self.monitor.evaluate(model.encoder)
        for condition in MONITOR_CONDITIONS:
            for layer, error in enumerate(abx[condition]):
                self.writer.add_scalar(f"abx/{condition}/layer_{layer}", error, update)
            self.writer.add_scalar(f"abx/best_{condition}", abx[f"best_{condition}"], update)
        self.writer.add_scalar("abx/best_layer", abx["best_layer"], update)
        self.append({"step": update, "abx": abx})
        # abx_curve.tsv: step, best layer, its within and across error, rebuilt from metrics.jsonl to match the log
        rows = [
            f"{r['step']}\t{r['abx']['best_layer']}\t{r['abx']['best_within']:.3f}\t{r['abx']['best_across']:.3f}\n"
            for r in abx_records(self.out_dir / METRICS_FILE)
        ]
        write_text_atomic(self.out_dir / CURVE, "step\tbest_layer\twithin\tacross\n" + "".join(rows))
        log.info(
            "update %d: phone ABX best layer %d, within %.1f %%, across %.1f %% (%.1f s)",
            update,
            abx["best_layer"],
            abx["best_within"],
            abx["best_across"],
            abx["seconds"],
        )
        self.postfix["abx"] = f"{abx['best_across']:.1f}"
        self.progress.set_postfix(**self.postfix)
        self.tick += abx["seconds"]

    def abx_due(self, update: int) -> bool:
        every, max_steps = self.config.run.eval_every, self.config.optim.max_steps
        return self.monitor is not None and (update % every == 0 or update == max_steps)

    def log_update(self, result: StepResult, state: TrainState, bad_audio: BadAudioLog) -> None:
        """The dense log record every run.log_every updates (and at updates 1 and max_steps), then the health check;
        under DDP the step's device scalars are averaged over ranks (one all-reduce)."""
        self.progress.update(1)
        self.steps_since_log += 1
        update, run, out = state.update, self.config.run, result.out
        if update % run.log_every and update not in (1, self.config.optim.max_steps):
            return
        seconds = (time.perf_counter() - self.tick) / self.steps_since_log
        audio_seconds = self.audio_seconds / self.steps_since_log
        values = torch.stack(
            [getattr(out, key).detach() for key in DEVICE_SCALARS] + [result.grad_norm.to(out.rec_loss.device)]
        ).float()
        if self.runtime.world_size > 1:
            dist.all_reduce(values)
            values /= self.runtime.world_size
        scalars = {
            "step": update,
            "epoch": state.epoch,
            **dict(zip(DEVICE_SCALARS + ("grad_norm",), values.tolist())),
            "lr": result.lr,
            "alpha": result.alpha,
            "ema_decay": result.decay,
            "num_masked": out.num_masked,
            "skipped_updates": state.skipped_updates,
            "bad_audio_files": bad_audio.num_files,
            "sec_per_step": seconds,
            "audio_sec_per_sec": audio_seconds / max(seconds, 1e-9),
        }
        self.tick, self.audio_seconds, self.steps_since_log = time.perf_counter(), 0.0, 0
        if self.runtime.is_main:
            self.postfix.update(
                loss=f"{scalars['loss']:.4f}",
                aux=f"{scalars['aux_loss']:.3f}",
                alpha=f"{result.alpha:.2f}",
                rho=f"{scalars['teacher_rho']:.2f}",
                lift=f"{scalars['hardness_lift']:.2f}",
            )
            self.progress.set_postfix(**self.postfix)
            for key, value in scalars.items():
                if key not in ("step", "epoch"):
                    self.writer.add_scalar(f"train/{key}", value, update)
            self.append(scalars)
        if update < run.collapse_check_after:
            return
        for key in ("target_std", "prediction_std"):
            limit = getattr(run, f"min_{key}")
            if scalars[key] < limit:
                raise TrainingAborted(
                    f"{key.split('_')[0]} collapse at update {update}: {key.replace('_', ' ')} "
                    f"{scalars[key]:.4f} < run.min_{key} {limit}"
                )


def _train_loop(
    model: EHMAMPretrainModel,
    optimizer,
    loader,
    sampler,
    state: TrainState,
    config: PretrainConfig,
    runtime: Runtime,
    out_dir: Path,
) -> None:
    wrapped = model
    if runtime.world_size > 1:
        # Layerdrop skips the same blocks on every rank; a predictor outside the loss has no gradient at all.
        unused = config.model.layerdrop > 0 or (model.predictor is not None and config.loss.aux_weight == 0)
        wrapped = DistributedDataParallel(
            model,
            device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None,
            find_unused_parameters=unused,
        )
    bad_audio = BadAudioLog(state.bad_audio)
    state.bad_audio = bad_audio.files  # the same dict: checkpoints carry the record so far
    last_saved = state.update if (out_dir / LAST).exists() else None
    batches = _batches(loader, sampler, state)
    with contextlib.ExitStack() as stack:
        report = RunReport(stack, config, runtime, out_dir, state.update)
        stop = stack.enter_context(StopSignal())
        # what was skipped, said at the end, also when a health check stops the run (callbacks run last-in first)
        stack.callback(
            lambda: (
                state.skipped_updates
                and log.warning("%d update(s) skipped for a non-finite loss or gradient norm", state.skipped_updates)
            )
        )
        stack.callback(lambda: bad_audio.num_files and log.warning("%s", bad_audio.summary()))
        if report.monitor is not None and state.update == 0:
            report.evaluate_abx(model, 0)
        model.train()
        while state.update < config.optim.max_steps:
            epoch = state.epoch  # the epoch the update starts in, before its batches may open the next one
            micro_batches = [next(batches) for _ in range(config.optim.grad_accum)]
            for batch in micro_batches:
                bad_audio.record(batch["bad_audio"])
                report.audio_seconds += float(batch["wav_lengths"].sum()) / SAMPLE_RATE * runtime.world_size
            result = train_step(
                model,
                optimizer,
                micro_batches,
                state.update,
                epoch,
                config,
                runtime,
                wrapped=wrapped,
                stop_received=stop.received is not None,
            )
            if result.nonfinite:
                kept = (
                    f"the last checkpoint {out_dir / LAST} (update {last_saved}) is intact; rerunning resumes from it"
                    if last_saved is not None
                    else "no checkpoint had been written yet"
                )
                count_skip(
                    state,
                    "non-finite loss or gradient norm",
                    config.run.max_nonfinite_skips,
                    kept,
                    "Lower optim.lr, set optim.clip_grad_norm, or check the data (data.bad_audio)",
                )
            else:
                state.update += 1
                state.consecutive_skips = 0
                report.log_update(result, state, bad_audio)
                if report.abx_due(state.update):  # before the checkpoint: a resume never misses an evaluation
                    report.evaluate_abx(model, state.update)
            periodic = not result.nonfinite and (
                state.update % config.run.save_every == 0 or state.update == config.optim.max_steps
            )
            if periodic or result.stop:
                if runtime.is_main:
                    save_training_checkpoint(out_dir, model, optimizer, state, config, config.run.keep_checkpoints)
                last_saved = state.update
            if result.stop:
                log.warning(
                    "stop signal: checkpoint written at update %d, exiting; rerun the same command to resume",
                    state.update,
                )
                break


def _dry_run(
    model: EHMAMPretrainModel, loader, sampler, state: TrainState, config: PretrainConfig, runtime: Runtime
) -> Path:
    print("parameters:")
    for name, count in model.parameter_counts().items():
        print(f"  {name:48s} {count:>13,d}")
    print(f"batches per epoch (this rank): {len(sampler)}")
    batch = next(_batches(loader, sampler, state))
    frames = [int(n) for n in config.model.frames_for_samples(batch["wav_lengths"])]
    plan = mask_plan_for(config, frames, batch["position"].tolist(), 0.5, runtime.world_size, seed=0)
    model.train()
    with torch.no_grad():
        out = model(
            batch["wav"].to(runtime.device),
            batch["wav_lengths"].to(runtime.device),
            plan,
            torch.Generator().manual_seed(0),
        )
    print(
        f"one batch: wav {tuple(batch['wav'].shape)} ({batch['wav'].shape[1] / SAMPLE_RATE:.2f} s each), "
        f"frames {frames[0]}, clones {config.mask.clone_batch}, masked frames per row {out.num_masked} "
        f"(fraction {out.masked_fraction.item():.3f}), loss {out.loss.item():.4f}"
    )
    return Path(config.run.out_dir)
