"""What the layer-wise probes are fitted on: the Speech Commands keyword clips, the seeded picks of utterances
(in turn from each speaker), of frames and of the speaker probe's split, and the encoder's hidden states with the
phone labels and log-mel targets of the picked frames."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from measure.alignments import Utterance, frame_phone_labels
from measure.audio import load_audio
from measure.logmel import MEL_BINS, log_mel_frames

log = logging.getLogger("layerwise")

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")  # SUPERB KS's 10 words
KS_TRAIN_DIR, KS_TEST_DIR = "speech_commands_v0.01", "speech_commands_test_set_v0.01"


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
