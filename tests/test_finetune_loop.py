"""The fine-tuning loop: frozen parts stay bit-identical, resume equals an uninterrupted run, bad audio is skipped,
a pretraining checkpoint's teacher weights load, and two gloo processes compute what one does (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import finetune.train as ft_train
from finetune.config import ModelConfig, load_config
from finetune.letters import words_to_letters, write_dictionary
from finetune.model import encoder_for_finetuning
from finetune.train import finetune
from upstream_ehmam.checkpoint import export_encoder
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.model import random_init_encoder

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(
    frontend="mel",
    embed_dim=32,
    num_layers=2,
    num_heads=2,
    ffn_dim=64,
    pos_conv_depth=1,
    pos_conv_kernel=5,
    pos_conv_groups=4,
)
WORDS = ("CAT", "DOG", "SAT", "RAN", "THE", "A")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Manifests 10m (8 utterances of 1-1.5 s) and dev-other (3), dict.ltr.txt, and an exported tiny encoder."""
    root = tmp_path_factory.mktemp("ft")
    rng = np.random.default_rng(0)
    for subset, count in (("10m", 8), ("dev-other", 3)):
        rows, labels = [str(root)], []
        for i in range(count):
            t = np.arange(int(rng.uniform(1.0, 1.5) * 16000)) / 16000
            wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.05 * rng.standard_normal(t.shape)
            sf.write(root / f"{subset}{i}.flac", wav.astype(np.float32), 16000, subtype="PCM_16")
            rows.append(f"{subset}{i}.flac\t{len(t)}")
            labels.append(words_to_letters(" ".join(rng.choice(WORDS, size=2))))
        (root / f"{subset}.tsv").write_text("\n".join(rows) + "\n")
        (root / f"{subset}.ltr").write_text("\n".join(labels) + "\n")
    write_dictionary(root / "dict.ltr.txt", {})
    export_encoder(random_init_encoder(EncoderConfig(**TINY), seed=0), root / "encoder.pt")
    return root


def _config(data: Path, out: Path, *extra: str):
    return load_config(
        ROOT / "finetune" / "tiny_cpu.yaml",
        [
            f"model.init={data / 'encoder.pt'}",
            f"data.manifest_dir={data}",
            f"run.out_dir={out}",
            "data.train_subset=10m",
            "data.max_batch_samples=50000",
            "optim.micro_batches=2",
            "optim.max_steps=4",
            "model.freeze_updates=2",
            "run.device=cpu",
            "run.valid_every=2",
            "run.save_every=100",
            "run.log_every=1",
            "mask.channel_length=4",
            *extra,
        ],
    )


def _states(path: Path) -> dict:
    ckpt = torch.load(path, weights_only=True)
    return {
        **{f"encoder.{k}": v for k, v in ckpt["encoder"].items()},
        **{f"head.{k}": v for k, v in ckpt["ctc"]["head"].items()},
    }


def test_front_end_never_trains_and_the_encoder_only_after_the_freeze(data, tmp_path, one_torch_thread):
    """After the freeze period only the head has moved; two updates later the context encoder has too, and the
    front end is still bit-identical to the initial encoder."""
    initial = {f"encoder.{k}": v for k, v in torch.load(data / "encoder.pt", weights_only=True)["encoder"].items()}
    frozen = _states(finetune(_config(data, tmp_path / "a", "optim.max_steps=2")) / "last.pt")
    after = _states(finetune(_config(data, tmp_path / "b")) / "last.pt")
    for key, value in initial.items():
        assert torch.equal(frozen[key], value), key
        if key.startswith("encoder.local."):
            assert torch.equal(after[key], value), key
    moved = [k for k in initial if k.startswith("encoder.context.") and not torch.equal(after[k], initial[k])]
    assert len(moved) > 10
    assert not torch.equal(frozen["head.weight"], after["head.weight"])
    assert (tmp_path / "b" / "best.pt").exists() and (tmp_path / "b" / "config.yaml").exists()


def test_resume_equals_an_uninterrupted_run(data, tmp_path, monkeypatch, one_torch_thread):
    """A run stopped (SIGTERM path) after update 2 and rerun ends with the same weights and logged losses as a
    run that was never stopped."""
    whole = finetune(_config(data, tmp_path / "whole"))

    class StopAfterTwoUpdates(ft_train.StopSignal):
        reads = 0

        @property
        def received(self):
            StopAfterTwoUpdates.reads += 1
            return signal.SIGTERM if StopAfterTwoUpdates.reads == 2 else None

        @received.setter
        def received(self, value):
            pass

    with monkeypatch.context() as patch:
        patch.setattr(ft_train, "StopSignal", StopAfterTwoUpdates)
        finetune(_config(data, tmp_path / "split"))
    assert torch.load(tmp_path / "split" / "last.pt", weights_only=True)["ctc"]["state"]["update"] == 2
    resumed = finetune(_config(data, tmp_path / "split"))
    for key, value in _states(whole / "last.pt").items():
        assert torch.equal(_states(resumed / "last.pt")[key], value), key
    losses = [
        [r["loss"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "lr" in r]
        for d in (whole, resumed)
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 4


def test_unreadable_audio_is_skipped_and_logged_or_stops_naming_the_file(data, tmp_path, caplog, one_torch_thread):
    """data.bad_audio=skip: a corrupt file is logged and left out, the run finishes; =error: a ValueError names it."""
    broken = tmp_path / "data"
    broken.mkdir()
    for path in data.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "10m.tsv").write_text((data / "10m.tsv").read_text().replace(str(data), str(broken)))
    (broken / "dev-other.tsv").write_text((data / "dev-other.tsv").read_text().replace(str(data), str(broken)))
    (broken / "10m3.flac").write_bytes(b"not audio")
    out = finetune(_config(broken, tmp_path / "skip"))
    state = torch.load(out / "last.pt", weights_only=True)["ctc"]["state"]
    assert list(state["bad_audio"]) == [str(broken / "10m3.flac")] and state["update"] == 4
    assert "10m3.flac" in caplog.text
    with pytest.raises(ValueError, match="10m3.flac"):
        finetune(_config(broken, tmp_path / "error", "data.bad_audio=error"))


def test_missing_init_and_missing_dictionary_name_what_is_missing(data, tmp_path):
    """No model.init, an init file that does not exist, and a folder without dict.ltr.txt are clear errors."""
    with pytest.raises(ValueError, match="model.init"):
        finetune(_config(data, tmp_path / "x", "model.init=''"))
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        finetune(_config(data, tmp_path / "x", f"model.init={tmp_path / 'nothing.pt'}"))
    with pytest.raises(FileNotFoundError, match="dict.ltr.txt"):
        finetune(_config(data, tmp_path / "x", f"data.manifest_dir={tmp_path}"))


def test_teacher_weights_of_a_pretraining_checkpoint_and_the_finetuning_dropouts(tmp_path):
    """--weights teacher loads teacher_context; the encoder gets model.activation_dropout / layerdrop of the config."""
    from pretrain.checkpointing import TrainState, checkpoint_dict
    from pretrain.config import load_config as load_pretrain_config
    from pretrain.ehmam import EHMAMPretrainModel

    config = load_pretrain_config(ROOT / "pretrain" / "tiny_mel.yaml")
    model = EHMAMPretrainModel(config)
    ckpt = checkpoint_dict(model, torch.optim.AdamW(model.parameters()), TrainState(), config)
    ckpt["teacher_context"] = {k: v + 1.0 for k, v in ckpt["teacher_context"].items()}
    torch.save(ckpt, tmp_path / "last.pt")
    for weights, source in (
        ("student", {k[len("context.") :]: v for k, v in ckpt["encoder"].items() if k.startswith("context.")}),
        ("teacher", ckpt["teacher_context"]),
    ):
        encoder = encoder_for_finetuning(
            ModelConfig(init=str(tmp_path / "last.pt"), weights=weights, layerdrop=0.2), seed=0
        )
        for key, value in encoder.context.state_dict().items():
            assert torch.equal(value, source[key]), (weights, key)
        assert (encoder.config.activation_dropout, encoder.config.layerdrop, encoder.config.dropout) == (0.1, 0.2, 0.0)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(data, tmp_path, one_torch_thread):
    """torchrun --nproc_per_node 2 (one micro-batch each) and one process (two micro-batches) with the same global
    batches: the same logged losses and weights to 1e-6 after 4 updates, 2 of them past the freeze."""
    deterministic = ["optim.eps=1.0e-4", "model.layerdrop=0.3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "finetune.run",
        "--config",
        str(ROOT / "finetune" / "tiny_cpu.yaml"),
    ]
    overrides = [
        f"model.init={data / 'encoder.pt'}",
        f"data.manifest_dir={data}",
        f"run.out_dir={tmp_path / 'ddp'}",
        "data.train_subset=10m",
        "data.max_batch_samples=50000",
        "optim.micro_batches=2",
        "optim.max_steps=4",
        "model.freeze_updates=2",
        "run.device=cpu",
        "run.valid_every=2",
        "run.save_every=100",
        "run.log_every=1",
        "mask.channel_length=4",
        *deterministic,
    ]
    done = subprocess.run(
        command + [a for o in overrides for a in ("--set", o)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    single = finetune(_config(data, tmp_path / "single", *deterministic))
    records = [
        [r for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "lr" in r]
        for d in (tmp_path / "ddp", single)
    ]
    np.testing.assert_allclose([r["loss"] for r in records[0]], [r["loss"] for r in records[1]], rtol=1e-6)
    assert [r["sentences"] for r in records[0]] == [r["sentences"] for r in records[1]]
    ddp, one = _states(tmp_path / "ddp" / "last.pt"), _states(single / "last.pt")
    for key, value in one.items():
        torch.testing.assert_close(ddp[key], value, rtol=0, atol=1e-6, msg=key)


def test_resume_with_another_schedule_names_the_keys_and_warns(data, tmp_path, caplog, one_torch_thread):
    """Rerunning a finished 4-update run with optim.max_steps 4 -> 8 and model.freeze_updates 2 -> 6 names both
    keys and warns that the learning rate moves and the encoder is frozen again."""
    import logging

    from finetune.schedule import schedule_jumps

    run = finetune(_config(data, tmp_path / "run"))
    with caplog.at_level(logging.INFO, logger="trainkit"):
        finetune(_config(data, run, "optim.max_steps=8", "model.freeze_updates=6"))
    assert "optim.max_steps: 4 -> 8" in caplog.text and "model.freeze_updates: 2 -> 6" in caplog.text
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "jump" in r.getMessage())
    assert "learning rate" in warning and "encoder frozen 0 -> 1" in warning
    saved = _config(data, run).to_dict()
    assert schedule_jumps(saved, saved, update=3) == []
