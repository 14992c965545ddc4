"""SF corpus: Audio SNIPS utterances with slot-tagged character targets (s3prl `corpus.name: snips`).

Audio: `<path>/<split>/<Speaker>-snips-<split>-<n>.wav`; transcripts: `<path>/all.iob.snips.txt`, one
`<uttid> BOS W1 ... Wn EOS<TAB>O T1 ... Tn <INTENT>` line per utterance. A wav is used when its id is
in the transcripts and starts with a speaker of `corpus.<split>_speakers`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .buckets import Item, TokenSortedBuckets

TRANSCRIPT_FILE = "all.iob.snips.txt"


class SnipsDataset(TokenSortedBuckets):
    """`SnipsDataset(split_dirs, tokenizer, bucket_size, path=..., <split>_speakers=[...], **ignored)`."""

    def __init__(
        self, split_dirs: Sequence[str], tokenizer: Any, bucket_size: int, path: str | Path, **corpus: Any
    ) -> None:
        if "-slot" not in tokenizer.token_type:
            raise ValueError(
                f"SNIPS needs a slot tokenizer (text.mode: character-slot), got token_type {tokenizer.token_type!r}"
            )
        root = Path(path)
        transcripts = read_iob_transcripts(root / TRANSCRIPT_FILE)
        items: list[Item] = []
        for split in split_dirs:
            speakers = corpus.get(f"{split}_speakers")
            if not speakers:
                raise ValueError(f"corpus.{split}_speakers is not set: list the SNIPS voices of split '{split}'")
            for audio in split_wavs(root, split, transcripts, speakers):
                items.append((str(audio), encode_iob(tokenizer, audio.stem, transcripts[audio.stem])))
        super().__init__(items, bucket_size)


def read_iob_transcripts(file: Path) -> dict[str, str]:
    """{uttid: 'BOS W1 .. Wn EOS<TAB>O T1 .. Tn INTENT'}, each line checked for matching word/tag counts."""
    if not file.is_file():
        raise FileNotFoundError(f"{file}: SNIPS transcript file is missing")
    table = {}
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        uttid, _, rest = line.partition(" ")
        sentence, tab, tags = rest.strip().partition("\t")
        words, tags = sentence.split(" "), tags.split(" ")
        if not tab or words[0] != "BOS" or words[-1] != "EOS" or len(words) != len(tags):
            raise ValueError(
                f"{file}:{number}: expected '<uttid> BOS W1 .. Wn EOS<TAB>O T1 .. Tn INTENT' with one tag per "
                f"word, got {len(words)} words and {len(tags)} tags for {uttid!r}"
            )
        table[uttid] = rest.strip()
    return table


def split_wavs(root: Path, split: str, transcripts: dict[str, str], speakers: Sequence[str]) -> list[Path]:
    split_dir = root / split
    wavs = sorted(split_dir.glob("*.wav")) if split_dir.is_dir() else []
    speakers = tuple(speakers)
    chosen = [wav for wav in wavs if wav.stem in transcripts and wav.stem.startswith(speakers)]
    if not chosen:
        raise FileNotFoundError(
            f"{split_dir}: no .wav whose id is in {TRANSCRIPT_FILE} and starts with one of {list(speakers)} "
            f"({len(wavs)} wav files found)"
        )
    return chosen


def encode_iob(tokenizer: Any, uttid: str, transcript: str) -> list[int]:
    try:
        return tokenizer.encode(transcript)
    except KeyError as error:  # a tag that text.slots_file does not list
        raise ValueError(f"{uttid}: slot tag {error.args[0]!r} is not in text.slots_file") from None
