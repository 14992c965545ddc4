"""Per-bin log-mel mean and std over a manifest's (normalised) audio, the keys of `model.mel_norm: global`.

Run: python -m pretrain.mel_stats train.tsv [--max-utterances 500] [--out stats.yaml]; prints (or writes) model.mel_mean
and model.mel_std as YAML, for a config's model section or --set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from trainkit.cli import refuse_old_spellings
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.frontend import mel_statistics
from upstream_ehmam.model import normalize_waveform

from .data import read_audio
from .manifest import read_manifest


def manifest_statistics(manifest: Path, max_files: int | None = None, mel_bins: int = 80) -> dict:
    """{'mel_mean': [mel_bins floats], 'mel_std': [...]} over the first `max_files` files of the manifest."""
    root, entries = read_manifest(Path(manifest))
    entries = entries[:max_files] if max_files else entries
    waves = (normalize_waveform(torch.from_numpy(read_audio(root / rel)[0]).float()) for rel, _ in entries)
    mean, std = mel_statistics(waves, EncoderConfig(frontend="mel", mel_bins=mel_bins))
    return {"mel_mean": mean, "mel_std": std}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pretrain.mel_stats", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("manifest", type=Path, help="fairseq manifest (python -m pretrain.manifest)")
    parser.add_argument("--max-utterances", type=int, default=500, help="first N files of the manifest (0: all)")
    parser.add_argument("--mel-bins", type=int, default=80)
    parser.add_argument("--out", type=Path, default=None, help="write the YAML here instead of printing it")
    refuse_old_spellings(parser, "--max-files")
    args = parser.parse_args(argv)
    try:
        stats = manifest_statistics(args.manifest, args.max_utterances or None, args.mel_bins)
    except (FileNotFoundError, ValueError) as err:
        print(f"pretrain.mel_stats: error: {err}", file=sys.stderr)
        return 2
    text = yaml.safe_dump(stats, default_flow_style=None, width=10_000, sort_keys=False)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
