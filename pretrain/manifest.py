"""Audio manifests in the fairseq format: line 1 the absolute root, then `relative/path<TAB>num_samples`.

Run: python -m pretrain.manifest ROOT --out train.tsv [--valid-out valid.tsv --valid-fraction 0.01] [--verify]
Unusable files and unreadable folders are reported with a reason and left out; --verify also decodes every file
(slow) to catch truncated or NaN files that a header probe misses.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from trainkit.files import write_text_atomic
from upstream_ehmam.frontend import SAMPLE_RATE

logger = logging.getLogger(__name__)

_PROGRESS_EVERY = 20_000  # files between progress log lines; LibriSpeech 960 h has ~281 k


@dataclass
class ManifestSummary:
    """What write_manifest found: the entries written per split and every skipped file with its reason."""

    root: Path
    num_candidates: int = 0  # files with a matching extension
    train: list[tuple[str, int]] = field(default_factory=list)  # (relative path, num_samples)
    valid: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    num_train = property(lambda self: len(self.train))
    num_valid = property(lambda self: len(self.valid))
    num_skipped = property(lambda self: len(self.skipped))
    train_samples = property(lambda self: sum(n for _, n in self.train))

    def format(self) -> str:
        """A few human-readable lines: counts, hours, and skip reasons grouped by kind."""
        hours = sum(n for _, n in self.train + self.valid) / SAMPLE_RATE / 3600
        kinds = Counter(reason.split(":")[0] for _, reason in self.skipped)
        return "\n".join(
            [
                f"{self.root}: {self.num_candidates} audio files, {self.num_train} train + "
                f"{self.num_valid} valid written ({hours:.2f} h), {self.num_skipped} skipped"
            ]
            + [f"  skipped {count:>7} x {kind}" for kind, count in sorted(kinds.items())]
        )


def find_audio_files(
    root: Path, extensions: tuple[str, ...], unreadable: list[tuple[str, str]] | None = None
) -> list[str]:
    """Sorted relative POSIX paths of the files with these extensions; unlistable folders go to `unreadable`."""
    wanted = {ext.lower().lstrip(".") for ext in extensions}
    found = []

    def report(err: OSError) -> None:
        if unreadable is not None:
            where = Path(err.filename).relative_to(root).as_posix() if err.filename else "?"
            unreadable.append((where, f"unreadable folder: {err.strerror or err}"))

    # followlinks: users commonly build a root of symlinks to LibriSpeech subsets
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=report):
        dirnames.sort()
        found += [
            Path(dirpath, name).relative_to(root).as_posix()
            for name in filenames
            if "." in name and name.rsplit(".", 1)[-1].lower() in wanted
        ]
    return sorted(found)


def soundfile_reason(err: Exception) -> str:
    """libsndfile's own reason (its message also repeats the path)."""
    return str(getattr(err, "error_string", None) or err)


def probe_audio(path: Path, decode: bool = False) -> tuple[int | None, str]:
    """(num_samples, "") for a usable 16 kHz mono file, else (None, reason). The header finds most problems;
    decode=True also reads the samples: truncated compressed files (whose header promises more than they hold)
    and NaN/inf samples."""
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, OSError) as err:  # empty, truncated and non-audio files
        return None, f"unreadable: {soundfile_reason(err)}"
    if info.frames <= 0:
        return None, "empty: no audio samples"
    if info.samplerate != SAMPLE_RATE:
        return None, f"sample rate: {info.samplerate} Hz, expected {SAMPLE_RATE}"
    if info.channels != 1:
        return None, f"channels: {info.channels}, expected mono"
    if decode:
        try:
            wav, _ = sf.read(str(path), dtype="float32")
        except (sf.SoundFileError, RuntimeError, OSError) as err:
            return None, f"undecodable: {soundfile_reason(err)}"
        if len(wav) != info.frames:
            return None, f"truncated: decoded {len(wav)} samples, the header says {info.frames}"
        if not np.isfinite(wav.sum(dtype=np.float64)):
            return None, "non-finite: NaN or infinite samples"
    return info.frames, ""


def write_manifest(
    root: Path,
    out: Path,
    extensions: tuple[str, ...] = ("flac", "wav"),
    valid_out: Path | None = None,
    valid_fraction: float = 0.0,
    seed: int = 0,
    verify: bool = False,
) -> ManifestSummary:
    """Scan root, write the train (and optional valid) manifest, and report every file left out."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"manifest root {root} is not a directory")
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if valid_fraction > 0 and valid_out is None:
        raise ValueError(f"valid_fraction={valid_fraction} needs valid_out to write the valid split to")
    summary = ManifestSummary(root=root)
    candidates = find_audio_files(root, tuple(extensions), summary.skipped)
    summary.num_candidates = len(candidates)
    for rel, reason in summary.skipped:
        logger.warning("skipping %s: %s", root / rel, reason)
    entries = []
    for i, rel in enumerate(candidates, start=1):
        num_samples, reason = (
            (None, "path: contains a tab or newline, which the manifest format cannot hold")
            if any(c in rel for c in "\t\n\r")
            else probe_audio(root / rel, decode=verify)
        )
        if num_samples is None:
            logger.warning("skipping %s: %s", root / rel, reason)
            summary.skipped.append((rel, reason))
        else:
            entries.append((rel, num_samples))
        if i % _PROGRESS_EVERY == 0:
            logger.info("probed %d / %d files", i, len(candidates))
    if not entries:
        raise ValueError(
            f"no usable audio under {root}: {len(candidates)} files with extensions {tuple(extensions)}, "
            f"{summary.num_skipped} skipped" + (f" (first: {summary.skipped[0]})" if summary.skipped else "")
        )
    summary.train, summary.valid = split_valid(entries, valid_fraction, seed)
    for path, split in ((out, summary.train), (valid_out, summary.valid)):
        if path is not None:
            write_text_atomic(Path(path), f"{root}\n" + "".join(f"{rel}\t{n}\n" for rel, n in split))
    return summary


def split_valid(entries: list, valid_fraction: float, seed: int) -> tuple[list, list]:
    """(train, valid): round(valid_fraction * n) seeded random entries (at least one of two or more) as valid."""
    is_valid = np.zeros(len(entries), dtype=bool)
    if valid_fraction > 0:
        num_valid = max(int(round(valid_fraction * len(entries))), int(len(entries) >= 2))
        is_valid[np.random.default_rng(seed).permutation(len(entries))[:num_valid]] = True
    return [e for e, v in zip(entries, is_valid) if not v], [e for e, v in zip(entries, is_valid) if v]


def read_manifest(path: Path) -> tuple[Path, list[tuple[str, int]]]:
    """(root, [(relative path, num_samples), ...]) from a non-empty manifest; ValueError names file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"{path}:1: expected the audio root directory on the first line, found nothing")
    root = Path(lines[0].strip())
    if "\t" in lines[0]:
        raise ValueError(f"{path}:1: expected the audio root directory, found a tab-separated entry {lines[0]!r}")
    entries = []
    for line_no, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0]:
            raise ValueError(f"{path}:{line_no}: expected 'relative/path<TAB>num_samples', found {line!r}")
        try:
            num_samples = int(fields[1])
        except ValueError:
            raise ValueError(f"{path}:{line_no}: num_samples must be an integer, found {fields[1]!r}") from None
        if num_samples <= 0:
            raise ValueError(f"{path}:{line_no}: num_samples must be positive, found {num_samples}")
        entries.append((fields[0], num_samples))
    if not entries:
        raise ValueError(f"{path}: the manifest lists no audio files")
    return root, entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="directory searched recursively for audio")
    parser.add_argument("--out", type=Path, required=True, help="train manifest to write")
    parser.add_argument("--valid-out", type=Path, default=None, help="valid manifest to write")
    parser.add_argument(
        "--valid-fraction", type=float, default=None, help="fraction of files for valid (default 0.01 with --valid-out)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the valid split")
    parser.add_argument("--ext", nargs="+", default=["flac", "wav"], help="extensions to include")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="decode every file to catch truncated or NaN audio (reads all the audio: slow)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.valid_fraction is not None and args.valid_out is None:
        parser.error("--valid-fraction needs --valid-out")
    valid_fraction = 0.0 if args.valid_out is None else 0.01 if args.valid_fraction is None else args.valid_fraction
    try:
        summary = write_manifest(
            args.root, args.out, tuple(args.ext), args.valid_out, valid_fraction, args.seed, args.verify
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
