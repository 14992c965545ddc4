"""Feature extraction speed: our upstream encoder (all hidden states, eval, no_grad) vs torchaudio's wav2vec2 of the
same shape (random init, its extract_features), same threads, same seeded audio, batch 1 and 8.

Run: python -m bench.inference [--device cpu|cuda] [--quick] [--json out.json]
GPU default: Base, 10 s inputs, bf16 autocast. CPU default: Base, 0.5 s inputs, 3 repeats. --quick: the tiny
shapes of pretrain/tiny.yaml, 1 s.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.common import (
    TIMING_OPTIONS,
    PeakMemory,
    apply_threads,
    autocast_for,
    bench_parser,
    count_flops,
    device_name,
    fmt,
    format_bytes,
    markdown_table,
    measure,
    override_sizes,
    resolve_device,
    resolve_precision,
    seeded_audio,
    write_json,
)
from pretrain.config import load_config
from trainkit.cli import comma_list
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.frontend import SAMPLE_RATE
from upstream_ehmam.model import EHMAMEncoder

ROOT = Path(__file__).resolve().parent.parent

HEADER = "## Inference (feature extraction)"


@dataclass
class Sizes:
    shape: str  # base | tiny
    seconds: float
    batches: list[int]
    warmup: int
    repeats: int


def default_sizes(device: torch.device, quick: bool) -> Sizes:
    if quick:
        return Sizes("tiny", 1.0, [1, 8], warmup=1, repeats=3)
    if device.type == "cuda":
        return Sizes("base", 10.0, [1, 8], warmup=3, repeats=20)
    return Sizes("base", 0.5, [1, 8], warmup=1, repeats=3)


def encoder_config(shape: str) -> EncoderConfig:
    """Base = EncoderConfig defaults (= pretrain/ehmam.yaml); tiny = pretrain/tiny.yaml's model section."""
    if shape == "base":
        return EncoderConfig()
    if shape == "tiny":
        return load_config(ROOT / "pretrain" / "tiny.yaml").model
    raise ValueError(f"--shape must be base or tiny, got {shape!r}")


def torchaudio_model(shape: str, cfg: EncoderConfig) -> torch.nn.Module:
    """torchaudio.models.wav2vec2_base() for Base; the generic builder with our tiny widths otherwise."""
    from measure.torchaudio_import import import_torchaudio

    torchaudio = import_torchaudio()  # its C++ extension needs CUDA libraries; the wav2vec2 models are pure Python
    if shape == "base":
        return torchaudio.models.wav2vec2_base()
    return torchaudio.models.wav2vec2_model(
        extractor_mode="layer_norm",
        extractor_conv_layer_config=[tuple(c) for c in cfg.conv_layers],
        extractor_conv_bias=False,
        encoder_embed_dim=cfg.embed_dim,
        encoder_projection_dropout=0.1,
        encoder_pos_conv_kernel=128,
        encoder_pos_conv_groups=16,
        encoder_num_layers=cfg.num_layers,
        encoder_num_heads=cfg.num_heads,
        encoder_attention_dropout=0.1,
        encoder_ff_interm_features=cfg.ffn_dim,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.1,
        encoder_layer_norm_first=False,
        encoder_layer_drop=0.05,
        aux_num_out=None,
    )


OURS, OURS_COMPILED = "ours (EHMAMEncoder.extract_features)", "ours, torch.compile (same weights)"
THEIRS = "torchaudio wav2vec2 (extract_features)"


def gemm_rate(device: torch.device, dtype: torch.dtype, rows: int, cfg: EncoderConfig) -> tuple[float, str]:
    """(FLOP/s, shape) of the fastest of two matmuls timed alone on this device: the encoder's largest,
    (rows x D) @ (D x ffn), and a large square one. Best of 10 calls after 3 warm-ups: a rate the device
    demonstrably reaches, so FLOPs / rate is a floor on any implementation of the same maths."""
    square = 8192 if device.type == "cuda" else 2048
    best, best_shape = 0.0, ""
    for m, k, n in ((rows, cfg.embed_dim, cfg.ffn_dim), (square, square, square)):
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(m, k, generator=generator).to(device, dtype)
        b = torch.randn(k, n, generator=generator).to(device, dtype)
        timing = measure(lambda: torch.mm(a, b), device, warmup=3, repeats=10)
        rate = 2 * m * k * n / min(timing.times_s)
        if rate > best:
            best, best_shape = rate, f"({m} x {k}) @ ({k} x {n})"
    return best, best_shape


def bench_rows(
    sizes: Sizes, device: torch.device, autocast_dtype: torch.dtype | None, seed: int, compile_ours: bool = False
) -> list[dict]:
    cfg = encoder_config(sizes.shape)
    torch.manual_seed(seed)
    encoder = EHMAMEncoder(cfg).to(device).eval()
    # name -> (extract function, whether it takes our lengths); the compiled one is traced on its warm-up calls
    models = {OURS: (encoder.extract_features, True)}
    if compile_ours:
        models[OURS_COMPILED] = (torch.compile(encoder.extract_features, dynamic=False), True)
    theirs = torchaudio_model(sizes.shape, cfg).to(device).eval()
    models[THEIRS] = (theirs.extract_features, False)
    samples = int(round(sizes.seconds * SAMPLE_RATE))
    memory = PeakMemory(device)
    rows = []
    for batch in sizes.batches:
        wav = seeded_audio(batch, samples, seed).to(device)
        lengths = torch.full((batch,), samples, dtype=torch.long, device=device)
        for name, (extract, takes_lengths) in models.items():

            @torch.no_grad()
            def call() -> None:
                with autocast_for(device, autocast_dtype):
                    # torchaudio: equal lengths need no padding mask
                    extract(wav, lengths if takes_lengths else None)

            print(f"  {name}: batch {batch} x {sizes.seconds:g} s", file=sys.stderr, flush=True)
            memory.reset()
            timing = measure(call, device, sizes.warmup, sizes.repeats)
            # compiled code runs inductor kernels the counter cannot see; it does the eager encoder's maths
            flops = rows[-1]["flops_per_call"] if name == OURS_COMPILED else count_flops(call)[0]
            audio_s = batch * sizes.seconds
            rows.append(
                {
                    "model": name,
                    "shape": sizes.shape,
                    "batch": batch,
                    "seconds": sizes.seconds,
                    "ms_per_call": timing.median_s * 1e3,
                    "ms_spread": timing.spread,
                    "warmup_ms": [t * 1e3 for t in timing.warmup_s],
                    "realtime_factor": audio_s / timing.median_s,
                    "peak_memory_bytes": memory.read_bytes(),
                    "peak_memory_kind": memory.kind,
                    "flops_per_call": flops,
                    "tflops_per_s": flops / timing.median_s / 1e12,
                }
            )
        batch_rows = rows[-len(models) :]
        frames = cfg.frames_for_samples(samples)
        rate, shape = gemm_rate(device, autocast_dtype or torch.float32, batch * frames, cfg)
        theirs_ms = next(r["ms_per_call"] for r in batch_rows if r["model"] == THEIRS)
        for row in batch_rows:
            row["speed_ratio_ours_over_torchaudio"] = None if row["model"] == THEIRS else theirs_ms / row["ms_per_call"]
            row["gemm_tflops_per_s"] = rate / 1e12
            row["gemm_shape"] = shape
            row["floor_ms"] = row["flops_per_call"] / rate * 1e3
            row["best_ratio_at_floor"] = None if row["model"] == THEIRS else theirs_ms / row["floor_ms"]
    del models, encoder, theirs
    gc.collect()
    return rows


def profile_ops(
    sizes: Sizes, device: torch.device, autocast_dtype: torch.dtype | None, seed: int, limit: int = 12
) -> dict[str, dict[str, float]]:
    """Self time per aten op (ms per call) of one profiled call of each model at the first batch size, after one
    unprofiled warm-up call: where each model's time goes, side by side."""
    from torch.profiler import ProfilerActivity, profile

    from bench.profile_step import top_ops

    cfg = encoder_config(sizes.shape)
    torch.manual_seed(seed)
    encoder = EHMAMEncoder(cfg).to(device).eval()
    theirs = torchaudio_model(sizes.shape, cfg).to(device).eval()
    batch, samples = sizes.batches[0], int(round(sizes.seconds * SAMPLE_RATE))
    wav = seeded_audio(batch, samples, seed).to(device)
    lengths = torch.full((batch,), samples, dtype=torch.long, device=device)
    calls = {OURS: lambda: encoder.extract_features(wav, lengths), THEIRS: lambda: theirs.extract_features(wav)}
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    key = "self_device_ms_per_step" if device.type == "cuda" else "self_cpu_ms_per_step"
    per_model = {}
    for name, call in calls.items():
        with torch.no_grad(), autocast_for(device, autocast_dtype):
            call()
            with profile(activities=activities) as prof:
                call()
        per_model[name] = {r["op"]: r[key] for r in top_ops(prof, device, 1, limit)}
    return per_model


def format_profile_table(per_model: dict[str, dict[str, float]]) -> str:
    ops = sorted(
        {op for table in per_model.values() for op in table},
        key=lambda op: -max(table.get(op, 0.0) for table in per_model.values()),
    )
    headers = ["op"] + [f"{name}: self ms/call" for name in per_model]
    body = [[f"`{op}`"] + [fmt(table[op], 1) if op in table else "-" for table in per_model.values()] for op in ops]
    totals = ["**listed ops**"] + [fmt(sum(table.values()), 1) for table in per_model.values()]
    return markdown_table(headers, body + [totals])


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(rows: list[dict]) -> str:
    headers = [
        "model",
        "shape",
        "batch x input",
        "ms/call (median)",
        "spread",
        "x real time (audio-s/s)",
        "peak memory",
        "GFLOP/call",
        "TFLOP/s",
        "speed ratio ours/torchaudio",
    ]
    body = [
        [
            r["model"],
            r["shape"],
            f"{r['batch']} x {r['seconds']:g} s",
            fmt(r["ms_per_call"], 1),
            r["ms_spread"],
            fmt(r["realtime_factor"], 1),
            format_bytes(r["peak_memory_bytes"]),
            fmt(r["flops_per_call"] / 1e9, 1),
            f"{r['tflops_per_s']:.3f}",
            _ratio(r["speed_ratio_ours_over_torchaudio"]),
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def format_floor_table(rows: list[dict]) -> str:
    """Each model's FLOPs at the device's own GEMM rate: how far it is from that floor, and the largest speed ratio
    ours/torchaudio that equal FLOPs allow (torchaudio's measured time over our floor)."""
    headers = [
        "model",
        "batch",
        "GEMM rate (TFLOP/s)",
        "GEMM shape",
        "FLOP floor ms",
        "measured / floor",
        "largest ratio ours/torchaudio at our floor",
    ]
    body = [
        [
            r["model"],
            r["batch"],
            f"{r['gemm_tflops_per_s']:.3f}",
            r["gemm_shape"],
            fmt(r["floor_ms"], 1),
            f"{r['ms_per_call'] / r['floor_ms']:.2f}",
            _ratio(r["best_ratio_at_floor"]),
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, (*TIMING_OPTIONS, "precision"))
    parser.add_argument("--shape", choices=("base", "tiny"), default=None, help="model shape (default per device)")
    parser.add_argument("--seconds", type=float, default=None, help="input length in seconds")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,8)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add a row for our encoder under torch.compile (compile time shows in the warm-up)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="add each model's top ops by self time (torch.profiler, first batch size)",
    )
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    threads = apply_threads(args.threads)
    sizes = default_sizes(device, args.quick)
    batches = [int(b) for b in comma_list(args.batches)] if args.batches else None
    override_sizes(
        sizes, shape=args.shape, seconds=args.seconds, batches=batches, warmup=args.warmup, repeats=args.repeats
    )
    precision, autocast_dtype = resolve_precision(args.precision, device)

    rows = bench_rows(sizes, device, autocast_dtype, args.seed, compile_ours=args.compile)
    print(f"{HEADER}\n")
    print(
        f"Device {device_name(device)} ({device.type}), {threads} threads, {precision}, {sizes.shape} shapes "
        f"(ours: 5-layer pos-conv + ALiBi; torchaudio: its wav2vec2 of the same widths), random init, eval + "
        f"no_grad, inputs {sizes.seconds:g} s of seeded random audio, warm-up {sizes.warmup} + median of "
        f"{sizes.repeats} calls. Ours returns all {encoder_config(sizes.shape).num_layers + 1} hidden states "
        f"with padding zeroed (lengths given); torchaudio's extract_features gets lengths=None (equal lengths). "
        f"Speed ratio > 1: ours is faster.\n"
    )
    print(format_table(rows))
    print(
        "\nFLOPs: torch's FlopCounterMode on one call (matmuls, convolutions, attention; elementwise ops count 0). "
        "GEMM rate: the faster of the model's largest matmul and a large square one, timed alone (best of 10 calls). "
        "FLOP floor = FLOPs / GEMM rate.\n"
    )
    print(format_floor_table(rows))
    if args.profile:
        print(f"\nTop ops by self time, one profiled call at batch {sizes.batches[0]} (torch.profiler):\n")
        print(format_profile_table(profile_ops(sizes, device, autocast_dtype, args.seed)))
    for row in rows:
        if row["model"] == OURS_COMPILED:
            print(
                f"\ntorch.compile, batch {row['batch']}: first warm-up call (tracing + compilation) "
                f"{row['warmup_ms'][0] / 1e3:.1f} s"
            )
    if args.json:
        write_json(args.json, "inference", rows, device, {**dataclasses.asdict(sizes), "precision": precision})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
