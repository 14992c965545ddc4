"""The corpus stage: a given corpus root, or a mini-SUPERB generated (and reused when complete) under the
experiment's folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from experiments.stages import Stage, timed
from results.paths import shown

log = logging.getLogger("experiments")


def add_corpus_flags(parser: argparse.ArgumentParser) -> None:
    """--data (a corpus root), else a mini-SUPERB of --scale and --corpus-seed generated under --out."""
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="corpus root (mini-SUPERB or real corpora in their canonical folders); "
        "default: generate a mini-SUPERB (--scale, --corpus-seed) under OUT/minisuperb",
    )
    # small: 500 pretraining utterances (1.7 h) and 8 dev-clean speakers, enough for the recipe to learn and for
    # its phone ABX to be measured; demo: the test sets the cpu profile's intervals need
    parser.add_argument(
        "--scale",
        choices=("ci", "demo", "small"),
        default="demo",
        help="mini-SUPERB scale to generate (default demo: what the cpu profile learns on)",
    )
    parser.add_argument("--corpus-seed", type=int, default=0, help="mini-SUPERB seed")


def prepare_corpus(data: Path | None, out: Path, scale: str, seed: int) -> tuple[Path, Stage | None]:
    """The corpus root: `data` as given, or a mini-SUPERB of `scale` and `seed` under `out` (a complete one there
    is reused)."""
    if data is not None:
        if not data.is_dir():
            raise SystemExit(f"error: --data {data} is not a folder")
        return data.absolute(), None
    from minisuperb import generate, read_marker

    root = (out / "minisuperb").absolute()
    info = read_marker(root)
    if info and info.get("complete") and info.get("scale") == scale and info.get("seed") == seed:
        log.info("reusing the complete mini-SUPERB corpus in %s", root)
        return root, None
    command = shown(["-m", "minisuperb", "--out", str(root), "--scale", scale, "--seed", str(seed)])
    stage = timed(Stage("corpus", command), lambda: generate(root, scale, seed=seed, workers=2, force=info is not None))
    if not stage.ok:
        raise SystemExit(f"error: generating mini-SUPERB failed: {stage.detail}")
    return root, stage
