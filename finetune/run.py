"""Fine-tune an EH-MAM encoder with CTC on letters:
`python -m finetune.run --config finetune/base_10m.yaml --ckpt runs/base/last.pt --set data.manifest_dir=DIR`.

`--ckpt` takes a pretraining checkpoint (`--weights teacher` for the EMA teacher's), an exported encoder, a fairseq
data2vec 2.0 / EH-MAM release file (docs/published_checkpoints.md), or `random:FILE` (an untrained encoder shaped
like FILE's: a checkpoint or a pretraining YAML). A rerun of the same command continues the run in run.out_dir
exactly; `torchrun --nproc_per_node N -m finetune.run ...` runs N processes
with the same global batch. Exit status 2 on a bad config, bad data, a bad checkpoint, or a run stopped by a check.
"""

from __future__ import annotations

import argparse
import logging
import sys

from trainkit.cli import add_overrides_flag, refuse_old_spellings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config, e.g. finetune/base_10m.yaml")
    parser.add_argument("--ckpt", help="encoder to fine-tune (sets model.init): checkpoint, export or random:FILE")
    parser.add_argument("--weights", choices=("student", "teacher"), help="sets model.weights")
    add_overrides_flag(parser, "optim.max_steps=100")
    parser.add_argument("--resume", action="store_true", help="require run.out_dir/last.pt and continue from it")
    refuse_old_spellings(parser, "--init")
    args = parser.parse_args(argv)

    from trainkit.runtime import TrainingAborted

    from .config import load_config
    from .train import finetune

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # --ckpt/--weights are spelled as overrides, so that the saved config records them
    overrides = list(args.overrides)
    if args.ckpt is not None:
        overrides.append(f"model.init={args.ckpt!r}")
    if args.weights is not None:
        overrides.append(f"model.weights={args.weights}")
    try:
        out_dir = finetune(load_config(args.config, overrides), resume=args.resume)
    except (ValueError, FileNotFoundError, TrainingAborted) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"done: checkpoints in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
