"""Shared pytest fixtures.

`minisuperb_ci`: the Path of a ci-scale mini-SUPERB corpus (seed 0), generated once per test session
(about 15 s on 2 cores). Set MINISUPERB_CACHE=/some/folder to keep it between sessions: a complete corpus
there from the same minisuperb source (version + code fingerprint), scale ci and seed 0 is reused; an
empty or missing folder, or an older mini-SUPERB output, is (re)generated in place; a folder with other
content is left alone and the corpus is generated under pytest's temporary directory instead.
Tests must treat the corpus as read-only: it is shared by every test file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch


def _reusable(info: dict | None, version: str, source: str) -> bool:
    return bool(
        info
        and info.get("complete")
        and info.get("version") == version
        and info.get("source") == source
        and info.get("scale") == "ci"
        and info.get("seed") == 0
    )


@pytest.fixture(scope="session")
def minisuperb_ci(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from minisuperb import __version__, generate, read_marker, source_fingerprint

    source = source_fingerprint()
    cache = os.environ.get("MINISUPERB_CACHE")
    if cache:
        path = Path(cache).absolute()
        info = read_marker(path) if path.is_dir() else None
        if _reusable(info, __version__, source):
            return path
        if not path.exists() or not any(path.iterdir()) or info is not None:
            generate(path, "ci", seed=0, workers=2, force=True, progress=False)
            return path
    path = tmp_path_factory.mktemp("minisuperb") / "ci"
    generate(path, "ci", seed=0, workers=2, progress=False)
    return path


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: identical kernels in in-process and subprocess runs (OMP_NUM_THREADS=1), and no
    OpenMP spinning on a loaded 2-core machine, where two competing threads run several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def harmonic_utterance(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Speech-like test signal: a few voiced segments with changing pitch and formant-like partials, plus noise."""
    t = np.arange(int(seconds * 16000)) / 16000
    out = np.zeros_like(t)
    for start in np.arange(0, seconds, 0.25):
        seg = (t >= start) & (t < start + 0.25)
        f0 = rng.uniform(90, 250)
        for k in range(1, 8):
            out[seg] += rng.uniform(0, 1) / k * np.sin(2 * np.pi * f0 * k * t[seg])
    out += 0.05 * rng.standard_normal(t.shape)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture(scope="session")
def harmonic_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fairseq manifest of 12 harmonic utterances of 2.5-3.5 s (seed 0) for short pretraining runs; read-only."""
    from pretrain.manifest import write_manifest

    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    for i in range(12):
        sf.write(root / f"utt{i:02d}.flac", harmonic_utterance(rng, rng.uniform(2.5, 3.5)), 16000, subtype="PCM_16")
    write_manifest(root, root / "train.tsv")
    return root / "train.tsv"


@pytest.fixture
def data_root(tmp_path) -> Path:
    """Every canonical corpus folder (empty apart from the files the rewrite checks for)."""
    for folder in (
        "LibriSpeech/len_for_bucket",
        "speech_commands_v0.01",
        "speech_commands_test_set_v0.01",
        "fluent_speech_commands_dataset",
        "VoxCeleb1",
        "IEMOCAP_full_release/meta_data",
        "SNIPS",
    ):
        (tmp_path / folder).mkdir(parents=True)
    for file in ("LibriSpeech/librispeech-lexicon.txt", "VoxCeleb1/iden_split.txt", "SNIPS/slots.txt"):
        (tmp_path / file).write_text("")
    return tmp_path
