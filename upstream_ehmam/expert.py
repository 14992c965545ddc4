"""s3prl UpstreamExpert for EH-MAM checkpoints (docs/design.md "The s3prl upstream"): 16 kHz waveforms -> hidden
states. Run: `run_downstream.py -u ehmam -k <checkpoint.pt> [-g OPTIONS]`, OPTIONS a comma list of `teacher` (the
EMA teacher's weights; `-u ehmam_teacher` is the same) and `num_layers=K` (keep the first K blocks), e.g.
`-g teacher,num_layers=8`, or a YAML file with `num_layers: K`."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from .checkpoint import build_encoder, load_checkpoint
from .model import normalize_waveforms

TEACHER = "teacher"  # the one way to ask for the EMA teacher's weights (or the hub name ehmam_teacher)
STUDENT = "student"  # the default, accepted for symmetry
HOW_TO_CHOOSE = "choose the teacher with -g teacher (or -u ehmam_teacher) and the depth with -g num_layers=K"


def _read_options(model_config: str | None) -> dict:
    """-g / model_config: None, a comma list of `student`, `teacher` and `num_layers=K`, or a YAML file with the key
    num_layers -> {"teacher": True / False / None (not said), "num_layers": int | None}."""
    options = {"teacher": None, "num_layers": None}
    if model_config is None or model_config == "":
        return options
    if os.path.isfile(model_config):
        with open(model_config) as f:
            try:
                values = yaml.safe_load(f) or {}
            except yaml.YAMLError as err:
                raise ValueError(f"{model_config}: not valid YAML ({err})") from err
        if not isinstance(values, dict):
            raise ValueError(
                f"{model_config}: expected a mapping with the key num_layers, found {type(values).__name__}"
            )
        for key in values:
            if key != "num_layers":
                raise ValueError(f"{model_config}: unknown key '{key}'; the only key is num_layers ({HOW_TO_CHOOSE})")
        return {**options, "num_layers": _layer_count(values.get("num_layers"), model_config)}
    source = f"model_config {model_config!r}"
    seen = set()
    for entry in (part.strip() for part in model_config.split(",")):
        key, sep, value = (part.strip() for part in entry.partition("="))
        name = key if sep else entry
        if name in seen:
            raise ValueError(f"{source}: '{name}' is given twice")
        seen.add(name)
        if not sep and entry in (STUDENT, TEACHER):
            options["teacher"] = entry == TEACHER
        elif sep and key == "num_layers":
            options["num_layers"] = _layer_count(value, source)
        elif sep and key == "weights":
            raise ValueError(f"{source}: weights={value} is no longer an option: {HOW_TO_CHOOSE}")
        else:
            raise ValueError(
                f"{source}: unknown entry {entry!r} (or no such file); {HOW_TO_CHOOSE}, e.g. -g teacher,num_layers=8"
            )
    if {STUDENT, TEACHER} <= seen:
        raise ValueError(f"{source}: asks for both the student and the teacher")
    return options


def _layer_count(value: object, source: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: num_layers must be an integer, found {value!r}") from None


class UpstreamExpert(nn.Module):
    """EH-MAM encoder as an s3prl upstream: hidden_states = pre-LN block input + every block output."""

    teacher_only = False  # TeacherExpert (-u ehmam_teacher) sets it

    def __init__(self, ckpt: str, model_config: str | None = None, refresh: bool = False, **kwargs):
        super().__init__()
        # `refresh` is part of s3prl's factory signature (re-download); checkpoints here are local files.
        if ckpt is None:
            raise ValueError(
                "the ehmam upstream needs a checkpoint: pass -k <checkpoint.pt> "
                "(an ehmam-pretrain or ehmam-encoder file, or a fairseq data2vec 2.0 / EH-MAM release file)"
            )
        options = _read_options(model_config)
        for key, value in kwargs.items():  # s3prl's extra_conf: num_layers only, and not against -g's
            if key != "num_layers":
                raise ValueError(
                    f"unknown upstream option '{key}'; the only keyword option is num_layers ({HOW_TO_CHOOSE})"
                )
            if options["num_layers"] not in (None, value):
                raise ValueError(
                    f"option 'num_layers' is {options['num_layers']!r} in model_config "
                    f"{model_config!r} but {value!r} in the keyword arguments"
                )
            options["num_layers"] = value
        if self.teacher_only:
            if options["teacher"] is False:
                raise ValueError(
                    f"ehmam_teacher loads the teacher's weights; model_config {model_config!r} asks for "
                    f"the student (use ehmam)"
                )
            options["teacher"] = True
        weights = TEACHER if options["teacher"] else STUDENT
        self.model = build_encoder(load_checkpoint(ckpt), weights=weights, source=str(ckpt))
        if options["num_layers"] is not None:
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
            found = (
                f"a tensor of shape {tuple(wavs.shape)} (wrap it: [wav] or list(batch))"
                if isinstance(wavs, torch.Tensor)
                else "an empty list"
                if isinstance(wavs, (list, tuple))
                else type(wavs).__name__
            )
            raise ValueError(f"expected a non-empty list of 1-D waveform tensors, found {found}")
        for i, w in enumerate(wavs):
            if not isinstance(w, torch.Tensor):
                raise ValueError(f"waveform {i}: expected a torch.Tensor, found {type(w).__name__}")
            if w.dim() != 1:
                raise ValueError(f"waveform {i}: expected a 1-D tensor of samples, found shape {tuple(w.shape)}")
            if not w.is_floating_point():
                raise ValueError(
                    f"waveform {i}: dtype {w.dtype} is not floating point; convert the samples to "
                    f"float in [-1, 1] (e.g. int16 / 32768)"
                )
            if w.shape[0] == 0:
                raise ValueError(f"waveform {i}: zero-length waveform")


class TeacherExpert(UpstreamExpert):
    """-u ehmam_teacher: the EMA teacher's weights, -g as for ehmam less the choice of weights."""

    teacher_only = True
