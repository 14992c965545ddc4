"""Fine-tuning configuration: one dataclass per section, loaded from YAML by trainkit.config (as pretraining's).

Keys mean what they mean in pretrain/config.py where both have them (`optim.lr`, `optim.max_steps`, `run.seed`,
`run.out_dir`, `model.layerdrop`, `mask.mask_prob`, `mask.span_length`, ...). `load_config(path, overrides)` returns
a `FinetuneConfig`; unknown keys, wrong types and impossible values raise a ValueError naming the key.

| here | fairseq `base_*.yaml` |
|---|---|
| model.freeze_updates | model.freeze_finetune_updates |
| mask.channel_prob, mask.channel_length | model.mask_channel_prob, model.mask_channel_length |
| optim.phase_ratio, init_lr_scale, final_lr_scale | lr_scheduler (tri_stage) |
| data.max_batch_samples x optim.micro_batches | dataset.max_tokens x distributed_world_size x update_freq |
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from trainkit.config import load_root, root_from_dict
from upstream_ehmam.checkpoint import WEIGHTS
from upstream_ehmam.config import require as _require
from upstream_ehmam.frontend import SAMPLE_RATE

RANDOM_PREFIX = "random:"


@dataclass
class ModelConfig:
    """Where the encoder comes from, how long it stays frozen, and its regularisation while fine-tuning."""

    init: str = ""  # pretraining checkpoint or exported encoder; random:FILE = untrained encoder
    # shaped like FILE's model (a checkpoint or a pretraining YAML)
    weights: str = "student"  # student | teacher (pretraining checkpoints hold both)
    freeze_updates: int = 10_000  # updates during which only the CTC head trains (the encoder runs under no_grad)
    num_layers: int = 0  # keep only the first num_layers blocks (drop the top ones); 0 keeps them all
    reset_top: int = 0  # re-initialise the top reset_top of the kept blocks (a fresh init from run.seed)
    dropout: float = 0.0  # the recipe turns every dropout off but the FFN activation's
    attention_dropout: float = 0.0
    activation_dropout: float = 0.1
    prenet_dropout: float = 0.0
    layerdrop: float = 0.1

    def __post_init__(self) -> None:
        _require(self.weights in WEIGHTS, "model.weights", f"must be one of {', '.join(WEIGHTS)}", self.weights)
        _require(self.freeze_updates >= 0, "model.freeze_updates", "must be >= 0", self.freeze_updates)
        for key in ("num_layers", "reset_top"):
            _require(getattr(self, key) >= 0, f"model.{key}", "must be >= 0", getattr(self, key))
        for key in ("dropout", "attention_dropout", "activation_dropout", "prenet_dropout", "layerdrop"):
            _require(0.0 <= getattr(self, key) < 1.0, f"model.{key}", "must be in [0, 1)", getattr(self, key))


@dataclass
class MaskConfig:
    """Time and channel masking of the projected front-end features (training only)."""

    mask_prob: float = 0.65  # span starts per frame: floor(mask_prob * T / span_length + u) spans,
    # ~48 % of frames
    span_length: int = 10  # frames per time span
    channel_prob: float = 0.25  # the same rule over the feature channels; masked channels are zero on all frames
    channel_length: int = 64  # channels per channel span

    def __post_init__(self) -> None:
        for key in ("mask_prob", "channel_prob"):
            _require(0.0 <= getattr(self, key) <= 1.0, f"mask.{key}", "must be in [0, 1]", getattr(self, key))
        for key in ("span_length", "channel_length"):
            _require(getattr(self, key) >= 1, f"mask.{key}", "must be >= 1", getattr(self, key))


@dataclass
class OptimConfig:
    """Adam with the tri-stage schedule; the global batch is micro_batches x data.max_batch_samples."""

    lr: float = 5e-5
    betas: list = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    max_steps: int = 13_000  # U: optimiser updates
    phase_ratio: list = field(default_factory=lambda: [0.1, 0.4, 0.5])  # warm-up, hold, decay shares of U
    init_lr_scale: float = 0.01  # warm-up starts at init_lr_scale * lr
    final_lr_scale: float = 0.05  # decay ends at (and stays at) final_lr_scale * lr
    micro_batches: int = 8  # per update, over all processes (recipe: 2 GPUs x update_freq 4)

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optim.lr", "must be > 0", self.lr)
        _require(self.eps > 0, "optim.eps", "must be > 0", self.eps)
        _require(
            len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
            "optim.betas",
            "must be two numbers in [0, 1)",
            self.betas,
        )
        _require(self.max_steps >= 1, "optim.max_steps", "must be >= 1", self.max_steps)
        _require(
            len(self.phase_ratio) == 3
            and all(r >= 0 for r in self.phase_ratio)
            and abs(sum(self.phase_ratio) - 1.0) < 1e-6,
            "optim.phase_ratio",
            "must be three shares >= 0 that sum to 1",
            self.phase_ratio,
        )
        for key in ("init_lr_scale", "final_lr_scale"):
            _require(0.0 < getattr(self, key) <= 1.0, f"optim.{key}", "must be in (0, 1]", getattr(self, key))
        _require(self.micro_batches >= 1, "optim.micro_batches", "must be >= 1", self.micro_batches)


@dataclass
class DataConfig:
    """Manifests written by `python -m finetune.prepare` (or fairseq's own). Sizes in samples at 16 kHz."""

    manifest_dir: str = ""  # folder of <subset>.tsv + <subset>.ltr and dict.ltr.txt
    train_subset: str = "10m"
    valid_subset: str = "dev-other"  # model selection split (Viterbi WER)
    max_batch_samples: int = 3_200_000  # padded samples per micro-batch (200 s); longer utterances are skipped
    num_workers: int = 2
    bad_audio: str = "skip"  # skip (log, count, leave out of the batch) | error (stop)

    def __post_init__(self) -> None:
        _require(
            self.max_batch_samples >= SAMPLE_RATE,
            "data.max_batch_samples",
            "must be >= 16000 (1 s)",
            self.max_batch_samples,
        )
        _require(self.num_workers >= 0, "data.num_workers", "must be >= 0", self.num_workers)
        _require(self.bad_audio in ("skip", "error"), "data.bad_audio", "must be 'skip' or 'error'", self.bad_audio)
        for key in ("train_subset", "valid_subset"):
            _require(
                bool(getattr(self, key)) and "/" not in getattr(self, key),
                f"data.{key}",
                "must be a manifest name (no folder)",
                getattr(self, key),
            )


@dataclass
class RunConfig:
    """Where and how the run executes."""

    out_dir: str = "runs/finetune"
    seed: int = 0
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16; CTC loss is fp32
    log_every: int = 200
    save_every: int = 1_000  # last.pt is refreshed this often (and at the end, and on SIGTERM)
    valid_every: int = 1_000  # Viterbi WER on data.valid_subset, from the end of the freeze on, and at the end
    max_nonfinite_skips: int = 20  # consecutive updates with a NaN/inf loss or gradient before the run stops

    def __post_init__(self) -> None:
        _require(bool(self.out_dir), "run.out_dir", "must not be empty", self.out_dir)
        _require(
            self.device in ("auto", "cpu") or self.device.startswith("cuda"),
            "run.device",
            "must be auto, cpu, cuda or cuda:N",
            self.device,
        )
        _require(
            self.precision in ("auto", "fp32", "bf16"), "run.precision", "must be auto, fp32 or bf16", self.precision
        )
        for key in ("log_every", "save_every", "valid_every", "max_nonfinite_skips"):
            _require(getattr(self, key) >= 1, f"run.{key}", "must be >= 1", getattr(self, key))


@dataclass
class FinetuneConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        _require(
            self.model.freeze_updates <= self.optim.max_steps,
            "model.freeze_updates",
            f"must be <= optim.max_steps ({self.optim.max_steps})",
            self.model.freeze_updates,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def config_from_dict(values: dict, source: str = "<config>") -> FinetuneConfig:
    return root_from_dict(FinetuneConfig, values, source)


def load_config(path: str | Path, overrides: list[str] | None = None) -> FinetuneConfig:
    """A YAML file (and its `base:` chain) with `section.key=value` overrides applied."""
    return load_root(FinetuneConfig, path, overrides)
