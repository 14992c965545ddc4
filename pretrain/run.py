"""Pretrain EH-MAM: `python pretrain/run.py --config pretrain/ehmam.yaml [--set section.key=value ...] [--resume]`.

A rerun of the same command on a run directory holding last.pt continues it exactly (SIGTERM/Ctrl-C write a
checkpoint and exit; after SIGKILL only the updates since the last checkpoint are redone). `torchrun
--nproc_per_node N [--nnodes M ...] pretrain/run.py ...` runs DDP (run.out_dir on a file system all nodes share).
`--dry-run` builds everything, prints parameter counts and one batch's shapes. Exit status 2 on a bad config, bad
data under data.bad_audio=error, a bad checkpoint, or a run stopped by a health check.
"""

from __future__ import annotations

import argparse
import logging
import sys

from trainkit.cli import add_overrides_flag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config, e.g. pretrain/ehmam.yaml or pretrain/tiny.yaml")
    add_overrides_flag(parser, "optim.max_steps=1000")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="require run.out_dir/last.pt and continue from it (done anyway when it exists)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="build model and data, print parameter counts and one batch's shapes, and exit",
    )
    args = parser.parse_args(argv)

    from pretrain.config import load_config
    from pretrain.train import train
    from trainkit.runtime import TrainingAborted

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config, args.overrides)
        if not config.data.manifest:
            raise ValueError(
                "data.manifest: no manifest given; make one with "
                "`python -m pretrain.manifest AUDIO_ROOT --out train.tsv` and pass "
                "--set data.manifest=train.tsv"
            )
        out_dir = train(config, resume=args.resume, dry_run=args.dry_run)
    except (ValueError, FileNotFoundError, TrainingAborted) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.dry_run:
        print(f"done: checkpoints in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
