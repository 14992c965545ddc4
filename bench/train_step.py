"""Training throughput of the EH-MAM step (pretrain's forward, losses, backward, AdamW, EMA) at clone_batch 1 and 8,
next to HF transformers' Wav2Vec2Model and Data2VecAudioModel training steps (SDPA) on the same audio.

Run: python -m bench.train_step [--device cpu|cuda] [--quick] [--json out.json] [--peak-tflops 989]
CPU default: the tiny config (pretrain/tiny.yaml), 2 s and 4 s crops, batch 2, HF models of the same widths,
plus a FLOP count (not timed) of one Base step on a 2 s crop. On a shared machine add --threads 1: two OpenMP
threads competing with other processes run many times slower.
GPU default: Base (pretrain/ehmam.yaml), 15.6 s and 20 s crops, batch = data.max_batch_samples / crop, bf16.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
from dataclasses import dataclass
from typing import Callable

import torch

from bench.common import (
    TIMING_OPTIONS,
    PeakMemory,
    apply_threads,
    bench_parser,
    count_flops,
    default_peak_tflops,
    device_name,
    fmt,
    format_bytes,
    markdown_table,
    measure,
    resolve_device,
    resolve_precision,
    seeded_audio,
    write_json,
)
from bench.training_steps import HF_KINDS, EHMAMStep, HFStep, load_bench_config
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.frontend import SAMPLE_RATE

HEADER = "## Training step throughput"

# docs/design.md "Performance": GFLOP per unique audio-second for Base, the EH-MAM step (this project's, the
# release's) and the wav2vec2 fwd+bwd step by crop length.
DOC_EHMAM_GF = {1: "44.1 spec / 53.2 release", 8: "174 spec / 212 release"}
DOC_W2V2_GF = {1.0: 48.5, 12.3: 52.1, 15.6: 53.1, 20.0: 54.3}


@dataclass
class Sizes:
    config: str
    crops_s: list[float]
    batch: int | None  # None: data.max_batch_samples // crop samples, as the loader fills a batch
    clones: list[int]
    warmup: int
    repeats: int
    base_flops_crop_s: float  # > 0: also count one Base step at M=1 on a crop this long (the CPU FLOP check)


def default_sizes(device: torch.device, quick: bool) -> Sizes:
    if quick:
        return Sizes("tiny", [1.0], 2, [1, 8], warmup=1, repeats=2, base_flops_crop_s=0.0)
    if device.type == "cuda":
        return Sizes("base", [15.6, 20.0], None, [1, 8], warmup=3, repeats=10, base_flops_crop_s=0.0)
    return Sizes("tiny", [2.0, 4.0], 2, [1, 8], warmup=1, repeats=3, base_flops_crop_s=2.0)


def doc_flops(kind: str, clones: int, crop_s: float, is_base: bool) -> str:
    """docs/design.md's GFLOP per audio-second for the row, where it has one."""
    if not is_base:
        return "n/a (not Base)"
    if kind == "ehmam":
        return DOC_EHMAM_GF.get(clones, "n/a")
    if kind == "wav2vec2":
        nearest = min(DOC_W2V2_GF, key=lambda c: abs(c - crop_s))
        return f"{DOC_W2V2_GF[nearest]} ({nearest:g} s)" if abs(nearest - crop_s) <= 0.5 else "~53"
    return "n/a"


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_rows(
    args: argparse.Namespace,
    sizes: Sizes,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    peak_tflops: float | None,
    log: Callable[[str], None],
) -> tuple[list[dict], list[str]]:
    """Time every (model, crop, M) row; returns rows (dicts) and notes (errors, FLOP checks)."""
    rows, notes = [], []
    memory = PeakMemory(device)
    encoder_config = load_bench_config(sizes.config, 1, args.seed, args.set).model
    is_base = encoder_config == EncoderConfig(layerdrop=encoder_config.layerdrop)
    pin = device.type == "cuda"
    audio = {}
    for crop_s in sizes.crops_s:
        samples = int(round(crop_s * SAMPLE_RATE))
        batch = sizes.batch or max(
            1, load_bench_config(sizes.config, 1, args.seed, args.set).data.max_batch_samples // samples
        )
        wav = seeded_audio(batch, samples, args.seed)
        audio[crop_s] = (wav.pin_memory() if pin else wav, torch.full((batch,), samples, dtype=torch.long))

    def record(
        model: str, kind: str, clones: int, crop_s: float, step: Callable[[], object], flops_fn: Callable[[], object]
    ) -> None:
        wav, lengths = audio[crop_s]
        batch = wav.shape[0]
        log(f"  {model}: crop {crop_s} s x {batch}, M={clones}")
        memory.reset()
        timing = measure(step, device, sizes.warmup, sizes.repeats)
        peak = memory.read_bytes()
        flops, per_op = count_flops(flops_fn)
        audio_s = batch * crop_s
        rows.append(
            {
                "model": model,
                "kind": kind,
                "config": sizes.config,
                "crop_s": crop_s,
                "batch": batch,
                "clones": clones,
                "audio_s_per_step": audio_s,
                "step_ms": timing.median_s * 1e3,
                "step_ms_spread": timing.spread,
                "warmup_ms": [t * 1e3 for t in timing.warmup_s],
                "audio_s_per_s": audio_s / timing.median_s,
                "peak_memory_bytes": peak,
                "peak_memory_kind": memory.kind,
                "gflop_per_step": flops / 1e9,
                "gflop_per_audio_s": flops / 1e9 / audio_s,
                "doc_gflop_per_audio_s": doc_flops(kind, clones, crop_s, is_base),
                "achieved_tflops": flops / timing.median_s / 1e12,
                "mfu": flops / timing.median_s / (peak_tflops * 1e12) if peak_tflops else None,
                "attention_gflop": sum(v for k, v in per_op.items() if "attention" in k) / 1e9,
            }
        )

    for clones in sizes.clones:
        config = load_bench_config(sizes.config, clones, args.seed, args.set)
        # mid-training: alpha = 0.5, so the teacher's ranking picks half the spans (the hard-span path runs)
        step = EHMAMStep(config, device, autocast_dtype, start_update=config.optim.max_steps // 2)
        for crop_s in sizes.crops_s:
            wav, lengths = audio[crop_s]
            positions = torch.arange(wav.shape[0])

            def flop_step() -> None:
                step.update = step.next_update_without_layerdrop()  # count all blocks, not a random skip
                step(wav, lengths, positions)

            try:
                record("EH-MAM step (ours)", "ehmam", clones, crop_s, lambda: step(wav, lengths, positions), flop_step)
            except torch.cuda.OutOfMemoryError as err:  # the other rows still run (e.g. M=8 on a small GPU)
                notes.append(f"EH-MAM M={clones}, crop {crop_s:g} s: out of memory: {str(err).splitlines()[0]}")
                step.optimizer.zero_grad(set_to_none=True)
                _release(device)
        step = None  # release it (the closures above use the name, so no `del`)
        _release(device)

    if not args.no_hf:
        lr = load_bench_config(sizes.config, 1, args.seed, args.set).optim.lr
        for kind in HF_KINDS:
            try:
                hf = HFStep(kind, encoder_config, device, autocast_dtype, args.seed, lr)
                name = "HF Wav2Vec2Model" if kind == "wav2vec2" else "HF Data2VecAudioModel"
                for crop_s in sizes.crops_s:
                    wav, _ = audio[crop_s]
                    record(name, kind, 1, crop_s, lambda: hf(wav), lambda: hf(wav))
                del hf
            except Exception as err:  # transformers missing or broken: report, keep our rows
                notes.append(f"HF {kind} rows failed: {type(err).__name__}: {err}")
            _release(device)

    if args.base_flops_crop > 0 and not is_base:  # last: a Base model would inflate the RSS peaks of later rows
        notes.append(_base_flop_check(args, device, autocast_dtype))

    for row in rows:
        for kind, key in (("wav2vec2", "ratio_vs_hf_wav2vec2"), ("data2vec-audio", "ratio_vs_hf_data2vec_audio")):
            match = [r for r in rows if r["kind"] == kind and r["crop_s"] == row["crop_s"]]
            row[key] = row["audio_s_per_s"] / match[0]["audio_s_per_s"] if match else None
    for row in rows:
        if row["kind"] == "ehmam" and row["clones"] == 1 and is_base:
            notes.append(
                f"FLOP check, Base M=1, crop {row['crop_s']:g} s: counted {row['gflop_per_audio_s']:.1f} "
                f"GFLOP per audio-second; docs/design.md: ~53 (EH-MAM as released, and a wav2vec2 step), "
                f"~44 (this project's step, computed, 20 s crops)."
            )
    return rows, notes


def _base_flop_check(args: argparse.Namespace, device: torch.device, autocast_dtype: torch.dtype | None) -> str:
    """Count one Base step (M=1, batch 1) on a short crop: the FLOP comparison when the timed rows are tiny."""
    crop_s = args.base_flops_crop
    samples = int(round(crop_s * SAMPLE_RATE))
    config = load_bench_config("base", 1, args.seed, [])
    step = EHMAMStep(config, device, autocast_dtype, start_update=config.optim.max_steps // 2)
    wav, lengths = seeded_audio(1, samples, args.seed), torch.full((1,), samples, dtype=torch.long)
    step.update = step.next_update_without_layerdrop()
    flops, _ = count_flops(lambda: step(wav, lengths, torch.arange(1)))
    step = None
    _release(device)
    return (
        f"FLOP check, Base M=1, batch 1, crop {crop_s:g} s (counted, not timed): {flops / 1e9 / crop_s:.1f} GFLOP "
        f"per audio-second; docs/design.md: ~53 (EH-MAM as released, and a wav2vec2 step, 15.6 s crops), ~44 "
        f"(this project's step, computed, 20 s crops); a short crop has less attention (docs/design.md, "
        f"Performance: a wav2vec2 step is 48.5 at 1 s vs 53.1 at 15.6 s)."
    )


def format_table(rows: list[dict]) -> str:
    headers = [
        "model",
        "crop s x batch",
        "M",
        "ms/step (median)",
        "audio-s/s",
        "peak memory",
        "GFLOP/step",
        "GFLOP/audio-s",
        "design.md GFLOP/audio-s",
        "TFLOP/s",
        "MFU",
        "ratio vs HF w2v2",
        "ratio vs HF d2v-audio",
    ]
    body = []
    for r in rows:
        ratio = [
            fmt(r[k], 2) if r[k] is not None and r["kind"] == "ehmam" else "-"
            for k in ("ratio_vs_hf_wav2vec2", "ratio_vs_hf_data2vec_audio")
        ]
        body.append(
            [
                r["model"],
                f"{r['crop_s']:g} x {r['batch']}",
                r["clones"],
                fmt(r["step_ms"], 1),
                fmt(r["audio_s_per_s"], 1),
                format_bytes(r["peak_memory_bytes"]),
                fmt(r["gflop_per_step"], 1),
                fmt(r["gflop_per_audio_s"], 2),
                r["doc_gflop_per_audio_s"],
                fmt(r["achieved_tflops"], 3),
                "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %",
                *ratio,
            ]
        )
    return markdown_table(headers, body)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, (*TIMING_OPTIONS, "precision"))
    parser.add_argument("--config", default=None, help="tiny | base | a YAML path (default: tiny on CPU, base on GPU)")
    parser.add_argument("--crops", default=None, help="comma-separated crop lengths in seconds")
    parser.add_argument("--batch", type=int, default=None, help="utterances per step (default per device)")
    parser.add_argument("--clones", default=None, help="comma-separated clone_batch values (default 1,8)")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="peak dense TFLOP/s for MFU (default: 989 on H100/H200, 312 on A100; none on CPU)",
    )
    parser.add_argument(
        "--base-flops-crop",
        type=float,
        default=None,
        help="when the timed rows are not Base, also count one Base step on a crop this long "
        "(seconds; 0 = skip; default 2 on CPU, 0 with --quick)",
    )
    parser.add_argument("--no-hf", action="store_true", help="skip the HF transformers rows")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override for our model, as pretrain/run.py --set",
    )
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    threads = apply_threads(args.threads)
    sizes = default_sizes(device, args.quick)
    if args.config:
        sizes.config = args.config
    if args.crops:
        sizes.crops_s = [float(c) for c in args.crops.split(",")]
    if args.batch is not None:
        sizes.batch = args.batch
    if args.clones:
        sizes.clones = [int(c) for c in args.clones.split(",")]
    sizes.warmup = sizes.warmup if args.warmup is None else args.warmup
    sizes.repeats = sizes.repeats if args.repeats is None else args.repeats
    if args.base_flops_crop is None:
        args.base_flops_crop = sizes.base_flops_crop_s
    precision, autocast_dtype = resolve_precision(args.precision, device)
    peak_tflops = args.peak_tflops or default_peak_tflops(device)

    rows, notes = bench_rows(
        args, sizes, device, autocast_dtype, peak_tflops, log=lambda msg: print(msg, file=sys.stderr, flush=True)
    )
    peak_text = f"{peak_tflops:g} TFLOP/s" if peak_tflops else "n/a (no --peak-tflops)"
    print(f"{HEADER}\n")
    print(
        f"Device {device_name(device)} ({device.type}), {threads} threads, {precision}, config {sizes.config}, "
        f"warm-up {sizes.warmup} + median of {sizes.repeats} steps; seeded random audio (seed {args.seed}), the "
        f"same for every model. Our step: pretrain's forward + backward + grad norm/finite check + AdamW + EMA at "
        f"alpha 0.5 (mid-training). HF: forward (SDPA, train mode) + backward of mean(h^2) + AdamW, widths and CNN "
        f"as ours. FLOPs: torch FlopCounterMode on one step with no layer skipped (attention as QK^T + AV, backward "
        f"without recompute); per unique audio-second (clones not counted twice). Peak memory: "
        f"{PeakMemory(device).kind}. MFU against {peak_text}. Ratio = our audio-s/s / HF audio-s/s at the same "
        f"crop.\n"
    )
    print(format_table(rows))
    for note in notes:
        print(f"\n* {note}")
    if args.json:
        write_json(
            args.json,
            "train_step",
            rows,
            device,
            {**dataclasses.asdict(sizes), "precision": precision, "peak_tflops": peak_tflops, "notes": notes},
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
