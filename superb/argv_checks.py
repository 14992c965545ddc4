"""Checks of `-k` and `-d` before s3prl's runner sees them, so that a bad value is one line naming the problem
instead of a traceback through s3prl (a missing or corrupt -k, or `-d xyz` as FileNotFoundError on
'./downstream/xyz/config.yaml'). Nothing here imports s3prl."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from pathlib import Path
from typing import Sequence

from superb.hub import HUBCONF_MODULE
from superb.registry import TASKS
from superb.tasks import s3prl_subset_parser


def _parser() -> argparse.ArgumentParser:
    """The s3prl flags run_downstream.py reads, and -k, which only these checks need."""
    parser = s3prl_subset_parser()
    parser.add_argument("-k", "--upstream_ckpt")
    return parser


def s3prl_downstreams() -> list[str]:
    """The downstream packages of the installed s3prl (a folder with an expert.py under s3prl/downstream/)."""
    spec = importlib.util.find_spec("s3prl")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "downstream"
    return sorted(p.parent.name for p in folder.glob("*/expert.py"))


def project_upstreams() -> tuple[str, ...]:
    """The upstreams upstream_ehmam's hubconf defines: their -k must be a checkpoint upstream_ehmam reads."""
    try:
        return tuple(importlib.import_module(HUBCONF_MODULE).__all__)
    except ModuleNotFoundError:
        return ()


def check_downstream(name: str, available: Sequence[str]) -> None:
    if name in TASKS or name in available:
        return
    raise ValueError(
        f"-d {name}: no such downstream; SUPERB tasks: {' '.join(TASKS)}; or one of s3prl's "
        f"{len(available)} downstreams: {' '.join(available)}"
    )


def check_project_checkpoint(path: str) -> None:
    """-k of -u ehmam: an existing file that loads as one of the supported kinds (the project's pretraining or
    encoder checkpoint, a fairseq data2vec 2.0 or EH-MAM release file)."""
    from upstream_ehmam.checkpoint import load_checkpoint

    try:
        load_checkpoint(path)
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(f"-k {error}") from None


def check_argv(argv: Sequence[str]) -> None:
    """A ValueError naming the flag, the value and the problem when -k (for the project's upstreams) or -d is
    unusable; a run from -e takes both from its checkpoint and is not checked here."""
    args, _ = _parser().parse_known_args(list(argv))
    if args.past_exp:
        return
    if args.downstream is not None:
        check_downstream(args.downstream, s3prl_downstreams())
    if args.upstream in project_upstreams():
        if args.upstream_ckpt is None:
            raise ValueError(f"-u {args.upstream} needs -k CHECKPOINT (a checkpoint of this project or a fairseq file)")
        check_project_checkpoint(args.upstream_ckpt)
