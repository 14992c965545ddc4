"""The corpus stage: a given corpus root, or a mini-SUPERB generated (and reused when complete) under the
experiment's folder."""

from __future__ import annotations

import logging
from pathlib import Path

from experiments.stages import Stage, timed
from results.paths import shown

log = logging.getLogger("experiments")


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
