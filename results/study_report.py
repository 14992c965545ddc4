"""The study report (study.md): score summaries over seeds, arm-against-arm comparisons, and the document that
puts them beside the tables of results/study_tables.py and the figures of results/study_figures.py."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from results.abx import ABX_FILES, ABX_SPLITS
from results.study_collect import ArmResult, collect_arm, condition_dir
from results.study_figures import plot_layerwise_curves, plot_training
from results.study_tables import (
    abx_monitor_table,
    abx_sentences,
    abx_table,
    compute_table,
    layerwise_sentences,
    layerwise_table,
    training_sentences,
    training_table,
)
from superb.registry import ER_FOLDS, METRICS, TASK_HEADERS, TASK_LABELS, TASK_NAMES, TASKS


@dataclass(frozen=True)
class Summary:
    """Over seeds: mean, sample std (0 for one seed), min, max, count."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 2) -> str:
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def summarise(values: Sequence[float]) -> Summary:
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarise: no values")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Summary(statistics.fmean(values), std, min(values), max(values), len(values))


def score_summaries(arms: Sequence[ArmResult]) -> dict[str, dict[str, Summary]]:
    """condition -> metric -> Summary over the seeds that have the metric."""
    values: dict[str, dict[str, list[float]]] = {}
    for arm in arms:
        for metric, value in arm.scores.items():
            values.setdefault(arm.condition, {}).setdefault(metric, []).append(value)
    return {c: {m: summarise(v) for m, v in metrics.items()} for c, metrics in values.items()}


def better(metric: str, a: float, b: float) -> bool:
    return METRICS[metric].better(a, b)


@dataclass(frozen=True)
class Comparison:
    """Task by task, condition A against condition B on the seed means."""

    wins: tuple[str, ...]
    losses: tuple[str, ...]
    ties: tuple[str, ...]
    clear_wins: tuple[str, ...]  # A's worst seed beats B's best seed
    clear_losses: tuple[str, ...]
    seeds: int = 0  # the fewest seeds behind any compared mean

    @property
    def compared(self) -> int:
        return len(self.wins) + len(self.losses) + len(self.ties)


def compare(a: dict[str, Summary], b: dict[str, Summary], tasks: Sequence[str] = TASK_LABELS) -> Comparison:
    wins, losses, ties, clear_wins, clear_losses = [], [], [], [], []
    seeds = []
    for task in tasks:
        if task not in a or task not in b:
            continue
        sa, sb = a[task], b[task]
        seeds.append(min(sa.n, sb.n))
        if better(task, sa.mean, sb.mean):
            wins.append(task)
            worst_a, best_b = (sa.low, sb.high) if METRICS[task].higher_is_better else (sa.high, sb.low)
            if better(task, worst_a, best_b):
                clear_wins.append(task)
        elif better(task, sb.mean, sa.mean):
            losses.append(task)
            worst_b, best_a = (sb.low, sa.high) if METRICS[task].higher_is_better else (sb.high, sa.low)
            if better(task, worst_b, best_a):
                clear_losses.append(task)
        else:
            ties.append(task)
    return Comparison(*map(tuple, (wins, losses, ties, clear_wins, clear_losses)), seeds=min(seeds, default=0))


def comparison_sentence(label_a: str, label_b: str, result: Comparison) -> str:
    """E.g. 'EH-MAM beats random masking on 4 of 7 tasks (mean over 2 seeds: KS, IC, SID, ER); ...'."""
    if result.compared == 0:
        return f"{label_a} vs {label_b}: no task has scores for both."
    n = result.seeds
    seeds = f"mean over {n} seed{'s' if n != 1 else ''}" if n > 1 else "one seed"
    listed = f": {', '.join(result.wins)}" if result.wins else ""
    sentence = (
        f"{label_a} beats {label_b} on {len(result.wins)} of {result.compared} tasks ({seeds}{listed}); "
        f"{label_b} is better on {len(result.losses)}"
    )
    sentence += f" and they tie on {len(result.ties)}." if result.ties else "."
    if n > 1:
        sentence += (
            f" Beyond the seed spread (every seed of one better than every seed of the other): "
            f"{label_a} on {len(result.clear_wins)}, {label_b} on {len(result.clear_losses)}."
        )
    else:
        sentence += " With one seed there is no spread, so no difference here is shown to exceed seed noise."
    return sentence


def studied_labels(tasks: Sequence[str]) -> list[str]:
    """The labels ("PR", ...) of the studied task names ("pr", ...), in the registry's order."""
    return [TASKS[name].label for name in TASK_NAMES if name in tasks]


def score_table(
    summaries: dict[str, dict[str, Summary]],
    conditions: Sequence[str],
    labels: dict[str, str],
    tasks: Sequence[str] = TASK_NAMES,
) -> str:
    metrics = [m.key for name in TASK_NAMES if name in tasks for m in TASKS[name].metrics]  # SF: F1, then CER
    lines = ["| condition | " + " | ".join(METRICS[m].header for m in metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for condition in conditions:
        mine = summaries.get(condition, {})
        cells = [mine[m].text() if m in mine else "missing" for m in metrics]
        lines.append(f"| {labels.get(condition, condition)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass
class StudyMeta:
    """What the report says about how the study was run."""

    command: str
    seeds: list[int]
    conditions: list[str]
    labels: dict[str, str]
    about: dict[str, str]
    data: str
    scale: str
    steps: int
    task_steps: dict[str, int] | None  # task -> downstream updates; None: the profile's schedule
    er_folds: list[int] = field(default_factory=lambda: list(ER_FOLDS))
    pretrain_commands: dict[str, str] = field(default_factory=dict)  # condition -> one seed's command
    profile: str | None = None  # the downstream profile (downstream_configs/profiles/)
    tasks: list[str] = field(default_factory=lambda: list(TASK_NAMES))  # the SUPERB tasks the study ran


def describe_task_steps(steps: dict[str, int], tasks: Sequence[str] = TASK_NAMES) -> str:
    """ "60 updates per task" or "300 updates per task (KS 2000, IC 2000)"."""
    counts = [steps[t] for t in tasks]
    common = max(sorted(set(counts)), key=counts.count)
    others = ", ".join(f"{t.upper()} {steps[t]}" for t in tasks if steps[t] != common)
    return f"{common} updates per task" + (f" ({others})" if others else "")


def er_folds_text(folds: Sequence[int]) -> str:
    if tuple(folds) == ER_FOLDS:
        return "ER: all five folds, averaged"
    return f"ER: fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))} of {len(ER_FOLDS)}"


def downstream_text(profile: str | None, task_steps: dict[str, int] | None) -> str:
    schedule = describe_task_steps(task_steps) if task_steps else "the profile's schedule"
    return f"profile {profile}, {schedule}" if profile else f"official configs, {schedule}"


def build_report(meta: StudyMeta, arms: Sequence[ArmResult]) -> str:
    """study.md from the collected numbers; every comparative sentence is computed here."""
    labels, conditions = meta.labels, meta.conditions
    summaries = score_summaries(arms)
    parts = header_section(meta)
    parts += ["## Findings (computed from the tables below)", ""]
    parts += [f"- {s}" for s in findings(meta, arms, summaries)] + [""]
    parts += ["## SUPERB tasks", "", score_table(summaries, conditions, labels, meta.tasks)]
    parts += [
        "## Loss predictor and masking over training",
        "",
        "Spearman rho between predicted and realised per-frame loss (student: the predictor trained by the "
        "ranking loss; teacher: its copy that picks the hard spans, per frame and per span), the hardness lift "
        "(realised loss in hard-picked spans over that in random spans of the same rows; 1 = no harder than "
        "chance), realised masked fraction and the curriculum's alpha, mean over seeds at a few logged steps. "
        "n/a: not measured by that arm (a NaN record, e.g. the lift while alpha is 0, is left out).",
        "",
        training_table(arms, conditions, labels),
        "![training curves](training_curves.png)",
        "",
    ]
    parts += [
        "## What each layer knows",
        "",
        "Linear probes per hidden state on held-out speakers (results.layerwise): phone frame accuracy, "
        "keyword accuracy, R^2 of a ridge map to log-mel, speaker accuracy; mean over seeds.",
        "",
        layerwise_table(arms, conditions, labels),
        "![layer-wise probes](layerwise_curves.png)",
        "",
    ]
    if any(a.abx for a in arms):
        parts += [
            "## Phone ABX per layer",
            "",
            f"Triphone phone ABX error (results.abx) on the first {ABX_FILES} utterances of "
            f"{', '.join(ABX_SPLITS)}, mean over "
            "seeds; the best layer is the one with the lowest mean across-speaker error. Chance is 50.",
            "",
            abx_table(arms, conditions, labels),
        ]
    if any(a.abx_monitor for a in arms):
        parts += [
            "## Phone ABX during pretraining",
            "",
            "The pretrainer's ABX monitor (run.eval_every): the best student layer's error at each "
            "evaluation, mean over seeds.",
            "",
            abx_monitor_table(arms, conditions, labels),
        ]
    parts += ["## Compute per arm (mean over seeds)", "", compute_table(arms, conditions, labels)]
    parts += per_run_section(arms, conditions, labels, meta.tasks)
    return "\n".join(parts) + "\n"


def header_section(meta: StudyMeta) -> list[str]:
    """The title, the command, how the study was run, and the arms."""
    parts = [
        "# Does easy-to-hard masking help? EH-MAM against its ablations",
        "",
        f"Command: `{meta.command}`",
        "",
        f"Seeds: {', '.join(map(str, meta.seeds))}. Corpus: `{meta.data}` ({meta.scale}). Pretraining: "
        f"{meta.steps} updates per arm, same config, batch size and warm-up for every pretrained arm. "
        f"Downstream: {', '.join(studied_labels(meta.tasks))}; {downstream_text(meta.profile, meta.task_steps)}"
        f"{f' ({er_folds_text(meta.er_folds)})' if 'er' in meta.tasks else ''}, s3prl --seed = study seed. "
        "Scores are test-set SUPERB units (%), mean ± sample std [min, max] over seeds.",
        "",
    ]
    if "synthetic" in meta.scale or "mini-SUPERB" in meta.scale:
        parts += [
            "> Synthetic mini-SUPERB data and a few CPU updates: these numbers compare the arms with each "
            "other under this budget; they are not SUPERB results.",
            "",
        ]
    parts += ["## Arms", "", "| condition | what | pretraining command (first seed) |", "|---|---|---|"]
    for c in meta.conditions:
        command = meta.pretrain_commands.get(c, "")
        parts.append(
            f"| {meta.labels.get(c, c)} (`{c}`) | {meta.about.get(c, '')} | {'`' + command + '`' if command else '—'} |"
        )
    return parts + [""]


def findings(meta: StudyMeta, arms: Sequence[ArmResult], summaries: dict[str, dict[str, Summary]]) -> list[str]:
    """EH-MAM against every other arm, then the layer, training and ABX sentences."""
    labels, conditions = meta.labels, meta.conditions
    reference = "ehmam"
    sentences = []
    if reference in summaries:
        for other in conditions:
            if other != reference and other in summaries:
                result = compare(summaries[reference], summaries[other], studied_labels(meta.tasks))
                sentences.append(
                    comparison_sentence(labels.get(reference, reference), labels.get(other, other), result)
                )
    else:
        sentences.append("EH-MAM has no scores, so no comparison is made.")
    if "random_mask" in conditions:
        sentences += layerwise_sentences(arms, reference, "random_mask", labels)
    sentences += training_sentences(arms, conditions, labels)
    return sentences + abx_sentences(arms, conditions, labels)


def per_run_section(
    arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str], tasks: Sequence[str] = TASK_NAMES
) -> list[str]:
    """Each seed's SUPERB row as results.tabulate prints it, for the studied tasks."""
    shown_labels = studied_labels(tasks)
    parts = [
        "## Per-run scores",
        "",
        "Each seed's SUPERB row with its 95 % interval and the chance level of the test set (as "
        "results.tabulate prints them; per-arm tables in seed*/<condition>/superb.md).",
        "",
        "| condition | seed | " + " | ".join(TASK_HEADERS[t] for t in shown_labels) + " | problems |",
        "|---|---:|" + "---|" * len(shown_labels) + "---|",
    ]
    for arm in sorted(arms, key=lambda a: (conditions.index(a.condition) if a.condition in conditions else 99, a.seed)):
        cells = [arm.cells.get(t) or (f"{arm.scores[t]:.2f}" if t in arm.scores else "missing") for t in shown_labels]
        problems = "; ".join(arm.failed).replace("|", "/")
        parts.append(
            f"| {labels.get(arm.condition, arm.condition)} | {arm.seed} | " + " | ".join(cells) + f" | {problems} |"
        )
    return parts


def write_report(meta: StudyMeta, out: Path) -> Path:
    """Collect every arm of `meta` under `out` and write study.md and the two figures there."""
    arms = [collect_arm(out, c, s) for s in meta.seeds for c in meta.conditions if condition_dir(out, c, s).is_dir()]
    out.mkdir(parents=True, exist_ok=True)
    plot_training(arms, meta.conditions, meta.labels, out / "training_curves.png")
    plot_layerwise_curves(arms, meta.conditions, meta.labels, out / "layerwise_curves.png")
    path = out / "study.md"
    path.write_text(build_report(meta, arms), encoding="utf-8")
    return path
