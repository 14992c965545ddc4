"""Cache a frozen upstream's features per utterance (`run_downstream.py --cache-features`).

s3prl's runner calls the upstream on every training batch, although a frozen upstream in eval mode
returns the same features for the same waveform each epoch. On a CPU that forward pass dominates a
short downstream schedule: a tiny transformer upstream spends most of a mini-SUPERB run re-encoding
utterances it has already encoded. The cache runs the upstream once per distinct waveform (alone, so no
padding reaches the encoder) and afterwards returns the stored hidden states, padded to the batch.

Exactness: for an upstream that masks padding correctly, per-utterance features equal the valid frames
of the batched call up to float rounding, and the runner's Featurizer keeps only each utterance's valid
frames. Random train-time augmentation of the waveform (random crops) simply misses the cache.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
from typing import Any

import torch
from torch import nn

log = logging.getLogger("superb.feature_cache")


def waveform_key(wav: torch.Tensor) -> str:
    """A content key for one waveform: its length and a digest of its samples."""
    samples = wav.detach().to("cpu", torch.float32).contiguous().numpy()
    return f"{samples.shape[0]}:{hashlib.blake2b(samples.tobytes(), digest_size=16).hexdigest()}"


def _tensor_bytes(features: dict[str, Any]) -> int:
    total = 0
    for value in features.values():
        for tensor in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


def _pad_time(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Stack (1, T_i, ...) tensors into (B, max T, ...), zero-padded along time."""
    length = max(t.shape[1] for t in tensors)
    padded = [nn.functional.pad(t, (0, 0) * (t.dim() - 2) + (0, length - t.shape[1])) for t in tensors]
    return torch.cat(padded, dim=0)


def collate_features(per_utterance: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge single-utterance upstream outputs into one batched output of the same shape.

    Tensors of shape (1, T, ...) and lists/tuples of them are padded along time and stacked; any other
    value (the upstream's bookkeeping) is taken from the first utterance.
    """
    first = per_utterance[0]
    merged: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 2:
            merged[key] = _pad_time([out[key] for out in per_utterance])
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
            merged[key] = type(value)(_pad_time([out[key][i] for out in per_utterance]) for i in range(len(value)))
        else:
            merged[key] = value
    return merged


class FrozenFeatureCache(nn.Module):
    """Wraps a frozen upstream; `forward(wavs)` returns what `upstream(wavs)` would, from a cache.

    Only for an upstream that is not trained (its outputs must not depend on the step). Entries are kept
    on the CPU until `max_bytes` is reached; later utterances are computed every time (logged once).
    """

    def __init__(self, upstream: nn.Module, max_bytes: int) -> None:
        super().__init__()
        self.upstream = upstream
        self.max_bytes = max_bytes
        self.stored_bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: dict[str, dict[str, Any]] = {}
        self._full_logged = False

    def get_downsample_rates(self, key: str) -> int:
        return self.upstream.get_downsample_rates(key)

    def forward(self, wavs: list[torch.Tensor]) -> dict[str, Any]:
        if self.upstream.training:
            raise RuntimeError("FrozenFeatureCache: the upstream is in train mode; cached features would be stale")
        device = wavs[0].device
        outputs = []
        for wav in wavs:
            key = waveform_key(wav)
            features = self._entries.get(key)
            if features is None:
                self.misses += 1
                with torch.no_grad():
                    features = {k: _to(v, "cpu") for k, v in self.upstream([wav]).items()}
                self._store(key, features)
            else:
                self.hits += 1
            outputs.append(features)
        return {k: _to(v, device) for k, v in collate_features(outputs).items()}

    def _store(self, key: str, features: dict[str, Any]) -> None:
        size = _tensor_bytes(features)
        if self.stored_bytes + size > self.max_bytes:
            if not self._full_logged:
                log.warning(
                    "feature cache full (%.2f GiB, %d utterances): further utterances are recomputed",
                    self.stored_bytes / 2**30,
                    len(self._entries),
                )
                self._full_logged = True
            return
        self._entries[key] = features
        self.stored_bytes += size

    def summary(self) -> str:
        return (
            f"feature cache: {len(self._entries)} utterances, {self.stored_bytes / 2**20:.0f} MiB, "
            f"{self.hits} hits, {self.misses} misses"
        )


def _to(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)) and all(isinstance(v, torch.Tensor) for v in value):
        return type(value)(v.to(device) for v in value)
    return value


def install_feature_cache(max_gib: float) -> None:
    """Make every s3prl Runner built afterwards wrap its frozen upstream in a FrozenFeatureCache.

    A trainable upstream (`-f`) is refused: its features change with every update.
    """
    from s3prl.downstream.runner import Runner

    original = getattr(Runner._get_upstream, "__wrapped__", Runner._get_upstream)

    def _get_upstream(self: Any) -> Any:
        entry = original(self)
        if self.args.upstream_trainable:
            raise ValueError("--cache-features needs a frozen upstream: drop -f/--upstream_trainable or the cache")
        cache = FrozenFeatureCache(entry.model, int(max_gib * 2**30))
        entry.model = cache
        atexit.register(lambda: log.info(cache.summary()))
        log.info("caching frozen upstream features per utterance (at most %.1f GiB)", max_gib)
        return entry

    _get_upstream.__wrapped__ = original
    Runner._get_upstream = _get_upstream
