"""Turn s3prl downstream run directories into the SUPERB table (Markdown + CSV).

python -m results.tabulate <run dirs or roots> --out results/ [--name superb] [--title T] [--synthetic | --real]
Scores are recomputed from the files the evaluate run writes (results/scores.py); nothing is guessed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from results.run_dirs import RunDirError, read_each_run_dir, read_run_dir
from results.run_scores import RunScore, merge_separate_evaluations, score_run
from results.tabulate_render import MAIN_COLUMNS as MAIN_COLUMNS  # re-exported for importers of results.tabulate
from results.tabulate_render import csv_text, render_markdown, runs_csv_text
from results.tabulate_rows import DATA_KINDS, Row, build_rows
from superb.registry import TASK_HEADERS as TASK_HEADERS  # re-exported for importers of results.tabulate
from superb.registry import TASK_LABELS

log = logging.getLogger(__name__)


@dataclass
class Report:
    """Everything `tabulate` computed; `markdown` is what is printed and written."""

    rows: list[Row]
    runs: list[RunScore]
    skipped: list[tuple[Path, str]]
    markdown: str
    csv: str
    runs_csv: str


def tabulate(paths: Sequence[Path], title: str | None = None, data_kind: str = "unstated") -> Report:
    """Find, identify and score the run dirs under `paths` and render the report."""
    if data_kind not in DATA_KINDS:
        raise ValueError(f"data_kind must be one of {sorted(DATA_KINDS)}, got {data_kind!r}")
    runs, skipped = read_each_run_dir(paths, read_run_dir, (RunDirError, OSError))
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    order = {task: i for i, task in enumerate(TASK_LABELS)}
    runs.sort(key=lambda r: (r.model_key, order[r.task], r.fold or "", str(r.path)))
    run_scores = merge_separate_evaluations([score_run(run) for run in runs])
    rows = build_rows(run_scores, data_kind)
    return Report(
        rows,
        run_scores,
        skipped,
        render_markdown(rows, run_scores, skipped, title, data_kind),
        csv_text(rows, data_kind),
        runs_csv_text(rows, run_scores),
    )


def write_report(report: Report, out: Path, name: str) -> list[Path]:
    """<out>/<name>.md, <name>.csv and <name>_runs.csv; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in {".md": report.markdown, ".csv": report.csv, "_runs.csv": report.runs_csv}.items():
        path = out / f"{name}{suffix}"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m results.tabulate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="*", type=Path, help="s3prl run dirs, or roots to search")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    parser.add_argument("--name", default="superb", help="file stem: <out>/<name>.md, <name>.csv, <name>_runs.csv")
    parser.add_argument("--title", default=None, help="table title")
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--synthetic",
        action="store_const",
        const="synthetic",
        dest="data_kind",
        help="runs on mini-SUPERB synthetic data: published numbers kept apart",
    )
    data.add_argument(
        "--real",
        action="store_const",
        const="real",
        dest="data_kind",
        help="runs on the real SUPERB corpora: published numbers in the same table",
    )
    parser.add_argument(
        "--lowresource",
        type=Path,
        default=None,
        metavar="RUNS",
        help="also write <out>/lowresource.md and .csv: the fine-tuning runs RUNS/finetune_<split> "
        "(decoded by finetune.decode) beside the published Base rows",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.paths and args.lowresource is None:
        parser.error("give s3prl run dirs, --lowresource RUNS, or both")
    if args.lowresource is not None:
        from results.lowresource import DEFAULT_LABEL, run_folders, write_table

        sys.stdout.write(write_table(run_folders(args.lowresource), DEFAULT_LABEL, args.out) + "\n")
        if not args.paths:
            return 0
    report = tabulate(args.paths, args.title, args.data_kind or "unstated")
    if not report.runs:
        parser.error("no s3prl run directory could be read under: " + ", ".join(map(str, args.paths)))
    written = write_report(report, args.out, args.name)
    sys.stdout.write(report.markdown)
    log.info("wrote %s", ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
