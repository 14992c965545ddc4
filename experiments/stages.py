"""A stage: one named step of an experiment, the command a user would type for it, its wall time and outcome.
`timed` runs a stage so that a failure is recorded and the experiment goes on with the stages that do not need it."""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Sequence

log = logging.getLogger("experiments")


@dataclass
class Stage:
    name: str
    command: str
    wall_s: float = 0.0
    ok: bool = False
    detail: str = ""


def timed(stage: Stage, action: Callable[[], object]) -> Stage:
    log.info("$ %s", stage.command)
    start = time.monotonic()
    try:
        action()
        stage.ok = True
    except SystemExit as stop:  # our CLIs exit with a message on bad input
        stage.detail = f"exited: {stop.code}"
    except Exception as error:  # noqa: BLE001 - one failed task must not stop the others
        stage.detail = f"{type(error).__name__}: {error}"
        log.error("%s failed:\n%s", stage.name, traceback.format_exc())
    stage.wall_s = time.monotonic() - start
    if not stage.ok:
        log.error("%s failed: %s", stage.name, stage.detail)
    return stage


def stage_records(stages: Sequence[Stage]) -> list[dict]:
    """The stages as demo.json and condition.json record them."""
    return [
        {"name": s.name, "command": s.command, "wall_s": round(s.wall_s, 2), "ok": s.ok, "detail": s.detail}
        for s in stages
    ]


def wall_time_table(stages: Sequence[Stage]) -> str:
    lines = ["| stage | wall s | status |", "|---|---:|---|"]
    for stage in stages:
        status = "ok" if stage.ok else f"FAILED ({stage.detail})"
        lines.append(f"| {stage.name} | {stage.wall_s:.1f} | {status.replace('|', '/')} |")
    total = sum(s.wall_s for s in stages)
    lines.append(f"| **total** | {total:.1f} | |")
    return "\n".join(lines) + "\n"
