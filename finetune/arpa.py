"""A small back-off n-gram model in ARPA format, from a text of one sentence per line (our own estimator; KenLM's
lmplz is not installable here). Run: python -m finetune.arpa --text T --order 3 --out LM.arpa

Absolute discounting with back-off: an n-gram seen c times gets (c - D_n) / c(history), D_n = n1 / (n1 + 2 n2)
from the counts of counts (0.5 when undefined); each history's back-off weight gives the unseen words exactly the
probability mass the discount freed, spread in proportion to the lower order, so every history's distribution
sums to 1. The unigram discount's mass goes to <unk>. <s> is only a history (log10 probability -99).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
NEVER = -99.0  # log10 probability ARPA files give <s>


def count_ngrams(sentences: list[list[str]], order: int) -> list[Counter]:
    """counts[n - 1][(w1, ..., wn)] over sentences padded with <s> and </s>."""
    counts = [Counter() for _ in range(order)]
    for words in sentences:
        tokens = [BOS] + words + [EOS]
        for n in range(1, order + 1):
            for i in range(len(tokens) - n + 1):
                gram = tuple(tokens[i : i + n])
                if gram != (BOS,):
                    counts[n - 1][gram] += 1
    return counts


def discount(counts: Counter) -> float:
    """D = n1 / (n1 + 2 n2), the usual estimate from how many n-grams were seen once and twice."""
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    return n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else 0.5


class BackoffModel:
    """probs[n - 1][gram] and backoffs[history]: the model as an ARPA file states it (natural probabilities)."""

    def __init__(self, sentences: list[list[str]], order: int) -> None:
        if order < 1:
            raise ValueError(f"--order must be >= 1, got {order}")
        counts = count_ngrams(sentences, order)
        if not counts[0]:
            raise ValueError("the text holds no words")
        self.order = order
        self.probs: list[dict[tuple, float]] = [{} for _ in range(order)]
        self.backoffs: dict[tuple, float] = {}
        total, d = sum(counts[0].values()), discount(counts[0])
        self.probs[0] = {gram: (c - d) / total for gram, c in counts[0].items()}
        self.probs[0][(UNK,)] = d * len(counts[0]) / total  # the unigram discount's mass: unseen words
        self.probs[0][(BOS,)] = 0.0
        for n in range(2, order + 1):
            history_totals, d = Counter(), discount(counts[n - 1])
            for gram, c in counts[n - 1].items():
                history_totals[gram[:-1]] += c
            self.probs[n - 1] = {gram: (c - d) / history_totals[gram[:-1]] for gram, c in counts[n - 1].items()}
            self._set_backoffs(n)

    def _set_backoffs(self, n: int) -> None:
        """Back-off weights of the (n-1)-word histories, once the n-grams are known."""
        followers = defaultdict(list)
        for gram in self.probs[n - 1]:
            followers[gram[:-1]].append(gram[-1])
        for history, words in followers.items():
            seen = sum(self.probs[n - 1][history + (w,)] for w in words)
            lower = sum(self.prob(w, history[1:]) for w in words)
            self.backoffs[history] = (1.0 - seen) / (1.0 - lower)

    def prob(self, word: str, history: tuple = ()) -> float:
        """P(word | history) with back-off (the last order - 1 words of history count)."""
        history = tuple(history)[len(history) - self.order + 1 :] if self.order > 1 else ()
        while True:
            gram = history + (word,)
            if gram in self.probs[len(gram) - 1]:
                return self.probs[len(gram) - 1][gram]
            if not history:
                return self.probs[0][(UNK,)] if word != BOS else 0.0
            weight = self.backoffs.get(history, 1.0)
            return weight * self.prob(word, history[1:])

    def vocabulary(self) -> list[str]:
        return sorted(g[0] for g in self.probs[0])

    def arpa(self) -> str:
        lines = ["", "\\data\\"] + [f"ngram {n + 1}={len(p)}" for n, p in enumerate(self.probs)]
        for n, probs in enumerate(self.probs):
            lines += ["", f"\\{n + 1}-grams:"]
            for gram in sorted(probs):
                logp = math.log10(probs[gram]) if probs[gram] > 0 else NEVER
                entry = f"{logp:.6f}\t{' '.join(gram)}"
                if n + 1 < self.order and gram in self.backoffs:
                    entry += f"\t{math.log10(self.backoffs[gram]):.6f}"
                lines.append(entry)
        return "\n".join(lines + ["", "\\end\\", ""])


def read_sentences(path: Path) -> list[list[str]]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: LM text not found")
    return [line.split() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.split()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, required=True, help="one sentence per line, words as in the lexicon")
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        model = BackoffModel(read_sentences(args.text), args.order)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.write_text(model.arpa())
    print(f"{args.out}: order {args.order}, " + ", ".join(f"{len(p)} {n + 1}-grams" for n, p in enumerate(model.probs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
