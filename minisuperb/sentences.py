"""A seeded template grammar (data/grammar.txt) that writes varied English sentences from a few hundred
CMUdict words; the text source of the LibriSpeech, VoxCeleb, IEMOCAP and pretraining trees."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GRAMMAR_FILE = Path(__file__).parent / "data" / "grammar.txt"
PUNCTUATION = {",", ".", "?"}
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Grammar:
    """Rules: name -> alternatives, each a tuple of tokens (words, punctuation or {RULE})."""

    rules: dict[str, tuple[tuple[str, ...], ...]]

    @classmethod
    def load(cls, path: Path = GRAMMAR_FILE) -> "Grammar":
        rules: dict[str, tuple[tuple[str, ...], ...]] = {}
        for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if "=" in line and (":" not in line or line.index("=") < line.index(":")):
                name, _, body = line.partition("=")
                rules[name.strip()] = tuple(tuple(alt.split()) for alt in body.split("|"))
            elif ":" in line:
                name, _, body = line.partition(":")
                items = body.split()
                firsts = [it.split("/")[0] for it in items]
                rules[name.strip()] = tuple((w,) for w in firsts)
                if any("/" in it for it in items):
                    rules[name.strip() + "_2"] = tuple((it.split("/")[-1],) for it in items)
            else:
                raise ValueError(f"{path}:{lineno}: expected 'NAME = ...' or 'NAME : ...', got {raw!r}")
        grammar = cls(rules)
        grammar._check(path)
        return grammar

    def _check(self, path: Path) -> None:
        for name, alts in self.rules.items():
            for alt in alts:
                if not alt:
                    raise ValueError(f"{path}: rule {name} has an empty alternative")
                for tok in alt:
                    m = _SLOT.fullmatch(tok)
                    if m and m.group(1) not in self.rules:
                        raise ValueError(f"{path}: rule {name} uses undefined {tok}")

    def vocabulary(self) -> set[str]:
        """Every word the grammar can produce (lower case)."""
        return {
            tok
            for alts in self.rules.values()
            for alt in alts
            for tok in alt
            if not _SLOT.fullmatch(tok) and tok not in PUNCTUATION
        }

    def proper_nouns(self) -> set[str]:
        """Words of the NAME list (capitalised in display text)."""
        return {alt[0] for alt in self.rules.get("NAME", ())}

    def expand(self, rng: np.random.Generator, symbol: str = "S", depth: int = 0) -> list[str]:
        """One random expansion of `symbol` (tokens, punctuation included)."""
        alts = self.rules[symbol]
        if depth > 12:  # recursion guard: take the shortest alternative
            alts = (min(alts, key=len),)
        out: list[str] = []
        for tok in alts[int(rng.integers(len(alts)))]:
            m = _SLOT.fullmatch(tok)
            out.extend(self.expand(rng, m.group(1), depth + 1) if m else [tok])
        return out


def fix_articles(tokens: list[str], pronunciations: dict[str, tuple[str, ...]]) -> list[str]:
    """'a' -> 'an' before a word whose first CMUdict phone is a vowel."""
    out = list(tokens)
    for k in range(len(out) - 1):
        if out[k] == "a" and out[k + 1] in pronunciations and pronunciations[out[k + 1]][0][-1].isdigit():
            out[k] = "an"
    return out


def words_of(tokens: list[str]) -> list[str]:
    """Transcript words (punctuation dropped)."""
    return [t for t in tokens if t not in PUNCTUATION]


def sentence_case(words: list[str], proper_nouns: set[str]) -> str:
    """Display text: first word, names and "I" capitalised, final period."""
    out = [
        w.capitalize() if (k == 0 or w in proper_nouns or w == "i" or w.startswith("i'")) else w
        for k, w in enumerate(words)
    ]
    return " ".join(out) + "."


def sentence_tokens(
    grammar: Grammar,
    rng: np.random.Generator,
    pronunciations: dict[str, tuple[str, ...]],
    min_words: int = 4,
    max_words: int = 22,
) -> list[str]:
    """A sentence with a word count in [min_words, max_words] (resampled until it fits)."""
    for _ in range(100):
        tokens = fix_articles(grammar.expand(rng), pronunciations)
        if min_words <= len(words_of(tokens)) <= max_words:
            return tokens
    raise RuntimeError(f"grammar could not produce a sentence of {min_words}-{max_words} words")
