"""model.reset_top and model.num_layers: which blocks the fine-tuning starts from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from finetune.config import ModelConfig
from finetune.letters import words_to_letters, write_dictionary
from finetune.model import encoder_for_finetuning
from finetune.run import main as run_main
from upstream_ehmam.checkpoint import export_encoder, load_checkpoint
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.model import random_init_encoder

ROOT = Path(__file__).resolve().parent.parent
ARCH = dict(
    frontend="mel",
    embed_dim=32,
    num_layers=4,
    num_heads=2,
    ffn_dim=64,
    pos_conv_depth=1,
    pos_conv_kernel=5,
    pos_conv_groups=4,
)
CHECKPOINT_SEED, RUN_SEED = 7, 3  # different, so a reset block cannot equal the checkpoint's by accident


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("layers") / "encoder.pt"
    export_encoder(random_init_encoder(EncoderConfig(**ARCH), seed=CHECKPOINT_SEED), path)
    return path


def _blocks(state: dict, prefix: str = "context.blocks.") -> dict[int, dict]:
    """Block index -> {key inside the block: tensor}."""
    out: dict[int, dict] = {}
    for key, value in state.items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix) :].partition(".")
            out.setdefault(int(index), {})[rest] = value
    return out


def _assert_same(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key}"


def _differs(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[key], b[key]) for key in a)


def _encoder(checkpoint: Path, **model) -> torch.nn.Module:
    return encoder_for_finetuning(ModelConfig(init=str(checkpoint), **model), seed=RUN_SEED)


@pytest.mark.parametrize("reset_top", [1, 2, 4])
def test_reset_top_blocks_are_a_fresh_init_of_the_run_seed_and_the_rest_is_the_checkpoint(checkpoint, reset_top):
    original = load_checkpoint(checkpoint)["encoder"]
    fresh = random_init_encoder(EncoderConfig(**ARCH), seed=RUN_SEED).state_dict()
    state = _encoder(checkpoint, reset_top=reset_top).state_dict()
    blocks, original_blocks, fresh_blocks = _blocks(state), _blocks(original), _blocks(fresh)
    assert sorted(blocks) == [0, 1, 2, 3]
    for index in range(4):
        if index >= 4 - reset_top:
            assert _differs(blocks[index], original_blocks[index]), index
            _assert_same(blocks[index], fresh_blocks[index], f"block {index} against the fresh init")
        else:
            _assert_same(blocks[index], original_blocks[index], f"block {index} against the checkpoint")
    outside = [k for k in original if not k.startswith("context.blocks.")]
    assert any(k.startswith("local.") for k in outside) and any(k.startswith("context.pos_conv") for k in outside)
    _assert_same({k: state[k] for k in outside}, {k: original[k] for k in outside}, "front end and positional conv")


def test_num_layers_drops_the_top_blocks_and_reset_top_counts_from_the_kept_top(checkpoint):
    original = _blocks(load_checkpoint(checkpoint)["encoder"])
    dropped = _encoder(checkpoint, num_layers=2)
    assert len(dropped.context.blocks) == 2 and dropped.config.num_layers == 2
    for index, block in _blocks(dropped.state_dict()).items():
        _assert_same(block, original[index], f"kept block {index}")

    both = _blocks(_encoder(checkpoint, num_layers=3, reset_top=1).state_dict())
    fresh = _blocks(random_init_encoder(EncoderConfig(**{**ARCH, "num_layers": 3}), seed=RUN_SEED).state_dict())
    assert sorted(both) == [0, 1, 2]
    _assert_same(both[0], original[0], "block 0")
    _assert_same(both[1], original[1], "block 1")
    _assert_same(both[2], fresh[2], "block 2 against the fresh init")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"reset_top": 5}, "model.reset_top: 5 exceeds the depth of the encoder \\(4 blocks"),
        ({"num_layers": 2, "reset_top": 3}, "model.reset_top: 3 exceeds the depth of the encoder \\(2 blocks"),
        ({"num_layers": 6}, "model.num_layers: 6 exceeds the depth of .*encoder.pt \\(4 blocks\\)"),
    ],
)
def test_more_blocks_than_the_encoder_has_is_refused(checkpoint, model, message):
    with pytest.raises(ValueError, match=message):
        _encoder(checkpoint, **model)


def test_negative_counts_are_refused_naming_the_key():
    with pytest.raises(ValueError, match="model.reset_top: must be >= 0"):
        ModelConfig(reset_top=-1)
    with pytest.raises(ValueError, match="model.num_layers: must be >= 0"):
        ModelConfig(num_layers=-1)


def test_finetune_run_set_reset_top_starts_from_the_run_seeds_init(checkpoint, tmp_path, one_torch_thread, capsys):
    """`finetune.run --set model.reset_top=1`: with the encoder frozen for the whole run, the saved top block is the
    fresh init of run.seed and the block below it the checkpoint's; an impossible K exits 2 naming the key."""
    rng = np.random.default_rng(0)
    for subset in ("10m", "dev-other"):
        rows, labels = [str(tmp_path)], []
        for i in range(3):
            wav = 0.1 * rng.standard_normal(16000).astype(np.float32)
            sf.write(tmp_path / f"{subset}{i}.flac", wav, 16000, subtype="PCM_16")
            rows.append(f"{subset}{i}.flac\t16000")
            labels.append(words_to_letters("THE CAT"))
        (tmp_path / f"{subset}.tsv").write_text("\n".join(rows) + "\n")
        (tmp_path / f"{subset}.ltr").write_text("\n".join(labels) + "\n")
    write_dictionary(tmp_path / "dict.ltr.txt", {})
    common = [
        "--config",
        str(ROOT / "finetune" / "tiny_cpu.yaml"),
        "--ckpt",
        str(checkpoint),
        "--set",
        f"data.manifest_dir={tmp_path}",
        "--set",
        "data.train_subset=10m",
        "--set",
        "optim.max_steps=2",
        "--set",
        "model.freeze_updates=2",
        "--set",
        "mask.channel_length=4",
        "--set",
        "run.device=cpu",
        "--set",
        f"run.seed={RUN_SEED}",
    ]
    out = tmp_path / "run"
    assert run_main([*common, "--set", "model.reset_top=1", "--set", f"run.out_dir={out}"]) == 0
    saved = _blocks(torch.load(out / "last.pt", weights_only=True)["encoder"])
    fresh = _blocks(random_init_encoder(EncoderConfig(**ARCH), seed=RUN_SEED).state_dict())
    original = _blocks(load_checkpoint(checkpoint)["encoder"])
    _assert_same(saved[3], fresh[3], "top block against the fresh init of run.seed")
    _assert_same(saved[2], original[2], "block 2 against the checkpoint")

    capsys.readouterr()
    assert run_main([*common, "--set", "model.reset_top=9", "--set", f"run.out_dir={tmp_path / 'bad'}"]) == 2
    assert "model.reset_top: 9 exceeds the depth" in capsys.readouterr().err
