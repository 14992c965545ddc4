"""Write fairseq-format manifests for LibriLight low-resource fine-tuning and LibriSpeech evaluation.

Run: python -m finetune.prepare --librispeech DIR/LibriSpeech --limited DIR/librispeech_finetuning --out DIR
     [--splits 10m,1h,10h,100h,dev-clean,dev-other,test-clean,test-other]

Per split: `<split>.tsv` (first line the audio root, then `relative/path<TAB>num_samples`), `<split>.wrd` (the
transcript) and `<split>.ltr` (its letters, `|` after each word); then `dict.ltr.txt` (the fixed 28 letters with their
counts in the training splits) and `lexicon.txt` (`WORD<TAB>W O R D |` for every transcript word). Splits:
10m = 1h/0 of librispeech_finetuning, 1h = 1h/0..5, 10h = 1h + 9h, 100h = LibriSpeech train-clean-100.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from pathlib import Path

from pretrain.manifest import find_audio_files, probe_audio
from trainkit.cli import comma_list

from .letters import DICTIONARY_FILE, words_to_letters, write_dictionary

log = logging.getLogger("finetune.prepare")
# split -> (which tree, folders inside it)
SPLITS = {
    "10m": ("limited", ("1h/0",)),
    "1h": ("limited", ("1h",)),
    "10h": ("limited", ("1h", "9h")),
    "100h": ("librispeech", ("train-clean-100",)),
    "dev-clean": ("librispeech", ("dev-clean",)),
    "dev-other": ("librispeech", ("dev-other",)),
    "test-clean": ("librispeech", ("test-clean",)),
    "test-other": ("librispeech", ("test-other",)),
}
TRAIN_SPLITS = ("10m", "1h", "10h", "100h")
LEXICON_FILE = "lexicon.txt"


def read_transcripts(folder: Path) -> dict[str, str]:
    """Utterance id -> words, from every `*.trans.txt` under folder (`ID WORD WORD ...` lines)."""
    out = {}
    for path in sorted(folder.rglob("*.trans.txt")):
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                utt_id, _, words = line.strip().partition(" ")
                out[utt_id] = " ".join(words.split())
    return out


def collect(root: Path, folders: tuple[str, ...]) -> list[tuple[str, int, str]]:
    """(path relative to root, samples, words) of every usable .flac under root/folders, sorted by path; unusable
    files are logged and left out, audio without a transcript line is a ValueError naming it."""
    entries = []
    for folder in folders:
        if not (root / folder).is_dir():
            raise FileNotFoundError(
                f"{root / folder}: folder not found (is the corpus complete? --splits limits which splits are written)"
            )
        transcripts = read_transcripts(root / folder)
        for rel in find_audio_files(root / folder, ("flac", "wav")):
            path = root / folder / rel
            utt_id = Path(rel).name.rsplit(".", 1)[0]
            if utt_id not in transcripts:
                raise ValueError(f"{path}: no transcript line for {utt_id} in the *.trans.txt files of its folder")
            samples, problem = probe_audio(path)
            if samples is None:
                log.warning("left out %s: %s", path, problem)
                continue
            entries.append((f"{folder}/{rel}", samples, transcripts[utt_id]))
    return sorted(entries)


def write_split(out_dir: Path, name: str, root: Path, entries: list[tuple[str, int, str]]) -> None:
    """<name>.tsv, .wrd and .ltr, each written to a temporary file and renamed (never half-written)."""
    contents = {
        "tsv": [str(root.absolute())] + [f"{rel}\t{samples}" for rel, samples, _ in entries],
        "wrd": [words for _, _, words in entries],
        "ltr": [words_to_letters(words, where=f"{root / rel}") for rel, _, words in entries],
    }
    for suffix, lines in contents.items():
        path = out_dir / f"{name}.{suffix}"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, path)


def prepare(librispeech: Path, limited: Path, out_dir: Path, splits: list[str]) -> dict[str, int]:
    """Write the manifests of `splits`, dict.ltr.txt and lexicon.txt; returns utterances per split."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"--splits: unknown split {unknown[0]!r}; known: {', '.join(SPLITS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    trees = {"librispeech": Path(librispeech), "limited": Path(limited)}
    letter_counts, words, sizes = Counter(), set(), {}
    for name in splits:
        tree, folders = SPLITS[name]
        entries = collect(trees[tree], folders)
        if not entries:
            raise ValueError(f"{trees[tree]}: no usable audio in {', '.join(folders)} for split {name}")
        write_split(out_dir, name, trees[tree], entries)
        sizes[name] = len(entries)
        for _, _, text in entries:
            words.update(text.split())
            if name in TRAIN_SPLITS:
                letter_counts.update(words_to_letters(text).split())
    write_dictionary(out_dir / DICTIONARY_FILE, letter_counts)
    (out_dir / LEXICON_FILE).write_text("".join(f"{w}\t{words_to_letters(w)}\n" for w in sorted(words)))
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--librispeech", type=Path, required=True, help="the LibriSpeech folder (train-clean-100, dev-*, test-*)"
    )
    parser.add_argument("--limited", type=Path, required=True, help="the librispeech_finetuning folder (1h/, 9h/)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the manifests")
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated; default: all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        sizes = prepare(args.librispeech, args.limited, args.out, comma_list(args.splits))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, count in sizes.items():
        print(f"{name}: {count} utterances")
    print(f"manifests, {DICTIONARY_FILE} and {LEXICON_FILE} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
