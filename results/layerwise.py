"""What each layer of an EH-MAM encoder knows: linear probes per hidden state on held-out speakers.

    python -m results.layerwise --ckpt runs/tiny/last.pt --data DIR --out OUTDIR [--weights teacher]

Per layer: frame-level phone accuracy (LibriSpeech alignments), keyword accuracy (Speech Commands, mean-pooled),
R^2 of a ridge map to the input's log-mel frames, and speaker accuracy (mean-pooled). Writes layerwise.csv/.png.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import torch

from measure.alignments import Utterance, read_alignments

from .layerwise_features import (
    KEYWORDS,
    KS_TRAIN_DIR,
    Features,
    extract_features,
    keyword_utterances,
    pick_round_robin,
    plan_frame_picks,
    speaker_split,
)
from .layerwise_probes import probe_accuracy, ridge_r2
from .layerwise_probes import r2_score as r2_score  # re-exported for importers of results.layerwise
from .layerwise_report import CSV_COLUMNS as CSV_COLUMNS  # re-exported for importers of results.layerwise
from .layerwise_report import PROBES, format_table, plot_layerwise, write_csv
from .layerwise_report import read_csv as read_csv  # re-exported for importers of results.layerwise

log = logging.getLogger("layerwise")

LIBRI_TRAIN_SPLITS = ("train-clean-100",)
LIBRI_TEST_SPLITS = ("dev-clean", "test-clean")  # speakers disjoint from train-clean-100


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run_layerwise(
    checkpoint: Path,
    data: Path,
    out: Path,
    weights: str = "student",
    max_utterances: int | None = 200,
    max_frames: int | None = 20000,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 4,
    l2: float = 1e-3,
    ridge: float = 1e-3,
) -> list[dict]:
    """Probe every hidden state of `checkpoint` on the corpora under `data`; write out/layerwise.csv and
    out/layerwise.png; return the CSV rows. max_utterances caps each side (train / test) of every probe;
    max_frames caps each side of the frame-level probes."""
    from upstream_ehmam.checkpoint import load_encoder

    checkpoint, data, out = Path(checkpoint), Path(data), Path(out)
    libri = data / "LibriSpeech"
    if not libri.is_dir():
        raise FileNotFoundError(f"{libri}: LibriSpeech folder missing under --data {data}")
    train_utts = [u for split in LIBRI_TRAIN_SPLITS for u in read_alignments(libri, split)]
    test_utts = [u for split in LIBRI_TEST_SPLITS for u in read_alignments(libri, split)]
    keywords = keyword_utterances(data)
    encoder = load_encoder(checkpoint, weights=weights)
    torch_device = resolve_device(device)
    encoder.to(torch_device)
    cfg = encoder.config
    generator = torch.Generator().manual_seed(seed)

    train_utts = pick_round_robin(train_utts, max_utterances, generator)
    test_utts = pick_round_robin(test_utts, max_utterances, generator)

    def n_frames(utts: Sequence[Utterance]) -> list[int]:
        return [int(cfg.frames_for_samples(max(u.num_samples, cfg.receptive_field))) for u in utts]

    log.info(
        "LibriSpeech: %d train utterances (%d speakers), %d held-out (%d speakers)",
        len(train_utts),
        len({u.speaker for u in train_utts}),
        len(test_utts),
        len({u.speaker for u in test_utts}),
    )

    def features(utts):
        picks = plan_frame_picks(utts, n_frames(utts), max_frames, generator)
        return extract_features(encoder, utts, picks, torch_device, batch_size)

    train, test = features(train_utts), features(test_utts)  # in this order: both draw from `generator`
    rows: list[dict] = []
    n_layers = cfg.num_layers + 1
    log.info(
        "phone probe: %d classes (stress stripped: 39 base phones + SIL/SPN), %d train / %d test frames; "
        "majority-class accuracy %.3f",
        len(set(train.phone_labels)),
        len(train.phone_labels),
        len(test.phone_labels),
        _majority_accuracy(train.phone_labels, test.phone_labels),
    )
    for layer in range(n_layers):
        acc = probe_accuracy(
            train.frames[layer].to(torch_device),
            train.phone_labels,
            test.frames[layer].to(torch_device),
            test.phone_labels,
            l2,
        )
        rows.append(_row(layer, "phone", acc, len(train.phone_labels), len(test.phone_labels)))

    if keywords is None:
        log.info("keyword probe skipped: no %s/ under %s", KS_TRAIN_DIR, data)
    else:
        rows += keyword_rows(encoder, keywords, max_utterances, generator, torch_device, batch_size, l2)

    for layer in range(n_layers):
        r2 = ridge_r2(
            train.frames[layer].to(torch_device),
            train.log_mels.to(torch_device),
            test.frames[layer].to(torch_device),
            test.log_mels.to(torch_device),
            ridge,
        )
        rows.append(_row(layer, "logmel", r2, train.log_mels.shape[0], test.log_mels.shape[0]))

    rows += speaker_rows(train_utts + test_utts, train, test, generator, torch_device, l2)
    rows.sort(key=lambda r: (list(PROBES).index(r["probe"]), r["layer"]))
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "layerwise.csv")
    title = f"{checkpoint.name} ({weights}), {len(train_utts)} train / {len(test_utts)} held-out utterances"
    plot_layerwise({"": rows}, out / "layerwise.png", title)
    return rows


def keyword_rows(
    encoder,
    keywords: tuple[list, list],
    max_utterances: int | None,
    generator: torch.Generator,
    device: torch.device,
    batch_size: int,
    l2: float,
) -> list[dict]:
    """The keyword probe per layer: utterance-mean features of Speech Commands clips, test speakers held out."""
    ks_train = pick_round_robin(keywords[0], max_utterances, generator)
    ks_test = pick_round_robin(keywords[1], max_utterances, generator)
    ks_train_f = extract_features(encoder, ks_train, None, device, batch_size)
    ks_test_f = extract_features(encoder, ks_test, None, device, batch_size)
    y_train, y_test = [u.label for u in ks_train], [u.label for u in ks_test]
    log.info(
        "keyword probe: %d train / %d test clips (test speakers held out); chance %.3f",
        len(ks_train),
        len(ks_test),
        1 / len(KEYWORDS),
    )
    return [
        _row(
            layer,
            "keyword",
            probe_accuracy(
                ks_train_f.pooled[layer].to(device), y_train, ks_test_f.pooled[layer].to(device), y_test, l2
            ),
            len(ks_train),
            len(ks_test),
        )
        for layer in range(len(ks_train_f.pooled))
    ]


def speaker_rows(
    utterances: Sequence[Utterance],
    train: Features,
    test: Features,
    generator: torch.Generator,
    device: torch.device,
    l2: float,
) -> list[dict]:
    """The speaker probe per layer, on other utterances of the same speakers (`train` and `test` are the
    features of the LibriSpeech utterances, in the order of `utterances`)."""
    spk_train, spk_test = speaker_split(utterances, generator)
    if len({utterances[i].speaker for i in spk_train}) < 2:
        log.info(
            "speaker probe skipped: fewer than 2 speakers have 2 or more of the selected utterances "
            "(raise --max-utterances)"
        )
        return []
    log.info(
        "speaker probe: %d speakers, %d train / %d test utterances of the same speakers",
        len({utterances[i].speaker for i in spk_train}),
        len(spk_train),
        len(spk_test),
    )
    rows = []
    for layer in range(len(train.pooled)):
        pooled = torch.cat([train.pooled[layer], test.pooled[layer]]).to(device)
        acc = probe_accuracy(
            pooled[spk_train],
            [utterances[i].speaker for i in spk_train],
            pooled[spk_test],
            [utterances[i].speaker for i in spk_test],
            l2,
        )
        rows.append(_row(layer, "speaker", acc, len(spk_train), len(spk_test)))
    return rows


def _row(layer: int, probe: str, value: float, n_train: int, n_test: int) -> dict:
    return {
        "layer": layer,
        "probe": probe,
        "metric": PROBES[probe],
        "value": value,
        "n_train": n_train,
        "n_test": n_test,
    }


def _majority_accuracy(train_labels: Sequence[str], test_labels: Sequence[str]) -> float:
    if not train_labels or not test_labels:
        return float("nan")
    majority = max(set(train_labels), key=list(train_labels).count)
    return sum(label == majority for label in test_labels) / len(test_labels)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m results.layerwise", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ckpt", type=Path, required=True, help="pretraining checkpoint, encoder export or fairseq data2vec 2.0 file"
    )
    parser.add_argument("--weights", choices=("student", "teacher"), default="student")
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="corpus root holding LibriSpeech/ (with alignments/) and optionally speech_commands_v0.01/",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for layerwise.csv and layerwise.png")
    parser.add_argument(
        "--max-utterances",
        type=int,
        default=200,
        help="cap on the utterances of each side (train / test) of every probe",
    )
    parser.add_argument(
        "--max-frames",
        type=int,
        default=20000,
        help="cap on the frames of each side of the phone and log-mel probes (seeded subset)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the utterance, frame and speaker-split draws")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    parser.add_argument("--batch-size", type=int, default=4, help="utterances per encoder forward")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    for name in ("max_utterances", "max_frames", "batch_size"):
        if getattr(args, name) < 1:
            print(f"results.layerwise: error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    try:
        rows = run_layerwise(
            args.ckpt,
            args.data,
            args.out,
            args.weights,
            args.max_utterances,
            args.max_frames,
            args.seed,
            args.device,
            args.batch_size,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"results.layerwise: error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(format_table(rows))
    print(f"wrote {args.out / 'layerwise.csv'} and {args.out / 'layerwise.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
