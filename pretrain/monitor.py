"""Phone ABX of every student layer during pretraining, every `run.eval_every` updates and at the end (the loss can
fall while every layer stays at chance); the loop logs it to metrics.jsonl ({"step", "abx"}), TensorBoard (abx/),
the progress bar and abx_curve.tsv (docs/design.md "Health")."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .config import PretrainConfig

CURVE = "abx_curve.tsv"
MONITOR_CONDITIONS = ("within", "across")


class ABXMonitor:
    """The item set, triples and waveforms are prepared once; each evaluation runs the student on them."""

    def __init__(self, config: PretrainConfig, device: torch.device):
        from measure.abx.evaluate import ABXSet
        from measure.abx.items import FrameGeometry, items_from_alignments

        run = config.run
        libri = Path(run.eval_data) / "LibriSpeech"
        if not libri.is_dir():
            raise FileNotFoundError(
                f"run.eval_data: {libri} not found; it must be a corpus root holding "
                f"LibriSpeech/alignments/<split>.jsonl (python -m minisuperb writes one)"
            )
        table = items_from_alignments(libri, run.eval_splits, run.eval_max_files)
        geometry = FrameGeometry(config.model.downsample_rate, config.model.receptive_field)
        self.abx_set = ABXSet(table, [geometry], MONITOR_CONDITIONS)
        self.device = device

    def evaluate(self, encoder: torch.nn.Module) -> dict:
        """{"within"/"across": [error per layer], "best_layer", "best_within", "best_across", "seconds"}."""
        from measure.abx.features import EncoderLayers
        from measure.abx.summary import best_layer, by_representation

        tick = time.perf_counter()
        was_training = encoder.training
        try:
            rows = self.abx_set.evaluate(EncoderLayers(encoder, "student", self.device))
        finally:
            encoder.train(was_training)
        errors = {c: [r["error"] for r in rows if r["condition"] == c] for c in MONITOR_CONDITIONS}
        best = best_layer(by_representation(rows)["student"])
        return {
            **errors,
            "best_layer": best,
            "best_within": errors["within"][best],
            "best_across": errors["across"][best],
            "seconds": time.perf_counter() - tick,
        }


def abx_records(metrics_path: Path) -> list[dict]:
    """The ABX records of a metrics.jsonl, in step order."""
    if not metrics_path.is_file():
        return []
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    return sorted((r for r in records if "abx" in r), key=lambda r: r["step"])
