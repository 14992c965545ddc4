"""Where an EH-MAM training step spends its time: a per-part breakdown (CNN, teacher, mask, student, decoder, loss
predictor, losses, backward, optimiser, EMA) and torch.profiler's top ops by self time.

Run: python -m bench.profile_step [--device cpu|cuda] [--quick] [--json out.json]
CPU default: tiny config, 4 s crops x 4; GPU default: Base, 15.6 s crops x 4, bf16. The model files are not
touched: each part is a call the bench wraps from outside for the duration of the run (the instance's forward, or
the function name pretrain.ehmam looks up), labelled with torch.profiler.record_function and timed on the device
clock (CUDA events on a GPU: the stream time between the part's start and end; the host clock on a CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

import pretrain.ehmam as ehmam_module
import pretrain.masking as masking
from bench.common import (
    TIMING_OPTIONS,
    apply_threads,
    bench_parser,
    device_name,
    fmt,
    markdown_table,
    override_sizes,
    resolve_device,
    resolve_precision,
    seeded_audio,
    synchronize,
    write_json,
)
from bench.train_step import EHMAMStep, load_bench_config
from trainkit.cli import add_overrides_flag
from upstream_ehmam.frontend import SAMPLE_RATE

HEADER = "## Profile of one training step"
# Top-level phases of EHMAMStep, in step order; forward parts are nested in "forward".
PHASES = (
    "schedules + mask plan (host)",
    "forward",
    "backward",
    "grad norm + finite check (host read)",
    "optimiser",
    "EMA",
)
FORWARD_PARTS = (
    "CNN + projection",
    "teacher forward",
    "targets (instance norm, top-K mean)",
    "teacher loss predictor",
    "mask",
    "student forward (visible frames)",
    "regression decoder",
    "student loss predictor",
    "losses (regression + ranking)",
    "health scalars (Spearman rho)",
)


class PartTimer:
    """Per-label elapsed time of the current step: CUDA events on a GPU (summed after one sync), the host clock
    on a CPU. Parts must not overlap (nested phases are timed separately: forward parts inside forward)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pending: list[tuple[str, Any, Any]] = []

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        with record_function(name):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                yield
                end.record()
                self.pending.append((name, start, end))
            else:
                begin = time.perf_counter()
                yield
                self.pending.append((name, begin, time.perf_counter()))

    def collect(self) -> dict[str, float]:
        """Seconds per label for the step just run (sums repeated labels), then clears."""
        synchronize(self.device)
        totals: dict[str, float] = defaultdict(float)
        for name, start, end in self.pending:
            totals[name] += start.elapsed_time(end) / 1e3 if self.device.type == "cuda" else end - start
        self.pending = []
        return dict(totals)


def _wrapped(fn: Callable, label: str, timer: PartTimer) -> Callable:
    @functools.wraps(fn)
    def call(*args, **kwargs):
        with timer.part(label):
            return fn(*args, **kwargs)

    return call


@contextlib.contextmanager
def labelled_parts(model: ehmam_module.EHMAMPretrainModel, timer: PartTimer) -> Iterator[None]:
    """Wrap the calls EHMAMPretrainModel.forward makes, for the duration of the block, without editing it:
    instance attributes shadow the modules' forward methods, and the module globals that forward looks up
    (make_targets, the loss functions) and the mask plans' `mask` methods are swapped and restored."""
    instance_patches = [
        (model.encoder.local, "forward", "CNN + projection"),
        (model.teacher.context, "forward", "teacher forward"),
        (model.encoder.context, "forward_visible", "student forward (visible frames)"),
        (model.decoder, "forward", "regression decoder"),
    ]
    if model.predictor is not None:
        instance_patches += [
            (model.teacher.predictor, "forward", "teacher loss predictor"),
            (model.predictor, "forward", "student loss predictor"),
        ]
    instance_patches += [(masking.GridMaskPlan, "mask", "mask"), (masking.ReleaseMaskPlan, "mask", "mask")]
    global_patches = [
        ("make_targets", "targets (instance norm, top-K mean)"),
        ("regression_loss_per_frame", "losses (regression + ranking)"),
        ("ranking_loss", "losses (regression + ranking)"),
        ("spearman_rho", "health scalars (Spearman rho)"),
    ]
    originals = {name: getattr(ehmam_module, name) for name, _ in global_patches}
    try:
        for obj, attr, label in instance_patches:
            setattr(obj, attr, _wrapped(getattr(obj, attr), label, timer))
        for name, label in global_patches:
            setattr(ehmam_module, name, _wrapped(originals[name], label, timer))
        yield
    finally:
        for obj, attr, _ in instance_patches:
            if isinstance(obj, type):
                setattr(obj, attr, getattr(obj, attr).__wrapped__)
            else:
                obj.__dict__.pop(attr, None)
        for name, fn in originals.items():
            setattr(ehmam_module, name, fn)


@dataclass
class Sizes:
    config: str
    crop_s: float
    batch: int
    clones: int
    warmup: int
    timed_steps: int
    profiled_steps: int
    top_ops: int


def default_sizes(device: torch.device, quick: bool) -> Sizes:
    if quick:
        return Sizes("tiny", 1.0, 2, 1, warmup=1, timed_steps=2, profiled_steps=1, top_ops=10)
    if device.type == "cuda":
        return Sizes("base", 15.6, 4, 1, warmup=3, timed_steps=10, profiled_steps=3, top_ops=20)
    return Sizes("tiny", 4.0, 4, 1, warmup=2, timed_steps=5, profiled_steps=2, top_ops=15)


def run_profile(
    sizes: Sizes, device: torch.device, autocast_dtype: torch.dtype | None, seed: int, overrides: list[str]
) -> tuple[list[dict], list[dict], dict]:
    config = load_bench_config(sizes.config, sizes.clones, seed, overrides)
    step = EHMAMStep(config, device, autocast_dtype, start_update=config.optim.max_steps // 2)
    samples = int(round(sizes.crop_s * SAMPLE_RATE))
    wav = seeded_audio(sizes.batch, samples, seed)
    wav = wav.pin_memory() if device.type == "cuda" else wav
    lengths, positions = torch.full((sizes.batch,), samples, dtype=torch.long), torch.arange(sizes.batch)
    timer = PartTimer(device)

    for _ in range(sizes.warmup):
        step(wav, lengths, positions)
    per_step: list[dict[str, float]] = []
    with labelled_parts(step.model, timer):
        for _ in range(sizes.timed_steps):
            with timer.part("step"):
                step(wav, lengths, positions, phase=timer.part)
            per_step.append(timer.collect())
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(sizes.profiled_steps):
                step(wav, lengths, positions, phase=timer.part)
            synchronize(device)
        timer.collect()

    def median(label: str) -> float:
        return statistics.median(s.get(label, 0.0) for s in per_step)

    total = median("step")
    parts = []
    for label in PHASES:
        parts.append({"part": label, "level": 0, "ms": median(label) * 1e3})
        if label == "forward":
            inner = 0.0
            for sub in FORWARD_PARTS:
                ms = median(sub) * 1e3
                inner += ms
                parts.append({"part": sub, "level": 1, "ms": ms})
            parts.append(
                {
                    "part": "other forward (copy to device, gathers, repeats, mask tokens)",
                    "level": 1,
                    "ms": max(0.0, median("forward") * 1e3 - inner),
                }
            )
    accounted = sum(p["ms"] for p in parts if p["level"] == 0)
    parts.append({"part": "unlabelled (loop glue)", "level": 0, "ms": max(0.0, total * 1e3 - accounted)})
    parts.append({"part": "step total", "level": 0, "ms": total * 1e3})
    for p in parts:
        p["share"] = p["ms"] / (total * 1e3) if total > 0 else None

    ops = top_ops(prof, device, sizes.profiled_steps, sizes.top_ops)
    info = {"audio_s": sizes.batch * sizes.crop_s, "step_ms": total * 1e3, "skipped_updates": step.skipped}
    return parts, ops, info


def top_ops(prof, device: torch.device, steps: int, limit: int) -> list[dict]:
    """The `limit` host-side ops with the most self time per step: on a GPU by the device time of the kernels each
    op launched itself, on a CPU by host time."""
    labels = set(PHASES) | set(FORWARD_PARTS) | {"step"}
    rows = []
    for event in prof.key_averages():
        if event.key in labels or event.key.startswith("ProfilerStep"):
            continue
        if getattr(event, "device_type", DeviceType.CPU) != DeviceType.CPU:
            continue  # a GPU kernel: its time is already the self device time of the op that launched it
        device_us = getattr(event, "self_device_time_total", None)
        if device_us is None:
            device_us = getattr(event, "self_cuda_time_total", 0)
        rows.append(
            {
                "op": event.key,
                "calls_per_step": event.count / steps,
                "self_cpu_ms_per_step": event.self_cpu_time_total / 1e3 / steps,
                "self_device_ms_per_step": device_us / 1e3 / steps if device.type == "cuda" else None,
            }
        )
    key = "self_device_ms_per_step" if device.type == "cuda" else "self_cpu_ms_per_step"
    rows.sort(key=lambda r: r[key], reverse=True)
    total = sum(r[key] for r in rows) or 1.0
    for r in rows:
        r["share"] = r[key] / total
    return rows[:limit]


def format_tables(parts: list[dict], ops: list[dict], device: torch.device) -> str:
    part_rows = [
        [
            ("&nbsp;&nbsp;&nbsp;&nbsp;" if p["level"] else "") + p["part"],
            fmt(p["ms"], 2),
            "n/a" if p["share"] is None else f"{100 * p['share']:.1f} %",
        ]
        for p in parts
    ]
    clock = "CUDA events (stream time)" if device.type == "cuda" else "host clock"
    out = [markdown_table(["part", f"ms/step (median, {clock})", "share of step"], part_rows), ""]
    headers = ["op", "calls/step", "self CPU ms/step"] + (["self device ms/step"] if device.type == "cuda" else [])
    headers.append("share of profiled self time")
    op_rows = []
    for r in ops:
        row = [f"`{r['op']}`", fmt(r["calls_per_step"], 1), fmt(r["self_cpu_ms_per_step"], 2)]
        if device.type == "cuda":
            row.append(fmt(r["self_device_ms_per_step"], 2))
        row.append(f"{100 * r['share']:.1f} %")
        op_rows.append(row)
    out.append(markdown_table(headers, op_rows))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, (*TIMING_OPTIONS, "precision"))
    parser.add_argument("--config", default=None, help="tiny | base | a YAML path")
    parser.add_argument("--crop", type=float, default=None, help="crop length in seconds")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--clones", type=int, default=None, help="clone_batch M (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="profiled steps (after the timed ones)")
    parser.add_argument("--top", type=int, default=None, help="ops to list")
    add_overrides_flag(parser, "model.num_layers=4")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    threads = apply_threads(args.threads)
    sizes = default_sizes(device, args.quick)
    override_sizes(
        sizes,
        config=args.config,
        crop_s=args.crop,
        batch=args.batch,
        clones=args.clones,
        profiled_steps=args.steps,
        top_ops=args.top,
        warmup=args.warmup,
        timed_steps=args.repeats,
    )
    precision, autocast_dtype = resolve_precision(args.precision, device)

    parts, ops, info = run_profile(sizes, device, autocast_dtype, args.seed, args.overrides)
    print(f"{HEADER}\n")
    print(
        f"Device {device_name(device)} ({device.type}), {threads} threads, {precision}, config {sizes.config}, "
        f"M={sizes.clones}, {sizes.batch} x {sizes.crop_s:g} s crops ({info['audio_s']:g} audio-s per step), "
        f"alpha 0.5. Parts: median over {sizes.timed_steps} steps after {sizes.warmup} warm-up, each part timed "
        f"where the step calls it (labels wrap the calls from outside the model). Backward is one autograd call, "
        f"so it is not split by part. Top ops: torch.profiler over {sizes.profiled_steps} more steps, aten ops "
        f"by self time per step.\n"
    )
    print(format_tables(parts, ops, device))
    if args.json:
        write_json(
            args.json,
            "profile_step",
            parts + [{"top_op": o} for o in ops],
            device,
            {**dataclasses.asdict(sizes), "precision": precision, **info},
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
