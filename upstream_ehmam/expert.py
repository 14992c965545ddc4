"""s3prl UpstreamExpert for EH-MAM checkpoints (docs/design.md "The s3prl upstream"): 16 kHz waveforms -> hidden
states. Run: `run_downstream.py -u ehmam -k <checkpoint.pt> [-g student|teacher|<options.yaml>|key=value,...]`,
e.g. `-g weights=teacher,num_layers=8` (the keys of the options YAML)."""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from .checkpoint import WEIGHTS, build_encoder, load_checkpoint
from .model import normalize_waveforms

OPTION_KEYS = ("weights", "num_layers")


def _read_options(model_config: str | None) -> dict:
    """model_config: None, 'student', 'teacher', a YAML file, or inline 'key=value,key=value' with the keys
    weights / num_layers: 'weights=teacher,num_layers=8' -> {'weights': 'teacher', 'num_layers': 8}."""
    if model_config is None or model_config == "":
        return {}
    if model_config in WEIGHTS:
        return {"weights": model_config}
    if os.path.isfile(model_config):
        with open(model_config) as f:
            try:
                return _check_option_keys(yaml.safe_load(f) or {}, model_config)
            except yaml.YAMLError as err:
                raise ValueError(f"{model_config}: not valid YAML ({err})") from err
    if "=" not in model_config:
        raise ValueError(f"model_config must be 'student', 'teacher', a YAML file or inline options such as "
                         f"'num_layers=8' or 'weights=teacher,num_layers=8', found {model_config!r} (no such file)")
    source, options = f"model_config {model_config!r}", {}
    for entry in model_config.split(","):
        key, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not key or not value:
            raise ValueError(f"{source}: entry {entry.strip()!r} is not key=value; expected e.g. "
                             f"'num_layers=8' or 'weights=teacher,num_layers=8'")
        if key in options:
            raise ValueError(f"{source}: key '{key}' is given twice")
        options[key] = value  # weights is checked against WEIGHTS by the expert, like a YAML value
    _check_option_keys(options, source)
    if "num_layers" in options:
        try:
            options["num_layers"] = int(options["num_layers"])
        except ValueError:
            raise ValueError(f"{source}: num_layers must be an integer, found {options['num_layers']!r}") from None
    return options


def _check_option_keys(options: object, source: str) -> dict:
    if not isinstance(options, dict):
        raise ValueError(f"{source}: expected a mapping with keys {', '.join(OPTION_KEYS)}, "
                         f"found {type(options).__name__}")
    for key in options:
        if key not in OPTION_KEYS:
            raise ValueError(f"{source}: unknown key '{key}'; allowed: {', '.join(OPTION_KEYS)}")
    return options


class UpstreamExpert(nn.Module):
    """EH-MAM encoder as an s3prl upstream: hidden_states = pre-LN block input + every block output."""

    def __init__(self, ckpt: str, model_config: str | None = None, refresh: bool = False, **kwargs):
        super().__init__()
        # `refresh` is part of s3prl's factory signature (re-download); checkpoints here are local files.
        if ckpt is None:
            raise ValueError("the ehmam upstream needs a checkpoint: pass -k <checkpoint.pt> "
                             "(an ehmam-pretrain or ehmam-encoder file)")
        options = _read_options(model_config)
        for key, value in kwargs.items():  # keyword options join the -g ones; one key with two values is an error
            if key not in OPTION_KEYS:
                raise ValueError(f"unknown upstream option '{key}'; allowed: {', '.join(OPTION_KEYS)}")
            if options.setdefault(key, value) != value:
                raise ValueError(f"option '{key}' is {options[key]!r} in model_config {model_config!r} but "
                                 f"{value!r} in the keyword arguments")
        weights = options.get("weights", "student")  # build_encoder refuses anything but WEIGHTS
        self.model = build_encoder(load_checkpoint(ckpt), weights=weights, source=str(ckpt))
        if options.get("num_layers") is not None:
            self.model.truncate_layers(options["num_layers"])
        # Shorter inputs are zero-padded to one receptive field so that every utterance has >= 1 frame.
        self.min_samples = self.model.config.receptive_field  # 400 samples for Base
        self.eval()

    def get_downsample_rates(self, key: str) -> int:
        return self.model.config.downsample_rate

    def forward(self, wavs: list[torch.Tensor]) -> dict:
        """wavs: list of 1-D float 16 kHz tensors -> {"hidden_states": [L+1] x (B, T, D), "last_hidden_state"}."""
        self._check_inputs(wavs)
        param = next(self.model.parameters())
        wavs = [w.to(device=param.device) for w in wavs]
        finite = torch.stack([torch.isfinite(w).all() for w in wavs]).cpu()  # one host sync for the batch
        if not bool(finite.all()):
            bad = [i for i, ok in enumerate(finite.tolist()) if not ok]
            raise ValueError(f"waveform(s) {bad}: non-finite samples (NaN or inf)")
        padded, lengths = normalize_waveforms(wavs)  # (B, S), (B,)
        if padded.shape[1] < self.min_samples:
            padded = F.pad(padded, (0, self.min_samples - padded.shape[1]))
        lengths = lengths.clamp(min=self.min_samples)
        hidden_states, _ = self.model.extract_features(padded.to(param.dtype), lengths)
        return {"hidden_states": hidden_states, "last_hidden_state": hidden_states[-1]}

    @staticmethod
    def _check_inputs(wavs: list[torch.Tensor]) -> None:
        if not isinstance(wavs, (list, tuple)) or len(wavs) == 0:
            found = (f"a tensor of shape {tuple(wavs.shape)} (wrap it: [wav] or list(batch))"
                     if isinstance(wavs, torch.Tensor) else "an empty list" if isinstance(wavs, (list, tuple))
                     else type(wavs).__name__)
            raise ValueError(f"expected a non-empty list of 1-D waveform tensors, found {found}")
        for i, w in enumerate(wavs):
            if not isinstance(w, torch.Tensor):
                raise ValueError(f"waveform {i}: expected a torch.Tensor, found {type(w).__name__}")
            if w.dim() != 1:
                raise ValueError(f"waveform {i}: expected a 1-D tensor of samples, found shape {tuple(w.shape)}")
            if not w.is_floating_point():
                raise ValueError(f"waveform {i}: dtype {w.dtype} is not floating point; convert the samples to "
                                 f"float in [-1, 1] (e.g. int16 / 32768)")
            if w.shape[0] == 0:
                raise ValueError(f"waveform {i}: zero-length waveform")
