"""The s3prl compatibility shims (superb/compat.py), each on its own and as installed by apply_compat."""

from __future__ import annotations

import argparse
import pickle
import sys
import types

import numpy as np
import pytest
import soundfile
import torch
from superb_trees import SAMPLE_RATE, write_noise

from measure.torchaudio_import import make_extension_stub
from superb import compat


@pytest.fixture
def restore_globals():
    """apply_compat patches process-wide names; put them back so other tests see the originals."""
    import huggingface_hub

    torchaudio = compat.import_torchaudio()
    saved = {
        "torch.load": torch.load,
        "ta": {
            name: getattr(torchaudio, name, None)
            for name in ("load", "info", "set_audio_backend", "get_audio_backend", "sox_effects")
        },
        "hf": {name: vars(huggingface_hub).get(name) for name in ("HfFolder", "Repository")},
        "sox_module": sys.modules.get("torchaudio.sox_effects"),
    }
    yield
    torch.load = saved["torch.load"]
    for name, value in saved["ta"].items():
        if value is None:
            vars(torchaudio).pop(name, None)
        else:
            setattr(torchaudio, name, value)
    for name, value in saved["hf"].items():
        if value is None:
            vars(huggingface_hub).pop(name, None)
        else:
            setattr(huggingface_hub, name, value)
    if saved["sox_module"] is None:
        sys.modules.pop("torchaudio.sox_effects", None)


def test_set_audio_backend_is_a_noop_added_only_when_missing():
    """set/get_audio_backend are added to a torchaudio lacking them, existing ones are kept."""
    fake = types.ModuleType("fake_torchaudio")
    compat.install_audio_backend_noops(fake)
    assert fake.set_audio_backend("sox_io") is None
    assert fake.get_audio_backend() == "soundfile"
    original = lambda backend: "original"  # noqa: E731
    other = types.ModuleType("other")
    other.set_audio_backend = original
    compat.install_audio_backend_noops(other)
    assert other.set_audio_backend is original


@pytest.mark.parametrize("suffix,channels", [(".wav", 1), (".flac", 1), (".wav", 2), (".flac", 2)])
def test_load_matches_soundfile_as_channels_by_time_float32(tmp_path, suffix, channels):
    """load_with_soundfile returns soundfile's samples as float32 (channels, time), and its sample rate."""
    path = tmp_path / f"a{suffix}"
    write_noise(path, 3200, seed=1, channels=channels)
    wav, rate = compat.load_with_soundfile(path)
    expected, _ = soundfile.read(path, dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE and wav.dtype == torch.float32
    assert wav.shape == (channels, 3200)
    np.testing.assert_array_equal(wav.numpy(), expected.T)


def test_load_offsets_layout_and_raw_integers(tmp_path):
    """frame_offset/num_frames cut like torchaudio, channels_first=False gives (time, channels),
    normalize=False gives the int16 samples of 16-bit PCM."""
    path = tmp_path / "b.wav"
    samples = write_noise(path, 1000, seed=2, channels=2)  # (T, C) float32
    part, _ = compat.load_with_soundfile(path, frame_offset=100, num_frames=50)
    np.testing.assert_array_equal(part.numpy(), samples[100:150].T)
    time_major, _ = compat.load_with_soundfile(path, channels_first=False)
    assert time_major.shape == (1000, 2)
    raw, _ = compat.load_with_soundfile(path, normalize=False)
    assert raw.dtype == torch.int16
    np.testing.assert_array_equal(raw.numpy(), (samples * 32768).astype(np.int16).T)


def test_info_reports_soundfile_metadata(tmp_path):
    """info_with_soundfile gives the AudioMetaData fields s3prl reads."""
    write_noise(tmp_path / "c.wav", 1234, seed=3, channels=2)
    write_noise(tmp_path / "c.flac", 4321, seed=3)
    wav_info = compat.info_with_soundfile(tmp_path / "c.wav")
    assert (wav_info.sample_rate, wav_info.num_frames, wav_info.num_channels) == (SAMPLE_RATE, 1234, 2)
    assert (wav_info.bits_per_sample, wav_info.encoding) == (16, "PCM_S")
    flac_info = compat.info_with_soundfile(tmp_path / "c.flac")
    assert (flac_info.num_frames, flac_info.encoding) == (4321, "FLAC")


def test_sox_effects_channels_rate_gain(tmp_path):
    """channels 1 averages the channels, rate N resamples like torchaudio.functional.resample,
    gain dB scales by 10^(dB/20); apply_effects_file equals load + apply_effects_tensor."""
    torchaudio = compat.import_torchaudio()
    path = tmp_path / "d.wav"
    samples = torch.from_numpy(write_noise(path, 8000, seed=4, channels=2)).T  # (C, T)
    mono, rate = compat.apply_effects_tensor(samples, SAMPLE_RATE, [["channels", "1"]])
    torch.testing.assert_close(mono, samples.mean(0, keepdim=True))
    up, rate = compat.apply_effects_tensor(mono, 8000, [["rate", "16000"]])
    assert rate == 16000 and up.shape == (1, 16000)
    torch.testing.assert_close(up, torchaudio.functional.resample(mono, 8000, 16000))
    quieter, _ = compat.apply_effects_tensor(mono, rate, [["gain", "-3.0"]])
    torch.testing.assert_close(quieter, mono * 10 ** (-3 / 20))
    effects = [["channels", "1"], ["rate", "8000"], ["gain", "-3.0"]]
    from_file, file_rate = compat.apply_effects_file(str(path), effects)
    from_tensor, tensor_rate = compat.apply_effects_tensor(samples, SAMPLE_RATE, effects)
    assert file_rate == tensor_rate == 8000
    torch.testing.assert_close(from_file, from_tensor)


@pytest.mark.parametrize(
    "effect", [["reverb"], ["gain", "-n"], ["channels", "2"], ["rate", "-v", "16000"], ["speed", "1.1"]]
)
def test_sox_effects_reject_anything_else_loudly(effect):
    """An effect outside channels 1 / rate N / gain dB raises a ValueError naming it."""
    with pytest.raises(ValueError, match=effect[0]):
        compat.apply_effects_tensor(torch.zeros(1, 100), SAMPLE_RATE, [effect])


def test_hf_hub_stubs_import_and_fail_loudly_on_use():
    """HfFolder/Repository are added where missing; using them raises a RuntimeError that says why;
    names the hub module still has are kept."""
    fake = types.ModuleType("fake_hf")
    kept = object()
    fake.Repository = kept
    compat.install_hf_hub_stubs(fake)
    assert fake.Repository is kept
    with pytest.raises(RuntimeError, match="huggingface_hub"):
        fake.HfFolder.save_token("token")
    bare = types.ModuleType("bare_hf")
    compat.install_hf_hub_stubs(bare)
    with pytest.raises(RuntimeError, match="Repository"):
        bare.Repository("dir", clone_from="x")


def test_torch_load_defaults_to_full_unpickling_only_when_not_passed(tmp_path):
    """Without weights_only the wrapped load unpickles s3prl's Namespace; an explicit
    weights_only=True still refuses it; wrapping twice is a no-op."""
    path = tmp_path / "ckpt.pt"
    torch.save({"Args": argparse.Namespace(downstream="ctc"), "Step": 3}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # the breakage: torch >= 2.6 defaults to weights_only=True
    wrapped = compat.load_defaulting_to_full_unpickling(torch.load)
    assert wrapped(path)["Args"].downstream == "ctc"
    with pytest.raises(pickle.UnpicklingError):
        wrapped(path, weights_only=True)
    assert compat.load_defaulting_to_full_unpickling(wrapped) is wrapped


def test_extension_stub_reports_unavailable_and_fails_aligned_ops():
    """The torchaudio._extension stub says the C++ extension is absent; alignment ops raise."""
    stub = make_extension_stub()
    assert stub._IS_TORCHAUDIO_EXT_AVAILABLE is False and stub._IS_ALIGN_AVAILABLE is False
    assert stub._load_lib("libtorchaudio") is False

    def forced_align():
        return "ran"

    with pytest.raises(RuntimeError, match="forced_align"):
        stub.fail_if_no_align(forced_align)()


def test_torchaudio_imports_and_its_python_paths_run():
    """After import_torchaudio (stubbing the extension if it cannot load), the pure-Python pieces
    s3prl uses work: resample, kaldi fbank, MelSpectrogram, lfilter."""
    torchaudio = compat.import_torchaudio()
    wav = torch.randn(1, 1600)
    assert torchaudio.functional.resample(wav, 16000, 8000).shape == (1, 800)
    assert torchaudio.compliance.kaldi.fbank(wav, num_mel_bins=40).shape[1] == 40
    assert torchaudio.transforms.MelSpectrogram(n_mels=16)(wav).shape[1] == 16
    b, a = torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])
    torch.testing.assert_close(
        torchaudio.functional.lfilter(wav, a, b, clamp=False)[0, 1:], (wav[0, 1:] + wav[0, :-1]) / 2
    )


def test_apply_compat_installs_everything_s3prl_imports(restore_globals, tmp_path):
    """After apply_compat, s3prl's module-level imports resolve and torchaudio.load reads via soundfile."""
    compat.apply_compat()
    compat.apply_compat()  # idempotent
    import torchaudio
    from huggingface_hub import HfFolder, Repository  # noqa: F401
    from torchaudio.sox_effects import apply_effects_file, apply_effects_tensor  # noqa: F401

    torchaudio.set_audio_backend("sox_io")
    path = tmp_path / "e.flac"
    samples = write_noise(path, 500, seed=5)
    wav, rate = torchaudio.load(str(path))
    np.testing.assert_array_equal(wav[0].numpy(), samples)
    assert torchaudio.info(str(path)).num_frames == 500
    saved = tmp_path / "ns.pt"
    torch.save({"Args": argparse.Namespace(x=1)}, saved)
    assert torch.load(saved, map_location="cpu")["Args"].x == 1


def test_distributed_sampler_wrapper_splits_each_epochs_draw_across_ranks():
    """Two ranks together see exactly one fresh draw of the wrapped sampler per epoch, disjointly."""
    weights = torch.tensor([0.1, 5.0, 0.1, 5.0, 1.0, 1.0, 0.5, 2.0])
    generator = torch.Generator().manual_seed(0)
    wrapped = torch.utils.data.WeightedRandomSampler(weights, num_samples=8, generator=generator)
    for epoch in range(3):
        per_rank = []
        for rank in (0, 1):
            generator.manual_seed(100 + epoch)  # both ranks draw the same indices, as seeded DDP ranks do
            ranked = compat.DistributedSamplerWrapper(wrapped, num_replicas=2, rank=rank, shuffle=True)
            ranked.set_epoch(epoch)
            per_rank.append(list(ranked))
        generator.manual_seed(100 + epoch)
        drawn = list(wrapped)
        assert len(per_rank[0]) == len(per_rank[1]) == 4
        assert sorted(per_rank[0] + per_rank[1]) == sorted(drawn)


def test_catalyst_sampler_is_provided_only_when_catalyst_cannot_be_imported(monkeypatch):
    for name in ("catalyst", "catalyst.data", "catalyst.data.sampler"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "catalyst", None)  # `import catalyst` now raises ImportError
    compat.install_catalyst_sampler()
    from catalyst.data.sampler import DistributedSamplerWrapper

    assert DistributedSamplerWrapper is compat.DistributedSamplerWrapper
    working = types.ModuleType("catalyst.data.sampler")
    working.DistributedSamplerWrapper = object
    monkeypatch.setitem(sys.modules, "catalyst.data.sampler", working)
    compat.install_catalyst_sampler()  # a working catalyst is left alone
    assert sys.modules["catalyst.data.sampler"] is working
