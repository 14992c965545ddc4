"""Command line: python -m minisuperb --out DIR [--scale ci|demo|small] [--seed N] [--workers N] [--force]."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .engine import EngineUnavailable
from .generate import check_setup, generate
from .scales import SCALES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minisuperb", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; must be empty)")
    parser.add_argument(
        "--scale",
        default="ci",
        choices=[s for s in SCALES if s != "tiny"],
        help="ci: a few hundred files, ~10 min of audio; small: a few hours (default ci)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 32),
        help="synthesis processes (default: all cores); the output does not depend on it",
    )
    parser.add_argument("--force", action="store_true", help="replace a previous mini-SUPERB output in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        check_setup(args.out, args.scale, args.workers, args.force)
    except (EngineUnavailable, ValueError, OSError) as e:
        print(f"minisuperb: error: {e}", file=sys.stderr)
        return 2
    summary = generate(args.out, args.scale, args.seed, args.workers, args.force, progress=not args.quiet)
    print(f"{'corpus':<16} {'audio':>6} {'files':>6} {'hours':>7} {'MB':>8} {'wall s':>7}")
    for name, c in {**summary["corpora"], "total": summary["total"]}.items():
        print(
            f"{name:<16} {c['audio_files']:>6} {c['files']:>6} {c['seconds'] / 3600:>7.3f} "
            f"{c['bytes'] / 1e6:>8.1f} {c['wall_s']:>7.1f}"
        )
    print(f"wrote {summary['out_dir']} (scale {args.scale}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
