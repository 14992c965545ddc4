"""run_downstream.py --cache-features: a frozen upstream runs once per utterance, and the cached batch
equals what the upstream itself returns for the same utterances."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from superb.feature_cache import FrozenFeatureCache, collate_features, waveform_key
from superb.tasks import DEFAULT_CACHE_GIB, plan_argv


class FramewiseUpstream(nn.Module):
    """A toy upstream: 3 hidden states of per-frame (80-sample) features, counting its forward calls.
    Frames never see each other, so padding cannot change the valid frames."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(80, 4)
        self.calls = 0

    def get_downsample_rates(self, key: str) -> int:
        return 80

    def forward(self, wavs: list[torch.Tensor]) -> dict:
        self.calls += 1
        length = max(len(w) for w in wavs) // 80
        frames = torch.stack(
            [nn.functional.pad(w, (0, length * 80 - len(w)))[: length * 80].view(length, 80) for w in wavs]
        )
        first = self.proj(frames)
        hidden = [first, first.tanh(), 2 * first]
        return {"hidden_states": hidden, "last_hidden_state": hidden[-1], "tag": "toy"}


def _wavs(lengths: list[int], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) for n in lengths]


def test_cached_batch_equals_the_upstream_on_valid_frames_and_runs_it_once_per_utterance():
    torch.manual_seed(0)
    upstream = FramewiseUpstream().eval()
    cache = FrozenFeatureCache(upstream, max_bytes=2**30)
    wavs = _wavs([800, 1600, 1200])
    direct = upstream(wavs)
    upstream.calls = 0
    first = cache(wavs)
    assert upstream.calls == 3 and (cache.hits, cache.misses) == (0, 3)
    again = cache(list(reversed(wavs)))  # same utterances, another batch order
    assert upstream.calls == 3 and cache.hits == 3
    for out, order in ((first, [0, 1, 2]), (again, [2, 1, 0])):
        assert out["tag"] == "toy" and len(out["hidden_states"]) == 3
        assert out["last_hidden_state"].shape == direct["last_hidden_state"].shape
        for layer in range(3):
            for row, index in enumerate(order):
                valid = len(wavs[index]) // 80
                torch.testing.assert_close(
                    out["hidden_states"][layer][row, :valid], direct["hidden_states"][layer][index, :valid]
                )
                assert torch.all(out["hidden_states"][layer][row, valid:] == 0)


def test_a_changed_waveform_misses_the_cache():
    cache = FrozenFeatureCache(FramewiseUpstream().eval(), max_bytes=2**30)
    wav = _wavs([800])[0]
    cache([wav])
    changed = wav.clone()
    changed[5] += 1e-3
    assert waveform_key(changed) != waveform_key(wav)
    cache([changed])
    assert (cache.hits, cache.misses) == (0, 2)


def test_a_full_cache_recomputes_instead_of_growing():
    upstream = FramewiseUpstream().eval()
    one_utterance = 3 * 10 * 4 * 4 + 10 * 4 * 4  # three hidden states and the last one, float32
    cache = FrozenFeatureCache(upstream, max_bytes=one_utterance)
    wavs = _wavs([800, 800], seed=1)
    cache(wavs)
    cache(wavs)
    assert cache.stored_bytes == one_utterance
    assert (cache.hits, cache.misses) == (1, 3)


def test_the_cache_refuses_an_upstream_in_train_mode():
    cache = FrozenFeatureCache(FramewiseUpstream().train(), max_bytes=2**30)
    with pytest.raises(RuntimeError, match="train mode"):
        cache(_wavs([800]))


def test_collate_pads_plain_tensors_and_tuples_along_time():
    a = {"x": torch.ones(1, 2, 3), "h": (torch.ones(1, 2, 3),), "n": 7}
    b = {"x": torch.ones(1, 4, 3), "h": (torch.ones(1, 4, 3),), "n": 8}
    merged = collate_features([a, b])
    assert merged["x"].shape == (2, 4, 3) and isinstance(merged["h"], tuple) and merged["h"][0].shape == (2, 4, 3)
    assert merged["x"][0, 2:].abs().sum() == 0 and merged["n"] == 7


@pytest.mark.parametrize(
    "argv, expected", [([], None), (["--cache-features"], DEFAULT_CACHE_GIB), (["--cache-features", "1.5"], 1.5)]
)
def test_run_downstream_takes_the_cache_option(argv, expected):
    plan = plan_argv(["-m", "train", "-u", "fbank", "-n", "x", *argv], {}, cuda_available=False, cpu_count=2)
    assert plan.cache_features_gib == expected
    assert "--cache-features" not in plan.argv


@pytest.mark.parametrize("size", ["0", "-1", "lots"])
def test_a_bad_cache_size_is_refused(size, capsys):
    with pytest.raises(SystemExit):
        plan_argv(
            ["-m", "train", "-u", "fbank", "-n", "x", "--cache-features", size], {}, cuda_available=False, cpu_count=2
        )
    assert "cache size" in capsys.readouterr().err
