"""The study's figures: training curves and layer-wise probe curves per arm (mean over seeds)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from results.study_collect import ArmResult
from results.study_tables import PROBE_ORDER, TRAINING_KEYS, layerwise_means, training_means


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_panels(plt, fig, axes, path: Path) -> None:
    """The same finish for every study figure: a light grid and a legend on each panel that has lines."""
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str], path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(17, 6.5))
    for ax, key in zip(axes.flat, TRAINING_KEYS):
        for condition in conditions:
            means = training_means(arms, condition)
            points = [(s, v[key]) for s, v in means.items() if key in v]
            if points:
                ax.plot(*zip(*points), label=labels.get(condition, condition))
        ax.set_title(key.replace("_", " "), fontsize=9)
        ax.set_xlabel("update")
    for ax in axes.flat[len(TRAINING_KEYS) :]:
        ax.axis("off")
    _save_panels(plt, fig, axes.flat[: len(TRAINING_KEYS)], path)


def plot_layerwise_curves(
    arms: Sequence[ArmResult], conditions: Sequence[str], labels: dict[str, str], path: Path
) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(PROBE_ORDER), figsize=(4 * len(PROBE_ORDER), 3.6), squeeze=False)
    for ax, probe in zip(axes[0], PROBE_ORDER):
        for condition in conditions:
            curve = layerwise_means(arms, condition).get(probe)
            if curve:
                ax.plot(list(curve), list(curve.values()), marker="o", label=labels.get(condition, condition))
        ax.set_title(f"{probe} ({'R^2' if probe == 'logmel' else 'accuracy'})", fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.0)  # 0-1 scale; a negative R^2 stays visible
    _save_panels(plt, fig, axes[0], path)
