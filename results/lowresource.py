"""The low-resource ASR table: our fine-tuned runs beside the published Base results (LibriSpeech 960 h pretraining).

Run: python -m results.lowresource --runs runs --out results/lowresource [--run 10m=DIR ...] [--label NAME]
         [--table NAME=ROOT ... --preset finetune/tiny_cpu_search.yaml --split test-clean]

A run is a fine-tuning folder whose `decode/wer.json` was written by `python -m finetune.decode`; `--runs DIR` finds
`DIR/finetune_<split>` (the base_<split>.yaml default out_dir), `--run SPLIT=DIR` names one. A split without a decoded
run shows as "missing". Writes lowresource.md and lowresource.csv.

`--table NAME=ROOT` writes NAME.md and NAME.csv: every fine-tuning run folder under ROOT with the settings that differ
from --preset, its CPU minutes, best dev WER, and test WER and letter error rate with 95 % intervals
(results/finetune_runs.py); the CPU schedule search, its seeds, and the reset/drop study are such tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

SPLITS = ("10m", "1h", "10h", "100h")
DEFAULT_LABEL = "EH-MAM Base (ours)"
TESTS = ("test-clean", "test-other")
# WER (test-clean, test-other) per split with the 4-gram LM, Base models pretrained on LibriSpeech 960 h; None = not
# reported. Sources (the papers' low-resource tables): wav2vec 2.0, Baevski et al. 2020, arXiv 2006.11477; HuBERT,
# Hsu et al. 2021, arXiv 2106.07447; data2vec, Baevski et al. 2022, arXiv 2202.03555; WavLM, Chen et al. 2022,
# arXiv 2110.13900 (test-other; no 10-minute result); data2vec 2.0, Baevski et al. 2022, arXiv 2212.07525
# (test-other).
PUBLISHED_LM = {
    "wav2vec 2.0 Base": {"10m": (9.1, 15.6), "1h": (5.5, 11.3), "10h": (4.3, 9.5), "100h": (3.4, 8.0)},
    "HuBERT Base": {"10m": (9.7, 15.3), "1h": (6.1, 11.3), "10h": (4.3, 9.4), "100h": (3.4, 8.1)},
    "data2vec Base": {"10m": (7.9, 12.3), "1h": (4.6, 9.1), "10h": (3.9, 8.1), "100h": (2.8, 6.8)},
    "WavLM Base": {"10m": None, "1h": (None, 10.8), "10h": (None, 9.2), "100h": (None, 7.7)},
    "data2vec 2.0 Base": {"10m": (None, 11.5), "1h": (None, 8.7), "10h": (None, 7.6), "100h": (None, 6.4)},
}
PUBLISHED_NO_LM = {  # wav2vec 2.0 Base, Viterbi decoding without an LM (same paper)
    "wav2vec 2.0 Base": {"10m": (46.9, 50.9), "1h": (24.5, 29.7), "10h": (11.1, 17.6), "100h": (6.1, 13.3)},
}


def read_run(run_dir: Path) -> dict | None:
    """{"viterbi": (clean, other), "lm": (clean, other) or None, "lm_settings"} from run_dir/decode/wer.json."""
    path = Path(run_dir) / "decode" / "wer.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    splits = summary.get("splits", {})

    def pair(kind: str):
        values = tuple(splits.get(t, {}).get(kind, {}).get("wer") for t in TESTS)
        return None if all(v is None for v in values) else values

    return {"viterbi": pair("viterbi"), "lm": pair("lm"), "lm_settings": summary.get("lm")}


def cell(pair) -> str:
    if pair is None:
        return "missing"
    return " / ".join("–" if v is None else f"{v:.1f}" for v in pair)


def table(runs: dict[str, dict | None], label: str) -> list[list[str]]:
    """Rows: model, decoding, then 'test-clean / test-other' per split."""
    rows = [
        [label, "Viterbi (no LM)"] + [cell(runs[s]["viterbi"] if runs.get(s) else None) for s in SPLITS],
        [label, "4-gram LM"] + [cell(runs[s]["lm"] if runs.get(s) else None) for s in SPLITS],
    ]
    for name, values in PUBLISHED_NO_LM.items():
        rows.append([f"{name} (published)", "Viterbi (no LM)"] + [cell(values[s]) for s in SPLITS])
    for name, values in PUBLISHED_LM.items():
        rows.append([f"{name} (published)", "4-gram LM"] + [cell(values[s]) if values[s] else "–" for s in SPLITS])
    return rows


def run_folders(runs_root: Path) -> dict[str, Path]:
    """The default run folder of each split under `runs_root`: finetune_<split> (base_<split>.yaml's out_dir)."""
    return {s: runs_root / f"finetune_{s}" for s in SPLITS}


def write_table(folders: dict[str, Path], label: str, out: Path) -> str:
    """lowresource.md and lowresource.csv in `out` from the decoded run folders per split; returns the Markdown."""
    rows = table({s: read_run(d) for s, d in folders.items()}, label)
    header = ["model", "decoding"] + [f"{s} (clean / other)" for s in SPLITS]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "lowresource.csv", "w", newline="") as f:
        csv.writer(f).writerows([header] + rows)
    md = [
        "# Low-resource fine-tuning: WER on LibriSpeech test-clean / test-other",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ] + ["| " + " | ".join(r) + " |" for r in rows]
    (out / "lowresource.md").write_text("\n".join(md) + "\n")
    return "\n".join(md)


def write_run_tables(tables: list[str], preset: str, split: str, out: Path) -> None:
    """NAME.md / NAME.csv in `out` for each NAME=ROOT."""
    from finetune.config import load_config

    from .finetune_runs import HEADER, markdown, read_runs, rows

    if not tables:
        return
    reference = load_config(preset).to_dict()
    out.mkdir(parents=True, exist_ok=True)
    for item in tables:
        name, _, root = item.partition("=")
        if not name or not root or "/" in name:
            raise ValueError(f"--table {item!r}: expected NAME=ROOT with NAME a file name (no folder)")
        runs = read_runs(Path(root), split, reference)
        with open(out / f"{name}.csv", "w", newline="") as f:
            csv.writer(f).writerows([HEADER] + rows(runs))
        (out / f"{name}.md").write_text(markdown(runs, f"Fine-tuning runs: {name} (against {preset})", split))
        print(f"{out / name}.md: {len(runs)} runs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, help="folder holding finetune_<split> run folders")
    parser.add_argument("--run", action="append", default=[], metavar="SPLIT=DIR", help="one split's run folder")
    parser.add_argument("--label", default=DEFAULT_LABEL)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--table", action="append", default=[], metavar="NAME=ROOT", help="a table of run folders")
    parser.add_argument("--preset", default="finetune/tiny_cpu.yaml", help="--table's settings are against this")
    parser.add_argument("--split", default="test-clean", help="--table's test split")
    args = parser.parse_args(argv)
    try:
        write_run_tables(args.table, args.preset, args.split, args.out)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    folders = run_folders(args.runs) if args.runs else {}
    for item in args.run:
        split, _, folder = item.partition("=")
        if split not in SPLITS or not folder:
            print(f"error: --run {item!r}: expected SPLIT=DIR with SPLIT one of {', '.join(SPLITS)}", file=sys.stderr)
            return 2
        folders[split] = Path(folder)
    print(write_table(folders, args.label, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
