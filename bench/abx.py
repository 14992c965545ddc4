"""How long phone ABX takes: every layer of a 13-state, 768-wide model (Base) x the three conditions (within,
across, speaker) on about 20 minutes of aligned speech.

Run: python -m bench.abx --data DIR [--splits dev-clean,test-clean,train-clean-100] [--minutes 20]
     [--layers 13] [--dim 768] [--threads 2]
DIR is a corpus root with LibriSpeech/alignments/<split>.jsonl (mini-SUPERB `small` has enough). The files of
the splits are taken in order until `--minutes` of audio; the features are random (the time of ABX does not
depend on their values, only on the items, their lengths and the width), so no model runs. Prints a Markdown
table: item set, the one-off task build, and per layer the DTW distances and the three conditions' errors.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from bench.common import apply_threads, bench_parser, device_name, markdown_table
from measure.abx.items import FrameGeometry, items_from_alignments, sample_items, seconds_of
from measure.abx.scoring import CONDITIONS, build_task, score
from trainkit.cli import comma_list
from upstream_ehmam.frontend import SAMPLE_RATE


def first_minutes(libri: Path, splits: list[str], minutes: float):
    table = items_from_alignments(libri, splits)
    seconds = np.cumsum([f.num_samples for f in table.files]) / SAMPLE_RATE
    n_files = int(np.searchsorted(seconds, minutes * 60)) + 1
    return table.subset(table.file < n_files)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="corpus root with LibriSpeech/alignments/")
    parser.add_argument("--splits", default="dev-clean,test-clean,train-clean-100")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--layers", type=int, default=13)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args(argv)
    threads = apply_threads(args.threads)
    geometry = FrameGeometry(320, 400)

    tick, cpu_tick = time.perf_counter(), time.process_time()
    table = first_minutes(args.data / "LibriSpeech", comma_list(args.splits), args.minutes)
    counts = [geometry.frames_for(f.num_samples) for f in table.files]
    items = sample_items(table, [table.frame_spans(geometry, counts)[1]], 10, args.seed)
    task = build_task(items, CONDITIONS, 5, args.seed)
    counts = [geometry.frames_for(f.num_samples) for f in items.files]
    first, length = items.frame_spans(geometry, counts)
    first = np.r_[0, np.cumsum(counts)][:-1][items.file] + first

    chunks = task.plan(first, length)
    build_s, build_cpu = time.perf_counter() - tick, time.process_time() - cpu_tick
    generator = torch.Generator().manual_seed(args.seed)
    per_layer, per_layer_cpu, errors = [], [], []
    for _ in range(args.layers):
        frames = torch.randn(sum(counts), args.dim, generator=generator)
        tick, cpu_tick = time.perf_counter(), time.process_time()
        errors.append(score(task, frames, chunks))
        per_layer.append(time.perf_counter() - tick)
        per_layer_cpu.append(time.process_time() - cpu_tick)
    triples = {name: len(t.ax) for name, t in task.conditions.items()}
    print(
        f"device: {device_name(torch.device('cpu'))}, {threads} threads; {seconds_of(items) / 60:.1f} min of "
        f"audio ({len(items.files)} utterances, {len(np.unique(items.speaker))} speakers), {len(items)} items, "
        f"{len(task.pairs):,} item pairs; triples " + ", ".join(f"{k} {v:,}" for k, v in triples.items())
    )
    mean_error = {c: np.mean([e[c] for e in errors]) for c in CONDITIONS}
    print("random features, mean error over layers: " + ", ".join(f"{c} {v:.1f} %" for c, v in mean_error.items()))
    # CPU seconds beside wall seconds: on a shared machine the wall clock also counts other processes' time
    print(
        markdown_table(
            ["stage", "wall s", "CPU s (all threads)"],
            [
                ["items, sampling, triples, pair layout (once)", f"{build_s:.1f}", f"{build_cpu:.1f}"],
                [
                    f"one layer ({args.dim} wide): DTW of every pair + 3 conditions, median",
                    f"{np.median(per_layer):.1f}",
                    f"{np.median(per_layer_cpu):.1f}",
                ],
                [
                    f"{args.layers} layers x {len(CONDITIONS)} conditions, total",
                    f"{build_s + sum(per_layer):.1f}",
                    f"{build_cpu + sum(per_layer_cpu):.1f}",
                ],
            ],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
