"""Pretraining configuration: one dataclass per section, loaded from YAML, overridable with `section.key=value`.
Unknown keys, wrong types and impossible values raise a ValueError naming the key (e.g. ``mask.mask_prob: must be
in (0, 0.8], found 1.5``): each field carries its rule (`checked`), checks across keys are in `__post_init__`."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from trainkit.config import load_root, root_from_dict
from upstream_ehmam.config import (
    POSITIVE,
    EncoderConfig,
    at_least,
    checked,
    one_of,
    require,
    within,
)


@dataclass
class HeadsConfig:
    """Regression decoder and loss predictor (docs/design.md "Heads"); both share this shape."""

    decoder_dim: int = checked(384, POSITIVE)
    kernel_size: int = checked(7, (lambda v: v % 2 == 1, "must be odd"))
    groups: int = checked(16, POSITIVE)
    depth: int = checked(4, at_least(1))
    input_dropout: float = checked(0.1, within(0, 1, "[)"))  # each head draws its own dropout mask (release: one)

    def __post_init__(self) -> None:
        require(self.decoder_dim % self.groups == 0, "heads.groups", "must divide heads.decoder_dim", self.groups)


@dataclass
class MaskConfig:
    """Span masking on a grid of non-overlapping cells (docs/design.md "Masking")."""

    mask_prob: float = checked(0.5, within(0, 0.8, "(]"))  # P: expected share of masked frames
    span_length: int = checked(5, at_least(1))  # L: frames per span
    clone_batch: int = checked(1, at_least(1))  # M differently masked copies per utterance against one teacher pass
    noise_std: float = checked(0.01, at_least(0))  # std of the noise "mask tokens" the heads see at masked frames
    # span count: overlapping = the share data2vec 2.0's overlapping spans mask (about 0.37 at P 0.5, L 5) |
    # exact = N*L/T = P; the grid never overlaps, so without calibration it masks about 35 % more than data2vec 2.0
    budget: str = checked("overlapping", one_of("overlapping", "exact"))


@dataclass
class CurriculumConfig:
    """Easy-to-hard share alpha of hard spans (docs/design.md "Curriculum")."""

    mode: str = "progress"  # progress (alpha from u/U) | none (alpha = 0: the random-masking baseline)
    threshold: float = checked(0.7, within(0, 1))  # alpha follows progress until this point ...
    plateau: float = checked(0.8, within(0, 1))  # ... then jumps to and stays at this share of hard spans

    def __post_init__(self) -> None:
        if self.mode == "epoch":
            raise ValueError(
                "curriculum.mode: 'epoch' moved to the release section: set release.epoch_curriculum: "
                "150 (the release's horizon in epochs) and keep curriculum.mode: progress"
            )
        require(self.mode in ("progress", "none"), "curriculum.mode", "must be one of progress, none", self.mode)


@dataclass
class LossConfig:
    """L = L_rec + aux_weight * L_aux, L_aux averaged per valid pair (docs/design.md "Losses")."""

    top_k_layers: int = checked(8, at_least(1))  # K teacher blocks averaged into the target
    aux_weight: float = checked(1.0, at_least(0))  # lambda; 0 only as an ablation
    aux_grad_to_encoder: bool = True  # ranking-loss gradients also reach the encoder, as in HPM


@dataclass
class TeacherConfig:
    """EMA teacher (docs/design.md "Teacher")."""

    ema_decay_start: float = checked(0.999, within(0, 1))
    ema_decay_end: float = checked(0.99999, within(0, 1))
    ema_anneal_updates: int = checked(75_000, at_least(1))
    # the teacher predictor reads the teacher's last block (release.predictor_on_targets: the targets, as the release)
    # and has its own EMA decay: null follows the encoder's schedule (release); 0 copies the student's
    # predictor after every update, so the selector is the student's current predictor (no lag)
    predictor_ema_decay: float | None = checked(None, (lambda v: v is None or 0 <= v < 1, "must be null or in [0, 1)"))


@dataclass
class ReleaseConfig:
    """Switches that reproduce the authors' release (docs/design.md "Departures from the release")."""

    span_sampler: bool = False  # the release's top-k span starts (overlapping) + batch-min trim
    epoch_curriculum: int = checked(0, at_least(0))  # > 0: alpha = epoch / this (the release: 150), not u/U
    aux_norm: str = checked("pair_mean", one_of("pair_mean", "sum", "flat_batch_mean"))  # project | release | fork
    predictor_on_targets: bool = False  # the selector (teacher predictor) reads the targets y, not the last block


# Keys that moved: reading one names its new place instead of "unknown key".
MOVED_KEYS = {
    "mask.mode": "mask.mode moved: the grid sampler is always used unless release.span_sampler: true "
    "(the authors' sampler, formerly mask.mode: release)",
    "curriculum.e_ref": "curriculum.e_ref moved: set release.epoch_curriculum: N (formerly curriculum.mode: epoch "
    "with curriculum.e_ref: N)",
    "loss.aux_norm": "loss.aux_norm moved to release.aux_norm (pair_mean, the default, is the project's choice)",
    "teacher.predictor_input": "teacher.predictor_input moved: the teacher predictor reads the teacher's last block "
    "(formerly last_layer); release.predictor_on_targets: true restores the release's "
    "targets (formerly targets)",
}


@dataclass
class OptimConfig:
    """AdamW with warm-up + cosine (docs/design.md "Optimiser and data")."""

    lr: float = checked(7.5e-4, POSITIVE)
    betas: list = checked(
        [0.9, 0.98],
        (
            lambda v: len(v) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in v),
            "must be two numbers in [0, 1)",
        ),
    )
    eps: float = checked(1e-6, POSITIVE)
    weight_decay: float = checked(0.01, at_least(0))  # matrices only; biases, norms and ALiBi scales get 0
    warmup_steps: int = 8_000
    max_steps: int = checked(400_000, at_least(1))  # U: optimiser updates; the curriculum follows u / U
    clip_grad_norm: float = checked(0.0, at_least(0))  # 0 = no clipping (the release config clips nothing)
    grad_accum: int = checked(1, at_least(1))  # micro-batches per update

    def __post_init__(self) -> None:
        require(
            0 <= self.warmup_steps < self.max_steps,
            "optim.warmup_steps",
            f"must be in [0, optim.max_steps) = [0, {self.max_steps})",
            self.warmup_steps,
        )


@dataclass
class DataConfig:
    """Audio manifest and batching (docs/design.md "Optimiser and data"). Sizes are in samples at 16 kHz."""

    manifest: str = ""  # fairseq TSV (python -m pretrain.manifest ROOT --out train.tsv)
    min_samples: int = checked(32_000, at_least(400))  # 2 s: shorter files are skipped; 400 gives one CNN frame
    max_samples: int = 320_000  # 20 s: longer files are randomly cropped
    max_batch_samples: int = 1_000_000  # 62.5 s of audio per device per micro-batch
    num_workers: int = checked(4, at_least(0))
    bad_audio: str = checked("skip", one_of("skip", "error"))  # skip (log, count, use the next file) | error (stop)

    def __post_init__(self) -> None:
        require(
            self.min_samples <= self.max_samples,
            "data.min_samples",
            f"must be <= data.max_samples ({self.max_samples})",
            self.min_samples,
        )
        require(
            self.max_batch_samples >= self.max_samples,
            "data.max_batch_samples",
            f"must be >= data.max_samples ({self.max_samples})",
            self.max_batch_samples,
        )


@dataclass
class RunConfig:
    """Where and how the run executes."""

    out_dir: str = checked("runs/ehmam", (bool, "must not be empty"))
    seed: int = 0
    device: str = checked(
        "auto", (lambda v: v in ("auto", "cpu") or v.startswith("cuda"), "must be auto, cpu, cuda or cuda:N")
    )  # auto: cuda if available
    precision: str = checked("auto", one_of("auto", "fp32", "bf16"))  # auto: bf16 autocast on CUDA, fp32 on CPU
    log_every: int = checked(50, at_least(1))  # steps between dense log lines / TensorBoard scalars
    save_every: int = checked(5_000, at_least(1))  # steps between periodic checkpoints (last.pt is refreshed too)
    keep_checkpoints: int = checked(3, at_least(0))  # periodic checkpoints kept besides last.pt
    collapse_check_after: int = 5_000  # d2v2's collapse guard (docs/design.md "Health") starts after this many steps
    min_target_std: float = 0.1
    min_prediction_std: float = 0.01
    max_nonfinite_skips: int = checked(20, at_least(1))  # NaN/inf updates in a row before the run stops
    compile_blocks: bool = False  # torch.compile each transformer block, dynamic shapes
    # a checkpoint whose weights start a new run (this project's, or a fairseq data2vec 2.0 / EH-MAM release file):
    # weights only, with a fresh optimiser and schedules; ignored once the run directory holds last.pt
    init_from: str = ""
    # phone ABX of every student layer on a held-out aligned set (off while eval_data is empty)
    eval_data: str = ""  # corpus root with LibriSpeech/alignments/<split>.jsonl, e.g. a mini-SUPERB
    eval_splits: list = checked(
        ["dev-clean"],
        (lambda v: len(v) > 0 and all(isinstance(s, str) and s for s in v), "must be a non-empty list of split names"),
    )
    eval_max_files: int = checked(40, at_least(1))  # the first N utterances of the splits
    eval_every: int = checked(500, at_least(1))  # updates between evaluations (and one at update 0 and at the end)


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
        require(
            self.loss.top_k_layers <= self.model.num_layers,
            "loss.top_k_layers",
            f"must be <= model.num_layers ({self.model.num_layers})",
            self.loss.top_k_layers,
        )
        require(
            self.model.embed_dim % self.heads.groups == 0,
            "heads.groups",
            f"must divide model.embed_dim ({self.model.embed_dim})",
            self.heads.groups,
        )
        require(
            not (self.release.epoch_curriculum and self.curriculum.mode == "none"),
            "release.epoch_curriculum",
            "needs curriculum.mode: progress (mode none fixes alpha at 0)",
            self.release.epoch_curriculum,
        )
        # every crop length the data can produce must leave room for the mask's spans (else step 1 would fail)
        P, L = self.mask.mask_prob, self.mask.span_length
        shortest = self.model.frames_for_samples(self.data.min_samples)
        longest = self.model.frames_for_samples(self.data.max_samples)
        if shortest < 1:
            raise ValueError(
                f"data.min_samples: {self.data.min_samples} samples give no frame with "
                f"model.frontend={self.model.frontend}, which needs at least "
                f"{self.model.receptive_field}; raise data.min_samples"
            )
        for T in range(shortest, longest + 1):
            most_spans = max(1, math.ceil(P * T / L))  # N = max(1, floor(P*T/L + U)), U < 1
            room = T - L if self.release.span_sampler else (T - (L - 1)) // L  # release start positions | grid cells
            if most_spans > room:
                raise ValueError(
                    f"data.min_samples: crops of {self.data.min_samples} samples give as few as {T} "
                    f"frames, too few for up to {most_spans} spans of mask.span_length={L} at "
                    f"mask.mask_prob={P} (release.span_sampler={self.release.span_sampler}); raise "
                    f"data.min_samples or lower mask.mask_prob/span_length"
                )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def uses_loss_predictor(self) -> bool:
        """The predictor is skipped entirely when neither the curriculum nor the ranking loss needs it."""
        return self.curriculum.mode != "none" or self.loss.aux_weight > 0


SECTIONS: dict[str, type] = typing.get_type_hints(PretrainConfig)  # section name -> dataclass, in file order


def config_from_dict(values: dict, source: str = "<config>") -> PretrainConfig:
    return root_from_dict(PretrainConfig, values, source, MOVED_KEYS)


def load_config(path: str | Path, overrides: list[str] | None = None) -> PretrainConfig:
    """A YAML file (and its `base:` chain) with `section.key=value` overrides applied."""
    return load_root(PretrainConfig, path, overrides, MOVED_KEYS)
