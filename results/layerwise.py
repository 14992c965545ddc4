"""What each layer of an EH-MAM encoder knows: linear probes per hidden state on held-out speakers.

    python -m results.layerwise --ckpt runs/tiny/last.pt --data DIR --out OUTDIR [--weights teacher]

Per layer: frame-level phone accuracy (LibriSpeech alignments), keyword accuracy (Speech Commands, mean-pooled),
R^2 of a ridge map to the input's log-mel frames, and speaker accuracy (mean-pooled). Writes layerwise.csv/.png.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from measure.alignments import Utterance, frame_phone_labels, read_alignments
from measure.audio import load_audio
from measure.logmel import MEL_BINS, log_mel_frames

from .csv_rows import read_rows, write_rows

log = logging.getLogger("layerwise")

LIBRI_TRAIN_SPLITS = ("train-clean-100",)
LIBRI_TEST_SPLITS = ("dev-clean", "test-clean")  # speakers disjoint from train-clean-100
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")  # SUPERB KS's 10 words
KS_TRAIN_DIR, KS_TEST_DIR = "speech_commands_v0.01", "speech_commands_test_set_v0.01"
PROBES = {  # probe -> metric, in CSV and plot order
    "phone": "frame_accuracy",
    "keyword": "accuracy",
    "logmel": "r2",
    "speaker": "accuracy",
}
CSV_COLUMNS = ("layer", "probe", "metric", "value", "n_train", "n_test")


# ---------------------------------------------------------------------------------------------------------
# Probes: pure functions on feature matrices.


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """z-score every matrix with the train rows' per-column mean/std (constant columns keep std 1)."""
    mean = train.mean(0, keepdim=True)
    std = train.std(0, keepdim=True, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return [(x - mean) / std for x in (train, *others)]


def label_ids(train_labels: Sequence[str], test_labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Class ids from the train labels; a test label never seen in training gets -1 (always counted wrong)."""
    classes = {label: i for i, label in enumerate(sorted(set(train_labels)))}
    y_train = torch.tensor([classes[label] for label in train_labels], dtype=torch.long)
    y_test = torch.tensor([classes.get(label, -1) for label in test_labels], dtype=torch.long)
    return y_train, y_test, len(classes)


@contextlib.contextmanager
def cpu_threads_for(x: torch.Tensor, num_classes: int):
    """One intra-op thread for small CPU fits: L-BFGS makes many tiny matmuls, and on a busy machine OpenMP
    threads waiting for each other made a 5k x 128 phone probe 20x slower (12 s vs 0.6 s, measured)."""
    small = x.device.type == "cpu" and x.numel() * num_classes < 50_000_000
    saved = torch.get_num_threads()
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def fit_logistic_probe(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float = 1e-3, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, full-batch L-BFGS from zeros (deterministic): mean cross-entropy +
    l2 * ||W||^2. x (N, D) standardised, y (N,) in [0, num_classes) -> W (D, C), b (C,)."""
    W = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros(num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [W, b],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ W + b, y) + l2 * W.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return W.detach(), b.detach()


def probe_accuracy(
    x_train: torch.Tensor,
    train_labels: Sequence[str],
    x_test: torch.Tensor,
    test_labels: Sequence[str],
    l2: float = 1e-3,
    max_iter: int = 100,
) -> float:
    """Test accuracy of a linear classifier trained on (x_train, train_labels); features standardised on train."""
    y_train, y_test, num_classes = label_ids(train_labels, test_labels)
    if num_classes < 2:
        raise ValueError(f"a probe needs at least 2 classes in its training labels, found {num_classes}")
    x_train, x_test = standardize(x_train.float(), x_test.float())  # float32: L-BFGS is several times faster
    with cpu_threads_for(x_train, num_classes):
        W, b = fit_logistic_probe(x_train, y_train.to(x_train.device), num_classes, l2, max_iter)
    predicted = (x_test @ W + b).argmax(1).cpu()
    return float((predicted == y_test).double().mean())


def fit_ridge(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ridge with intercept on standardised x: W = (X^T X + ridge * N * I)^-1 X^T (y - mean)."""
    y_mean = y.mean(0, keepdim=True)
    gram = x.T @ x + ridge * x.shape[0] * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    W = torch.linalg.solve(gram, x.T @ (y - y_mean))
    return W, y_mean[0]


def r2_score(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Coefficient of determination per output column, averaged over columns with variance (uniform average)."""
    ss_res = (y_true - y_pred).pow(2).sum(0)
    ss_tot = (y_true - y_true.mean(0, keepdim=True)).pow(2).sum(0)
    keep = ss_tot > 1e-12
    if not bool(keep.any()):
        raise ValueError("R^2 is undefined: every target column is constant on the test rows")
    return float((1.0 - ss_res[keep] / ss_tot[keep]).mean())


def ridge_r2(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, ridge: float = 1e-3
) -> float:
    """Held-out R^2 of a ridge map from features to targets (features standardised on train)."""
    x_train, x_test = standardize(x_train.double(), x_test.double())
    W, b = fit_ridge(x_train, y_train.double(), ridge)
    return r2_score(y_test.double(), x_test @ W + b)


# ---------------------------------------------------------------------------------------------------------
# Labels and targets per frame.


# ---------------------------------------------------------------------------------------------------------
# Corpus reading.


def keyword_utterances(data: Path) -> tuple[list[Utterance], list[Utterance]] | None:
    """Speech Commands v0.01 clips of the 10 keywords: train = the train folder minus testing_list.txt (its
    validation clips included), test = the separate test set (other speakers). None when the corpus is absent."""
    train_root, test_root = data / KS_TRAIN_DIR, data / KS_TEST_DIR
    if not train_root.is_dir():
        return None
    testing_list = train_root / "testing_list.txt"
    held_out = set(testing_list.read_text().split()) if testing_list.is_file() else set()

    def clips(root: Path, keep) -> list[Utterance]:
        return [
            Utterance(path, path.name.split("_nohash_")[0], word)
            for word in KEYWORDS
            for path in sorted((root / word).glob("*.wav"))
            if keep(f"{word}/{path.name}")
        ]

    train = clips(train_root, lambda rel: rel not in held_out)
    test = clips(test_root, lambda rel: True) if test_root.is_dir() else clips(train_root, lambda rel: rel in held_out)
    if not train or not test:
        log.info("keyword probe: %s has no usable train/test clips of the 10 keywords", train_root)
        return None
    return train, test


def pick_round_robin(utterances: Sequence[Utterance], limit: int | None, generator: torch.Generator) -> list[Utterance]:
    """At most `limit` utterances, taken in turn from each speaker (group) in a seeded order, so a cap keeps
    every speaker; the original order is kept in the result."""
    if limit is None or limit >= len(utterances):
        return list(utterances)
    groups: dict[str, list[int]] = {}
    for i in torch.randperm(len(utterances), generator=generator).tolist():
        u = utterances[i]
        groups.setdefault(u.label or u.speaker, []).append(i)
    order, queues = [], list(groups.values())
    while len(order) < limit:
        for queue in queues:
            if queue and len(order) < limit:
                order.append(queue.pop(0))
    return [utterances[i] for i in sorted(order)]


# ---------------------------------------------------------------------------------------------------------
# Feature extraction.


@dataclass
class Features:
    """Per layer: frames (N, D) at the picked frames and pooled (U, D) per utterance; phone labels and log-mel
    targets of the picked frames."""

    frames: list[torch.Tensor]
    pooled: list[torch.Tensor]
    phone_labels: list[str]
    log_mels: torch.Tensor


def plan_frame_picks(
    utterances: Sequence[Utterance], frames_per_utt: Sequence[int], max_frames: int | None, generator: torch.Generator
) -> list[torch.Tensor]:
    """Per utterance, the sorted frame indices to keep: all frames, or a seeded uniform subset of max_frames."""
    total = sum(frames_per_utt)
    if max_frames is None or total <= max_frames:
        return [torch.arange(n) for n in frames_per_utt]
    chosen = torch.randperm(total, generator=generator)[:max_frames].sort().values
    offsets = torch.tensor([0, *frames_per_utt]).cumsum(0)
    return [chosen[(chosen >= offsets[i]) & (chosen < offsets[i + 1])] - offsets[i] for i in range(len(utterances))]


@torch.inference_mode()
def extract_features(
    encoder,
    utterances: Sequence[Utterance],
    frame_picks: Sequence[torch.Tensor] | None,
    device: torch.device,
    batch_size: int = 4,
) -> Features:
    """Run the encoder on each utterance (batched; padding does not change the outputs) and keep the picked
    frames (with labels and log-mel targets when `frame_picks` is given) and the mean over all valid frames."""
    from upstream_ehmam.model import normalize_waveforms

    cfg = encoder.config
    n_states = cfg.num_layers + 1
    frames: list[list[torch.Tensor]] = [[] for _ in range(n_states)]
    pooled: list[list[torch.Tensor]] = [[] for _ in range(n_states)]
    labels: list[str] = []
    mels: list[torch.Tensor] = []
    for start in range(0, len(utterances), batch_size):
        batch = utterances[start : start + batch_size]
        wavs = [load_audio(u.path) for u in batch]
        for u, w in zip(batch, wavs):
            if u.num_samples and w.shape[0] != u.num_samples:
                raise ValueError(f"{u.path}: {w.shape[0]} samples, but its alignment says num_samples={u.num_samples}")
        padded, lengths = normalize_waveforms(wavs)  # (B, S), (B,)
        # as the s3prl expert does: normalise, then zero-pad short clips to one receptive field
        padded = F.pad(padded, (0, max(0, cfg.receptive_field - padded.shape[1])))
        lengths = lengths.clamp(min=cfg.receptive_field)
        hidden, frame_lengths = encoder.extract_features(padded.to(device), lengths.to(device))  # [L+1] x (B, T, D)
        for b, u in enumerate(batch):
            T = int(frame_lengths[b])
            for layer, h in enumerate(hidden):
                pooled[layer].append(h[b, :T].mean(0).float().cpu())
            if frame_picks is None:
                continue
            picks = frame_picks[start + b]
            for layer, h in enumerate(hidden):
                frames[layer].append(h[b, picks.to(device)].float().cpu())
            all_labels = frame_phone_labels(u.phones, u.starts, T, cfg.downsample_rate, cfg.receptive_field)
            labels += [all_labels[t] for t in picks.tolist()]
            mels.append(
                log_mel_frames(padded[b, : lengths[b]].cpu(), T, window=cfg.receptive_field, hop=cfg.downsample_rate)[
                    picks
                ]
            )
    dim = cfg.embed_dim
    return Features(
        frames=[torch.cat(f) if f else torch.zeros(0, dim) for f in frames],
        pooled=[torch.stack(p) if p else torch.zeros(0, dim) for p in pooled],
        phone_labels=labels,
        log_mels=torch.cat(mels) if mels else torch.zeros(0, MEL_BINS),
    )


def speaker_split(utterances: Sequence[Utterance], generator: torch.Generator) -> tuple[list[int], list[int]]:
    """Closed-set speaker ID: per speaker with >= 2 utterances, a seeded half (rounded down) goes to test."""
    by_speaker: dict[str, list[int]] = {}
    for i, u in enumerate(utterances):
        by_speaker.setdefault(u.speaker, []).append(i)
    train, test = [], []
    for speaker in sorted(by_speaker):
        indices = by_speaker[speaker]
        if len(indices) < 2:
            continue
        shuffled = [indices[j] for j in torch.randperm(len(indices), generator=generator).tolist()]
        n_test = len(indices) // 2
        test += shuffled[:n_test]
        train += shuffled[n_test:]
    return sorted(train), sorted(test)


# ---------------------------------------------------------------------------------------------------------
# The whole analysis.


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
    train = extract_features(
        encoder,
        train_utts,
        plan_frame_picks(train_utts, n_frames(train_utts), max_frames, generator),
        torch_device,
        batch_size,
    )
    test = extract_features(
        encoder,
        test_utts,
        plan_frame_picks(test_utts, n_frames(test_utts), max_frames, generator),
        torch_device,
        batch_size,
    )
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


def write_csv(rows: Sequence[dict], path: Path) -> None:
    write_rows(rows, path, CSV_COLUMNS, {"value": ".6f"})


def read_csv(path: Path) -> list[dict]:
    """Rows of a layerwise.csv with typed layer / value / n_train / n_test."""
    return read_rows(
        path, CSV_COLUMNS, {"layer": int, "value": float, "n_train": int, "n_test": int}, "a layerwise.csv"
    )


def plot_layerwise(curves: dict[str, Sequence[dict]], path: Path, title: str) -> None:
    """One line per probe and curve set (curve set name as a prefix); layers on x, values on a 0-1 scale
    (accuracies as fractions, R^2 as is, so a negative R^2 shows below 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    lowest = 0.0
    for name, rows in curves.items():
        for probe, metric in PROBES.items():
            mine = sorted((r for r in rows if r["probe"] == probe), key=lambda r: r["layer"])
            if not mine:
                continue
            values = [r["value"] for r in mine]
            lowest = min(lowest, min(v for v in values if math.isfinite(v)) if any(map(math.isfinite, values)) else 0)
            ax.plot(
                [r["layer"] for r in mine], values, marker="o", label=f"{name + ': ' if name else ''}{probe} ({metric})"
            )
    ax.set_xlabel("layer (0 = transformer input, i = output of block i)")
    ax.set_ylabel("accuracy / R^2")
    ax.set_ylim(max(lowest - 0.05, -1.0), 1.0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(rows: Sequence[dict]) -> str:
    """Markdown: one line per layer, one column per probe."""
    probes = [p for p in PROBES if any(r["probe"] == p for r in rows)]
    layers = sorted({r["layer"] for r in rows})
    value = {(r["layer"], r["probe"]): r["value"] for r in rows}
    lines = ["| layer | " + " | ".join(f"{p} {PROBES[p]}" for p in probes) + " |", "|---:|" + "---:|" * len(probes)]
    for layer in layers:
        cells = [f"{value[(layer, p)]:.3f}" if (layer, p) in value else "" for p in probes]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
