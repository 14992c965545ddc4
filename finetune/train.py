"""The fine-tuning loop: LR -> micro-batches (masks, forward, fp32 CTC, backward) -> gradient reduction -> step ->
log -> validate -> checkpoint.

Every random draw of a micro-batch (masks, layerdrop, dropout) derives from (run.seed, its global batch index), and
every process reduces the summed gradients itself (sum over processes, then divided by the global number of
sentences), so N processes compute what one process computes on the same global batch (tests/test_finetune_ddp.py).
The encoder runs under no_grad until model.freeze_updates; the front end always does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist

from trainkit.config import save_config
from trainkit.faults import BadAudioLog, count_skip, unwrap_worker_error
from trainkit.logs import METRICS_FILE, open_run_logs, report_config_changes, truncate_metrics
from trainkit.runtime import Runtime, StopSignal, derive_seed, init_runtime, process_group_lifetime

from .checkpoint import BEST, LAST, FinetuneState, restore, save
from .config import FinetuneConfig
from .data import BatchDataset, UpdateSlotSampler, make_loader, read_subset
from .evaluate import viterbi_wer
from .letters import DICTIONARY_FILE, read_dictionary, symbols_of
from .model import CTCModel, ctc_loss_sum, draw_masks, encoder_for_finetuning
from .schedule import SCHEDULE_KEYS, micro_batch_slots, schedule_jumps, tri_stage_lr_at

log = logging.getLogger("finetune")
_MASK_STREAM, _LAYERDROP_STREAM, _DROPOUT_STREAM = 11, 12, 13


def build(config: FinetuneConfig, runtime: Runtime) -> tuple[CTCModel, list[str], BatchDataset, BatchDataset]:
    """Model, output symbols, and the training and validation batches (errors name the missing file or key)."""
    if not config.data.manifest_dir:
        raise ValueError(
            "data.manifest_dir: no manifest folder given; make one with `python -m finetune.prepare` "
            "and pass --set data.manifest_dir=DIR"
        )
    manifest_dir = Path(config.data.manifest_dir)
    symbols = symbols_of(read_dictionary(manifest_dir / DICTIONARY_FILE))
    torch.manual_seed(config.run.seed)  # the same head (and random init) on every process
    model = CTCModel(encoder_for_finetuning(config.model, config.run.seed), len(symbols)).to(runtime.device)
    min_samples = model.encoder.config.receptive_field  # at least one frame
    data = config.data
    train_set = BatchDataset(
        read_subset(manifest_dir, data.train_subset, symbols),
        data.max_batch_samples,
        config.run.seed,
        True,
        data.bad_audio,
        min_samples,
    )
    valid_set = BatchDataset(
        read_subset(manifest_dir, data.valid_subset, symbols),
        data.max_batch_samples,
        config.run.seed,
        False,
        data.bad_audio,
        min_samples,
    )
    return model, symbols, train_set, valid_set


def finetune(config: FinetuneConfig, resume: bool = False) -> Path:
    """Run (or continue: a run directory holding last.pt is always continued) a fine-tuning; returns its folder."""
    runtime = init_runtime(config.run.device, config.run.precision)
    out_dir = Path(config.run.out_dir)
    model, symbols, train_set, valid_set = build(config, runtime)
    trainable = [p for p in model.parameters() if p.requires_grad]  # head + context encoder, never the front end
    optimizer = torch.optim.Adam(
        trainable, lr=config.optim.lr, betas=tuple(config.optim.betas), eps=config.optim.eps, weight_decay=0.0
    )
    state = FinetuneState()
    if (out_dir / LAST).exists():
        state, saved = restore(out_dir / LAST, model, optimizer, symbols)
        log.info("resuming %s at update %d", out_dir / LAST, state.update)
        current = config.to_dict()
        report_config_changes(saved, current, SCHEDULE_KEYS, state.update, schedule_jumps(saved, current, state.update))
    elif resume:
        raise FileNotFoundError(f"--resume: no {LAST} in {out_dir}")
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, out_dir / "config.yaml")
        truncate_metrics(out_dir / METRICS_FILE, state.update if (out_dir / LAST).exists() else -1)
    with process_group_lifetime(runtime):
        _loop(model, optimizer, symbols, train_set, valid_set, state, config, runtime, out_dir)
    return out_dir


def _autocast(runtime: Runtime):
    if runtime.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(runtime.device.type, dtype=runtime.autocast_dtype)


def set_lr(optimizer, update: int, config: FinetuneConfig) -> float:
    optim = config.optim
    lr = tri_stage_lr_at(
        update, optim.lr, optim.max_steps, optim.phase_ratio, optim.init_lr_scale, optim.final_lr_scale
    )
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def accumulate(
    model: CTCModel,
    batches,
    num_slots: int,
    config: FinetuneConfig,
    runtime: Runtime,
    frozen: bool,
    bad_audio: BadAudioLog,
) -> tuple[torch.Tensor, int]:
    """Forward and backward of this process's micro-batches of one update; gradients are left summed over its
    sentences. Returns (summed CTC loss, number of sentences)."""
    loss_sum, sentences = torch.zeros((), device=runtime.device), 0
    encoder_cfg = model.encoder.config
    for _ in range(num_slots):
        try:
            batch = next(batches)
        except (ValueError, FileNotFoundError) as err:  # data.bad_audio=error, possibly raised in a loader worker
            raise unwrap_worker_error(err) from err
        bad_audio.record(batch["bad_audio"])
        if not batch["index"]:
            continue
        g = batch["global_index"]
        frames = [int(n) for n in encoder_cfg.frames_for_samples(batch["wav_lengths"])]
        masks = draw_masks(
            frames,
            int(encoder_cfg.frames_for_samples(batch["wav"].shape[1])),
            encoder_cfg.embed_dim,
            config.mask,
            torch.Generator().manual_seed(derive_seed(config.run.seed, g, _MASK_STREAM)),
        )
        layerdrop = torch.Generator().manual_seed(derive_seed(config.run.seed, g, _LAYERDROP_STREAM))
        torch.manual_seed(derive_seed(config.run.seed, g, _DROPOUT_STREAM))
        with _autocast(runtime):
            logits, frame_lengths = model(
                batch["wav"].to(runtime.device),
                batch["wav_lengths"].to(runtime.device),
                masks,
                encoder_grad=not frozen,
                layerdrop_generator=layerdrop,
            )
        loss = ctc_loss_sum(
            logits, frame_lengths, batch["targets"].to(runtime.device), batch["target_lengths"].to(runtime.device)
        )
        loss.backward()
        loss_sum += loss.detach()
        sentences += len(batch["index"])
    return loss_sum, sentences


def reduce_gradients(
    params: list[torch.Tensor], loss_sum: torch.Tensor, sentences: int, stop: bool, runtime: Runtime
) -> tuple[float, int, bool]:
    """Sum gradients, loss, sentence count and stop flag over processes, then divide the gradients by the global
    sentence count (a parameter without a gradient anywhere keeps none). Returns (loss sum, sentences, stop)."""
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=runtime.device)
    totals = torch.stack(
        [
            loss_sum.float(),
            torch.tensor(float(sentences), device=runtime.device),
            torch.tensor(float(stop), device=runtime.device),
        ]
    )
    if runtime.world_size > 1:
        flat = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params] + [totals, has_grad]
        )
        dist.all_reduce(flat)
        totals, has_grad = flat[-3 - len(params) : -len(params)], flat[-len(params) :]
        offset = 0
        for p in params:
            p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()
    loss_total, sentences_total, stop_total = totals.tolist()
    for p, present in zip(params, has_grad.tolist()):
        if present == 0:
            p.grad = None
        elif sentences_total > 0:
            p.grad.div_(sentences_total)
    return loss_total, int(sentences_total), stop_total > 0


def _loop(
    model: CTCModel,
    optimizer,
    symbols: list[str],
    train_set: BatchDataset,
    valid_set: BatchDataset,
    state: FinetuneState,
    config: FinetuneConfig,
    runtime: Runtime,
    out_dir: Path,
) -> None:
    optim, run = config.optim, config.run
    slots = micro_batch_slots(optim.micro_batches, runtime.world_size, runtime.rank)
    sampler = UpdateSlotSampler(state.batches_consumed, optim.micro_batches, runtime.world_size, runtime.rank)
    batches = iter(make_loader(train_set, sampler, config.data.num_workers))
    bad_audio = BadAudioLog(state.bad_audio)
    state.bad_audio = bad_audio.files  # the same dict: checkpoints carry the record so far
    with contextlib.ExitStack() as stack:
        writer, metrics_file, progress = open_run_logs(
            stack, out_dir, state.update, optim.max_steps, runtime.is_main, "finetune"
        )
        log_to = (writer, metrics_file) if runtime.is_main else None
        stop = stack.enter_context(StopSignal())
        stack.callback(lambda: bad_audio.num_files and log.warning("%s", bad_audio.summary()))
        model.train()
        tick = time.perf_counter()
        while state.update < optim.max_steps:
            lr = set_lr(optimizer, state.update, config)
            frozen = state.update < config.model.freeze_updates
            params = list(model.head.parameters()) if frozen else [p for p in model.parameters() if p.requires_grad]
            loss_sum, sentences = accumulate(model, batches, len(slots), config, runtime, frozen, bad_audio)
            loss_total, sentences, stop_requested = reduce_gradients(
                params, loss_sum, sentences, stop.received is not None, runtime
            )
            grads = [p.grad for p in params if p.grad is not None]
            grad_norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
            state.batches_consumed += optim.micro_batches
            usable = sentences > 0 and math.isfinite(loss_total) and math.isfinite(grad_norm)
            if not usable:
                optimizer.zero_grad(set_to_none=True)
                count_skip(
                    state,
                    "non-finite loss or gradient" if sentences else "no usable audio",
                    config.run.max_nonfinite_skips,
                    f"{out_dir / LAST} is left as it was",
                    "Lower optim.lr or check the data (data.bad_audio)",
                )
            else:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state.update += 1
                state.consecutive_skips = 0
                progress.update(1)
                record = {
                    "step": state.update,
                    "loss": loss_total / sentences,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "sentences": sentences,
                    "frozen": frozen,
                    "bad_audio_files": bad_audio.num_files,
                    "skipped_updates": state.skipped_updates,
                    "sec_per_step": time.perf_counter() - tick,
                }
                tick = time.perf_counter()
                if state.update % run.log_every == 0 or state.update in (1, optim.max_steps):
                    _log(record, log_to, progress)
                _maybe_validate(model, optimizer, symbols, valid_set, state, config, runtime, out_dir, log_to, progress)
            if usable and (state.update % run.save_every == 0 or state.update == optim.max_steps) or stop_requested:
                if runtime.is_main:
                    save(out_dir / LAST, model, config, symbols, state, optimizer)
            if stop_requested:
                log.warning(
                    "stop signal: %s written at update %d; rerun the same command to resume", LAST, state.update
                )
                break


def _log(record: dict, log_to, progress) -> None:
    if log_to is None:
        return
    writer, metrics = log_to
    for key, value in record.items():
        if key != "step":
            writer.add_scalar(f"train/{key}", float(value), record["step"])
    metrics.write(json.dumps(record) + "\n")
    metrics.flush()
    progress.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")


def _maybe_validate(
    model: CTCModel,
    optimizer,
    symbols: list[str],
    valid_set: BatchDataset,
    state: FinetuneState,
    config: FinetuneConfig,
    runtime: Runtime,
    out_dir: Path,
    log_to,
    progress,
) -> None:
    """Viterbi WER on the validation subset every run.valid_every updates once the freeze is over, and at the last
    update (main process only); a new best writes best.pt."""
    due = state.update >= config.model.freeze_updates and state.update % config.run.valid_every == 0
    if not runtime.is_main or not (due or state.update == config.optim.max_steps):
        return
    result = viterbi_wer(model, valid_set, symbols, runtime.device, runtime.autocast_dtype)
    improved = state.best_wer < 0 or result["wer"] < state.best_wer
    if improved:
        state.best_wer, state.best_update = result["wer"], state.update
        save(out_dir / BEST, model, config, symbols, state, None)
    log.info(
        "update %d: %s WER %.2f (best %.2f at update %d)",
        state.update,
        valid_set.subset.name,
        result["wer"],
        state.best_wer,
        state.best_update,
    )
    if log_to is not None:
        writer, metrics = log_to
        writer.add_scalar(f"valid/{valid_set.subset.name}_wer", result["wer"], state.update)
        metrics.write(json.dumps({"step": state.update, "valid_subset": valid_set.subset.name, **result}) + "\n")
        metrics.flush()
        progress.set_postfix(wer=f"{result['wer']:.1f}", best=f"{state.best_wer:.1f}")
