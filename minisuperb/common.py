"""Shared context of one generation run: output root, scale, seed, grammar, pronunciations, and the
seeding rule (every random choice comes from a Generator keyed by seed, corpus and stream)."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from upstream_ehmam.frontend import SAMPLE_RATE

from .jobs import Job, JobResult
from .scales import Scale
from .sentences import PUNCTUATION, Grammar, sentence_tokens
from .text import arpabet_to_espeak

# Stable corpus numbers: part of every seed, so adding a corpus never changes another one's audio.
CORPUS_IDS = {
    "LibriSpeech": 1,
    "speech_commands": 2,
    "fluent_commands": 3,
    "voxceleb1": 4,
    "iemocap": 5,
    "snips": 6,
    "pretrain": 7,
    "librispeech_finetuning": 8,
}


@dataclass(frozen=True)
class Context:
    out_dir: Path  # absolute
    scale: Scale
    seed: int
    grammar: Grammar
    prons: dict[str, tuple[str, ...]]  # lower-case word -> first CMUdict pronunciation

    def rng(self, corpus: str, *stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, CORPUS_IDS[corpus], *stream])

    def job_seed(self, corpus: str, index: int) -> tuple[int, ...]:
        return (self.seed, CORPUS_IDS[corpus], 1_000_000 + index)

    def sentence(self, rng: np.random.Generator, min_words: int = 4, max_words: int = 22) -> list[str]:
        return sentence_tokens(self.grammar, rng, self.prons, min_words, max_words)

    def espeak_text(self, tokens: list[str]) -> str:
        """Forced CMUdict pronunciations: each clause a `[[...]]` block followed by its punctuation."""
        clauses, current = [], []
        for tok in tokens:
            if tok in PUNCTUATION:
                if current:
                    clauses.append(f"[[{' '.join(current)}]]{tok}")
                current = []
            else:
                current.append(arpabet_to_espeak(self.prons[tok]))
        if current:
            clauses.append(f"[[{' '.join(current)}]].")
        return " ".join(clauses)

    def phones(self, words: list[str]) -> tuple[str, ...]:
        return tuple(p for w in words for p in self.prons[w])


@dataclass
class Plan:
    """The audio jobs of one corpus and the function that writes its text files from their results."""

    folders: tuple[str, ...]  # canonical top-level folders it writes
    jobs: list[Job]
    finish: Callable[[list[JobResult]], None]


def lead_silence(rng: np.random.Generator) -> int:
    """Leading silence (50-300 ms) in samples: espeak starts speaking at sample 0, recordings do not."""
    return int(rng.uniform(0.05, 0.3) * SAMPLE_RATE)


def random_token(rng: np.random.Generator, n: int, alphabet: str) -> str:
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=n))


ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
