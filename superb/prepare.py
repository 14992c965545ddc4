"""Files s3prl needs before training that PyPI s3prl cannot make: ASR bucket CSVs and IEMOCAP meta.

python -m superb.prepare asr-buckets <LibriSpeech root> [--splits train-clean-100 ...] [--out DIR]
python -m superb.prepare er-meta <IEMOCAP_full_release root> [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import soundfile

ER_LABELS = {"neu": 0, "hap": 1, "ang": 2, "sad": 3}
ER_RELABEL = {"exc": "hap"}  # SUPERB merges excited into happy
_SESSION = re.compile(r"^Session(\d+)$")


def write_asr_bucket_csvs(libri_root: Path, splits: Sequence[str], out_dir: Path) -> None:
    """Write `<out_dir>/<split>.csv` (unnamed index, file_path, length, label) per LibriSpeech split.

    `file_path` is relative to `libri_root`, `length` is the sample count read with soundfile,
    `label` is empty; rows are sorted longest first (ties by path, so the output is deterministic).
    """
    libri_root, out_dir = Path(libri_root), Path(out_dir)
    if not splits:
        raise ValueError(f"{libri_root}: no LibriSpeech splits given")
    tables = {split: _bucket_rows(libri_root, split) for split in splits}  # read all before writing any
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in tables.items():
        with _atomic_text(out_dir / f"{split}.csv") as file:
            writer = csv.writer(file, lineterminator="\n")
            writer.writerow(["", "file_path", "length", "label"])
            for index, (file_path, length) in enumerate(rows):
                writer.writerow([index, file_path, length, ""])


def _bucket_rows(libri_root: Path, split: str) -> list[tuple[str, int]]:
    split_dir = libri_root / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: LibriSpeech split folder '{split}' is missing")
    flacs = sorted(split_dir.rglob("*.flac"))
    if not flacs:
        raise FileNotFoundError(f"{split_dir}: no .flac files in LibriSpeech split '{split}'")
    rows = [(path.relative_to(libri_root).as_posix(), soundfile.info(str(path)).frames) for path in flacs]
    return sorted(rows, key=lambda row: (-row[1], row[0]))


def librispeech_splits(libri_root: Path) -> list[str]:
    """The split folders under a LibriSpeech root that hold `<spk>/<chapter>/*.flac` files."""
    libri_root = Path(libri_root)
    if not libri_root.is_dir():
        raise FileNotFoundError(f"{libri_root}: LibriSpeech root is missing")
    return sorted(d.name for d in libri_root.iterdir() if d.is_dir() and next(d.glob("*/*/*.flac"), None))


def write_iemocap_meta(iemocap_root: Path, out_dir: Path) -> None:
    """Write `<out_dir>/Session<k>/{train,test}_meta_data.json` for every `Session<k>` under the root.

    Each JSON is `{"labels": {"neu":0,"hap":1,"ang":2,"sad":3}, "meta_data": [{"path", "label",
    "speaker"}, ...]}` with paths relative to the root; test = session k, train = the other sessions.
    Labels come from `Session<k>/dialog/EmoEvaluation/*.txt`; `exc` becomes `hap`, other emotions
    are skipped, as are utterances without a wav. `speaker` is the utterance's own speaker, e.g.
    `Ses01M` for `Ses01F_impro01_M003` (s3prl's loader does not read it).
    """
    iemocap_root, out_dir = Path(iemocap_root), Path(out_dir)
    sessions = _iemocap_sessions(iemocap_root)
    entries = {name: _session_entries(iemocap_root, name) for name in sessions}
    for name in sessions:
        if not entries[name]:
            raise ValueError(f"{iemocap_root / name}: no utterance labelled {sorted(ER_LABELS)} (or exc) has a wav")
    for name in sessions:
        train = [entry for other in sessions if other != name for entry in entries[other]]
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        for split, meta in (("train", train), ("test", entries[name])):
            with _atomic_text(out_dir / name / f"{split}_meta_data.json") as file:
                json.dump({"labels": ER_LABELS, "meta_data": meta}, file)


def _iemocap_sessions(iemocap_root: Path) -> list[str]:
    if not iemocap_root.is_dir():
        raise FileNotFoundError(f"{iemocap_root}: IEMOCAP root is missing")
    sessions = [d.name for d in iemocap_root.iterdir() if d.is_dir() and _SESSION.match(d.name)]
    if not sessions:
        raise FileNotFoundError(f"{iemocap_root}: no Session<k> folders (expected Session1 ... Session5)")
    return sorted(sessions, key=lambda name: int(_SESSION.match(name).group(1)))


def _session_entries(iemocap_root: Path, session: str) -> list[dict]:
    wav_dir = iemocap_root / session / "sentences" / "wav"
    label_dir = iemocap_root / session / "dialog" / "EmoEvaluation"
    if not label_dir.is_dir():
        raise FileNotFoundError(f"{label_dir}: IEMOCAP annotation folder is missing")
    wavs = {path.stem: path.relative_to(iemocap_root).as_posix() for path in wav_dir.rglob("*.wav")}
    entries = []
    for label_file in sorted(label_dir.glob("*.txt")):  # top level only: subfolders hold other ratings
        for line in label_file.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("["):
                continue
            fields = [field for field in line.split("\t") if field.strip()]
            if len(fields) < 3:
                raise ValueError(
                    f"{label_file}: malformed line {line!r} "
                    "(expected '[start - end]<TAB>utt<TAB>emotion<TAB>[v, a, d]')"
                )
            utterance, emotion = fields[1].strip(), fields[2].strip()
            emotion = ER_RELABEL.get(emotion, emotion)
            if emotion in ER_LABELS and utterance in wavs:
                entries.append({"path": wavs[utterance], "label": emotion, "speaker": _iemocap_speaker(utterance)})
    return entries


def _iemocap_speaker(utterance: str) -> str:
    """`Ses01F_impro01_M003` -> `Ses01M`: the session prefix plus the gender letter of the turn."""
    session, *_, turn = utterance.split("_")
    return session[:5] + turn[:1] if turn[:1] in ("F", "M") else session


class _atomic_text:
    """Write a text file through a temporary sibling and rename, so readers never see half a file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self):
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        self.file = os.fdopen(fd, "w", encoding="utf-8", newline="")
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        self.file.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m superb.prepare", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    asr = commands.add_parser("asr-buckets", help="bucket CSVs for s3prl's asr downstream")
    asr.add_argument("libri_root", type=Path, help="the LibriSpeech folder (holding train-clean-100/ ...)")
    asr.add_argument("--splits", nargs="+", help="split folders (default: every folder holding .flac files)")
    asr.add_argument("--out", type=Path, help="output folder (default: <libri_root>/len_for_bucket)")
    er = commands.add_parser("er-meta", help="fold meta JSONs for s3prl's emotion downstream")
    er.add_argument("iemocap_root", type=Path, help="the IEMOCAP_full_release folder")
    er.add_argument("--out", type=Path, help="output folder (default: <iemocap_root>/meta_data)")
    args = parser.parse_args(argv)
    try:
        if args.command == "asr-buckets":
            out = args.out or args.libri_root / "len_for_bucket"
            splits = args.splits or librispeech_splits(args.libri_root)
            write_asr_bucket_csvs(args.libri_root, splits, out)
            print(f"wrote {', '.join(s + '.csv' for s in splits)} to {out}")
        else:
            out = args.out or args.iemocap_root / "meta_data"
            write_iemocap_meta(args.iemocap_root, out)
            print(f"wrote Session*/{{train,test}}_meta_data.json to {out}")
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
