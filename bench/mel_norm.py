"""Which log-mel normalisation trains better: per-utterance statistics (`model.mel_norm: utterance`) or fixed
global ones (`global`, per-bin mean/std measured on the pretraining audio by `python -m pretrain.mel_stats`).

Run: python -m bench.mel_norm --data DIR [--steps 300] [--seeds 0,1] [--out runs/mel_norm]
DIR is a mini-SUPERB (or real) corpus root with pretrain/train.tsv and LibriSpeech alignments. For each seed and
normalisation: pretrain pretrain/tiny_mel.yaml for --steps updates (pretrain/run.py, as a user runs it), then the
layer-wise probes (`python -m results.layerwise`) on the student. Prints a markdown table: the mean logged
regression loss of the last 20 % of updates and the best layer's held-out phone / keyword / speaker probe accuracy.
A rerun with the same --out reuses finished pretraining runs and probes.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from bench.common import bench_parser
from trainkit.cli import comma_list

ROOT = Path(__file__).resolve().parent.parent

NORMS = ("utterance", "global")


def run(argv: list[str], log: Path) -> None:
    print("$ python " + " ".join(argv), file=sys.stderr, flush=True)
    with open(log, "w") as handle:
        done = subprocess.run([sys.executable, *argv], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}), see {log}")


def best(rows: list[dict], probe: str) -> tuple[float, int] | None:
    mine = [(float(r["value"]), int(r["layer"])) for r in rows if r["probe"] == probe]
    return max(mine) if mine else None


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, [])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", type=Path, default=Path("runs/mel_norm"))
    parser.add_argument("--max-utterances", type=int, default=200)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = args.data / "pretrain" / "train.tsv"
    stats = args.out / "mel_stats.yaml"
    if not stats.is_file():
        run(["-m", "pretrain.mel_stats", str(manifest), "--out", str(stats)], args.out / "mel_stats.log")
    import yaml

    values = yaml.safe_load(stats.read_text())
    global_sets = [
        "--set",
        "model.mel_norm=global",
        "--set",
        "model.mel_mean=" + json.dumps(values["mel_mean"]),
        "--set",
        "model.mel_std=" + json.dumps(values["mel_std"]),
    ]
    results = []
    for seed in [int(s) for s in comma_list(args.seeds)]:
        for norm in NORMS:
            run_dir = args.out / f"{norm}_seed{seed}"
            sets = [
                "--set",
                f"data.manifest={manifest}",
                "--set",
                f"run.out_dir={run_dir}",
                "--set",
                f"optim.max_steps={args.steps}",
                "--set",
                f"optim.warmup_steps={max(1, args.steps // 10)}",
                "--set",
                f"run.seed={seed}",
                "--set",
                f"run.save_every={args.steps}",
            ]
            sets += global_sets if norm == "global" else ["--set", "model.mel_norm=utterance"]
            run(
                [str(ROOT / "pretrain" / "run.py"), "--config", str(ROOT / "pretrain" / "tiny_mel.yaml"), *sets],
                run_dir.with_suffix(".pretrain.log"),
            )
            probe_dir = args.out / f"{norm}_seed{seed}_layerwise"
            if not (probe_dir / "layerwise.csv").is_file():  # a rerun only re-reads finished probes
                run(
                    [
                        "-m",
                        "results.layerwise",
                        "--ckpt",
                        str(run_dir / "last.pt"),
                        "--data",
                        str(args.data),
                        "--out",
                        str(probe_dir),
                        "--max-utterances",
                        str(args.max_utterances),
                        "--device",
                        "cpu",
                    ],
                    probe_dir.with_suffix(".log"),
                )
            metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            rows = list(csv.DictReader(open(probe_dir / "layerwise.csv")))
            tail = [m["rec_loss"] for m in metrics if m["step"] > 0.8 * args.steps]
            results.append(
                {
                    "norm": norm,
                    "seed": seed,
                    "rec_loss": sum(tail) / len(tail),
                    **{p: best(rows, p) for p in ("phone", "keyword", "speaker")},
                }
            )
    print(
        f"tiny_mel.yaml, {args.steps} updates on {manifest}; probes on {args.data} (held-out speakers), "
        f"best layer (layer in brackets)\n"
    )
    print("| mel_norm | seed | rec loss, last 20 % of updates (logged) | phone acc | keyword acc | speaker acc |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        cells = [f"{r[p][0]:.3f} ({r[p][1]})" if r[p] else "-" for p in ("phone", "keyword", "speaker")]
        print(f"| {r['norm']} | {r['seed']} | {r['rec_loss']:.3f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
