"""Encoder hyperparameters (docs/design.md "Encoder", "Configuration") as one validated dataclass whose defaults are
the Base model, the frame-count formula, and the field checks every config section shares (errors name the key)."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

import torch

from . import frontend as _mel

# (channels, kernel, stride) per conv: 320x downsampling, 400-sample receptive field (wav2vec 2.0 / data2vec 2.0).
BASE_CONV_LAYERS: list[list[int]] = [[512, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2


# ---- checks shared by every config section: a rule is (predicate, what a value must be) ----
POSITIVE = (lambda v: v > 0, "must be positive")


def at_least(low: float) -> tuple:
    return (lambda v: v >= low, f"must be >= {low}")


def within(low: float, high: float, ends: str = "[]") -> tuple:
    """low <= v <= high, with an open end where `ends` has '(' or ')'."""

    def ok(v):
        return (v > low if ends[0] == "(" else v >= low) and (v < high if ends[1] == ")" else v <= high)

    return (ok, f"must be in {ends[0]}{low}, {high}{ends[1]}")


def one_of(*choices: Any) -> tuple:
    return (lambda v: v in choices, f"must be one of {', '.join(map(str, choices))}")


def checked(default: Any, rule: tuple | None = None) -> Any:
    """A dataclass field with a default and the rule its value must meet (checked by `check_fields`)."""
    if isinstance(default, list):
        return field(
            default_factory=lambda: [list(v) if isinstance(v, list) else v for v in default], metadata={"rule": rule}
        )
    return field(default=default, metadata={"rule": rule})


def require(ok: bool, key: str, what: str, found: Any) -> None:
    if not ok:
        raise ValueError(f"{key}: {what}, found {found!r}")


def check_type(key: str, expected: type, value: Any, numbers_from_text: bool = False) -> Any:
    """`value` if it fits the annotation `expected` (an int is taken for a float; with numbers_from_text also every
    string float() reads, as YAML 1.1 reads 5e-4 as a string), else a ValueError naming `key`."""
    if expected is Any:
        return value
    options = typing.get_args(expected)
    if type(None) in options and len(options) == 2:  # X | None
        return (
            None
            if value is None
            else check_type(key, options[0] if options[1] is type(None) else options[1], value, numbers_from_text)
        )
    readable_as_float = (int, str) if numbers_from_text else int
    if expected is float and isinstance(value, readable_as_float) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    accepted = (list, tuple) if expected is list else expected
    if not isinstance(value, accepted) or (isinstance(value, bool) and expected is not bool):
        raise ValueError(f"{key}: expected {expected.__name__}, found {type(value).__name__} ({value!r})")
    return value


def check_fields(cls: type, values: dict, where: str, numbers_from_text: bool = False) -> dict:
    """The values of dataclass `cls` type-checked and held to their field rules; errors name `<where>.<key>`."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            key = f"{where}.{f.name}"
            out[f.name] = check_type(key, hints[f.name], values[f.name], numbers_from_text)
            rule = f.metadata.get("rule")
            if rule is not None:
                require(rule[0](out[f.name]), key, rule[1], out[f.name])
    return out


def check_mapping(cls: type, values: Any, where: str, moved: dict | None = None) -> dict:
    """`values` must be a mapping of `cls`'s field names; a key in `moved` is refused with its message."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping of keys, found {type(values).__name__}")
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if f"{where}.{key}" in (moved or {}):
            raise ValueError(moved[f"{where}.{key}"])
        if key not in allowed:
            raise ValueError(f"{where}.{key}: unknown key; allowed: {', '.join(allowed)}")
    return values


# ---- the encoder ----
_PROBABILITY = within(0, 1, "[)")


@dataclass
class EncoderConfig:
    """Shapes and regularisation of the EH-MAM encoder (front end + projection + context encoder)."""

    frontend: str = checked("cnn", one_of("cnn", "mel"))  # cnn (waveform CNN, conv_layers) | mel (mel_* keys)
    conv_layers: list = checked(BASE_CONV_LAYERS, (bool, "must list at least one conv"))  # (C, k, s) per conv
    embed_dim: int = checked(768, POSITIVE)  # D, the transformer width
    num_layers: int = checked(12, POSITIVE)  # post-LN transformer blocks
    num_heads: int = checked(12, POSITIVE)  # D / H = 64 per head
    ffn_dim: int = checked(3072, POSITIVE)  # 4 x D
    pos_conv_depth: int = checked(5, POSITIVE)  # stacked grouped convs in the positional encoder
    pos_conv_kernel: int = checked(19, POSITIVE)  # max(3, 95 // depth); odd so "same" padding keeps the length
    pos_conv_groups: int = checked(16, POSITIVE)
    dropout: float = checked(0.1, _PROBABILITY)  # after attention out-proj and after the FFN (before each residual)
    attention_dropout: float = checked(0.1, _PROBABILITY)  # on the attention probabilities
    activation_dropout: float = checked(0.0, _PROBABILITY)  # after the FFN's GELU
    prenet_dropout: float = checked(0.1, _PROBABILITY)  # after the pre-encoder LayerNorm
    layerdrop: float = checked(0.05, _PROBABILITY)  # student only, training only
    layer_norm_eps: float = checked(1e-5, POSITIVE)
    # frontend mel only (ignored by cnn):
    mel_bins: int = checked(80, within(1, 201))  # mel filters (the 400-point FFT has 201 bins); 2 x mel_bins stacked
    mel_norm: str = checked("utterance", one_of("utterance", "global"))  # per utterance | global: mel_mean/std
    mel_mean: Any = 0.0  # global only: a float or a list of mel_bins floats (python -m pretrain.mel_stats)
    mel_std: Any = 1.0  # global only: a positive float or a list of mel_bins positive floats

    def __post_init__(self) -> None:
        _validate(self.__dict__, "model")
        self.conv_layers = [[int(v) for v in layer] for layer in self.conv_layers]
        for name in ("mel_mean", "mel_std"):
            value = getattr(self, name)
            setattr(self, name, [float(v) for v in value] if isinstance(value, (list, tuple)) else float(value))
        for f in dataclasses.fields(self):
            if f.type == "float":
                setattr(self, f.name, float(getattr(self, f.name)))

    @classmethod
    def from_dict(cls, d: dict, where: str = "model") -> "EncoderConfig":
        """Build from a plain dict (e.g. YAML); errors name `<where>.<key>`."""
        d = check_mapping(cls, d, where)
        _validate({**cls().__dict__, **d}, where)
        return cls(**d)

    def to_dict(self) -> dict:
        """Plain dict of lists, ints and floats (safe for YAML, JSON and weights_only checkpoints)."""
        return dataclasses.asdict(self)

    @property
    def windows(self) -> list:
        """(channels, kernel, stride) of each conv; for mel the same geometry: a 400-sample window every 160 samples
        (a mel frame), then a window of 2 mel frames every 2 (the stacking)."""
        if self.frontend == "mel":
            return [[0, _mel.MEL_WINDOW, _mel.MEL_HOP], [0, _mel.STACK, _mel.STACK]]
        return self.conv_layers

    @property
    def downsample_rate(self) -> int:
        """Samples per output frame: 320 for the Base CNN and for mel."""
        return math.prod(stride for _, _, stride in self.windows)

    @property
    def receptive_field(self) -> int:
        """Samples one output frame reads, the shortest input giving a frame: 400 (Base CNN), 560 (mel)."""
        reach, jump = 1, 1
        for _, kernel, stride in self.windows:
            reach += (kernel - 1) * jump
            jump *= stride
        return reach

    def frames_for_samples(self, num_samples: int | torch.Tensor) -> int | torch.Tensor:
        """Valid output frames for `num_samples` valid input samples (int or LongTensor): 16000 -> 49."""
        return frames_for_samples(num_samples, self.windows)


def frames_for_samples(num_samples: int | torch.Tensor, conv_layers: list | None = None) -> int | torch.Tensor:
    """Compose floor((n - k) / s) + 1 over the convs, clamped at 0: 16000 -> 49, 400 -> 1, 399 -> 0."""
    n = num_samples
    for _, kernel, stride in BASE_CONV_LAYERS if conv_layers is None else conv_layers:
        if isinstance(n, torch.Tensor):
            n = (torch.div(n - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)
        else:
            n = max(0, (int(n) - kernel) // stride + 1)
    return n


def _validate(values: dict, where: str) -> None:
    """Raise ValueError naming `<where>.<key>` for a wrong type or an impossible value."""
    check_fields(EncoderConfig, values, where)
    for i, layer in enumerate(values["conv_layers"]):
        require(
            isinstance(layer, (list, tuple))
            and len(layer) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in layer),
            f"{where}.conv_layers",
            f"entry {i} must be [channels, kernel, stride] of positive ints",
            layer,
        )
    bins = values["mel_bins"]
    for key in ("mel_mean", "mel_std"):
        value = values[key]
        items = value if isinstance(value, (list, tuple)) else [value]
        require(
            all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items),
            f"{where}.{key}",
            f"expected a float or a list of {bins} floats",
            value,
        )
        require(
            len(items) == bins or not isinstance(value, (list, tuple)),
            f"{where}.{key}",
            f"a list must have mel_bins={bins} entries",
            value,
        )
        require(key == "mel_mean" or min(items) > 0, f"{where}.{key}", "must be positive", value)
    for key in ("num_heads", "pos_conv_groups"):
        require(
            values["embed_dim"] % values[key] == 0,
            f"{where}.{key}",
            f"must divide embed_dim={values['embed_dim']}",
            values[key],
        )
    require(
        values["pos_conv_kernel"] % 2 == 1,
        f"{where}.pos_conv_kernel",
        "must be odd so that 'same' padding keeps the length",
        values["pos_conv_kernel"],
    )
