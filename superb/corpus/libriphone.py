"""PR corpus: LibriSpeech utterances as lexicon phone sequences (s3prl `corpus.name: libriphone`).

Audio: `<path>/<split>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac`, transcripts in
`<spk>-<chapter>.trans.txt` next to it. Targets are the concatenated lexicon phones of the words,
with no silence or word-boundary tokens, encoded by the word-mode tokenizer (which appends <eos>).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .buckets import Item, TokenSortedBuckets


class LibriPhoneDataset(TokenSortedBuckets):
    """`LibriPhoneDataset(split_dirs, tokenizer, bucket_size, path=..., lexicon=[...], **ignored)`."""

    def __init__(
        self,
        split_dirs: Sequence[str],
        tokenizer: Any,
        bucket_size: int,
        path: str | Path,
        lexicon: str | Path | Sequence[str | Path],
        **corpus: Any,  # split lists, num_workers, ratio/offset, ...: not needed here
    ) -> None:
        lexicon_files = [lexicon] if isinstance(lexicon, (str, Path)) else list(lexicon)
        pronunciations = read_lexicons(lexicon_files)
        check_phones_in_vocabulary(pronunciations, tokenizer)
        items: list[Item] = []
        for split in split_dirs:
            for audio, words, transcript in librispeech_utterances(Path(path), split):
                phones = words_to_phones(words, pronunciations, transcript)
                items.append((str(audio), tokenizer.encode(" ".join(phones))))
        super().__init__(items, bucket_size)


def read_lexicons(files: Sequence[str | Path]) -> dict[str, tuple[tuple[str, ...], Path]]:
    """word -> (phones, lexicon file). The first pronunciation of a word wins across all files."""
    if not files:
        raise ValueError("corpus.lexicon is empty: give at least one lexicon file")
    pronunciations: dict[str, tuple[tuple[str, ...], Path]] = {}
    for file in map(Path, files):
        if not file.is_file():
            raise FileNotFoundError(
                f"{file}: lexicon file is missing (for real LibriSpeech, download librispeech-lexicon.txt "
                "from https://www.openslr.org/11/ into the LibriSpeech folder)"
            )
        with file.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) == 1:
                    raise ValueError(f"{file}:{number}: word {fields[0]!r} has no phones")
                pronunciations.setdefault(fields[0].upper(), (tuple(fields[1:]), file))
    return pronunciations


def check_phones_in_vocabulary(pronunciations: dict[str, tuple[tuple[str, ...], Path]], tokenizer: Any) -> None:
    """Every lexicon phone must be a vocabulary token: the tokenizer would map it to <unk> silently."""
    seen: dict[str, Path] = {}
    for phones, file in pronunciations.values():
        for phone in phones:
            seen.setdefault(phone, file)
    unknown = sorted(p for p in seen if tokenizer.encode(p)[0] == tokenizer.unk_idx)
    if unknown:
        raise ValueError(
            f"{seen[unknown[0]]}: lexicon phones {unknown} are not in the phoneme vocabulary (text.vocab_file)"
        )


def librispeech_utterances(root: Path, split: str) -> list[tuple[Path, list[str], Path]]:
    """(audio path, transcript words, transcript file) for every .flac under `root/split`, path-sorted."""
    split_dir = root / split
    audios = sorted(split_dir.rglob("*.flac")) if split_dir.is_dir() else []
    if not audios:
        raise FileNotFoundError(f"{split_dir}: no .flac files for LibriSpeech split '{split}'")
    transcripts: dict[Path, dict[str, list[str]]] = {}
    utterances = []
    for audio in audios:
        chapter = audio.stem.rsplit("-", 1)[0]  # 103-1240-0000 -> 103-1240
        transcript = audio.parent / f"{chapter}.trans.txt"
        if transcript not in transcripts:
            transcripts[transcript] = read_transcript(transcript)
        words = transcripts[transcript].get(audio.stem)
        if words is None:
            raise ValueError(f"{transcript}: no line for utterance {audio.stem} ({audio})")
        utterances.append((audio, words, transcript))
    return utterances


def read_transcript(file: Path) -> dict[str, list[str]]:
    """`<uttid> WORD WORD ...` lines -> {uttid: [WORD, ...]}."""
    if not file.is_file():
        raise FileNotFoundError(f"{file}: LibriSpeech transcript is missing")
    table = {}
    for line in file.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields:
            table[fields[0]] = [word.upper() for word in fields[1:]]
    return table


def words_to_phones(
    words: Sequence[str], pronunciations: dict[str, tuple[tuple[str, ...], Path]], transcript: Path
) -> list[str]:
    phones: list[str] = []
    for word in words:
        entry = pronunciations.get(word)
        if entry is None:
            lexicons = sorted({str(file) for _, file in pronunciations.values()})
            raise ValueError(
                f"{transcript}: word {word!r} is not in the lexicon {lexicons}; add its pronunciation, "
                "e.g. in a second file listed in corpus.lexicon"
            )
        phones.extend(entry[0])
    return phones
