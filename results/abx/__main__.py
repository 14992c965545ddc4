"""Phone ABX per layer: a training-free measure of what each layer of a checkpoint knows about phones.

    python -m results.abx --ckpt runs/tiny/last.pt --data DIR --out OUT [--splits dev-clean,test-clean]
    python -m results.abx --ckpt CK --item dev-clean.item --audio LibriSpeech/dev-clean --out OUT
    python -m results.abx --ckpt A.pt --ckpt B.pt --upstream fbank --data DIR --out OUT

For every hidden state of each checkpoint, and for references on the same items (log-mel raw and normalised per
utterance, MFCC with deltas, a randomly initialised encoder of each checkpoint's architecture, and any s3prl
upstream named with --upstream): the triphone phone ABX error within and across speaker, and a speaker ABX.
Writes abx.csv, abx.md and abx.png under --out.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Sequence

from measure.abx.evaluate import ABXSet
from measure.abx.features import MFCC, EncoderLayers, LogMel
from measure.abx.items import items_from_alignments, items_from_item_file
from measure.abx.scoring import CONDITIONS
from trainkit.cli import comma_list, refuse_old_spellings

from .report import markdown, plot, summary_table, write_csv
from .s3prl_upstream import S3prlUpstream

log = logging.getLogger("abx")


def build_representations(
    checkpoints: Sequence[Path], weights: str, upstreams: Sequence[str], random_init: bool, device: str, seed: int
) -> list:
    from upstream_ehmam.checkpoint import load_encoder
    from upstream_ehmam.model import random_init_encoder

    representations: list = [LogMel(normalised=False), LogMel(normalised=True), MFCC()]
    for ckpt in checkpoints:
        encoder = load_encoder(ckpt, weights=weights)
        label = ckpt.name if len(checkpoints) == 1 else str(ckpt)
        representations.append(EncoderLayers(encoder, f"{label} ({weights})", device))
        if random_init:
            representations.append(
                EncoderLayers(random_init_encoder(encoder.config, seed), f"{label}: random init", device)
            )
    representations += [S3prlUpstream(name, device=device) for name in upstreams]
    return representations


def run_abx(
    out: Path,
    checkpoints: Sequence[Path] = (),
    weights: str = "student",
    data: Path | None = None,
    splits: Sequence[str] = ("dev-clean",),
    item_file: Path | None = None,
    audio: Path | None = None,
    max_files: int | None = None,
    upstreams: Sequence[str] = (),
    random_init: bool = True,
    conditions: Sequence[str] = CONDITIONS,
    max_per_group: int = 10,
    max_x_speakers: int = 5,
    seed: int = 0,
    device: str = "cpu",
    command: str = "python -m results.abx",
) -> list[dict]:
    """Score every representation on one item set; write abx.csv/.md/.png under `out`; return the CSV rows."""
    if (data is None) == (item_file is None):
        raise ValueError("give either --data (a corpus root with LibriSpeech/alignments/) or --item with --audio")
    if item_file is not None:
        if audio is None:
            raise ValueError("--item needs --audio, the folder holding its audio files")
        table = items_from_item_file(item_file, audio)
        if max_files is not None:
            table = table.subset(table.file < max_files)
        where = item_file.name
    else:
        libri = Path(data) / "LibriSpeech"
        if not libri.is_dir():
            raise FileNotFoundError(f"{libri}: LibriSpeech folder missing under --data {data}")
        table = items_from_alignments(libri, splits, max_files)
        where = ", ".join(splits)
    representations = build_representations(checkpoints, weights, upstreams, random_init, device, seed)
    abx_set = ABXSet(table, [r.geometry for r in representations], conditions, max_per_group, max_x_speakers, seed)
    rows = [row for r in representations for row in abx_set.evaluate(r)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{where}: {len(abx_set.items.files)} utterances, {len(abx_set.items)} items"
    write_csv(rows, out / "abx.csv")
    (out / "abx.md").write_text(markdown(rows, title, command), encoding="utf-8")
    plot(rows, out / "abx.png", title)
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m results.abx", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ckpt",
        type=comma_list,
        action="extend",
        default=[],
        help="pretraining checkpoints, encoder exports or fairseq data2vec 2.0 files, comma-separated (or repeated)",
    )
    parser.add_argument("--weights", choices=("student", "teacher"), default="student")
    parser.add_argument("--data", type=Path, help="corpus root holding LibriSpeech/alignments/<split>.jsonl")
    parser.add_argument("--splits", default="dev-clean", help="comma-separated alignment splits (with --data)")
    parser.add_argument("--item", type=Path, help="a ZeroSpeech .item file instead of --data")
    parser.add_argument("--audio", type=Path, help="with --item: the folder of its audio files (searched recursively)")
    parser.add_argument("--max-utterances", type=int, help="use only the first N utterances")
    parser.add_argument(
        "--upstream",
        type=comma_list,
        action="extend",
        default=[],
        help="s3prl upstreams by name, comma-separated, e.g. fbank",
    )
    parser.add_argument("--no-random-init", action="store_true", help="skip the random-init encoder rows")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="within,across,speaker")
    parser.add_argument("--max-per-group", type=int, default=10, help="items per (phone, context, speaker)")
    parser.add_argument("--max-x-speakers", type=int, default=5, help="X speakers per across-speaker cell")
    parser.add_argument("--seed", type=int, default=0, help="item sampling, X speakers and random init")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (feature extraction)")
    parser.add_argument("--out", type=Path, required=True, help="folder for abx.csv, abx.md and abx.png")
    refuse_old_spellings(parser, "--max-files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    for name in ("max_utterances", "max_per_group", "max_x_speakers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"results.abx: error: --{name.replace('_', '-')} must be >= 1, found {value}", file=sys.stderr)
            return 2
    try:
        rows = run_abx(
            args.out,
            [Path(c) for c in args.ckpt],
            args.weights,
            args.data,
            comma_list(args.splits),
            args.item,
            args.audio,
            args.max_utterances,
            args.upstream,
            not args.no_random_init,
            comma_list(args.conditions),
            args.max_per_group,
            args.max_x_speakers,
            args.seed,
            args.device,
            shlex.join(["python", "-m", "results.abx", *argv]),
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"results.abx: error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(summary_table(rows))
    print(f"wrote {args.out / 'abx.csv'}, {args.out / 'abx.md'} and {args.out / 'abx.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
