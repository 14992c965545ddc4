"""Runtime shims that let PyPI s3prl 0.4.18 run on current torch, torchaudio and huggingface_hub.

Nothing happens at import: the entry point calls `apply_compat()` once, before anything imports
s3prl. Every installer is idempotent and only fills what is missing or broken
(docs/design.md "s3prl compatibility layer").
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

import numpy as np
import soundfile
import torch

from measure.torchaudio_import import import_torchaudio

log = logging.getLogger("superb.compat")

SUPPORTED_SOX_EFFECTS = ("channels 1", "rate <Hz>", "gain <dB>")
_MARK = "__superb_compat__"  # set on every object we install, so re-applying is a no-op


def apply_compat() -> None:
    """Install every shim s3prl 0.4.18 needs. Call before the first `import s3prl...`."""
    torchaudio = import_torchaudio()
    install_audio_backend_noops(torchaudio)
    install_soundfile_io(torchaudio)
    install_sox_effects(torchaudio)
    import huggingface_hub

    install_hf_hub_stubs(huggingface_hub)
    install_torch_load_default(torch)
    install_catalyst_sampler()


# --- 1. set_audio_backend ------------------------------------------------------------------------


def _set_audio_backend(backend: str | None) -> None:
    """No-op: torchaudio removed backend selection; audio I/O goes through soundfile here."""


def _get_audio_backend() -> str:
    return "soundfile"


def install_audio_backend_noops(torchaudio: types.ModuleType) -> None:
    for name, func in (("set_audio_backend", _set_audio_backend), ("get_audio_backend", _get_audio_backend)):
        if not hasattr(torchaudio, name):
            setattr(torchaudio, name, func)


# --- 2. load / info through soundfile -----------------------------------------------------------

_RAW_DTYPES = {"PCM_16": "int16", "PCM_24": "int32", "PCM_32": "int32", "FLOAT": "float32", "DOUBLE": "float32"}
_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}


@dataclass(frozen=True)
class AudioInfo:
    """The fields of torchaudio's removed `AudioMetaData`."""

    sample_rate: int
    num_frames: int
    num_channels: int
    bits_per_sample: int
    encoding: str


def load_with_soundfile(
    uri: str | Path | BinaryIO,
    frame_offset: int = 0,
    num_frames: int = -1,
    normalize: bool = True,
    channels_first: bool = True,
    format: str | None = None,
    buffer_size: int = 4096,
    backend: str | None = None,
) -> tuple[torch.Tensor, int]:
    """`torchaudio.load` semantics on soundfile: float32 in [-1, 1], (channels, time) by default.

    With normalize=False, 16/24/32-bit PCM come back as integers, as the sox backend returned.
    """
    dtype = "float32"
    if not normalize:
        subtype = soundfile.info(uri).subtype
        if subtype not in _RAW_DTYPES:
            raise ValueError(f"{uri}: normalize=False is not supported for sample format {subtype}")
        dtype = _RAW_DTYPES[subtype]
        if hasattr(uri, "seek"):
            uri.seek(0)
    data, sample_rate = soundfile.read(uri, start=frame_offset, frames=num_frames, dtype=dtype, always_2d=True)
    wav = torch.from_numpy(np.ascontiguousarray(data))  # (T, C)
    if channels_first:
        wav = wav.T.contiguous()  # (C, T)
    return wav, sample_rate


def info_with_soundfile(
    uri: str | Path | BinaryIO, format: str | None = None, buffer_size: int = 4096, backend: str | None = None
) -> AudioInfo:
    """`torchaudio.info` on soundfile."""
    meta = soundfile.info(uri)
    if meta.format in ("FLAC", "MPEG"):
        encoding = {"FLAC": "FLAC", "MPEG": "MP3"}[meta.format]
    elif meta.subtype in ("FLOAT", "DOUBLE"):
        encoding = "PCM_F"
    elif meta.subtype == "PCM_U8":
        encoding = "PCM_U"
    else:
        encoding = "PCM_S"
    return AudioInfo(meta.samplerate, meta.frames, meta.channels, _BITS.get(meta.subtype, 0), encoding)


def install_soundfile_io(torchaudio: types.ModuleType) -> None:
    """Replace `torchaudio.load` (TorchCodec-only since 2.9) and restore `torchaudio.info`."""
    torchaudio.load = load_with_soundfile
    torchaudio.info = info_with_soundfile


# --- 3. sox_effects -----------------------------------------------------------------------------


def apply_effects_tensor(
    tensor: torch.Tensor, sample_rate: int, effects: Sequence[Sequence[str]], channels_first: bool = True
) -> tuple[torch.Tensor, int]:
    """The subset of SoX effects s3prl's SUPERB tasks use: `channels 1`, `rate N`, `gain dB`."""
    import torchaudio.functional

    wav = tensor if channels_first else tensor.T  # (C, T)
    for effect in effects:
        name, *params = [str(p) for p in effect]
        if name == "channels" and params == ["1"]:
            wav = wav.mean(dim=0, keepdim=True)  # sox mixes down by averaging the channels
        elif name == "rate" and len(params) == 1 and params[0].isdigit():
            new_rate = int(params[0])
            if new_rate != sample_rate:
                wav = torchaudio.functional.resample(wav, sample_rate, new_rate)
                sample_rate = new_rate
        elif name == "gain" and len(params) == 1 and _is_number(params[0]):
            wav = wav * 10.0 ** (float(params[0]) / 20.0)
        else:
            raise ValueError(
                f"sox effect {list(effect)!r} is not implemented by superb.compat "
                f"(torchaudio.sox_effects was removed); supported: {', '.join(SUPPORTED_SOX_EFFECTS)}"
            )
    return (wav if channels_first else wav.T), sample_rate


def apply_effects_file(
    path: str | Path,
    effects: Sequence[Sequence[str]],
    normalize: bool = True,
    channels_first: bool = True,
    format: str | None = None,
) -> tuple[torch.Tensor, int]:
    """Read a file with soundfile, then apply `apply_effects_tensor`."""
    wav, sample_rate = load_with_soundfile(path, normalize=True)
    return apply_effects_tensor(wav, sample_rate, effects, channels_first=channels_first)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def install_sox_effects(torchaudio: types.ModuleType) -> None:
    """Register a `torchaudio.sox_effects` module when this torchaudio no longer has one."""
    if "torchaudio.sox_effects" in sys.modules or importlib.util.find_spec("torchaudio.sox_effects") is not None:
        return
    module = types.ModuleType("torchaudio.sox_effects")
    module.__doc__ = "superb.compat: channels/rate/gain subset of the removed SoX effects."
    module.apply_effects_tensor = apply_effects_tensor
    module.apply_effects_file = apply_effects_file
    module.effect_names = lambda: ["channels", "rate", "gain"]
    setattr(module, _MARK, True)
    sys.modules["torchaudio.sox_effects"] = module
    torchaudio.sox_effects = module


# --- 4. huggingface_hub >= 1.0 ------------------------------------------------------------------


def _hub_feature_removed(name: str) -> type:
    message = (
        f"huggingface_hub.{name} was removed in huggingface_hub 1.0; s3prl's Hub upload/download "
        "options (--hub huggingface, --push_to_hf_hub) are not supported by this project"
    )

    class Removed:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError(message)

        @staticmethod
        def save_token(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError(message)

        @staticmethod
        def get_token(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError(message)

    Removed.__name__ = Removed.__qualname__ = name
    setattr(Removed, _MARK, True)
    return Removed


def install_hf_hub_stubs(huggingface_hub: types.ModuleType) -> None:
    """Give `huggingface_hub` the `HfFolder` and `Repository` names s3prl imports at module level."""
    for name in ("HfFolder", "Repository"):
        try:
            getattr(huggingface_hub, name)
        except (AttributeError, ImportError):
            setattr(huggingface_hub, name, _hub_feature_removed(name))


# --- 5. torch.load(weights_only=...) ------------------------------------------------------------


def load_defaulting_to_full_unpickling(original_load: Callable) -> Callable:
    """Wrap `torch.load` so calls that do not pass `weights_only` get False, as before torch 2.6.

    s3prl's checkpoints pickle an argparse.Namespace; calls that pass weights_only are untouched.
    """
    if getattr(original_load, _MARK, False):
        return original_load

    @functools.wraps(original_load)
    def load(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("weights_only", False)
        return original_load(*args, **kwargs)

    setattr(load, _MARK, True)
    return load


def install_torch_load_default(torch_module: types.ModuleType) -> None:
    torch_module.load = load_defaulting_to_full_unpickling(torch_module.load)


# --- catalyst (KS expert) -----------------------------------------------------------------------


class DistributedSamplerWrapper(torch.utils.data.DistributedSampler):
    """Each DDP rank's share of what another sampler draws (the KS expert's WeightedRandomSampler).

    The same contract as catalyst's class of this name: the wrapped sampler is drawn afresh every epoch
    and the drawn indices are split across ranks by a `DistributedSampler` over their positions.
    """

    def __init__(
        self,
        sampler: torch.utils.data.Sampler,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
    ) -> None:
        super().__init__(range(len(sampler)), num_replicas=num_replicas, rank=rank, shuffle=shuffle)
        self.sampler = sampler

    def __iter__(self):
        drawn = list(self.sampler)
        return iter([drawn[position] for position in super().__iter__()])


def install_catalyst_sampler() -> None:
    """Provide `catalyst.data.sampler.DistributedSamplerWrapper` when catalyst cannot be imported.

    catalyst is archived: pip >= 24.1 rejects the metadata of its last release (22.4) and falls back to
    21.x, whose import fails on Python >= 3.10 (`collections.MutableMapping`). s3prl's KS expert imports
    this one class from it at module level, so without a working catalyst KS cannot start.
    """
    try:
        importlib.import_module("catalyst.data.sampler")
        return
    except Exception as error:  # noqa: BLE001 - any import failure (missing or broken) means: provide ours
        reason = f"{type(error).__name__}: {error}"
    for name in ("catalyst", "catalyst.data", "catalyst.data.sampler"):
        sys.modules.pop(name, None)
    package = types.ModuleType("catalyst")
    data = types.ModuleType("catalyst.data")
    sampler = types.ModuleType("catalyst.data.sampler")
    package.__path__, data.__path__ = [], []  # namespace-like: only our submodules exist
    sampler.DistributedSamplerWrapper = DistributedSamplerWrapper
    package.data, data.sampler = data, sampler
    for module in (package, data, sampler):
        setattr(module, _MARK, True)
        sys.modules[module.__name__] = module
    log.info("catalyst unavailable (%s): using superb.compat.DistributedSamplerWrapper", reason)
