"""The fixed letter vocabulary of the CTC head and the fairseq `.wrd` / `.ltr` / `dict.ltr.txt` text formats.

`.wrd`: one transcript per line (`THE CAT`). `.ltr`: its letters separated by spaces, `|` after every word
(`T H E | C A T |`). `dict.ltr.txt`: one `SYMBOL COUNT` line per letter. The head's outputs are fairseq's four
special symbols followed by the dictionary's letters, and index 0 (`<s>`) is the CTC blank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq prepends these; <s> doubles as the CTC blank
BLANK = 0
WORD_BOUNDARY = "|"
# LibriSpeech letter frequency order; fixed, so that a 10-minute split lacking Z still has a Z output
LETTERS = (
    "|",
    "E",
    "T",
    "A",
    "O",
    "N",
    "I",
    "H",
    "S",
    "R",
    "D",
    "L",
    "U",
    "M",
    "W",
    "C",
    "F",
    "G",
    "Y",
    "P",
    "B",
    "V",
    "K",
    "'",
    "X",
    "J",
    "Q",
    "Z",
)
DICTIONARY_FILE = "dict.ltr.txt"


def words_to_letters(transcript: str, where: str = "<transcript>") -> str:
    """`THE CAT` -> `T H E | C A T |`; a character outside the dictionary is a ValueError naming `where`."""
    words = transcript.split()
    for word in words:
        for char in word:
            if char == WORD_BOUNDARY or char not in LETTERS:
                raise ValueError(
                    f"{where}: character {char!r} in word {word!r} is not one of the {len(LETTERS) - 1} "
                    f"letters of the dictionary ({''.join(LETTERS[1:])}); transcripts must be upper case"
                )
    return " ".join(" ".join(word) + f" {WORD_BOUNDARY}" for word in words)


def letters_to_words(letters: str) -> str:
    """`T H E | C A T |` -> `THE CAT` (the inverse of words_to_letters)."""
    return " ".join("".join(letters.split()).replace(WORD_BOUNDARY, " ").split())


def symbols_of(dictionary_letters: Sequence[str]) -> list[str]:
    """The head's output symbols: the four specials, then the dictionary's letters."""
    return list(SPECIALS) + list(dictionary_letters)


def encode(letters: str, symbols: Sequence[str], where: str = "<labels>") -> list[int]:
    """Indices of a `.ltr` line's letters among `symbols`; an unknown letter is a ValueError naming `where`."""
    index = {s: i for i, s in enumerate(symbols) if s not in SPECIALS}
    out = []
    for letter in letters.split():
        if letter not in index:
            raise ValueError(f"{where}: letter {letter!r} is not in the dictionary ({' '.join(index)})")
        out.append(index[letter])
    return out


def indices_to_words(indices: Iterable[int], symbols: Sequence[str]) -> str:
    """Words of a collapsed, blank-free index sequence; special symbols are dropped."""
    return letters_to_words(" ".join(symbols[i] for i in indices if symbols[i] not in SPECIALS))


def write_dictionary(path: Path, counts: dict[str, int]) -> None:
    """dict.ltr.txt in the fixed LETTERS order with the given counts (0 for letters never seen)."""
    Path(path).write_text("".join(f"{letter} {counts.get(letter, 0)}\n" for letter in LETTERS))


def read_dictionary(path: Path) -> list[str]:
    """The letters of a fairseq dict.ltr.txt (`SYMBOL COUNT` lines), in file order; errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: letter dictionary not found (python -m finetune.prepare writes it)")
    letters = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise ValueError(f"{path}:{line_no}: expected 'SYMBOL COUNT', found {line!r}")
        if fields[0] in letters or fields[0] in SPECIALS:
            raise ValueError(f"{path}:{line_no}: symbol {fields[0]!r} is listed twice or is a reserved symbol")
        letters.append(fields[0])
    if WORD_BOUNDARY not in letters:
        raise ValueError(f"{path}: the word boundary {WORD_BOUNDARY!r} is missing")
    return letters
