"""A search for a small-scale pretraining recipe, with phone ABX as the instrument (the loss can fall while every
layer stays at chance, so it cannot pick a recipe).

    python -m results.recipe_search --data DIR --arms results/recipe_search/arms.yaml --runs runs/search \
        --out results/recipe_search [--only NAME,NAME]

`--arms` is a YAML list of arms: `{name, config, set: [section.key=value, ...], about}`. Each arm is pretrained
(pretrain/run.py, its own process) with the ABX monitor on the first 40 dev-clean utterances of DIR; a finished arm
is not run again and an unfinished one continues. The log-mel references are scored once on the same items. Writes
OUT/search.csv and OUT/search.md: per arm the updates, the pretraining wall time, the final loss, the ABX of its
best layer at update 0 (random init), at the end and at its best evaluation, against the references.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from results.demo import ABX_FILES, REPO, run_pretraining, shown
from results.search_curves import read_records, write_curves

log = logging.getLogger("recipe_search")

# the selector's health scalars, averaged over the logged updates of the second half of the run
MECHANISM = ("teacher_rho", "teacher_span_rho", "student_rho", "student_span_rho", "hardness_lift", "masked_fraction")
COLUMNS = (
    "name",
    "updates",
    "wall_s",
    "final_loss",
    "init_within",
    "init_across",
    "end_layer",
    "end_within",
    "end_across",
    "best_step",
    "best_layer",
    "best_within",
    "best_across",
    *MECHANISM,
    "about",
    "overrides",
)


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
    argv = [
        str(REPO / "pretrain" / "run.py"),
        "--config",
        str(REPO / arm.config),
        "--set",
        f"data.manifest={(data / 'pretrain' / 'train.tsv').absolute()}",
        "--set",
        f"run.out_dir={run_dir}",
        "--set",
        f"run.eval_data={data.absolute()}",
        "--set",
        f"run.eval_max_files={ABX_FILES}",
        "--set",
        f"run.eval_every={eval_every}",
    ]
    for value in arm.overrides:
        argv += ["--set", value]
    return argv


@dataclass
class ArmLog:
    """What one arm's run directory says."""

    updates: int = 0
    final_loss: float = math.nan
    abx: list[dict] = field(default_factory=list)  # the monitor's records, in step order
    mechanism: dict[str, float] = field(default_factory=dict)  # MECHANISM key -> mean over the second half


def second_half_means(records: Sequence[dict], updates: int) -> dict[str, float]:
    """Each MECHANISM scalar averaged over the logged updates after half of `updates` (NaN values, e.g. the lift
    while alpha is 0, left out; NaN when none is left)."""
    means = {}
    for key in MECHANISM:
        values = [r[key] for r in records if r["step"] > updates / 2 and math.isfinite(r.get(key, math.nan))]
        means[key] = statistics.fmean(values) if values else math.nan
    return means


def read_run(run_dir: Path) -> ArmLog:
    losses, abx = read_records(run_dir)
    if not losses and not abx:
        return ArmLog()
    tail = [r["rec_loss"] for r in losses[-5:]]
    updates = max((r["step"] for r in losses), default=0)
    return ArmLog(updates, statistics.fmean(tail) if tail else math.nan, abx, second_half_means(losses, updates))


def arm_row(arm: Arm, run: ArmLog, wall_s: float) -> dict:
    row = {
        "name": arm.name,
        "updates": run.updates,
        "wall_s": wall_s,
        "final_loss": run.final_loss,
        "about": arm.about,
        "overrides": " ".join(arm.overrides),
        **run.mechanism,
    }
    if run.abx:
        first, last = run.abx[0]["abx"], run.abx[-1]["abx"]
        best = min(run.abx, key=lambda r: (r["abx"]["best_across"], r["step"]))
        row.update(
            init_within=first["best_within"],
            init_across=first["best_across"],
            end_layer=last["best_layer"],
            end_within=last["best_within"],
            end_across=last["best_across"],
            best_step=best["step"],
            best_layer=best["abx"]["best_layer"],
            best_within=best["abx"]["best_within"],
            best_across=best["abx"]["best_across"],
        )
    return row


def _fmt(value, digits: int = 1) -> str:
    if value is None or value == "" or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(rows: Sequence[dict], references: Sequence[dict], command: str) -> str:
    lines = [
        "# Small-scale recipe search, by phone ABX",
        "",
        f"Command: `{command}`",
        "",
        f"Phone ABX (triphone, within / across speaker, %) of the best student layer on the first {ABX_FILES} "
        "dev-clean utterances, from the pretrainer's monitor: at update 0 (random init), at the end, and at the "
        "evaluation with the lowest across-speaker error. Wall: the pretraining process, evaluations included. "
        "Loss: mean regression loss of the last five logged updates. Chance is 50. Selector: means over the "
        "logged updates of the second half of the run of the teacher predictor's Spearman rho with the realised "
        "per-frame loss (per frame / per span), the student predictor's (which sees the mask), and the hardness "
        "lift (realised loss in hard-picked spans over that in random spans of the same rows; 1 = no harder than "
        "chance); masked: the masked share of the frames.",
        "",
        "| reference | within | across |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r['representation']} | {r['within']:.1f} | {r['across']:.1f} |" for r in references]
    lines += [
        "",
        "| arm | updates | wall s | loss | init within / across | end layer: within / across | "
        "best (step, layer): within / across | teacher rho frame / span | student rho frame / span | lift | "
        "masked | what |",
        "|---|---:|---:|---:|---|---|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['updates']} | {_fmt(r['wall_s'], 0)} | {_fmt(r['final_loss'], 3)} | "
            f"{_fmt(r.get('init_within'))} / {_fmt(r.get('init_across'))} | "
            f"{_fmt(r.get('end_layer'))}: {_fmt(r.get('end_within'))} / {_fmt(r.get('end_across'))} | "
            f"({_fmt(r.get('best_step'))}, {_fmt(r.get('best_layer'))}): {_fmt(r.get('best_within'))} / "
            f"{_fmt(r.get('best_across'))} | {_fmt(r.get('teacher_rho'), 2)} / {_fmt(r.get('teacher_span_rho'), 2)} | "
            f"{_fmt(r.get('student_rho'), 2)} / {_fmt(r.get('student_span_rho'), 2)} | "
            f"{_fmt(r.get('hardness_lift'), 3)} | "
            f"{_fmt(r.get('masked_fraction'), 3)} | {r['about']} (`{r['overrides']}`) |"
        )
    lines += seed_means_table(rows)
    return "\n".join(lines) + "\n"


SEED_SUFFIX = re.compile(r"-s\d+$")  # arms named NAME-s<seed> are seeds of one setting
MEAN_COLUMNS = ("end_across", "best_across", *MECHANISM)


def seed_means_table(rows: Sequence[dict]) -> list[str]:
    """Markdown lines: per setting with more than one seed (arms NAME-s0, NAME-s1, ...), the mean and the range over
    its seeds of the end / best across-speaker ABX and the selector's scalars; no lines when no setting has two."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(SEED_SUFFIX.sub("", row["name"]), []).append(row)
    if all(len(group) < 2 for group in groups.values()):
        return []
    lines = [
        "",
        "Mean over seeds [min, max]:",
        "",
        "| setting | seeds | " + " | ".join(c.replace("_", " ") for c in MEAN_COLUMNS) + " |",
        "|---|---:|" + "---:|" * len(MEAN_COLUMNS),
    ]
    for name, group in groups.items():
        cells = []
        for column in MEAN_COLUMNS:
            values = [r[column] for r in group if isinstance(r.get(column), float) and math.isfinite(r[column])]
            digits = 1 if column.endswith("across") else 3
            cells.append(
                f"{statistics.fmean(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"
                if values
                else "–"
            )
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    return lines


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
        rows.append(arm_row(arm, read_run(run_dir), walls.get(arm.name, math.nan)))
    with (out / "search.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out / "search.md").write_text(markdown(rows, references, command), encoding="utf-8")
    write_curves({arm.name: runs / arm.name for arm in arms}, out)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m results.recipe_search",
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
            wanted = [n for n in args.only.split(",") if n]
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
            shlex.join(["python", "-m", "results.recipe_search", *raw]),
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"results.recipe_search: error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write((args.out / "search.md").read_text(encoding="utf-8"))
    print(f"wrote {args.out / 'search.md'}, search.csv, curves.md and curves.png ({len(rows)} arms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
