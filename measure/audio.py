"""Reading 16 kHz audio files."""

from __future__ import annotations

from pathlib import Path

import soundfile
import torch

from upstream_ehmam.frontend import SAMPLE_RATE


def load_audio(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: audio file missing")
    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {rate}, expected {SAMPLE_RATE}")
    return torch.from_numpy(samples[:, 0].copy())
