"""Data-loading throughput of the pretraining loader (pretrain/data.py: FLAC decode + normalise + crop + collate) on a
generated set of FLAC files, for 0, 1 and 2 workers: audio-seconds per second, batches per second, per worker.

Run: python -m bench.data_loading [--quick] [--workers 0,1,2] [--files 48] [--json out.json]
The files are speech-like (harmonic voiced segments + -40 dB noise, 16 kHz, 16-bit FLAC) in a temporary folder.
Epoch 1 is the warm-up (worker start-up); the median over the following epochs is reported. A decode-only row
(soundfile.read in the main process) relates the numbers to docs/design.md "Performance".
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from bench.common import apply_threads, bench_parser, device_name, fmt, markdown_table, resolve_device, write_json
from pretrain.data import build_loader
from pretrain.manifest import write_manifest
from trainkit.cli import comma_list, refuse_old_spellings
from upstream_ehmam.frontend import SAMPLE_RATE

HEADER = "## Data loading (FLAC decode + crop + collate)"


@dataclass
class Sizes:
    files: int
    min_s: float
    max_s: float
    crop_max_s: float  # data.max_samples: longer files are cropped
    batch_s: float  # data.max_batch_samples in seconds
    workers: list[int]
    epochs: int  # timed epochs after the warm-up epoch


def default_sizes(device: torch.device, quick: bool) -> Sizes:
    if quick:
        return Sizes(files=12, min_s=2.0, max_s=3.0, crop_max_s=3.0, batch_s=9.0, workers=[0, 1, 2], epochs=2)
    if device.type == "cuda":  # LibriSpeech-like lengths and the Base batch (62.5 s per GPU)
        return Sizes(files=256, min_s=2.0, max_s=20.0, crop_max_s=20.0, batch_s=62.5, workers=[0, 1, 2], epochs=3)
    return Sizes(files=48, min_s=2.0, max_s=6.0, crop_max_s=4.0, batch_s=16.0, workers=[0, 1, 2], epochs=3)


def speech_like(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Voiced 0.25 s segments (random pitch, 7 partials) with pauses, plus -40 dB noise; float32 in [-0.5, 0.5]."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    out = np.zeros_like(t)
    hop = SAMPLE_RATE // 4
    for start in range(0, len(t), hop):
        if rng.uniform() < 0.2:
            continue  # a pause
        segment = slice(start, start + hop)
        f0 = rng.uniform(90, 250)
        for k in range(1, 8):
            out[segment] += rng.uniform(0, 1) / k * np.sin(2 * np.pi * f0 * k * t[segment])
    out = 0.5 * out / max(np.abs(out).max(), 1e-9)
    out += 0.005 * rng.standard_normal(t.shape)  # -40 dB relative to full scale
    return np.clip(out, -1, 1).astype(np.float32)


def write_corpus(root: Path, sizes: Sizes, seed: int) -> tuple[Path, float, float]:
    """FLAC files + manifest; returns (manifest path, total audio seconds, mean bitrate in kbit/s)."""
    rng = np.random.default_rng(seed)
    total_samples, total_bytes = 0, 0
    for i in range(sizes.files):
        wav = speech_like(rng, rng.uniform(sizes.min_s, sizes.max_s))
        path = root / f"utt{i:04d}.flac"
        sf.write(path, wav, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
        total_samples += len(wav)
        total_bytes += path.stat().st_size
    manifest = root / "train.tsv"
    write_manifest(root, manifest)
    seconds = total_samples / SAMPLE_RATE
    return manifest, seconds, total_bytes * 8 / 1000 / seconds


def time_epochs(loader, sampler, epochs: int) -> tuple[list[tuple[float, float, int]], float]:
    """[(seconds, audio seconds, batches) per timed epoch], and the warm-up epoch's seconds (epoch 1)."""
    results = []
    warmup_s = 0.0
    for epoch in range(1, epochs + 2):
        sampler.set_epoch(epoch)
        begin = time.perf_counter()
        audio_samples, batches = 0, 0
        for batch in loader:
            audio_samples += int(batch["wav_lengths"].sum())
            batches += 1
        elapsed = time.perf_counter() - begin
        if epoch == 1:
            warmup_s = elapsed
        else:
            results.append((elapsed, audio_samples / SAMPLE_RATE, batches))
    return results, warmup_s


def decode_only(root: Path, repeats: int) -> float:
    """Median seconds to soundfile.read every FLAC file of the corpus to float32, in this process."""
    paths = sorted(root.glob("*.flac"))
    times = []
    for _ in range(repeats + 1):
        begin = time.perf_counter()
        for path in paths:
            sf.read(str(path), dtype="float32")
        times.append(time.perf_counter() - begin)
    return statistics.median(times[1:])


def bench_rows(sizes: Sizes, device: torch.device, seed: int, workdir: Path) -> tuple[list[dict], dict]:
    manifest, corpus_s, kbps = write_corpus(workdir, sizes, seed)
    rows = []
    decode_s = decode_only(workdir, sizes.epochs)
    rows.append(
        {
            "path": "soundfile.read only (main process, all files)",
            "workers": 0,
            "batches_per_s": None,
            "audio_s_per_s": corpus_s / decode_s,
            "audio_s_per_s_per_worker": None,
            "realtime_factor": corpus_s / decode_s,
            "epoch_s": decode_s,
            "warmup_epoch_s": None,
            "batches": None,
        }
    )
    for workers in sizes.workers:
        print(f"  loader with {workers} workers", file=sys.stderr, flush=True)
        loader, sampler = build_loader(
            manifest,
            int(sizes.batch_s * SAMPLE_RATE),
            int(sizes.min_s * SAMPLE_RATE),
            int(sizes.crop_max_s * SAMPLE_RATE),
            seed,
            workers,
            pin_memory=device.type == "cuda",
        )
        epochs, warmup_s = time_epochs(loader, sampler, sizes.epochs)
        del loader  # stops persistent workers
        seconds = statistics.median(e[0] for e in epochs)
        audio_s = statistics.median(e[1] / e[0] for e in epochs)
        rows.append(
            {
                "path": "pretrain.data.build_loader (decode + normalise + crop + collate)",
                "workers": workers,
                "batches_per_s": statistics.median(e[2] / e[0] for e in epochs),
                "audio_s_per_s": audio_s,
                "audio_s_per_s_per_worker": audio_s / workers if workers else None,
                "realtime_factor": audio_s,
                "epoch_s": seconds,
                "warmup_epoch_s": warmup_s,
                "batches": epochs[0][2],
            }
        )
    corpus = {"files": sizes.files, "audio_s": corpus_s, "kbps": kbps}
    return rows, corpus


def format_table(rows: list[dict]) -> str:
    headers = [
        "path",
        "workers",
        "batches/epoch",
        "epoch s (median)",
        "warm-up epoch s",
        "batches/s",
        "audio-s/s (x real time)",
        "audio-s/s per worker",
    ]
    body = [
        [
            r["path"],
            "-" if r["batches"] is None else r["workers"],
            "-" if r["batches"] is None else r["batches"],
            fmt(r["epoch_s"], 3),
            fmt(r["warmup_epoch_s"], 3),
            fmt(r["batches_per_s"], 1),
            fmt(r["audio_s_per_s"], 0),
            fmt(r["audio_s_per_s_per_worker"], 0),
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--workers", default=None, help="comma-separated DataLoader worker counts (default 0,1,2)")
    parser.add_argument("--max-utterances", type=int, default=None, help="FLAC files to generate and read")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs after the warm-up epoch")
    parser.add_argument("--workdir", default=None, help="folder for the generated files (default: a temporary one)")
    refuse_old_spellings(parser, "--files")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    threads = apply_threads(args.threads)
    sizes = default_sizes(device, args.quick)
    if args.workers:
        sizes.workers = [int(w) for w in comma_list(args.workers)]
    sizes.files = args.max_utterances or sizes.files
    sizes.epochs = args.epochs or args.repeats or sizes.epochs
    if sizes.files < 1 or sizes.epochs < 1 or any(w < 0 for w in sizes.workers):
        raise ValueError(f"need --files >= 1, --epochs >= 1 and workers >= 0, got {sizes}")

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        rows, corpus = bench_rows(sizes, device, args.seed, Path(tmp))
    print(f"{HEADER}\n")
    print(
        f"CPU {device_name(torch.device('cpu'))}, main process {threads} threads (workers 1 thread each, as "
        f"pretrain/data.py sets), pin_memory={device.type == 'cuda'}. Corpus: {corpus['files']} generated FLAC "
        f"files, {corpus['audio_s']:.0f} s of audio, {sizes.min_s:g}-{sizes.max_s:g} s each, "
        f"{corpus['kbps']:.0f} kbit/s (LibriSpeech ~137). Crops <= {sizes.crop_max_s:g} s, batches <= "
        f"{sizes.batch_s:g} s of audio. Epoch 1 = warm-up (worker start), then the median of {sizes.epochs} "
        f"epochs. audio-s/s counts the cropped audio delivered (whole files for the decode-only row).\n"
    )
    print(format_table(rows))
    if args.json:
        write_json(args.json, "data_loading", rows, device, {**dataclasses.asdict(sizes), "corpus": corpus})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
