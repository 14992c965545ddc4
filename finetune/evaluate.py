"""Word error rate and Viterbi transcription of a labelled subset (used for validation and by finetune.decode)."""

from __future__ import annotations

import logging
from typing import Iterator

import editdistance
import torch

from .data import BatchDataset, make_loader
from .letters import indices_to_words
from .model import CTCModel, greedy_indices

log = logging.getLogger("finetune.evaluate")


def utterance_edits(hypotheses: list[str], references: list[str]) -> dict[str, list[int]]:
    """Per utterance: "word_edits", "words" (of the reference), "letter_edits", "letters". Letters are the CTC
    units: the characters of the words joined by single spaces, so a missing word boundary counts as one edit."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    pairs = list(zip(hypotheses, references))
    return {
        "word_edits": [editdistance.eval(h.split(), r.split()) for h, r in pairs],
        "words": [len(r.split()) for r in references],
        "letter_edits": [editdistance.eval(" ".join(h.split()), " ".join(r.split())) for h, r in pairs],
        "letters": [len(" ".join(r.split())) for r in references],
    }


def word_error_rate(hypotheses: list[str], references: list[str]) -> dict:
    """{"wer": 100 x word edits / reference words, "errors", "words", "sentences", "ler": 100 x letter edits /
    reference letters} (utterance_edits, summed). Far below a WER of 100, LER still separates models that get
    almost no word right."""
    counts = {key: sum(values) for key, values in utterance_edits(hypotheses, references).items()}
    return {
        "wer": 100.0 * counts["word_edits"] / max(counts["words"], 1),
        "errors": counts["word_edits"],
        "words": counts["words"],
        "sentences": len(references),
        "ler": 100.0 * counts["letter_edits"] / max(counts["letters"], 1),
    }


@torch.no_grad()
def emissions(
    model: CTCModel,
    dataset: BatchDataset,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    num_workers: int = 0,
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Per batch: (manifest indices, log-probabilities (B, T, V) float32 on the CPU, frame lengths (B,))."""
    was_training = model.training
    model.eval()
    try:
        for batch in make_loader(dataset, range(len(dataset)), num_workers):
            for path, problem in batch["bad_audio"]:
                log.warning("bad audio left out of the evaluation (data.bad_audio=skip): %s", problem or path)
            if not batch["index"]:
                continue
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits, frame_lengths = model(batch["wav"].to(device), batch["wav_lengths"].to(device))
            yield batch["index"], torch.log_softmax(logits.float(), dim=-1).cpu(), frame_lengths.cpu()
    finally:
        model.train(was_training)


def viterbi_transcripts(
    model: CTCModel,
    dataset: BatchDataset,
    symbols: list[str],
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> dict[int, str]:
    """Manifest index -> greedy CTC transcript (utterances skipped as bad audio are absent)."""
    out = {}
    for indices, log_probs, frame_lengths in emissions(model, dataset, device, autocast_dtype):
        for index, path in zip(indices, greedy_indices(log_probs, frame_lengths)):
            out[index] = indices_to_words(path, symbols)
    return out


def viterbi_wer(
    model: CTCModel,
    dataset: BatchDataset,
    symbols: list[str],
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> dict:
    hyps = viterbi_transcripts(model, dataset, symbols, device, autocast_dtype)
    refs = dataset.subset.references
    return word_error_rate([hyps[i] for i in sorted(hyps)], [refs[i] for i in sorted(hyps)])
