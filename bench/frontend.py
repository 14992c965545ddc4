"""CNN vs log-mel front end (`model.frontend`), side by side in one run: FLOPs per audio-second of the front end
and of a whole pretraining step (Base and tiny), pretraining step time, and feature extraction time against
torchaudio's wav2vec2_base.

Run: python -m bench.frontend [--device cpu|cuda] [--threads 1] [--repeats 5] [--json out.json]
--quick: tiny shapes only, no feature-extraction rows (a smoke run); --skip-timing: FLOP counts only.
Configs: Base = pretrain/ehmam.yaml vs pretrain/mel.yaml, tiny = pretrain/tiny.yaml vs pretrain/tiny_mel.yaml.
Timed calls are interleaved (cnn, mel, cnn, mel, ...) so that load from other processes hits both alike.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import torch

from bench.common import (
    apply_threads,
    autocast_for,
    bench_parser,
    count_flops,
    device_name,
    markdown_table,
    resolve_device,
    seeded_audio,
    time_call,
    write_json,
)
from bench.inference import torchaudio_model
from bench.train_step import EHMAMStep
from pretrain.config import load_config
from upstream_ehmam import frontend as mel_frontend
from upstream_ehmam.frontend import SAMPLE_RATE
from upstream_ehmam.model import EHMAMEncoder

ROOT = Path(__file__).resolve().parent.parent

HEADER = "## Front ends: cnn vs mel"
CONFIGS = {
    ("base", "cnn"): "ehmam.yaml",
    ("base", "mel"): "mel.yaml",
    ("tiny", "cnn"): "tiny.yaml",
    ("tiny", "mel"): "tiny_mel.yaml",
}


def config(shape: str, frontend: str, sets: tuple[str, ...] = ()):
    return load_config(ROOT / "pretrain" / CONFIGS[shape, frontend], list(sets))


def fft_flops_per_second() -> float:
    """FLOPs the counter does not see: the 400-point real FFT of every 10 ms frame, at the usual 2.5 N log2 N for
    a real transform (half of a complex one's 5 N log2 N), 100 frames per audio-second."""
    n = mel_frontend.MEL_WINDOW
    return 2.5 * n * math.log2(n) * SAMPLE_RATE / mel_frontend.MEL_HOP


def flop_rows(device: torch.device, seed: int, shapes: tuple[str, ...] = ("base", "tiny")) -> list[dict]:
    """Per audio-second: front-end forward FLOPs (inference) and a whole pretraining step's FLOPs (forward,
    backward, EMA; clone_batch 1, alpha 0.5), for Base (1 x 4 s crop) and tiny (2 x 4 s)."""
    rows = []
    for shape, batch in [(s, b) for s, b in (("base", 1), ("tiny", 2)) if s in shapes]:
        seconds = 4.0
        samples = int(seconds * SAMPLE_RATE)
        audio_s = batch * seconds
        for frontend in ("cnn", "mel"):
            cfg = config(shape, frontend, ("optim.warmup_steps=0", "optim.max_steps=2", "model.layerdrop=0.0"))
            wav = seeded_audio(batch, samples, seed)
            lengths = torch.full((batch,), samples, dtype=torch.long)
            torch.manual_seed(seed)
            encoder = EHMAMEncoder(cfg.model).to(device).eval()
            with torch.no_grad():
                front, _ = count_flops(lambda: encoder.local(wav.to(device), lengths.to(device)))
                whole, _ = count_flops(lambda: encoder.extract_features(wav.to(device), lengths.to(device)))
            encoder = None  # release it (the lambdas above close over the name, so no `del`)
            step = EHMAMStep(cfg, device, None)
            step_flops, _ = count_flops(lambda: step(wav, lengths, torch.arange(batch)))
            step = None
            extra = fft_flops_per_second() if frontend == "mel" else 0.0
            rows.append(
                {
                    "shape": shape,
                    "frontend": frontend,
                    "front_gflop_per_s": (front / audio_s + extra) / 1e9,
                    "fft_gflop_per_s": extra / 1e9,
                    "encoder_gflop_per_s": (whole / audio_s + extra) / 1e9,
                    "step_gflop_per_s": (step_flops / audio_s + extra) / 1e9,
                }
            )
    return rows


def interleaved(calls: dict, device: torch.device, warmup: int, repeats: int) -> dict[str, list[float]]:
    """name -> `repeats` timings (s); every round times each call once, in turn, after `warmup` untimed rounds."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            times[name].append(time_call(fn, device))
    return times


def step_time_rows(
    device: torch.device, seed: int, repeats: int, shapes: tuple[str, ...] = ("base", "tiny")
) -> list[dict]:
    """Pretraining step time (the training loop's own update), cnn vs mel, tiny 2 x 4 s and Base 1 x 2 s."""
    rows = []
    for shape, batch, seconds in [r for r in (("tiny", 2, 4.0), ("base", 1, 2.0)) if r[0] in shapes]:
        samples = int(seconds * SAMPLE_RATE)
        wav = seeded_audio(batch, samples, seed)
        lengths = torch.full((batch,), samples, dtype=torch.long)
        steps = {fe: EHMAMStep(config(shape, fe, ("optim.warmup_steps=0",)), device, None) for fe in ("cnn", "mel")}
        calls = {fe: (lambda s=s: s(wav, lengths, torch.arange(batch))) for fe, s in steps.items()}
        times = interleaved(calls, device, warmup=1, repeats=repeats)
        for fe, t in times.items():
            med = statistics.median(t)
            rows.append(
                {
                    "shape": shape,
                    "frontend": fe,
                    "batch": batch,
                    "seconds": seconds,
                    "ms": med * 1e3,
                    "spread": f"{min(t) * 1e3:.0f}-{max(t) * 1e3:.0f}",
                    "audio_s_per_s": batch * seconds / med,
                }
            )
        cnn_ms = next(r["ms"] for r in rows[-2:] if r["frontend"] == "cnn")
        for r in rows[-2:]:
            r["speedup_vs_cnn"] = cnn_ms / r["ms"]
        del steps
    return rows


def extraction_rows(device: torch.device, seed: int, repeats: int, autocast_dtype) -> list[dict]:
    """Base feature extraction (all hidden states, eval, no_grad): cnn, mel and torchaudio's wav2vec2_base."""
    rows = []
    torch.manual_seed(seed)
    models = {
        "ours, frontend cnn (ehmam.yaml)": EHMAMEncoder(config("base", "cnn").model).to(device).eval(),
        "ours, frontend mel (mel.yaml)": EHMAMEncoder(config("base", "mel").model).to(device).eval(),
    }
    theirs = torchaudio_model("base", config("base", "cnn").model).to(device).eval()
    for batch, seconds in ((1, 10.0), (8, 1.0)):
        samples = int(seconds * SAMPLE_RATE)
        wav = seeded_audio(batch, samples, seed).to(device)
        lengths = torch.full((batch,), samples, dtype=torch.long, device=device)

        def ours(model):
            def call():
                with torch.no_grad(), autocast_for(device, autocast_dtype):
                    model.extract_features(wav, lengths)

            return call

        def ta():
            with torch.no_grad(), autocast_for(device, autocast_dtype):
                theirs.extract_features(wav)

        calls = {name: ours(model) for name, model in models.items()}
        calls["torchaudio wav2vec2_base (extract_features)"] = ta
        times = interleaved(calls, device, warmup=1, repeats=repeats)
        ta_ms = statistics.median(times["torchaudio wav2vec2_base (extract_features)"]) * 1e3
        for name, t in times.items():
            med = statistics.median(t) * 1e3
            rows.append(
                {
                    "model": name,
                    "batch": batch,
                    "seconds": seconds,
                    "ms": med,
                    "spread": f"{min(t) * 1e3:.0f}-{max(t) * 1e3:.0f}",
                    "speed_vs_torchaudio": ta_ms / med,
                }
            )
    return rows


def profile_mel_extraction(device: torch.device, seed: int, seconds: float = 10.0) -> str:
    """Top ops by self time of one Base mel feature extraction (torch.profiler, after a warm-up call), with each
    op's share of the call."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(seed)
    encoder = EHMAMEncoder(config("base", "mel").model).to(device).eval()
    samples = int(seconds * SAMPLE_RATE)
    wav = seeded_audio(1, samples, seed).to(device)
    lengths = torch.full((1,), samples, dtype=torch.long, device=device)
    with torch.no_grad():
        encoder.extract_features(wav, lengths)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            encoder.extract_features(wav, lengths)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    body = [
        [f"`{e.key}`", f"{e.self_cpu_time_total / 1e3:.1f}", f"{100 * e.self_cpu_time_total / total:.1f} %"]
        for e in events[:8]
    ]
    spectral = sum(e.self_cpu_time_total for e in events if e.key in ("aten::_fft_r2c", "aten::stft", "aten::mm"))
    body.append(
        ["FFT + filterbank matmul (`_fft_r2c`, `mm`)", f"{spectral / 1e3:.1f}", f"{100 * spectral / total:.2f} %"]
    )
    return markdown_table(["op (mel encoder, 1 x %g s)" % seconds, "self CPU ms", "share"], body)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--skip-timing", action="store_true", help="FLOP counts only")
    parser.add_argument(
        "--profile", action="store_true", help="add the top ops of one Base mel feature extraction (10 s input)"
    )
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    threads = apply_threads(args.threads)
    repeats = args.repeats or (10 if device.type == "cuda" else 5)
    autocast_dtype = torch.bfloat16 if device.type == "cuda" else None
    print(
        f"{HEADER}\n\nDevice {device_name(device)} ({device.type}), {threads} threads, "
        f"{'bf16 autocast' if autocast_dtype else 'fp32'}, random init, seeded random audio (seed {args.seed}).\n"
    )
    shapes = ("tiny",) if args.quick else ("base", "tiny")
    flops = flop_rows(device, args.seed, shapes)
    print(
        "FLOPs per audio-second (torch's FlopCounterMode: matmuls, convs, attention; elementwise ops count 0). "
        f"The mel rows add {fft_flops_per_second() / 1e6:.1f} MFLOP/s for the FFT the counter does not see (it "
        "runs once per step: no gradient flows into the waveform). Step = the training loop's update (forward, "
        "backward, AdamW, EMA), clone_batch 1, no layerdrop; Base 1 x 4 s crop, tiny 2 x 4 s.\n"
    )
    body = []
    for r in flops:
        cnn = next(x for x in flops if x["shape"] == r["shape"] and x["frontend"] == "cnn")
        body.append(
            [
                r["shape"],
                r["frontend"],
                f"{r['front_gflop_per_s']:.4f}",
                f"{r['encoder_gflop_per_s']:.2f}",
                f"{r['step_gflop_per_s']:.2f}",
                f"{r['step_gflop_per_s'] / cnn['step_gflop_per_s']:.3f}",
            ]
        )
    print(
        markdown_table(
            [
                "shape",
                "frontend",
                "front end GFLOP/audio-s (inference)",
                "encoder GFLOP/audio-s (inference)",
                "pretraining step GFLOP/audio-s",
                "step FLOPs / cnn step FLOPs",
            ],
            body,
        )
    )
    steps, extraction = [], []
    if not args.skip_timing:
        steps = step_time_rows(device, args.seed, repeats, shapes)
        print(f"\nPretraining step time (interleaved, 1 warm-up round + median of {repeats}):\n")
        print(
            markdown_table(
                ["shape", "frontend", "batch x crop", "ms/step (median)", "spread ms", "audio-s/s", "speed-up vs cnn"],
                [
                    [
                        r["shape"],
                        r["frontend"],
                        f"{r['batch']} x {r['seconds']:g} s",
                        f"{r['ms']:.0f}",
                        r["spread"],
                        f"{r['audio_s_per_s']:.1f}",
                        f"{r['speedup_vs_cnn']:.2f}",
                    ]
                    for r in steps
                ],
            )
        )
    if not args.skip_timing and not args.quick:
        extraction = extraction_rows(device, args.seed, repeats, autocast_dtype)
        print(
            f"\nBase feature extraction (all 13 hidden states; torchaudio's wav2vec2_base extract_features, "
            f"lengths=None; interleaved, 1 warm-up round + median of {repeats}). Speed > 1: faster than "
            f"torchaudio:\n"
        )
        print(
            markdown_table(
                ["model", "batch x input", "ms/call (median)", "spread ms", "speed vs torchaudio"],
                [
                    [
                        r["model"],
                        f"{r['batch']} x {r['seconds']:g} s",
                        f"{r['ms']:.0f}",
                        r["spread"],
                        f"{r['speed_vs_torchaudio']:.2f}",
                    ]
                    for r in extraction
                ],
            )
        )
    if args.profile:
        print("\nOne Base mel feature extraction, profiled (torch.profiler, self CPU time, after one warm-up call):\n")
        print(profile_mel_extraction(device, args.seed))
    if args.json:
        write_json(args.json, "frontend", [*flops, *steps, *extraction], device, {"repeats": repeats})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
