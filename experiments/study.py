"""Does easy-to-hard masking help? Pretrain EH-MAM and its ablations over seeds, run the seven SUPERB tasks and
the layer-wise probes on each, and write OUT/study.md (every sentence in it is computed from the numbers).

    python -m experiments.study --scale ci --seeds 0,1 --steps 300 --task-steps 60 --out results/study
    python -m experiments.study --out results/study --report-only      # rebuild study.md from what is on disk

The command line only: experiments/study_arms.py runs the arms, results/study_collect.py reads what they left,
results/study_report.py writes the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

from experiments.corpus import add_corpus_flags, prepare_corpus
from experiments.options import (
    names_from,
    parse_folds,
    parse_profile,
    parse_seeds,
    parse_task_steps,
    parse_tasks,
    positive_int,
)
from experiments.pretraining import pretrain_manifest
from experiments.study_arms import StudySettings, default_conditions, pretrain_argv, run_study_arms
from results.paths import REPO, repo_relative, shown
from results.study_collect import condition_dir
from results.study_report import StudyMeta, write_report
from superb.registry import ER_FOLDS, TASK_NAMES
from trainkit.cli import refuse_old_spellings

log = logging.getLogger("study")

STUDY_JSON = "study.json"


def parse_conditions(text: str) -> list[str]:
    return names_from("--conditions", text, list(default_conditions()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("results/study"))
    add_corpus_flags(parser)
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2], help="comma-separated study seeds")
    parser.add_argument("--steps", type=positive_int, default=1000, help="pretraining updates per arm")
    parser.add_argument(
        "--profile",
        type=parse_profile,
        default="cpu",
        help="downstream profile in downstream_configs/profiles/ (default cpu), or none: the "
        "official configs with small CPU batches for --task-steps updates",
    )
    parser.add_argument(
        "--task-steps",
        type=parse_task_steps,
        default=None,
        help="downstream updates per task: N, or N,TASK=M,... to give some tasks M "
        "(default: the profile's schedule; without a profile 60)",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="downstream runs at a time beside the pretraining of the next arm (one thread each)",
    )
    parser.add_argument(
        "--conditions",
        type=parse_conditions,
        default=list(default_conditions()),
        help="comma-separated arms: " + ",".join(default_conditions()),
    )
    parser.add_argument("--tasks", type=parse_tasks, default=list(TASK_NAMES), help="comma-separated SUPERB tasks")
    parser.add_argument("--er-folds", type=parse_folds, default=list(ER_FOLDS))
    parser.add_argument("--pretrain-config", type=Path, default=REPO / "pretrain" / "cpu_recipe.yaml")
    parser.add_argument(
        "--pretrain-manifest",
        type=Path,
        default=None,
        help="fairseq TSV to pretrain every arm on (default: DATA/pretrain/train.tsv), e.g. the "
        "pretraining set of a larger mini-SUPERB while the tasks run on a ci corpus",
    )
    parser.add_argument(
        "--max-utterances", type=positive_int, default=200, help="results.layerwise --max-utterances for each arm"
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild study.md and the figures from OUT")
    refuse_old_spellings(parser, "--probe-utterances")
    return parser


def settings_from_args(args: argparse.Namespace) -> StudySettings:
    task_steps = args.task_steps
    if args.profile is None and task_steps is None:
        task_steps = parse_task_steps("60")
    return StudySettings(
        args.out.absolute(),
        args.seeds,
        args.conditions,
        args.steps,
        args.pretrain_config.absolute(),
        args.pretrain_manifest,
        args.profile,
        task_steps,
        args.tasks,
        args.er_folds,
        args.jobs,
        args.max_utterances,
        abx_monitor=True,
    )


def settings_from_record(record: dict, out: Path) -> StudySettings:
    """The settings a study.json recorded, read with the defaults of studies run before a key existed."""
    task_steps = record["task_steps"]
    if isinstance(task_steps, int):  # a study.json written before per-task counts
        task_steps = parse_task_steps(str(task_steps))
    manifest = record.get("pretrain_manifest")
    return StudySettings(
        out.absolute(),
        record["seeds"],
        record["conditions"],
        record["steps"],
        REPO / record["pretrain_config"],
        REPO / manifest if manifest else None,
        profile=record.get("profile"),  # studies run before profiles: the official configs
        task_steps=task_steps,
        er_folds=record.get("er_folds", list(ER_FOLDS)),
        abx_monitor=record.get("abx_monitor", False),  # studies run before the monitor existed
        tasks=record.get("tasks", list(TASK_NAMES)),
    )  # studies run before the record named them ran all seven


def run_study(args: argparse.Namespace, raw: Sequence[str]) -> tuple[StudySettings, Path, str]:
    """Record study.json, then run every arm; returns what the report needs."""
    settings = settings_from_args(args)
    command = shlex.join(["python", "-m", "experiments.study", *(repo_relative(a) for a in raw)])
    settings.out.mkdir(parents=True, exist_ok=True)
    data, _ = prepare_corpus(args.data, settings.out, args.scale, args.corpus_seed)
    (settings.out / STUDY_JSON).write_text(
        json.dumps(settings.record(command, data), indent=1) + "\n", encoding="utf-8"
    )
    start = time.monotonic()
    run_study_arms(settings, data)
    log.info("all arms done in %.0f s", time.monotonic() - start)
    return settings, data, command


def study_meta(settings: StudySettings, data: Path, command: str) -> StudyMeta:
    """What the report says about how the study was run: its settings, arms and one seed's pretraining commands."""
    from minisuperb import read_marker

    conditions = default_conditions()
    marker = read_marker(data) if data.is_dir() else None
    first = settings.seeds[0]
    pretrain_commands = {
        name: shown(
            pretrain_argv(
                conditions[name],
                first,
                settings.pretrain_config,
                pretrain_manifest(settings.pretrain_manifest, data),
                condition_dir(settings.out, name, first) / "pretrain",
                settings.steps,
                data if settings.abx_monitor else None,
            )
        )
        for name in settings.conditions
        if conditions[name].source == "pretrain"
    }
    return StudyMeta(
        command,
        list(settings.seeds),
        list(settings.conditions),
        {name: c.label for name, c in conditions.items()},
        {name: c.about for name, c in conditions.items()},
        repo_relative(data),
        f"mini-SUPERB synthetic, scale {marker.get('scale')}" if marker else "real corpora or unknown",
        settings.steps,
        settings.task_steps,
        list(settings.er_folds),
        pretrain_commands,
        settings.profile,
        list(settings.tasks),
    )


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    if args.report_only:
        # the run's own settings, so the report describes what was run, not this command's defaults
        record_path = args.out.absolute() / STUDY_JSON
        if not record_path.is_file():
            print(
                f"experiments.study: error: {record_path} is missing: no study was run in {args.out.absolute()}",
                file=sys.stderr,
            )
            return 2
        record = json.loads(record_path.read_text(encoding="utf-8"))
        settings = settings_from_record(record, args.out)
        data, command = REPO / record["data"], record["command"]  # relative paths: to the repository root
    else:
        settings, data, command = run_study(args, raw)
    path = write_report(study_meta(settings, data, command), settings.out)
    sys.stdout.write(path.read_text(encoding="utf-8"))
    print(f"wrote {path}, {settings.out / 'training_curves.png'}, {settings.out / 'layerwise_curves.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
