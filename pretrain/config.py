"""Pretraining configuration: one dataclass per concern, loaded from YAML, type-checked, overridable.

`load_config(path, overrides)` returns a `PretrainConfig`; unknown keys, wrong types and impossible values
raise a ValueError naming the key (e.g. ``mask.mask_prob: must be in [0, 1], got 1.5``).
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from upstream_ehmam.config import EncoderConfig


@dataclass
class HeadsConfig:
    """Regression decoder and loss predictor (docs/design.md "Heads"); both share this shape."""
    decoder_dim: int = 384
    kernel_size: int = 7
    groups: int = 16
    depth: int = 4
    input_dropout: float = 0.1  # each head draws its own dropout mask (the release shares one in-place draw)

    def __post_init__(self) -> None:
        _require(self.decoder_dim > 0, "heads.decoder_dim", "must be > 0", self.decoder_dim)
        _require(self.kernel_size % 2 == 1, "heads.kernel_size", "must be odd", self.kernel_size)
        _require(self.groups > 0 and self.decoder_dim % self.groups == 0, "heads.groups",
                 "must divide heads.decoder_dim", self.groups)
        _require(self.depth >= 1, "heads.depth", "must be >= 1", self.depth)
        _require(0.0 <= self.input_dropout < 1.0, "heads.input_dropout", "must be in [0, 1)", self.input_dropout)


@dataclass
class MaskConfig:
    """Span masking on a grid of non-overlapping cells (docs/design.md "Masking")."""
    mask_prob: float = 0.5      # P: expected share of masked frames
    span_length: int = 5        # L: frames per span
    clone_batch: int = 1        # M differently masked copies per utterance against one teacher pass
    noise_std: float = 0.01     # std of the noise "mask tokens" the heads see at masked frames

    def __post_init__(self) -> None:
        _require(0.0 < self.mask_prob <= 0.8, "mask.mask_prob", "must be in (0, 0.8]", self.mask_prob)
        _require(self.span_length >= 1, "mask.span_length", "must be >= 1", self.span_length)
        _require(self.clone_batch >= 1, "mask.clone_batch", "must be >= 1", self.clone_batch)
        _require(self.noise_std >= 0.0, "mask.noise_std", "must be >= 0", self.noise_std)


@dataclass
class CurriculumConfig:
    """Easy-to-hard share alpha of hard spans (docs/design.md "Curriculum")."""
    mode: str = "progress"      # progress (alpha from u/U) | none (alpha = 0: the random-masking baseline)
    threshold: float = 0.7      # alpha follows progress until this point ...
    plateau: float = 0.8        # ... then jumps to and stays at this share of hard spans

    def __post_init__(self) -> None:
        if self.mode == "epoch":
            raise ValueError("curriculum.mode: 'epoch' moved to the release section: set release.epoch_curriculum: "
                             "150 (the release's horizon in epochs) and keep curriculum.mode: progress")
        _require(self.mode in ("progress", "none"), "curriculum.mode", "must be 'progress' or 'none'", self.mode)
        _require(0.0 <= self.threshold <= 1.0, "curriculum.threshold", "must be in [0, 1]", self.threshold)
        _require(0.0 <= self.plateau <= 1.0, "curriculum.plateau", "must be in [0, 1]", self.plateau)


@dataclass
class LossConfig:
    """L = L_rec + aux_weight * L_aux, L_aux averaged per valid pair (docs/design.md "Losses")."""
    top_k_layers: int = 8               # K teacher blocks averaged into the target
    aux_weight: float = 1.0             # lambda; 0 only as an ablation
    aux_grad_to_encoder: bool = True    # ranking-loss gradients also reach the encoder, as in HPM

    def __post_init__(self) -> None:
        _require(self.top_k_layers >= 1, "loss.top_k_layers", "must be >= 1", self.top_k_layers)
        _require(self.aux_weight >= 0.0, "loss.aux_weight", "must be >= 0", self.aux_weight)


@dataclass
class TeacherConfig:
    """EMA teacher (docs/design.md "Teacher")."""
    ema_decay_start: float = 0.999
    ema_decay_end: float = 0.99999
    ema_anneal_updates: int = 75_000
    predictor_input: str = "targets"    # targets (release) | last_layer (HPM-like)

    def __post_init__(self) -> None:
        for key in ("ema_decay_start", "ema_decay_end"):
            value = getattr(self, key)
            _require(0.0 <= value <= 1.0, f"teacher.{key}", "must be in [0, 1]", value)
        _require(self.ema_anneal_updates >= 1, "teacher.ema_anneal_updates", "must be >= 1",
                 self.ema_anneal_updates)
        _require(self.predictor_input in ("targets", "last_layer"), "teacher.predictor_input",
                 "must be 'targets' or 'last_layer'", self.predictor_input)


@dataclass
class ReleaseConfig:
    """Switches that reproduce the authors' release instead of this project's fixes (docs/design.md "Departures
    from the release"); the defaults are the project's method."""
    span_sampler: bool = False          # the release's top-k span starts (overlapping) + batch-min trim, not grid cells
    epoch_curriculum: int = 0           # > 0: alpha = epoch / this (the release hard-codes 150), not progress u/U
    aux_norm: str = "pair_mean"         # L_aux per valid pair (project, HPM) | sum (release) | flat_batch_mean (fork)

    def __post_init__(self) -> None:
        _require(isinstance(self.span_sampler, bool), "release.span_sampler", "must be true or false",
                 self.span_sampler)
        _require(self.epoch_curriculum >= 0, "release.epoch_curriculum", "must be >= 0 (0 = off)",
                 self.epoch_curriculum)
        _require(self.aux_norm in ("pair_mean", "sum", "flat_batch_mean"), "release.aux_norm",
                 "must be 'pair_mean', 'sum' or 'flat_batch_mean'", self.aux_norm)


# Keys that moved: reading one names its new place instead of "unknown key".
MOVED_KEYS = {
    "mask.mode": "mask.mode moved: the grid sampler is always used unless release.span_sampler: true "
                 "(the authors' sampler, formerly mask.mode: release)",
    "curriculum.e_ref": "curriculum.e_ref moved: set release.epoch_curriculum: N (formerly curriculum.mode: epoch "
                        "with curriculum.e_ref: N)",
    "loss.aux_norm": "loss.aux_norm moved to release.aux_norm (pair_mean, the default, is the project's choice)",
}


@dataclass
class OptimConfig:
    """AdamW with warm-up + cosine (docs/design.md "Optimiser and data")."""
    lr: float = 7.5e-4
    betas: list = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    weight_decay: float = 0.01          # matrices only; biases, norms and ALiBi scales get 0
    warmup_steps: int = 8_000
    max_steps: int = 400_000            # U: optimiser updates; the curriculum follows u / U
    clip_grad_norm: float = 0.0         # 0 = no clipping (the release config clips nothing)
    grad_accum: int = 1                 # micro-batches per update

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optim.lr", "must be > 0", self.lr)
        _require(self.eps > 0, "optim.eps", "must be > 0", self.eps)
        _require(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0", self.weight_decay)
        _require(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), "optim.betas",
                 "must be two numbers in [0, 1)", self.betas)
        _require(self.max_steps >= 1, "optim.max_steps", "must be >= 1", self.max_steps)
        _require(0 <= self.warmup_steps < self.max_steps, "optim.warmup_steps",
                 f"must be in [0, optim.max_steps) = [0, {self.max_steps})", self.warmup_steps)
        _require(self.clip_grad_norm >= 0, "optim.clip_grad_norm", "must be >= 0 (0 disables)",
                 self.clip_grad_norm)
        _require(self.grad_accum >= 1, "optim.grad_accum", "must be >= 1", self.grad_accum)


@dataclass
class DataConfig:
    """Audio manifest and batching (docs/design.md "Optimiser and data"). Sizes are in samples at 16 kHz."""
    manifest: str = ""                  # fairseq TSV (python -m pretrain.manifest ROOT --out train.tsv)
    min_samples: int = 32_000           # 2 s: shorter files are skipped
    max_samples: int = 320_000          # 20 s: longer files are randomly cropped
    max_batch_samples: int = 1_000_000  # 62.5 s of audio per device per micro-batch
    num_workers: int = 4
    bad_audio: str = "skip"             # skip (log once, count, fill from the next usable file) | error (stop)

    def __post_init__(self) -> None:
        _require(self.bad_audio in ("skip", "error"), "data.bad_audio", "must be 'skip' or 'error'", self.bad_audio)
        _require(self.min_samples >= 400, "data.min_samples", "must be >= 400 (one frame)", self.min_samples)
        _require(self.min_samples <= self.max_samples, "data.min_samples",
                 f"must be <= data.max_samples ({self.max_samples})", self.min_samples)
        _require(self.max_batch_samples >= self.max_samples, "data.max_batch_samples",
                 f"must be >= data.max_samples ({self.max_samples})", self.max_batch_samples)
        _require(self.num_workers >= 0, "data.num_workers", "must be >= 0", self.num_workers)


@dataclass
class RunConfig:
    """Where and how the run executes."""
    out_dir: str = "runs/ehmam"
    seed: int = 0
    device: str = "auto"                # auto (cuda if available) | cpu | cuda | cuda:N
    precision: str = "auto"             # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    log_every: int = 50                 # steps between dense log lines / TensorBoard scalars
    save_every: int = 5_000             # steps between periodic checkpoints (last.pt is refreshed too)
    keep_checkpoints: int = 3           # periodic checkpoints kept besides last.pt
    collapse_check_after: int = 5_000   # d2v2's collapse guard (docs/design.md "Health") starts after this many steps
    min_target_std: float = 0.1
    min_prediction_std: float = 0.01
    max_nonfinite_skips: int = 20       # consecutive updates with a NaN/inf loss or gradient before the run stops
    compile_blocks: bool = False        # torch.compile each transformer block (student and teacher), dynamic shapes
    # phone ABX of every student layer on a held-out aligned set (off while eval_data is empty)
    eval_data: str = ""                 # corpus root with LibriSpeech/alignments/<split>.jsonl, e.g. a mini-SUPERB
    eval_splits: list = field(default_factory=lambda: ["dev-clean"])
    eval_max_files: int = 40            # the first N utterances of the splits
    eval_every: int = 500               # updates between evaluations (and one at update 0 and at the end)

    def __post_init__(self) -> None:
        _require(bool(self.out_dir), "run.out_dir", "must not be empty", self.out_dir)
        _require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"), "run.device",
                 "must be auto, cpu, cuda or cuda:N", self.device)
        _require(self.precision in ("auto", "fp32", "bf16"), "run.precision", "must be auto, fp32 or bf16",
                 self.precision)
        for key in ("log_every", "save_every"):
            _require(getattr(self, key) >= 1, f"run.{key}", "must be >= 1", getattr(self, key))
        _require(self.keep_checkpoints >= 0, "run.keep_checkpoints", "must be >= 0", self.keep_checkpoints)
        _require(self.max_nonfinite_skips >= 1, "run.max_nonfinite_skips", "must be >= 1", self.max_nonfinite_skips)
        _require(isinstance(self.compile_blocks, bool), "run.compile_blocks", "must be true or false",
                 self.compile_blocks)
        _require(self.eval_every >= 1, "run.eval_every", "must be >= 1", self.eval_every)
        _require(self.eval_max_files >= 1, "run.eval_max_files", "must be >= 1", self.eval_max_files)
        _require(len(self.eval_splits) > 0 and all(isinstance(s, str) and s for s in self.eval_splits),
                 "run.eval_splits", "must be a non-empty list of split names", self.eval_splits)


SECTIONS: dict[str, type] = {
    "model": EncoderConfig,
    "heads": HeadsConfig,
    "mask": MaskConfig,
    "curriculum": CurriculumConfig,
    "loss": LossConfig,
    "teacher": TeacherConfig,
    "optim": OptimConfig,
    "data": DataConfig,
    "run": RunConfig,
    "release": ReleaseConfig,
}


@dataclass
class PretrainConfig:
    model: EncoderConfig = field(default_factory=EncoderConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)

    def __post_init__(self) -> None:
        _require(self.loss.top_k_layers <= self.model.num_layers, "loss.top_k_layers",
                 f"must be <= model.num_layers ({self.model.num_layers})", self.loss.top_k_layers)
        _require(self.model.embed_dim % self.heads.groups == 0, "heads.groups",
                 f"must divide model.embed_dim ({self.model.embed_dim})", self.heads.groups)
        _require(not (self.release.epoch_curriculum and self.curriculum.mode == "none"), "release.epoch_curriculum",
                 "needs curriculum.mode: progress (mode none fixes alpha at 0)", self.release.epoch_curriculum)
        self._check_crops_fit_the_mask()

    def _check_crops_fit_the_mask(self) -> None:
        """Every crop length the data can produce must leave room for the mask's spans (else step 1 would fail)."""
        P, L = self.mask.mask_prob, self.mask.span_length
        shortest = self.model.frames_for_samples(self.data.min_samples)
        longest = self.model.frames_for_samples(self.data.max_samples)
        if shortest < 1:
            raise ValueError(f"data.min_samples: {self.data.min_samples} samples give no frame with "
                             f"model.frontend={self.model.frontend}, which needs at least "
                             f"{self.model.receptive_field}; raise data.min_samples")
        for T in range(shortest, longest + 1):
            most_spans = max(1, math.ceil(P * T / L))  # N = max(1, floor(P*T/L + U)), U < 1
            room = T - L if self.release.span_sampler else (T - (L - 1)) // L  # release start positions | grid cells
            if most_spans > room:
                raise ValueError(
                    f"data.min_samples: crops of {self.data.min_samples} samples give as few as {T} frames, too few "
                    f"for up to {most_spans} spans of mask.span_length={L} at mask.mask_prob={P} "
                    f"(release.span_sampler={self.release.span_sampler}); raise data.min_samples or lower "
                    f"mask.mask_prob/span_length")

    def to_dict(self) -> dict:
        out = {}
        for name in SECTIONS:
            section = getattr(self, name)
            out[name] = section.to_dict() if hasattr(section, "to_dict") else dataclasses.asdict(section)
        return out

    @property
    def uses_loss_predictor(self) -> bool:
        """The predictor is skipped entirely when neither the curriculum nor the ranking loss needs it."""
        return self.curriculum.mode != "none" or self.loss.aux_weight > 0


def _require(ok: bool, key: str, what: str, found: Any) -> None:
    if not ok:
        raise ValueError(f"{key}: {what}, got {found!r}")


def _check_type(key: str, annotation: Any, value: Any) -> Any:
    """Return `value` if it fits the dataclass annotation (ints are accepted for floats), else raise."""
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "str": str, "bool": bool, "list": list}.get(annotation, Any)
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            if option is type(None) and value is None:
                return value
            try:
                return _check_type(key, option, value)
            except ValueError:
                continue
        raise ValueError(f"{key}: expected {annotation}, got {type(value).__name__} {value!r}")
    expected = origin or annotation
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str):
        # YAML 1.1 reads 5e-4 (no dot) as a string; every spelling Python's float() accepts is a number here
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{key}: expected float, got str {value!r}") from None
    if expected is int and isinstance(value, bool):
        raise ValueError(f"{key}: expected int, got bool {value!r}")
    if not isinstance(value, expected):
        raise ValueError(f"{key}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def section_from_dict(cls: type, values: dict, where: str) -> Any:
    """Build one section dataclass, rejecting unknown keys and wrong types with the key's full name."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping of keys, got {type(values).__name__}")
    if hasattr(cls, "from_dict"):
        return cls.from_dict(values, where=where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    moved = [MOVED_KEYS[f"{where}.{key}"] for key in unknown if f"{where}.{key}" in MOVED_KEYS]
    if moved:
        raise ValueError(moved[0])
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key; allowed: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    checked = {k: _check_type(f"{where}.{k}", hints[k], v) for k, v in values.items()}
    return cls(**checked)


def config_from_dict(values: dict, source: str = "<config>") -> PretrainConfig:
    if not isinstance(values, dict):
        raise ValueError(f"{source}: expected a YAML mapping of sections, got {type(values).__name__}")
    unknown = sorted(set(values) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{source}: unknown section '{unknown[0]}'; allowed: {', '.join(SECTIONS)}")
    sections = {name: section_from_dict(cls, values.get(name, {}), name) for name, cls in SECTIONS.items()}
    return PretrainConfig(**sections)


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings (values parsed as YAML) to a nested dict, in order."""
    values = {k: dict(v or {}) for k, v in values.items()}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected section.key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"--set {item!r}: the key must be section.key, e.g. optim.max_steps")
        section, key = parts
        if section not in SECTIONS:
            raise ValueError(f"--set {item!r}: unknown section '{section}'; allowed: {', '.join(SECTIONS)}")
        values.setdefault(section, {})[key] = yaml.safe_load(raw)
    return values


def read_yaml_mapping(path: str | Path) -> dict:
    """The top-level mapping of a YAML config file (also read by finetune/config.py); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a YAML mapping of sections, got {type(values).__name__}")
    return values


def load_config(path: str | Path, overrides: list[str] | None = None) -> PretrainConfig:
    return config_from_dict(apply_overrides(read_yaml_mapping(path), overrides or []), source=str(path))


def save_config(config: PretrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
