"""Convert checkpoints between fairseq's data2vec 2.0 layout and the project's format.

    python -m upstream_ehmam.convert base_libri.pt --out base_libri_ehmam.pt            # fairseq -> the project's
    python -m upstream_ehmam.convert runs/base/last.pt --out last_fairseq.pt --to fairseq   # the project's -> fairseq

IN is any checkpoint the project reads: its own (pretraining or encoder export) or a fairseq data2vec 2.0 / EH-MAM
release file. The project's format keeps the student, the EMA teacher when present, and the heads, with the config
derived from cfg["model"]; the fairseq layout holds the student, the `_ema` teacher, the decoder and, for a checkpoint
with a loss predictor, the release's `decoder_pred`. Training state (optimiser, step, RNG) is not carried over.
Exit status 2 on a file that cannot be read or converted, with one line saying why.
"""

from __future__ import annotations

import argparse
import sys

from .checkpoint import load_checkpoint, save_atomic
from .fairseq_checkpoint import from_fairseq, to_fairseq

EHMAM, FAIRSEQ = "ehmam", "fairseq"
# The project's keys a conversion keeps; the training state of a pretraining run stays behind.
KEPT_KEYS = ("format_version", "kind", "model_config", "encoder", "teacher_context", "heads", "config")


def project_checkpoint(ckpt: dict) -> dict:
    """The weights and configs of a loaded checkpoint, without optimiser, RNG and loop state."""
    return {key: ckpt[key] for key in (*KEPT_KEYS, "fairseq_cfg_model") if key in ckpt}


def describe(ckpt: dict) -> str:
    config = ckpt["model_config"]
    parts = [f"{config['num_layers']} blocks of width {config['embed_dim']}", f"front end {config['frontend']}"]
    parts.append("EMA teacher" if "teacher_context" in ckpt else "no teacher")
    parts.append("heads: " + (", ".join(sorted(ckpt.get("heads") or {})) or "none"))
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", metavar="IN", help="a checkpoint of this project or a fairseq data2vec 2.0 file")
    parser.add_argument("--out", required=True, metavar="OUT", help="the file to write (replaced atomically)")
    parser.add_argument(
        "--to", choices=(EHMAM, FAIRSEQ), default=EHMAM, help="the format of OUT (default: the project's, ehmam)"
    )
    args = parser.parse_args(argv)
    try:
        ckpt = project_checkpoint(load_checkpoint(args.checkpoint))
        if args.to == FAIRSEQ:
            converted = to_fairseq(ckpt, args.checkpoint)
            from_fairseq(converted, args.out)  # what is written must read back
        else:
            converted = ckpt
        save_atomic(converted, args.out)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    layout = "fairseq data2vec 2.0 layout" if args.to == FAIRSEQ else "this project's format"
    print(f"wrote {args.out} in {layout}: {describe(ckpt)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
