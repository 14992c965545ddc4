"""The s3prl UpstreamExpert contract (docs/design.md "The s3prl upstream") for upstream_ehmam, probed like
s3prl's own upstream test but without importing s3prl: layer count and shapes, short inputs, padding invariance,
options, bad inputs."""

import ast
import importlib
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from upstream_ehmam import hubconf
from upstream_ehmam.checkpoint import FORMAT_VERSION, build_encoder, save_atomic
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.expert import UpstreamExpert
from upstream_ehmam.model import ContextEncoder, EHMAMEncoder, normalize_waveforms

NUM_LAYERS = 3
DIM = 64


def tiny_config() -> EncoderConfig:
    conv = [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2
    return EncoderConfig(
        conv_layers=conv, embed_dim=DIM, num_layers=NUM_LAYERS, num_heads=4, ffn_dim=128, pos_conv_depth=2
    )


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory):
    """A pretraining checkpoint whose teacher context differs from the student's."""
    torch.manual_seed(0)
    student = EHMAMEncoder(tiny_config())
    teacher = ContextEncoder(student.config)
    path = tmp_path_factory.mktemp("ckpt") / "pretrain.pt"
    save_atomic(
        {
            "format_version": FORMAT_VERSION,
            "kind": "ehmam-pretrain",
            "model_config": student.config.to_dict(),
            "encoder": student.state_dict(),
            "teacher_context": teacher.state_dict(),
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def expert(ckpt_path):
    return hubconf.ehmam(ckpt=str(ckpt_path)).eval()


def waves(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=g) for n in lengths]


def expected_frames(n: int) -> int:
    return (max(n, 400) - 80) // 320


def test_warmup_input_layer_count_and_shapes(expert):
    """s3prl's warm-up call [randn(16000)]: num_layers+1 hidden states, all (1, 49, D); last_hidden_state."""
    with torch.no_grad():
        out = expert([torch.randn(16000)])
    hs = out["hidden_states"]
    assert len(hs) == NUM_LAYERS + 1
    assert all(h.shape == (1, 49, DIM) for h in hs)
    assert out["last_hidden_state"] is hs[-1]
    assert expert.get_downsample_rates("hidden_states") == 320


@pytest.mark.parametrize("lengths", [[800], [800, 800], [100], [100, 800, 16000], [399, 400, 401]])
def test_short_inputs_and_batches(expert, lengths):
    """0.05 s and sub-receptive-field inputs, batches 1-3: T = floor((max(L, 400) - 80) / 320) frames."""
    with torch.no_grad():
        hs = expert(waves(lengths))["hidden_states"]
    T = max(expected_frames(n) for n in lengths)
    assert len(hs) == NUM_LAYERS + 1 and all(h.shape == (len(lengths), T, DIM) for h in hs)
    assert all(torch.isfinite(h).all() for h in hs)


def test_frame_count_within_s3prl_tolerance(expert):
    """For many lengths the frame count stays within s3prl's |T - round(L / 320)| < 5."""
    with torch.no_grad():
        for n in (400, 401, 799, 1234, 4321, 16000, 16001, 48000):
            T = expert(waves([n]))["hidden_states"][0].shape[1]
            assert T == expected_frames(n) and abs(T - round(n / 320)) < 5


def test_batched_equals_one_by_one(expert):
    """Each utterance of a padded batch equals its own one-by-one output on its valid frames."""
    lengths = [16000, 800, 100, 5000]
    ws = waves(lengths, seed=1)
    with torch.no_grad():
        batched = expert(ws)["hidden_states"]
        for b, w in enumerate(ws):
            single = expert([w])["hidden_states"]
            T = single[0].shape[1]
            assert T == expected_frames(lengths[b])
            for hb, hs in zip(batched, single):
                torch.testing.assert_close(hb[b, :T], hs[0], atol=1e-4, rtol=0)


def test_short_input_is_normalised_then_zero_padded(expert):
    """A 100-sample input equals the model run on its normalised samples zero-padded to 400."""
    w = waves([100], seed=2)[0]
    padded, _ = normalize_waveforms([w])
    with torch.no_grad():
        out = expert([w])["hidden_states"]
        ref, _ = expert.model.extract_features(F.pad(padded, (0, 300)), torch.tensor([400]))
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_eval_determinism_and_normalisation(expert):
    """Eval mode is deterministic, and the input's scale and offset do not matter (per-utterance norm)."""
    w = waves([3000], seed=3)[0]
    with torch.no_grad():
        a = expert([w])["hidden_states"]
        b = expert([w])["hidden_states"]
        c = expert([5 * w + 0.2])["hidden_states"]
    for x, y, z in zip(a, b, c):
        torch.testing.assert_close(x, y, atol=0, rtol=0)
        torch.testing.assert_close(x, z, atol=1e-4, rtol=0)


def test_train_mode_forward_backward_keeps_layer_count(ckpt_path):
    """Like s3prl's upstream test: forward + backward in train mode; the layer count never changes."""
    up = hubconf.ehmam(ckpt=str(ckpt_path)).train()
    for _ in range(3):
        hs = up(waves([800, 700]))["hidden_states"]
        assert len(hs) == NUM_LAYERS + 1
    sum(h.sum() for h in hs).backward()
    assert up.model.local.convs[0].weight.grad is not None


def test_long_input(expert):
    """A 60 s input runs and gives floor((960000 - 80) / 320) = 2999 frames."""
    with torch.no_grad():
        hs = expert(waves([960000]))["hidden_states"]
    assert hs[-1].shape == (1, 2999, DIM) and torch.isfinite(hs[-1]).all()


def test_num_layers_truncation(ckpt_path, expert, tmp_path):
    """num_layers=K (keyword or YAML) returns K+1 states equal to the full model's first K+1."""
    ws = waves([4000, 2500])
    with torch.no_grad():
        full = expert(ws)["hidden_states"]
        cut = hubconf.ehmam(ckpt=str(ckpt_path), num_layers=1).eval()(ws)["hidden_states"]
        yaml_path = tmp_path / "opts.yaml"
        yaml_path.write_text("num_layers: 2\n")
        cut2 = hubconf.ehmam(ckpt=str(ckpt_path), model_config=str(yaml_path)).eval()(ws)["hidden_states"]
    assert len(cut) == 2 and len(cut2) == 3
    for a, b in zip(cut2, full):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(cut[1], full[1], atol=0, rtol=0)


def test_student_and_teacher_selection(ckpt_path, expert, tmp_path):
    """-u ehmam_teacher and -g teacher (alone or with num_layers) load the teacher; it differs from the student."""
    ckpt = torch.load(ckpt_path, weights_only=True)
    ws = waves([3000])
    yaml_path = tmp_path / "depth.yaml"
    yaml_path.write_text("num_layers: 2\n")
    with torch.no_grad():
        student = expert(ws)["last_hidden_state"]
        ref, _ = build_encoder(ckpt, "teacher").extract_features(*normalize_waveforms(ws))
        for up in (
            hubconf.ehmam_teacher(ckpt=str(ckpt_path)),
            hubconf.ehmam(str(ckpt_path), "teacher"),
            hubconf.ehmam(str(ckpt_path), "num_layers=3,teacher"),
        ):
            teacher = up.eval()(ws)["last_hidden_state"]
            torch.testing.assert_close(teacher, ref[-1], atol=0, rtol=0)
        for up in (
            hubconf.ehmam(str(ckpt_path), "teacher,num_layers=2"),
            hubconf.ehmam_teacher(ckpt=str(ckpt_path), model_config=str(yaml_path)),
        ):
            torch.testing.assert_close(up.eval()(ws)["last_hidden_state"], ref[2], atol=0, rtol=0)
    assert (student - teacher).abs().max() > 1e-3


@pytest.mark.parametrize("old", ["weights=teacher", "weights=teacher,num_layers=2"])
def test_the_old_ways_to_pick_the_teacher_name_the_one_way(ckpt_path, tmp_path, old):
    with pytest.raises(ValueError, match="choose the teacher with -g teacher"):
        hubconf.ehmam(str(ckpt_path), old)
    yaml_path = tmp_path / "old.yaml"
    yaml_path.write_text("weights: teacher\n")
    with pytest.raises(ValueError, match="the only key is num_layers.*-g teacher"):
        hubconf.ehmam(str(ckpt_path), str(yaml_path))
    with pytest.raises(ValueError, match="only keyword option is num_layers.*-g teacher"):
        hubconf.ehmam(ckpt=str(ckpt_path), weights="teacher")


def test_option_errors(ckpt_path, tmp_path):
    """Missing -k, unknown YAML keys or options, and contradicting options are ValueErrors naming them."""
    with pytest.raises(ValueError, match="-k <checkpoint"):
        hubconf.ehmam()
    with pytest.raises(ValueError, match="-k <checkpoint"):
        UpstreamExpert(None)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("layers: 2\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown key 'layers'"):
        hubconf.ehmam(ckpt=str(ckpt_path), model_config=str(bad_yaml))
    with pytest.raises(ValueError, match="no such file"):
        hubconf.ehmam(ckpt=str(ckpt_path), model_config="missing.yaml")
    with pytest.raises(ValueError, match="unknown upstream option 'layer'"):
        hubconf.ehmam(ckpt=str(ckpt_path), layer=3)
    with pytest.raises(ValueError, match="asks for the student"):
        hubconf.ehmam_teacher(ckpt=str(ckpt_path), model_config="student")
    with pytest.raises(ValueError, match="both the student and the teacher"):
        hubconf.ehmam(ckpt=str(ckpt_path), model_config="student,teacher")
    with pytest.raises(ValueError, match="num_layers must be an int in 1..3"):
        hubconf.ehmam(ckpt=str(ckpt_path), num_layers=4)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        hubconf.ehmam(ckpt=str(tmp_path / "nope.pt"))


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], "non-empty list"),
        ([torch.zeros(0)], "waveform 0: zero-length"),
        ([torch.randn(800), torch.randn(2, 800)], r"waveform 1: expected a 1-D tensor.*\(2, 800\)"),
        (
            [torch.zeros(800, dtype=torch.int16)],
            r"int16 is not floating point; convert the samples to float in \[-1, 1\]",
        ),
        ([torch.randn(800), torch.tensor([0.1, float("nan")] * 400)], r"waveform\(s\) \[1\]: non-finite"),
        ([torch.tensor([float("inf")] * 500)], "non-finite"),
        ([[0.1] * 800], "expected a torch.Tensor, found list"),
    ],
)
def test_bad_inputs(expert, bad, message):
    """Bad waveforms fail with a ValueError that says what is wrong."""
    with pytest.raises(ValueError, match=message):
        expert(bad)


def test_hubconf_exposes_only_two_upstreams():
    """s3prl star-imports hubconfs: exactly `ehmam` and `ehmam_teacher` become public callables."""
    namespace = {}
    exec("from upstream_ehmam.hubconf import *", namespace)
    public = sorted(k for k, v in namespace.items() if not k.startswith("_") and callable(v))
    assert public == ["ehmam", "ehmam_teacher"]


def test_package_is_self_contained(ckpt_path, tmp_path, monkeypatch):
    """Copied under another parent package (as s3prl/upstream/ehmam/), the hubconf imports and runs; only
    relative, stdlib, torch and yaml imports are used."""
    allowed = set(sys.stdlib_module_names) | {"torch", "yaml"}
    source = Path(hubconf.__file__).parent
    for path in source.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in allowed, (path, node.module)
            elif isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in allowed for a in node.names), path
    shutil.copytree(source, tmp_path / "fake_s3prl_upstream" / "ehmam", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "fake_s3prl_upstream" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    dropped = importlib.import_module("fake_s3prl_upstream.ehmam.hubconf")
    with torch.no_grad():
        hs = dropped.ehmam(ckpt=str(ckpt_path))([torch.randn(1600)])["hidden_states"]
    assert len(hs) == NUM_LAYERS + 1 and hs[0].shape == (1, 4, DIM)
