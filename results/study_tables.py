"""The study report's tables and sentences about pretraining, layers, phone ABX and compute: pure functions of the
collected arms (results/study_collect.py)."""

from __future__ import annotations

import math
import statistics
from typing import Hashable, Iterable, Sequence

from results.study_collect import ArmResult

TRAINING_KEYS = (
    "teacher_rho",
    "teacher_span_rho",
    "student_rho",
    "student_span_rho",
    "hardness_lift",
    "masked_fraction",
    "alpha",
)
TRAINING_HEADERS = (
    "teacher rho",
    "teacher span rho",
    "student rho",
    "student span rho",
    "hardness lift",
    "masked fraction",
    "alpha",
)
CURVE_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # where the training table samples the logged steps
PROBE_ORDER = ("phone", "keyword", "logmel", "speaker")


def grouped_means(
    entries: Iterable[tuple[Hashable, Hashable, float]], sort_outer: bool = False, sort_inner: bool = False
) -> dict:
    """(outer, inner, value) entries -> outer -> inner -> mean of the values, in first-seen or sorted order."""
    values: dict = {}
    for outer, inner, value in entries:
        values.setdefault(outer, {}).setdefault(inner, []).append(value)
    return {
        outer: {
            inner: statistics.fmean(values[outer][inner])
            for inner in (sorted(values[outer]) if sort_inner else values[outer])
        }
        for outer in (sorted(values) if sort_outer else values)
    }


def sample_steps(records: Sequence[dict], fractions: Sequence[float] = CURVE_FRACTIONS) -> list[int]:
    """The logged steps nearest to each fraction of the last logged step (duplicates dropped)."""
    steps = sorted({r["step"] for r in records})
    if not steps:
        return []
    last = steps[-1]
    return list(dict.fromkeys(min(steps, key=lambda s: abs(s - f * last)) for f in fractions))


def training_means(arms: Sequence[ArmResult], condition: str) -> dict[int, dict[str, float]]:
    """step -> key -> mean over the seeds that logged that step (unmeasured rho columns left out)."""
    return grouped_means(
        (
            (record["step"], key, float(record[key]))
            for arm in arms
            if arm.condition == condition
            for record in arm.training
            for key in TRAINING_KEYS
            if math.isfinite(record.get(key, math.nan)) and arm.rho_measured.get(key, True)
        ),
        sort_outer=True,
    )


def training_table(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> str:
    lines = ["| condition | step | " + " | ".join(TRAINING_HEADERS) + " |", "|---|---:|" + "---:|" * len(TRAINING_KEYS)]
    for condition in conditions:
        means = training_means(arms, condition)
        if not means:
            continue
        records = [{"step": s} for s in means]
        for step in sample_steps(records):
            row = means[step]
            cells = [f"{row[k]:.3f}" if math.isfinite(row.get(k, math.nan)) else "n/a" for k in TRAINING_KEYS]
            lines.append(f"| {labels.get(condition, condition)} | {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def training_sentences(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> list[str]:
    sentences = []
    for condition in conditions:
        means = training_means(arms, condition)
        if not means:
            continue
        steps = list(means)
        first, last = means[steps[0]], means[steps[-1]]
        label = labels.get(condition, condition)
        for key, what in (("teacher_rho", "teacher predictor"), ("student_rho", "student predictor")):
            if key in first and key in last:
                peak_step = max(steps, key=lambda s: means[s].get(key, -math.inf))
                sentences.append(
                    f"{label}: the {what}'s Spearman rho with the realised per-frame loss goes from "
                    f"{first[key]:.2f} (step {steps[0]}) to {last[key]:.2f} (step {steps[-1]}), peaking at "
                    f"{means[peak_step][key]:.2f} (step {peak_step})."
                )
        fractions = [means[s]["masked_fraction"] for s in steps if "masked_fraction" in means[s]]
        if fractions:
            sentences.append(
                f"{label}: realised masked fraction {min(fractions):.3f} to {max(fractions):.3f} over training."
            )
    return sentences


def layerwise_means(arms: Sequence[ArmResult], condition: str) -> dict[str, dict[int, float]]:
    """probe -> layer -> mean value over seeds."""
    return grouped_means(
        (
            (row["probe"], row["layer"], row["value"])
            for arm in arms
            if arm.condition == condition
            for row in arm.layerwise
        ),
        sort_inner=True,
    )


def layerwise_table(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> str:
    probes = [p for p in PROBE_ORDER if any(layerwise_means(arms, c).get(p) for c in conditions)]
    lines = [
        "| condition | " + " | ".join(f"{p}: best layer (value) / last layer" for p in probes) + " |",
        "|---|" + "---|" * len(probes),
    ]
    for condition in conditions:
        means = layerwise_means(arms, condition)
        if not means:
            continue
        cells = []
        for probe in probes:
            curve = means.get(probe)
            if not curve:
                cells.append("n/a")
                continue
            best = max(curve, key=curve.get)
            cells.append(f"{best} ({curve[best]:.3f}) / {curve[max(curve)]:.3f}")
        lines.append(f"| {labels.get(condition, condition)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def layerwise_sentences(arms: Sequence[ArmResult], a: str, b: str, labels: dict[str, str]) -> list[str]:
    ma, mb = layerwise_means(arms, a), layerwise_means(arms, b)
    sentences = []
    for probe in PROBE_ORDER:
        if ma.get(probe) and mb.get(probe):
            ba, bb = max(ma[probe], key=ma[probe].get), max(mb[probe], key=mb[probe].get)
            va, vb = ma[probe][ba], mb[probe][bb]
            # compared as printed: a difference below the third decimal is not stated as one
            shown_a, shown_b = round(va, 3), round(vb, 3)
            relation = "higher than" if shown_a > shown_b else "lower than" if shown_a < shown_b else "equal to"
            sentences.append(
                f"{probe} probe, best layer: {labels.get(a, a)} {va:.3f} (layer {ba}) is {relation} "
                f"{labels.get(b, b)} {vb:.3f} (layer {bb})."
            )
    return sentences


def abx_means(arms: Sequence[ArmResult], condition: str) -> dict[int, dict[str, float]]:
    """layer -> ABX condition -> mean error over seeds, of the arm's own representation (references left out)."""
    from measure.abx.features import REFERENCES

    return grouped_means(
        (
            (row["layer"], row["condition"], row["error"])
            for arm in arms
            if arm.condition == condition
            for row in arm.abx
            if row["representation"] not in REFERENCES
        ),
        sort_outer=True,
    )


def abx_table(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> str:
    """Best layer by mean across-speaker error, its within and across error, and the last layer's across error;
    then the reference rows of the first arm that scored them (the same items for every arm)."""
    from measure.abx.features import REFERENCES
    from measure.abx.summary import best_layer

    lines = ["| representation | best layer | within % | across % | last layer across % |", "|---|---:|---:|---:|---:|"]
    for condition in conditions:
        means = abx_means(arms, condition)
        if means:
            best = best_layer(means)
            lines.append(
                f"| {labels.get(condition, condition)} | {best} | {means[best].get('within', math.nan):.1f} | "
                f"{means[best].get('across', math.nan):.1f} | "
                f"{means[max(means)].get('across', math.nan):.1f} |"
            )
    references = next((a.abx for a in arms if any(r["representation"] in REFERENCES for r in a.abx)), [])
    for name in REFERENCES:
        errors = {r["condition"]: r["error"] for r in references if r["representation"] == name}
        if errors:
            lines.append(
                f"| {name} (reference) | – | {errors.get('within', math.nan):.1f} | "
                f"{errors.get('across', math.nan):.1f} | – |"
            )
    return "\n".join(lines) + "\n"


def abx_monitor_means(arms: Sequence[ArmResult], condition: str) -> dict[int, dict[str, float]]:
    """step -> best_within / best_across -> mean over seeds, from the pretrainer's ABX monitor."""
    return grouped_means(
        (
            (record["step"], key, record["abx"][key])
            for arm in arms
            if arm.condition == condition
            for record in arm.abx_monitor
            for key in ("best_within", "best_across")
        ),
        sort_outer=True,
    )


def abx_monitor_table(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> str:
    lines = ["| condition | step | best layer within % | best layer across % |", "|---|---:|---:|---:|"]
    for condition in conditions:
        for step, row in abx_monitor_means(arms, condition).items():
            lines.append(
                f"| {labels.get(condition, condition)} | {step} | {row['best_within']:.1f} | {row['best_across']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def abx_sentences(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> list[str]:
    from measure.abx.summary import best_layer

    sentences = []
    for condition in conditions:
        means = abx_means(arms, condition)
        if means:
            best = best_layer(means)
            sentences.append(
                f"{labels.get(condition, condition)}: best phone ABX layer {best}, "
                f"{means[best].get('within', math.nan):.1f} % within / "
                f"{means[best].get('across', math.nan):.1f} % across speaker (chance 50)."
            )
    return sentences


def compute_table(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str]) -> str:
    lines = [
        "| condition | seeds | pretraining updates | audio seen (s) | pretraining time (s) | "
        "pretrain stage wall (s) | downstream wall (s) | layerwise wall (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for condition in conditions:
        mine = [a for a in arms if a.condition == condition]
        if not mine:
            continue

        def mean(values: list[float]) -> str:
            return f"{statistics.fmean(values):.0f}" if values else "0"

        lines.append(
            f"| {labels.get(condition, condition)} | {len(mine)} | {mean([a.updates for a in mine])} | "
            f"{mean([a.audio_seconds for a in mine])} | {mean([a.train_seconds for a in mine])} | "
            f"{mean([a.wall_s.get('pretrain', 0.0) for a in mine])} | "
            f"{mean([a.wall_s.get('downstream', 0.0) for a in mine])} | "
            f"{mean([a.wall_s.get('layerwise', 0.0) for a in mine])} |"
        )
    return "\n".join(lines) + "\n"
