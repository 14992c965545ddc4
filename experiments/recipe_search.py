"""A search for a small-scale pretraining recipe, with phone ABX as the instrument (the loss can fall while every
layer stays at chance, so it cannot pick a recipe).

    python -m experiments.recipe_search --data DIR --arms results/recipe_search/arms.yaml --runs runs/search \
        --out results/recipe_search [--only NAME,NAME]

`--arms` is a YAML list of arms: `{name, config, set: [section.key=value, ...], about}`. Each arm is pretrained
(pretrain/run.py, its own process) with the ABX monitor on the first 40 dev-clean utterances of DIR; a finished arm
is not run again and an unfinished one continues. The log-mel references are scored once on the same items. Writes
OUT/search.csv and OUT/search.md: per arm the updates, the pretraining wall time, the final loss, the ABX of its
best layer at update 0 (random init), at the end and at its best evaluation, against the references.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import yaml

from experiments.pretraining import AbxMonitor, pretraining_argv, run_pretraining
from results.abx import ABX_FILES
from results.paths import REPO, shown
from results.recipe_search import arm_row, read_run, write_search_report
from trainkit.cli import comma_list

log = logging.getLogger("recipe_search")


@dataclass(frozen=True)
class Arm:
    name: str
    config: str
    overrides: tuple[str, ...] = ()
    about: str = ""


def read_arms(path: Path) -> list[Arm]:
    """The arms of a YAML list; errors name the file, the entry and the key."""
    try:
        entries = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read the arms ({error})") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty YAML list of arms")
    arms, names = [], set()
    for i, entry in enumerate(entries):
        where = f"{path}: arm {i + 1}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with name, config, set, about")
        unknown = set(entry) - {"name", "config", "set", "about"}
        if unknown:
            raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: name, config, set, about")
        name, config = entry.get("name"), entry.get("config")
        if not isinstance(name, str) or not name or name in names or "/" in name:
            raise ValueError(f"{where}: 'name' must be a unique non-empty string without '/', found {name!r}")
        if not isinstance(config, str) or not (REPO / config).is_file():
            raise ValueError(f"{where} ({name}): 'config' must name a config file of the repository, found {config!r}")
        overrides = entry.get("set") or []
        if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
            raise ValueError(f"{where} ({name}): 'set' must be a list of section.key=value strings")
        names.add(name)
        arms.append(Arm(name, config, tuple(overrides), str(entry.get("about", ""))))
    return arms


def arm_argv(arm: Arm, data: Path, run_dir: Path, eval_every: int) -> list[str]:
    """The arm's pretraining command: its config and settings, its own schedule, the ABX monitor on the first
    dev-clean utterances (the pretrainer's default split)."""
    monitor = AbxMonitor(data.absolute(), eval_every, splits=None)
    manifest = (data / "pretrain" / "train.tsv").absolute()
    return pretraining_argv(REPO / arm.config, manifest, run_dir, sets=arm.overrides, monitor=monitor)


def reference_errors(data: Path, out: Path) -> list[dict]:
    """Log-mel and MFCC on the monitor's items (the first dev-clean utterances, within and across)."""
    from results.abx.__main__ import run_abx

    rows = run_abx(out, data=data, max_files=ABX_FILES, conditions=("within", "across"))
    by_name: dict[str, dict] = {}
    for row in rows:
        by_name.setdefault(row["representation"], {"representation": row["representation"]})[row["condition"]] = row[
            "error"
        ]
    return list(by_name.values())


def run_search(data: Path, arms: Sequence[Arm], runs: Path, out: Path, eval_every: int, command: str) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    references = reference_errors(data, runs / "references")
    walls_path = runs / "walls.json"  # pretraining wall times, kept beside the runs so that a rerun reports them
    walls = json.loads(walls_path.read_text()) if walls_path.is_file() else {}
    rows = []
    for arm in arms:
        run_dir = runs / arm.name
        argv = arm_argv(arm, data, run_dir, eval_every)
        if arm.name not in walls or read_run(run_dir).updates == 0:
            stage = run_pretraining(argv)
            if not stage.ok:
                log.error("%s: pretraining failed (%s)", arm.name, stage.detail)
            # re-read first: another search process may share this runs folder (--only with other arms)
            walls = {
                **(json.loads(walls_path.read_text()) if walls_path.is_file() else {}),
                arm.name: round(stage.wall_s, 1),
            }
            walls_path.write_text(json.dumps(walls, indent=1) + "\n")
        log.info("%s: %s", arm.name, shown(argv))
        rows.append(arm_row(arm.name, arm.about, arm.overrides, read_run(run_dir), walls.get(arm.name, math.nan)))
    write_search_report(rows, references, command, out, {arm.name: runs / arm.name for arm in arms})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m experiments.recipe_search",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="mini-SUPERB root (pretrain/ and LibriSpeech/)")
    parser.add_argument("--arms", type=Path, required=True, help="YAML list of arms")
    parser.add_argument("--runs", type=Path, default=Path("runs/recipe_search"), help="run directories (not committed)")
    parser.add_argument("--out", type=Path, required=True, help="folder for search.md / search.csv")
    parser.add_argument("--only", default="", help="comma-separated arm names to run/report (default: all)")
    parser.add_argument("--eval-every", type=int, default=250, help="run.eval_every of every arm")
    args = parser.parse_args(raw)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    try:
        arms = read_arms(args.arms)
        if args.only:
            wanted = comma_list(args.only)
            missing = [n for n in wanted if n not in {a.name for a in arms}]
            if missing:
                raise ValueError(f"--only: no arm named {missing[0]!r} in {args.arms}")
            arms = [a for a in arms if a.name in wanted]
        if not (args.data / "pretrain" / "train.tsv").is_file():
            raise FileNotFoundError(f"--data {args.data}: no pretrain/train.tsv (a mini-SUPERB root is expected)")
        rows = run_search(
            args.data,
            arms,
            args.runs.absolute(),
            args.out,
            args.eval_every,
            shlex.join(["python", "-m", "experiments.recipe_search", *raw]),
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"experiments.recipe_search: error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write((args.out / "search.md").read_text(encoding="utf-8"))
    print(f"wrote {args.out / 'search.md'}, search.csv, curves.md and curves.png ({len(rows)} arms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
