"""A run directory's logs: metrics.jsonl, TensorBoard and the progress bar, cut back to the last checkpoint on
resume, and the resume's report of what changed in the config."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
from typing import Sequence

from .config import config_changes
from .files import write_text_atomic

log = logging.getLogger("trainkit")

METRICS_FILE = "metrics.jsonl"


def report_config_changes(
    saved: dict, current: dict, schedule_keys: Sequence[str], update: int, jumps: Sequence[str]
) -> None:
    """On resume: name every setting that differs from the checkpoint's config (`saved`), and warn when one of
    `schedule_keys` changed, with what jumps at `update` (`jumps`, e.g. "learning rate 0.0003 -> 0.0001")."""
    changes = config_changes(saved, current)
    if not changes:
        return
    log.info(
        "the config differs from the one the checkpoint was written with: %s",
        "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changes),
    )
    moved = [key for key, _, _ in changes if key in schedule_keys]
    if moved and jumps:
        log.warning(
            "resuming at update %d with %s changed: the schedules jump (%s)", update, ", ".join(moved), "; ".join(jumps)
        )
    elif moved:
        log.warning(
            "resuming at update %d with %s changed: the schedules agree at this update but differ later",
            update,
            ", ".join(moved),
        )


def truncate_metrics(path: Path, update: int) -> None:
    """Keep the records of updates <= `update` (a resumed run logs the rest again; a torn last line goes too)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= update:
            kept.append(line + "\n")
    write_text_atomic(path, "".join(kept))


def open_run_logs(
    stack: contextlib.ExitStack, out_dir: Path, update: int, max_steps: int, is_main: bool, desc: str
) -> tuple:
    """(TensorBoard writer, metrics.jsonl opened to append, progress bar); off the main process no writer, no file."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    writer = metrics_file = None
    if is_main:
        # purge_step drops the TensorBoard events a killed run wrote past its last checkpoint
        writer = stack.enter_context(
            contextlib.closing(SummaryWriter(str(out_dir / "tb"), purge_step=update + 1 if update else None))
        )
        metrics_file = stack.enter_context((out_dir / METRICS_FILE).open("a"))
    progress = stack.enter_context(
        contextlib.closing(tqdm(total=max_steps, initial=update, disable=not is_main, desc=desc, dynamic_ncols=True))
    )
    return writer, metrics_file, progress


def value_jumps(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """'name old -> new' for each value of `before` that `after` changes (beyond float rounding)."""
    return [
        f"{name} {before[name]:.6g} -> {after[name]:.6g}"
        for name in before
        if not math.isclose(before[name], after[name], rel_tol=1e-9, abs_tol=1e-12)
    ]
