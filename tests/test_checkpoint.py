"""Checkpoint format (upstream_ehmam.checkpoint): round trips, weights_only loading, student/teacher
selection, atomic saving, and a ValueError naming the problem for every kind of bad file."""

import os

import pytest
import torch

from upstream_ehmam.checkpoint import (
    FORMAT_VERSION,
    build_encoder,
    export_encoder,
    load_checkpoint,
    load_encoder,
    save_atomic,
)
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.model import ContextEncoder, EHMAMEncoder, normalize_waveforms


def tiny_config(**overrides) -> EncoderConfig:
    conv = [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2
    base = dict(conv_layers=conv, embed_dim=64, num_layers=2, num_heads=4, ffn_dim=128, pos_conv_depth=2)
    return EncoderConfig(**{**base, **overrides})


def tiny_encoder(seed: int = 0) -> EHMAMEncoder:
    torch.manual_seed(seed)
    return EHMAMEncoder(tiny_config()).eval()


def pretrain_checkpoint(seed: int = 0) -> dict:
    """What the pretrainer writes: student encoder + a teacher context that differs from the student's."""
    student = tiny_encoder(seed)
    torch.manual_seed(seed + 100)
    teacher = ContextEncoder(student.config)
    return {
        "format_version": FORMAT_VERSION,
        "kind": "ehmam-pretrain",
        "model_config": student.config.to_dict(),
        "encoder": student.state_dict(),
        "teacher_context": teacher.state_dict(),
        "step": 7,
        "optimizer": {"state": {}, "param_groups": []},
    }


def features(model: EHMAMEncoder, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    padded, lengths = normalize_waveforms([torch.randn(6000, generator=g), torch.randn(2000, generator=g)])
    with torch.no_grad():
        return model.extract_features(padded, lengths)[0]


def test_export_round_trip_identical_outputs(tmp_path):
    """export -> weights_only torch.load -> load_encoder gives bit-identical outputs and the same config."""
    model = tiny_encoder()
    path = tmp_path / "enc.pt"
    export_encoder(model, path)
    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert raw["kind"] == "ehmam-encoder" and raw["format_version"] == 1 and "teacher_context" not in raw
    loaded = load_encoder(path)
    assert not loaded.training and loaded.config == model.config
    for a, b in zip(features(model), features(loaded)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_pretrain_checkpoint_student_and_teacher(tmp_path):
    """'student' loads the encoder; 'teacher' loads the student's CNN + teacher_context; they differ."""
    ckpt = pretrain_checkpoint()
    path = tmp_path / "pre.pt"
    save_atomic(ckpt, path)
    student = load_encoder(path, weights="student")
    teacher = load_encoder(path, weights="teacher")
    for k, v in ckpt["teacher_context"].items():
        torch.testing.assert_close(teacher.context.state_dict()[k], v, atol=0, rtol=0)
    for k, v in student.local.state_dict().items():
        torch.testing.assert_close(teacher.local.state_dict()[k], v, atol=0, rtol=0)
    for k, v in student.state_dict().items():
        torch.testing.assert_close(v, ckpt["encoder"][k], atol=0, rtol=0)
    assert (features(student)[-1] - features(teacher)[-1]).abs().max() > 1e-3


def test_export_with_teacher_and_truncated_encoder(tmp_path):
    """An export keeps optional teacher weights; a truncated encoder exports and reloads with K blocks."""
    ckpt = pretrain_checkpoint()
    model = build_encoder(ckpt)
    export_encoder(model, tmp_path / "both.pt", teacher_context=ckpt["teacher_context"])
    teacher = load_encoder(tmp_path / "both.pt", weights="teacher")
    torch.testing.assert_close(features(teacher)[-1], features(build_encoder(ckpt, "teacher"))[-1], atol=0, rtol=0)
    model.truncate_layers(1)
    export_encoder(model, tmp_path / "cut.pt")
    cut = load_encoder(tmp_path / "cut.pt")
    assert cut.config.num_layers == 1 and len(features(cut)) == 2
    with pytest.raises(ValueError, match="teacher_context"):
        export_encoder(model, tmp_path / "bad.pt", teacher_context=ckpt["teacher_context"])  # 2 blocks vs 1


def test_save_atomic_replaces_and_cleans_up(tmp_path):
    """save_atomic overwrites in place, leaves no temp files, keeps the old file if saving fails, and gives
    the file the usual umask permissions (not a temp file's 0600)."""
    path = tmp_path / "ck.pt"
    save_atomic({"a": torch.ones(2)}, path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    save_atomic({"a": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["a"].shape == (3,)
    with pytest.raises(Exception):
        save_atomic({"a": lambda: 0}, path)  # lambdas cannot be pickled
    assert torch.load(path, weights_only=True)["a"].shape == (3,)
    assert os.listdir(tmp_path) == ["ck.pt"]


def write(tmp_path, obj, name="bad.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


class NotAllowed:
    pass


def test_unreadable_files(tmp_path):
    """Missing, truncated, garbage and pickled-object files each get an error naming the file and problem."""
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    good = write(tmp_path, pretrain_checkpoint(), "good.pt")
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"trunc\.pt: corrupt or truncated"):
        load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pt: corrupt or truncated"):
        load_checkpoint(tmp_path / "garbage.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pt: corrupt or truncated"):
        load_checkpoint(tmp_path / "empty.pt")
    pickled = write(tmp_path, {**pretrain_checkpoint(), "extra": NotAllowed()}, "pickled.pt")
    with pytest.raises(ValueError, match=r"pickled\.pt: holds pickled Python objects"):
        load_checkpoint(pickled)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: [1, 2], "expected a checkpoint dict, found list"),
        (lambda c: {k: v for k, v in c.items() if k != "format_version"}, "missing key 'format_version'"),
        (lambda c: {**c, "format_version": 2}, "format_version 2 is not supported; supported versions: 1"),
        (lambda c: {k: v for k, v in c.items() if k != "encoder"}, "missing key 'encoder'"),
        (lambda c: {k: v for k, v in c.items() if k != "model_config"}, "missing key 'model_config'"),
        (lambda c: {**c, "kind": "wav2vec2"}, "unknown kind 'wav2vec2'"),
        (lambda c: {k: v for k, v in c.items() if k != "teacher_context"}, "missing key 'teacher_context'"),
        (lambda c: {**c, "model_config": {**c["model_config"], "num_heads": 3}}, r"model_config\.num_heads"),
        (lambda c: {**c, "model_config": {**c["model_config"], "depth": 3}}, r"model_config\.depth: unknown key"),
    ],
)
def test_bad_checkpoint_contents(tmp_path, edit, message):
    """Wrong content types, missing keys, versions, kinds and configs are ValueErrors naming the file."""
    path = write(tmp_path, edit(pretrain_checkpoint()))
    with pytest.raises(ValueError, match=r"bad\.pt.*" + message):
        load_checkpoint(path)


def test_state_mismatches_name_key_and_shapes(tmp_path):
    """Strict loading: a wrong shape, a missing or an unexpected key names the key (and both shapes)."""
    ckpt = pretrain_checkpoint()
    enc = dict(ckpt["encoder"])
    enc["context.blocks.0.fc1.weight"] = torch.zeros(100, 64)
    with pytest.raises(
        ValueError,
        match=r"x\.pt: encoder key 'context\.blocks\.0\.fc1\.weight' has shape "
        r"\(100, 64\), expected \(128, 64\)",
    ):
        build_encoder({**ckpt, "encoder": enc}, source="x.pt")
    enc = {k: v for k, v in ckpt["encoder"].items() if k != "local.proj.bias"}
    with pytest.raises(ValueError, match="missing key 'local.proj.bias'"):
        build_encoder({**ckpt, "encoder": enc})
    enc = {**ckpt["encoder"], "context.blocks.2.fc1.weight": torch.zeros(128, 64)}
    with pytest.raises(ValueError, match="unexpected key 'context.blocks.2.fc1.weight'"):
        build_encoder({**ckpt, "encoder": enc})
    teacher = {**ckpt["teacher_context"], "alibi_scale": torch.ones(5)}
    with pytest.raises(ValueError, match=r"teacher_context key 'alibi_scale' has shape \(5,\), expected \(4,\)"):
        build_encoder({**ckpt, "teacher_context": teacher}, weights="teacher")


def test_teacher_requested_without_teacher_weights(tmp_path):
    """Asking for teacher weights from an encoder-only export without them is a clear error."""
    export_encoder(tiny_encoder(), tmp_path / "enc.pt")
    with pytest.raises(ValueError, match=r"enc\.pt: no teacher weights"):
        load_encoder(tmp_path / "enc.pt", weights="teacher")
    with pytest.raises(ValueError, match="weights must be one of student, teacher"):
        load_encoder(tmp_path / "enc.pt", weights="ema")
