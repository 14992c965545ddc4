"""The stages that measure and tabulate: phone ABX per layer (results.abx) and the SUPERB table (results.tabulate),
run in this process and recorded with the command a user would type."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from experiments.stages import Stage, timed
from results.abx import ABX_FILES, ABX_SPLITS
from results.paths import shown


def abx_stage(
    out: Path,
    data: Path,
    checkpoints: Sequence[Path] = (),
    upstreams: Sequence[str] = (),
    random_init: bool = False,
    conditions: Sequence[str] = ("within", "across"),
) -> Stage:
    """Phone ABX per layer (results.abx) of checkpoints and s3prl upstreams, beside the log-mel references, on the
    first ABX_FILES dev-clean utterances of `data`."""
    from results.abx.__main__ import run_abx

    argv = [
        "-m",
        "results.abx",
        *[a for c in checkpoints for a in ("--ckpt", str(c))],
        *[a for u in upstreams for a in ("--upstream", u)],
        *([] if random_init else ["--no-random-init"]),
        "--data",
        str(data),
        "--splits",
        ",".join(ABX_SPLITS),
        "--max-utterances",
        str(ABX_FILES),
        "--conditions",
        ",".join(conditions),
        "--out",
        str(out),
    ]
    return timed(
        Stage("abx", shown(argv)),
        lambda: run_abx(
            out,
            checkpoints,
            data=data,
            splits=ABX_SPLITS,
            max_files=ABX_FILES,
            upstreams=upstreams,
            random_init=random_init,
            conditions=conditions,
            command=shown(argv),
        ),
    )


def tabulate_stage(runs: Path, table_dir: Path, title: str, synthetic: bool):
    """`python -m results.tabulate RUNS --out TABLE_DIR --title TITLE [--synthetic]`, in this process; returns the
    stage and the report (None when tabulating failed)."""
    from results.tabulate import tabulate, write_report

    argv = ["-m", "results.tabulate", str(runs), "--out", str(table_dir), "--title", title] + (
        ["--synthetic"] if synthetic else []
    )
    reports = []

    def make_table() -> None:
        reports.append(tabulate([runs], title, "synthetic" if synthetic else "unstated"))
        write_report(reports[0], table_dir, "superb")

    stage = timed(Stage("tabulate", shown(argv)), make_table)
    return stage, (reports[0] if reports else None)
