"""Which layers each SUPERB task used: softmax of the learned weighted-sum (Featurizer) weights per run.

    python -m results.layer_weights result/downstream/ehmam_* --out results/layer_weights.png [--csv PATH]

Each argument is an s3prl run dir (or a folder holding some); its dev-best checkpoint is read (else the newest
states-*.ckpt). Writes the plot and a CSV (run_dir, task, fold, checkpoint, step, layer, weight).
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from results.run_dirs import Invocation, RunDirError, identify_task, read_each_run_dir, read_run_dir
from superb.registry import TASK_LABELS

log = logging.getLogger("layer_weights")

CSV_COLUMNS = ("run_dir", "task", "fold", "checkpoint", "step", "layer", "weight")


@dataclass
class RunWeights:
    """The normalised layer weights of one downstream run."""

    run_dir: Path
    task: str
    fold: str | None
    checkpoint: Path
    step: int | None
    weights: list[float]  # softmax over the upstream's hidden states, layer 0 first

    @property
    def label(self) -> str:
        return f"{self.task} {self.fold}" if self.fold else self.task


def pick_checkpoint(run_dir: Path) -> Path:
    """The dev-best checkpoint s3prl kept (dev-best.ckpt, ASR dev-clean-best.ckpt), else the newest states-N."""
    best = sorted(run_dir.glob("*best*.ckpt"))
    if best:
        return best[0]
    states = sorted(
        run_dir.glob("states-*.ckpt"),
        key=lambda p: int(m.group(1)) if (m := re.fullmatch(r"states-(\d+)\.ckpt", p.name)) else -1,
    )
    if not states:
        raise FileNotFoundError(f"{run_dir}: no dev-best.ckpt, *-best.ckpt or states-*.ckpt; train the run first")
    return states[-1]


def load_downstream_checkpoint(path: Path) -> dict:
    # s3prl pickles an argparse.Namespace ("Args") into its checkpoints, so weights_only=True refuses them;
    # these are the user's own files from their own runs, so full unpickling is acceptable here.
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is reported with the file name
        raise ValueError(f"{path}: cannot read the s3prl checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected an s3prl checkpoint dict, found {type(checkpoint).__name__}")
    return checkpoint


def featurizer_logits(checkpoint: dict, source: Path) -> torch.Tensor:
    """The raw (pre-softmax) weighted-sum parameters: checkpoint['Featurizer']['weights'], a 1-D tensor."""
    featurizer = checkpoint.get("Featurizer")
    if featurizer is None:
        raise ValueError(
            f"{source}: no 'Featurizer' entry (keys: {', '.join(map(str, checkpoint))}); "
            "not an s3prl downstream checkpoint"
        )
    if not isinstance(featurizer, dict) or "weights" not in featurizer:
        found = ", ".join(map(str, featurizer)) if isinstance(featurizer, dict) else type(featurizer).__name__
        raise ValueError(
            f"{source}: 'Featurizer' has no learned 'weights' (found: {found or 'nothing'}); the run "
            "used a single hidden state (-l LAYER, or an upstream with one layer such as fbank)"
        )
    logits = featurizer["weights"]
    if not isinstance(logits, torch.Tensor) or logits.dim() != 1 or logits.numel() < 2:
        raise ValueError(
            f"{source}: 'Featurizer.weights' must be a 1-D tensor over >= 2 layers, found "
            f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}"
        )
    return logits.detach().float()


def task_of(run_dir: Path, checkpoint: dict) -> tuple[str, str | None]:
    """(task, ER fold) from the run dir's args/config YAMLs, else from the checkpoint's own Args/Config."""
    try:
        run = read_run_dir(run_dir)
        return run.task, run.fold
    except RunDirError as error:
        log.info("%s; using the task stored in the checkpoint", error)

    args = checkpoint.get("Args")
    args = vars(args) if args is not None and hasattr(args, "__dict__") else dict(args or {})
    config = checkpoint.get("Config") or {}
    task = identify_task(run_dir, [Invocation("checkpoint", args, config)])
    fold = config.get("downstream_expert", {}).get("datarc", {}).get("test_fold") if task == "ER" else None
    return task, fold


def read_run_weights(run_dir: Path) -> RunWeights:
    """The softmax layer weights of one run dir's chosen checkpoint."""
    run_dir = Path(run_dir)
    path = pick_checkpoint(run_dir)
    checkpoint = load_downstream_checkpoint(path)
    weights = torch.softmax(featurizer_logits(checkpoint, path), dim=-1)  # as s3prl's Featurizer does
    task, fold = task_of(run_dir, checkpoint)
    step = checkpoint.get("Step")
    return RunWeights(run_dir, task, fold, path, int(step) if isinstance(step, int) else None, weights.tolist())


def collect(paths: Sequence[Path]) -> tuple[list[RunWeights], list[tuple[Path, str]]]:
    """Run weights for every run dir given or found under the given folders, and what was skipped and why."""
    found, skipped = read_each_run_dir(paths, read_run_weights, (FileNotFoundError, ValueError))
    order = {task: i for i, task in enumerate(TASK_LABELS)}
    found.sort(key=lambda r: (order.get(r.task, len(order)), r.fold or "", str(r.run_dir)))
    return found, skipped


def csv_rows(runs: Sequence[RunWeights]) -> list[dict]:
    return [
        {
            "run_dir": str(r.run_dir),
            "task": r.task,
            "fold": r.fold or "",
            "checkpoint": r.checkpoint.name,
            "step": "" if r.step is None else r.step,
            "layer": layer,
            "weight": f"{w:.6f}",
        }
        for r in runs
        for layer, w in enumerate(r.weights)
    ]


def plot_curves(runs: Sequence[RunWeights]) -> dict[str, list[float]]:
    """One curve per task: ER folds are averaged (SUPERB's ER score is their mean); runs of one task from
    different run dirs that are not ER folds keep their own curve, named by the run dir."""
    curves: dict[str, list[list[float]]] = {}
    tasks = [r.task for r in runs if r.task != "ER"]
    for run in runs:
        if run.task == "ER":
            name = "ER"
        else:
            name = run.task if tasks.count(run.task) == 1 else f"{run.task} ({run.run_dir.name})"
        curves.setdefault(name, []).append(run.weights)
    averaged = {}
    for name, members in curves.items():
        if len({len(w) for w in members}) != 1:
            raise ValueError(
                f"{name}: runs with different layer counts ({sorted({len(w) for w in members})}); "
                "pass runs of one upstream"
            )
        mean = torch.tensor(members).mean(0).tolist()
        averaged[name if len(members) == 1 else f"{name} (mean of {len(members)})"] = mean
    return averaged


def plot(runs: Sequence[RunWeights], path: Path, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = plot_curves(runs)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, weights in curves.items():
        ax.plot(range(len(weights)), weights, marker="o", label=name)
    n_layers = max(len(w) for w in curves.values())
    ax.axhline(1.0 / n_layers, color="grey", linestyle=":", linewidth=1, label=f"uniform (1/{n_layers})")
    ax.set_xlabel("hidden state (0 = first, e.g. the transformer input for ehmam)")
    ax.set_ylabel("softmax weight")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "learned weighted-sum layer weights per task", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m results.layer_weights",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, help="s3prl run dirs, or folders holding them")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--csv", type=Path, default=None, help="CSV to write (default: the PNG path with .csv)")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    runs, skipped = collect(args.run_dirs)
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    if not runs:
        print(
            "results.layer_weights: error: no run dir with learned layer weights under: "
            + ", ".join(map(str, args.run_dirs)),
            file=sys.stderr,
        )
        return 2
    try:
        plot(runs, args.out, args.title)
    except ValueError as error:
        print(f"results.layer_weights: error: {error}", file=sys.stderr)
        return 2
    csv_path = args.csv or args.out.with_suffix(".csv")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_rows(runs))
    for run in runs:
        print(f"{run.label:10s} {run.checkpoint.name:22s} " + " ".join(f"{w:.3f}" for w in run.weights))
    print(f"wrote {args.out} and {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
