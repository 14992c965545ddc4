"""Lexicon-constrained beam search with a KenLM (ARPA) language model through flashlight-text, as wrapped by
torchaudio's `ctc_decoder`, and the seeded random search of LM weight and word score."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .letters import BLANK, WORD_BOUNDARY

UNK_WORD = "<unk>"


def import_ctc_decoder() -> Callable:
    """torchaudio.models.decoder.ctc_decoder, through the project's torchaudio import (its compiled part may be
    unloadable next to a CPU torch; the decoder itself lives in flashlight-text)."""
    from measure.torchaudio_import import import_torchaudio

    import_torchaudio()
    try:
        from torchaudio.models.decoder import ctc_decoder
    except ImportError as err:
        raise ImportError(
            f"LM decoding needs flashlight-text: pip install flashlight-text==0.0.7 (the `finetune` extra) ({err})"
        ) from None
    return ctc_decoder


@dataclass(frozen=True)
class LMSettings:
    lm: Path
    lexicon: Path
    beam: int = 1500
    lm_weight: float = 2.0
    word_score: float = -1.0
    beam_threshold: float = 25.0
    sil_score: float = 0.0


def build_decoder(settings: LMSettings, symbols: list[str]):
    for what, path in (("--lm", settings.lm), ("--lexicon", settings.lexicon)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{what} {path}: file not found")
    ctc_decoder = import_ctc_decoder()
    return ctc_decoder(
        lexicon=str(settings.lexicon),
        tokens=list(symbols),
        lm=str(settings.lm),
        nbest=1,
        beam_size=settings.beam,
        beam_threshold=settings.beam_threshold,
        lm_weight=settings.lm_weight,
        word_score=settings.word_score,
        sil_score=settings.sil_score,
        blank_token=symbols[BLANK],
        sil_token=WORD_BOUNDARY,
        unk_word=UNK_WORD,
    )


def lm_transcripts(decoder, log_probs: list[torch.Tensor]) -> list[str]:
    """One transcript per (T, V) log-probability matrix."""
    out = []
    for emission in log_probs:
        emission = emission.float().contiguous()[None]  # (1, T, V)
        best = decoder(emission, torch.tensor([emission.shape[1]], dtype=torch.int32))[0]
        out.append(" ".join(w for w in best[0].words if w != UNK_WORD) if best else "")
    return out


def random_search(
    score: Callable[[float, float], float],
    trials: int,
    seed: int,
    weight_range=(0.0, 5.0),
    word_score_range=(-5.0, 5.0),
) -> list[dict]:
    """`trials` seeded uniform draws of (lm_weight, word_score), each scored (lower is better); sorted best first."""
    rng = np.random.default_rng(seed)
    results = []
    for trial in range(trials):
        weight, word = float(rng.uniform(*weight_range)), float(rng.uniform(*word_score_range))
        results.append({"trial": trial, "lm_weight": weight, "word_score": word, "wer": score(weight, word)})
    return sorted(results, key=lambda r: (r["wer"], r["trial"]))
