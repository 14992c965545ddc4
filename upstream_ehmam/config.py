"""Encoder hyperparameters (docs/design.md "Encoder", "Configuration") as one validated dataclass, plus the CNN frame-count formula.

Defaults are the Base model: 93,163,532 encoder parameters (docs/design.md "Parameter counts"). `frontend` picks what turns the
waveform into 50 frames per second: the CNN (`cnn`, the default) or stacked log-mel frames (`mel`,
upstream_ehmam/frontend.py); `downsample_rate`, `receptive_field` and `frames_for_samples` describe either.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from . import frontend as _mel

# (channels, kernel, stride) per conv: 320x downsampling, 400-sample receptive field (wav2vec 2.0 / data2vec 2.0).
BASE_CONV_LAYERS: list[list[int]] = [[512, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2

_INT_FIELDS = ("embed_dim", "num_layers", "num_heads", "ffn_dim", "pos_conv_depth", "pos_conv_kernel",
               "pos_conv_groups")
FRONTENDS = ("cnn", "mel")
MEL_NORMS = ("utterance", "global")
_PROBABILITY_FIELDS = ("dropout", "attention_dropout", "activation_dropout", "prenet_dropout", "layerdrop")


@dataclass
class EncoderConfig:
    """Shapes and regularisation of the EH-MAM encoder (front end + projection + context encoder)."""

    frontend: str = "cnn"  # cnn (waveform CNN, conv_layers) | mel (80-bin log-mel, 2 frames stacked, mel_* keys)
    conv_layers: list = field(default_factory=lambda: [list(c) for c in BASE_CONV_LAYERS])  # (C, k, s)
    embed_dim: int = 768  # D, the transformer width
    num_layers: int = 12  # post-LN transformer blocks
    num_heads: int = 12  # D / H = 64 per head
    ffn_dim: int = 3072  # 4 x D
    pos_conv_depth: int = 5  # stacked grouped convs in the positional encoder
    pos_conv_kernel: int = 19  # max(3, 95 // depth); odd so "same" padding keeps the length
    pos_conv_groups: int = 16
    dropout: float = 0.1  # after attention out-proj and after the FFN (before each residual)
    attention_dropout: float = 0.1  # on the attention probabilities
    activation_dropout: float = 0.0  # after the FFN's GELU
    prenet_dropout: float = 0.1  # after the pre-encoder LayerNorm
    layerdrop: float = 0.05  # student only, training only
    layer_norm_eps: float = 1e-5
    # frontend mel only (ignored by cnn):
    mel_bins: int = 80  # mel filters of the 25 ms / 10 ms log-mel; the projection reads 2 x mel_bins
    mel_norm: str = "utterance"  # utterance: per-bin mean/std of the utterance's own frames | global: mel_mean/std
    mel_mean: Any = 0.0  # global only: a float or a list of mel_bins floats (python -m pretrain.mel_stats)
    mel_std: Any = 1.0  # global only: a positive float or a list of mel_bins positive floats

    def __post_init__(self) -> None:
        _validate(self.__dict__, "EncoderConfig")
        self.conv_layers = [[int(v) for v in layer] for layer in self.conv_layers]
        for name in ("mel_mean", "mel_std"):
            value = getattr(self, name)
            setattr(self, name, [float(v) for v in value] if isinstance(value, (list, tuple)) else float(value))
        for name in _PROBABILITY_FIELDS + ("layer_norm_eps",):
            setattr(self, name, float(getattr(self, name)))

    @classmethod
    def from_dict(cls, d: dict, where: str = "model") -> "EncoderConfig":
        """Build from a plain dict (e.g. YAML); errors name `<where>.<key>`."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a mapping of encoder settings, found {type(d).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in allowed:
                raise ValueError(f"{where}.{key}: unknown key; allowed: {', '.join(allowed)}")
        values = {**cls().__dict__, **d}
        _validate(values, where)
        return cls(**d)

    def to_dict(self) -> dict:
        """Plain dict of lists, ints and floats (safe for YAML, JSON and weights_only checkpoints)."""
        out = dataclasses.asdict(self)
        out["conv_layers"] = [[int(v) for v in layer] for layer in self.conv_layers]
        for name in ("mel_mean", "mel_std"):
            value = getattr(self, name)
            out[name] = [float(v) for v in value] if isinstance(value, list) else float(value)
        return out

    @property
    def downsample_rate(self) -> int:
        """Samples per output frame: the product of the CNN strides (320 for Base); 320 for mel (2 x 10 ms)."""
        if self.frontend == "mel":
            return _mel.STACK * _mel.MEL_HOP
        rate = 1
        for _, _, stride in self.conv_layers:
            rate *= int(stride)
        return rate

    @property
    def receptive_field(self) -> int:
        """Samples one output frame reads, the shortest input that gives a frame: 400 for the Base CNN; 560 for
        mel (frame t reads samples [320 t, 320 t + 560): two 400-sample windows 160 apart)."""
        if self.frontend == "mel":
            return (_mel.STACK - 1) * _mel.MEL_HOP + _mel.MEL_WINDOW
        field, jump = 1, 1
        for _, kernel, stride in self.conv_layers:
            field += (kernel - 1) * jump
            jump *= stride
        return field

    def frames_for_samples(self, num_samples: int | torch.Tensor) -> int | torch.Tensor:
        """Valid output frames for `num_samples` valid input samples (int or LongTensor), for either front end:
        cnn 16000 -> 49, 400 -> 1, 399 -> 0; mel 16000 -> 49, 560 -> 1, 559 -> 0 (= floor((n - 560) / 320) + 1)."""
        if self.frontend == "mel":
            mel_frames = _mel.mel_frames_for_samples(num_samples)
            if isinstance(mel_frames, torch.Tensor):
                return torch.div(mel_frames, _mel.STACK, rounding_mode="floor")
            return mel_frames // _mel.STACK
        return frames_for_samples(num_samples, self.conv_layers)


def frames_for_samples(num_samples: int | torch.Tensor, conv_layers: list | None = None) -> int | torch.Tensor:
    """Compose floor((n - k) / s) + 1 over the convs, clamped at 0: 16000 -> 49, 400 -> 1, 399 -> 0."""
    layers = BASE_CONV_LAYERS if conv_layers is None else conv_layers
    n = num_samples
    for _, kernel, stride in layers:
        if isinstance(n, torch.Tensor):
            n = (torch.div(n - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)
        else:
            n = max(0, (int(n) - kernel) // stride + 1)
    return n


def _type_name(value: Any) -> str:
    return type(value).__name__


def _validate(values: dict, where: str) -> None:
    """Raise ValueError naming `<where>.<key>` for a wrong type or an impossible value."""

    def fail(key: str, problem: str) -> None:
        raise ValueError(f"{where}.{key}: {problem}")

    if values["frontend"] not in FRONTENDS:
        fail("frontend", f"must be one of {', '.join(FRONTENDS)}, found {values['frontend']!r}")
    if values["mel_norm"] not in MEL_NORMS:
        fail("mel_norm", f"must be one of {', '.join(MEL_NORMS)}, found {values['mel_norm']!r}")
    mel_bins = values["mel_bins"]
    if not isinstance(mel_bins, int) or isinstance(mel_bins, bool) or not 1 <= mel_bins <= 201:
        fail("mel_bins", f"expected an int in 1..201 (the 400-point FFT has 201 bins), found {mel_bins!r}")
    for key in ("mel_mean", "mel_std"):
        value = values[key]
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items):
            fail(key, f"expected a float or a list of {mel_bins} floats, found {value!r}")
        if isinstance(value, (list, tuple)) and len(value) != mel_bins:
            fail(key, f"a list must have mel_bins={mel_bins} entries, found {len(value)}")
        if key == "mel_std" and min(items) <= 0:
            fail(key, f"must be positive, found {value!r}")
    conv_layers = values["conv_layers"]
    if not isinstance(conv_layers, (list, tuple)) or len(conv_layers) == 0:
        fail("conv_layers", f"expected a non-empty list of [channels, kernel, stride], found {conv_layers!r}")
    for i, layer in enumerate(conv_layers):
        ok = isinstance(layer, (list, tuple)) and len(layer) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in layer)
        if not ok:
            fail("conv_layers", f"entry {i} must be [channels, kernel, stride] of ints, found {layer!r}")
        if min(layer) <= 0:
            fail("conv_layers", f"entry {i} must have positive channels, kernel and stride, found {list(layer)}")
    for key in _INT_FIELDS:
        value = values[key]
        if not isinstance(value, int) or isinstance(value, bool):
            fail(key, f"expected int, found {_type_name(value)} ({value!r})")
        if value <= 0:
            fail(key, f"must be positive, found {value}")
    for key in _PROBABILITY_FIELDS + ("layer_norm_eps",):
        value = values[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            fail(key, f"expected float, found {_type_name(value)} ({value!r})")
    for key in _PROBABILITY_FIELDS:
        if not 0.0 <= values[key] < 1.0:
            fail(key, f"must be in [0, 1), found {values[key]}")
    if not values["layer_norm_eps"] > 0:
        fail("layer_norm_eps", f"must be positive, found {values['layer_norm_eps']}")
    if values["embed_dim"] % values["num_heads"] != 0:
        fail("num_heads", f"must divide embed_dim={values['embed_dim']}, found {values['num_heads']}")
    if values["embed_dim"] % values["pos_conv_groups"] != 0:
        fail("pos_conv_groups", f"must divide embed_dim={values['embed_dim']}, found {values['pos_conv_groups']}")
    if values["pos_conv_kernel"] % 2 == 0:
        fail("pos_conv_kernel", f"must be odd so that 'same' padding keeps the length, found "
                                f"{values['pos_conv_kernel']}")
