"""Parsers of the experiments' command-line values (task lists, ER folds, per-task update counts, profiles,
baselines, seeds): each refuses a bad value with a message that names the flag."""

from __future__ import annotations

import argparse
from typing import Sequence

from superb.registry import ER_FOLDS, TASK_NAMES
from trainkit.cli import comma_list


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def names_from(flag: str, text: str, known: Sequence[str], also: str = "") -> list[str]:
    """The comma list `text` of names out of `known`, once each in the order given; an unknown name or an empty
    list is refused with a message naming `flag` and the choices (`also`: a further accepted word)."""
    names = comma_list(text)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        choices = ",".join(known) + (f" or {also}" if also else "")
        raise argparse.ArgumentTypeError(f"{flag}: unknown {unknown or 'empty list'}; choose from {choices}")
    return list(dict.fromkeys(names))


def parse_tasks(text: str) -> list[str]:
    return sorted(names_from("--tasks", text.lower(), TASK_NAMES), key=TASK_NAMES.index)


def parse_folds(text: str) -> list[int]:
    try:
        folds = sorted({int(k) for k in comma_list(text)})
    except ValueError:
        folds = []
    if not folds or any(k not in ER_FOLDS for k in folds):
        raise argparse.ArgumentTypeError(
            f"--er-folds: expected comma-separated folds in {ER_FOLDS[0]}..{ER_FOLDS[-1]}, got {text!r}"
        )
    return folds


def parse_task_steps(text: str) -> dict[str, int]:
    """--task-steps: "60" gives every task 60 updates; "300,ks=2000,ic=2000" gives 300 to every task but the
    ones named (so cheap utterance-level tasks can get more updates than the sequence tasks)."""
    default, per_task = None, {}
    for part in (p.strip() for p in text.split(",")):
        name, _, value = part.rpartition("=")
        name = name.strip().lower()
        try:
            steps = positive_int(value)
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(f"--task-steps: {part!r} is not N or TASK=N with N a positive integer")
        if not name:
            default = steps
        elif name in TASK_NAMES:
            per_task[name] = steps
        else:
            raise argparse.ArgumentTypeError(f"--task-steps: unknown task {name!r}; choose from {','.join(TASK_NAMES)}")
    if default is None:
        raise argparse.ArgumentTypeError(
            f"--task-steps: {text!r} lacks the count for the other tasks (e.g. 300,ks=2000)"
        )
    return {task: per_task.get(task, default) for task in TASK_NAMES}


def parse_profile(text: str) -> str | None:
    if text.strip().lower() == "none":
        return None
    from superb.tasks import available_profiles

    if text not in available_profiles():
        raise argparse.ArgumentTypeError(
            f"--profile: no profile {text!r}; choose from {', '.join(available_profiles() + ['none'])}"
        )
    return text


BASELINES = ("fbank", "random")


def parse_baselines(text: str) -> list[str]:
    if comma_list(text.lower()) == ["none"]:
        return []
    return sorted(names_from("--baselines", text.lower(), BASELINES, also="none"), key=BASELINES.index)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in comma_list(text)]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"--seeds: expected comma-separated non-negative integers, got {text!r}")
    return list(dict.fromkeys(seeds))
