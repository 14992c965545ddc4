"""Published checkpoints (upstream_ehmam.fairseq_*, upstream_ehmam.convert): a data2vec 2.0 file written by fairseq's
own trainer code (tests/data/d2v2_small) reproduces fairseq's outputs, both layouts load, conversions round-trip,
and every setting the encoder cannot compute is refused by name before a weight is read."""

from __future__ import annotations

import ast
import copy
import os
import re
from pathlib import Path

import pytest
import torch

from pretrain.checkpointing import TrainState, checkpoint_dict
from pretrain.config import load_config
from pretrain.ehmam import EHMAMPretrainModel
from pretrain.heads import ConvDecoder
from pretrain.targets import make_targets
from upstream_ehmam.checkpoint import build_encoder, export_encoder, load_checkpoint, load_encoder, save_atomic
from upstream_ehmam.convert import main as convert
from upstream_ehmam.expert import UpstreamExpert
from upstream_ehmam.model import normalize_waveforms

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "d2v2_small"
CHECKPOINT, REFERENCE = DATA / "checkpoint.pt", DATA / "reference.pt"
TINY = REPO / "pretrain" / "tiny.yaml"
TOLERANCE = 1e-4
AUDIO = "modality_encoders.AUDIO."


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(REFERENCE, weights_only=True)


@pytest.fixture(scope="module")
def fairseq_file() -> dict:
    return torch.load(CHECKPOINT, weights_only=True)


def run_alone(encoder, wav: torch.Tensor):
    with torch.no_grad():
        padded, lengths = normalize_waveforms([wav])
        features, frame_lengths = encoder.local(padded, lengths)
        return features, encoder.context(features, frame_lengths), frame_lengths


def max_differences(encoder, reference: dict, weights: str, heads: dict | None) -> dict[str, float]:
    """The largest |ours - fairseq's| per field over both waveforms, each run alone."""
    worst: dict[str, float] = {}
    for i, wav in enumerate(reference["wavs"]):
        ref = reference[f"{weights}_single"][i]
        features, out, frame_lengths = run_alone(encoder, wav)
        pairs = {"local_features": (features, ref["local_features"])}
        pairs["context_input"] = (out.hidden_states[0], ref["context_input"])
        for j, (ours, theirs) in enumerate(zip(out.hidden_states[1:], ref["block_outputs"], strict=True)):
            pairs[f"block_{j}"] = (ours, theirs)
        for j, (ours, theirs) in enumerate(zip(out.ffn_outputs, ref["ffn_outputs"], strict=True)):
            pairs[f"ffn_{j}"] = (ours, theirs)
        if weights == "student":
            decoder = ConvDecoder(embed_dim=encoder.config.embed_dim, **heads["section"]).eval()
            decoder.load_state_dict(heads["decoder"])
            with torch.no_grad():
                pairs["decoder_out"] = (decoder(out.hidden_states[-1]), ref["decoder_out"])
        else:
            pairs["targets"] = (make_targets(out.ffn_outputs, frame_lengths, heads["top_k"]), ref["targets"])
        for name, (ours, theirs) in pairs.items():
            assert ours.shape == theirs.shape, name
            worst[name] = max(worst.get(name, 0.0), (ours - theirs).abs().max().item())
    return worst


@pytest.mark.parametrize("weights", ["student", "teacher"])
@pytest.mark.parametrize("route", ["direct", "converted"])
def test_reference_outputs_match_fairseq(tmp_path, reference, weights, route):
    """Every block output (and FFN output, the pre-encoder LayerNorm, the local features) of each waveform run alone
    equals fairseq's to 1e-4, student and teacher, read directly or after `convert`; so do the student decoder's
    output and the teacher's regression targets."""
    path = CHECKPOINT
    if route == "converted":
        path = tmp_path / "ours.pt"
        assert convert([str(CHECKPOINT), "--out", str(path)]) == 0
        assert "fairseq_cfg_model" in torch.load(path, weights_only=True)  # the project's format, plain data
    ckpt = load_checkpoint(path)
    assert ckpt["kind"] == "ehmam-pretrain" and ckpt["model_config"]["num_layers"] == 2
    heads = {"section": ckpt["config"]["heads"], "decoder": ckpt["heads"]["decoder"], "top_k": 2}
    worst = max_differences(build_encoder(ckpt, weights, str(path)), reference, weights, heads)
    assert len([k for k in worst if k.startswith("block_")]) == 2
    assert max(worst.values()) <= TOLERANCE, worst


def test_padded_batch_equals_single_runs_unlike_fairseq(reference):
    """The one intended difference: fairseq's padded batch changes the shorter utterance's frames (its positional
    convolution reads the padding); here a padded batch equals the utterances run alone."""
    encoder = load_encoder(CHECKPOINT)
    short = int(reference["frame_lengths"][1])
    with torch.no_grad():
        padded, lengths = normalize_waveforms(list(reference["wavs"]))
        batch, _ = encoder.extract_features(padded, lengths)
    alone = run_alone(encoder, reference["wavs"][1])[1].hidden_states
    ours = max((b[1, :short] - a[0]).abs().max().item() for b, a in zip(batch, alone))
    theirs = (reference["student_batch"]["x"][1, :short] - reference["student_single"][1]["x"][0]).abs().max()
    assert ours <= 1e-5 and theirs > 1e-2


def tiny_pretrain_checkpoint(*overrides: str) -> dict:
    """What the pretrainer writes for tiny.yaml, with a teacher that differs from the student."""
    config = load_config(TINY, ["data.manifest=unused.tsv", *overrides])
    torch.manual_seed(0)
    model = EHMAMPretrainModel(config)
    with torch.no_grad():
        for p in model.teacher.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return checkpoint_dict(model, optimizer, TrainState(update=5), config)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert_same_tensors(a[key], b[key])
        else:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    "variant", ["with predictor", "without predictor", "encoder export with teacher", "encoder export"]
)
def test_ours_to_fairseq_to_ours_is_bit_identical(tmp_path, variant):
    """ours -> fairseq layout -> ours keeps model_config and every tensor bit for bit (student, teacher, decoder,
    predictor and the teacher's predictor), for pretraining checkpoints and encoder exports."""
    ckpt = tiny_pretrain_checkpoint(
        *(["curriculum.mode=none", "loss.aux_weight=0"] if variant != "with predictor" else [])
    )
    source = tmp_path / "ours.pt"
    if variant.startswith("encoder export"):
        encoder = build_encoder(ckpt)
        export_encoder(encoder, source, ckpt["teacher_context"] if variant.endswith("teacher") else None)
        ckpt = torch.load(source, weights_only=True)
    else:
        save_atomic(ckpt, source)
    fairseq, back = tmp_path / "fairseq.pt", tmp_path / "back.pt"
    assert convert([str(source), "--out", str(fairseq), "--to", "fairseq"]) == 0
    written = torch.load(fairseq, weights_only=True)
    assert ("_ema" in written["model"]) == ("teacher_context" in ckpt)
    assert any(".decoder_pred." in k for k in written["model"]) == (variant == "with predictor")
    assert written["cfg"]["model"]["skip_ema"] == ("teacher_context" not in ckpt)
    assert convert([str(fairseq), "--out", str(back)]) == 0
    again = torch.load(back, weights_only=True)
    assert again["model_config"] == ckpt["model_config"]
    parts = ["encoder", "teacher_context", "heads"] if "heads" in ckpt else ["encoder", "teacher_context"]
    assert_same_tensors({k: ckpt[k] for k in parts if k in ckpt}, {k: again[k] for k in parts if k in again})


def release_layout(fairseq_file: dict) -> dict:
    """The reference model in the EH-MAM release's layout: block 0 in the prenet (context_encoder.blocks), block 1
    as the only main block, plus a loss predictor `decoder_pred` in the student and in `_ema`."""
    out = copy.deepcopy(fairseq_file)
    audio = out["cfg"]["model"]["modalities"]["audio"]
    audio["prenet_depth"], out["cfg"]["model"]["depth"] = 1, 1
    torch.manual_seed(3)
    for state in (out["model"], out["model"]["_ema"]):
        for key in [k for k in state if k.startswith("blocks.")]:
            block, rest = key[len("blocks.") :].split(".", 1)
            name = f"{AUDIO}context_encoder.blocks.0.{rest}" if block == "0" else f"blocks.0.{rest}"
            state[name] = state.pop(key)
        decoder = {k: v for k, v in out["model"].items() if k.startswith(f"{AUDIO}decoder.blocks.")}
        for key, value in decoder.items():
            state[key.replace(".decoder.", ".decoder_pred.")] = torch.randn_like(value)
        state[f"{AUDIO}decoder_pred.proj.0.weight"] = torch.rand(32) + 0.5
        state[f"{AUDIO}decoder_pred.proj.0.bias"] = torch.randn(32)
        state[f"{AUDIO}decoder_pred.proj.1.weight"] = torch.randn(96, 32)
        state[f"{AUDIO}decoder_pred.proj.1.bias"] = torch.randn(96)
    return out


def test_release_layout_reads_and_round_trips(tmp_path, fairseq_file, reference):
    """The release's layout (prenet blocks, decoder_pred) computes the same function and keeps every tensor and the
    layout through fairseq -> ours -> fairseq; so does the plain data2vec 2.0 file."""
    for name, original in (("d2v2", fairseq_file), ("release", release_layout(fairseq_file))):
        path, ours, back = tmp_path / f"{name}.pt", tmp_path / f"{name}_ours.pt", tmp_path / f"{name}_back.pt"
        torch.save(original, path)
        ckpt = load_checkpoint(path)
        assert sorted(ckpt["heads"]) == (
            ["decoder", "predictor", "teacher_predictor"] if name == "release" else ["decoder"]
        )
        for weights in ("student", "teacher"):
            outputs = run_alone(build_encoder(ckpt, weights), reference["wavs"][0])[1].hidden_states
            expected = reference[f"{weights}_single"][0]["block_outputs"]
            assert max((a - b).abs().max().item() for a, b in zip(outputs[1:], expected)) <= TOLERANCE
        assert convert([str(path), "--out", str(ours)]) == 0
        assert convert([str(ours), "--out", str(back), "--to", "fairseq"]) == 0
        written = torch.load(back, weights_only=True)
        assert written["cfg"]["model"] == original["cfg"]["model"]
        assert_same_tensors(original["model"], written["model"])


def test_mel_checkpoint_is_refused_for_fairseq(tmp_path, capsys):
    ckpt = tiny_pretrain_checkpoint("model.frontend=mel")
    save_atomic(ckpt, tmp_path / "mel.pt")
    assert convert([str(tmp_path / "mel.pt"), "--out", str(tmp_path / "out.pt"), "--to", "fairseq"]) == 2
    err = capsys.readouterr().err
    assert "mel.pt: model_config.frontend is 'mel'" in err and "no log-mel front end" in err
    assert not (tmp_path / "out.pt").exists()


def edited(fairseq_file: dict, section: str, key: str, value) -> dict:
    out = copy.deepcopy(fairseq_file)
    target = out["cfg"]["model"]
    for part in section.split(".") if section else []:
        target = target[part]
    target[key] = value
    out["model"] = {}  # a refusal must come from cfg.model, before any weight is looked at
    return out


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("", "layer_norm_first", True, r"cfg\.model\.layer_norm_first is True \(pre-LN blocks"),
        ("modalities.audio", "use_alibi_encoder", False, r"modalities\.audio\.use_alibi_encoder is False \(no ALiBi"),
        ("modalities.audio", "learned_alibi_scale_per_layer", True, r"learned_alibi_scale_per_layer is True"),
        ("modalities.audio", "learned_alibi", True, r"modalities\.audio\.learned_alibi is True"),
        ("modalities.audio", "num_extra_tokens", 1, r"num_extra_tokens is 1 \(extra"),
        ("modalities.audio", "conv_pos_width", 80, r"conv_pos_width 80 over conv_pos_depth 5 gives an even kernel 16"),
        ("", "norm_eps", 1e-6, r"cfg\.model\.norm_eps is 1e-06"),
        ("", "supported_modality", "IMAGE", r"cfg\.model\.supported_modality is 'IMAGE'"),
        ("modalities.audio", "type", "TEXT", r"modalities\.audio\.type is 'TEXT' \(a non-audio modality\)"),
        ("modalities.audio", "extractor_mode", "default", r"extractor_mode is 'default'"),
        ("modalities.audio", "conv_pos_pre_ln", True, r"conv_pos_pre_ln is True"),
        ("modalities.audio", "num_alibi_heads", 6, r"num_alibi_heads is 6 but cfg\.model\.num_heads is 12"),
        ("", "ema_encoder_only", True, r"cfg\.model\.ema_encoder_only is True"),
        ("", "end_of_block_targets", True, r"cfg\.model\.end_of_block_targets is True"),
        ("", "_name", "wav2vec2", r"cfg\.model\._name is 'wav2vec2'"),
        ("modalities.audio", "feature_encoder_spec", "__import__('os')", r"feature_encoder_spec: .* is not a list"),
        ("modalities.audio.decoder", "decoder_residual", False, r"decoder\.decoder_residual is False"),
    ],
)
def test_unsupported_settings_are_refused_by_name(tmp_path, fairseq_file, section, key, value, message):
    torch.save(edited(fairseq_file, section, key, value), tmp_path / "edited.pt")
    with pytest.raises(ValueError, match=r"edited\.pt: cfg\.model[._]") as error:
        load_checkpoint(tmp_path / "edited.pt")
    assert re.search(message, str(error.value)) and "\n" not in str(error.value)


def test_unknown_missing_and_misshapen_keys_name_themselves(tmp_path, fairseq_file):
    cases = [
        (
            lambda m: m.update({"blocks.0.attn.extra": torch.zeros(1)}),
            r"model has unexpected key 'blocks\.0\.attn\.extra'",
        ),
        (lambda m: m.pop("blocks.1.mlp.fc2.bias"), r"model is missing key 'blocks\.1\.mlp\.fc2\.bias'"),
        (lambda m: m["_ema"].pop(f"{AUDIO}context_encoder.norm.weight"), r"model\['_ema'\] is missing key"),
        (
            lambda m: m.update({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}),
            r"model key 'blocks\.0\.attn\.qkv\.weight' has shape \(3, 3\), expected \(288, 96\)",
        ),
        (
            lambda m: m.update({f"{AUDIO}alibi_scale": torch.ones(2, 1, 12, 1, 1)}),
            r"model key 'modality_encoders\.AUDIO\.alibi_scale' has shape \(2, 1, 12, 1, 1\)",
        ),
    ]
    for i, (edit, message) in enumerate(cases):
        changed = copy.deepcopy(fairseq_file)
        edit(changed["model"])
        torch.save(changed, tmp_path / f"case{i}.pt")
        with pytest.raises(ValueError, match=rf"case{i}\.pt: " + message):
            load_checkpoint(tmp_path / f"case{i}.pt")


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_unreadable_fairseq_files(tmp_path, fairseq_file):
    """A truncated file, a pickled code global (never run), and numpy values: in the bookkeeping they are read past,
    in cfg.model they are refused by name."""
    import numpy as np

    data = CHECKPOINT.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"trunc\.pt: corrupt or truncated"):
        load_checkpoint(tmp_path / "trunc.pt")
    marker = tmp_path / "ran"
    torch.save({**fairseq_file, "extra_state": {"x": RunsCode(marker)}}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match=r"code\.pt: holds pickled Python objects \(code\)"):
        load_checkpoint(tmp_path / "code.pt")
    assert not marker.exists()
    numpy_values = {"best": np.float64(1.5), "steps": np.int64(3), "curve": np.arange(4.0), "type": np.dtype("f4")}
    torch.save({**fairseq_file, "extra_state": {"metrics": numpy_values}}, tmp_path / "numpy.pt")
    assert load_checkpoint(tmp_path / "numpy.pt")["kind"] == "ehmam-pretrain"
    in_cfg = copy.deepcopy(fairseq_file)
    in_cfg["cfg"]["model"]["embed_dim"] = np.int64(96)
    torch.save(in_cfg, tmp_path / "numpy_cfg.pt")
    with pytest.raises(ValueError, match=r"numpy_cfg\.pt: cfg\.model\.embed_dim holds a numpy or argparse value"):
        load_checkpoint(tmp_path / "numpy_cfg.pt")


def test_expert_options_on_a_fairseq_file(tmp_path, fairseq_file, reference):
    """-g teacher reads `_ema` and is refused clearly without it; -g num_layers=K keeps the first K blocks."""
    teacher = UpstreamExpert(str(CHECKPOINT), model_config="teacher,num_layers=1")
    with torch.no_grad():
        hidden = teacher([reference["wavs"][1]])["hidden_states"]
    assert len(hidden) == 2
    assert (hidden[1] - reference["teacher_single"][1]["block_outputs"][0]).abs().max() <= TOLERANCE
    stripped = copy.deepcopy(fairseq_file)
    del stripped["model"]["_ema"]
    torch.save(stripped, tmp_path / "no_ema.pt")
    assert load_checkpoint(tmp_path / "no_ema.pt")["kind"] == "ehmam-encoder"
    with pytest.raises(ValueError, match=r"no_ema\.pt: no teacher weights \(the fairseq file has no model\['_ema'\]\)"):
        UpstreamExpert(str(tmp_path / "no_ema.pt"), model_config="teacher")


D2V2_SMALL_RUN = [
    "model.conv_layers=[[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 2, 2], [32, 2, 2]]",
    "model.embed_dim=96",
    "model.num_layers=2",
    "model.num_heads=12",
    "model.ffn_dim=384",
    "model.pos_conv_depth=5",
    "heads.decoder_dim=32",
    "heads.depth=2",
    "loss.top_k_layers=2",
]


def test_pretraining_starts_from_a_fairseq_file(harmonic_manifest, tmp_path, caplog, one_torch_thread):
    """run.init_from: the student, the `_ema` teacher and the decoder come from the file, the predictor (which a
    data2vec 2.0 file lacks) is fresh, the optimiser and schedules start at update 0; the result converts back to
    fairseq's layout. A file of another architecture is refused by the key that differs."""
    from pretrain.checkpointing import initialise_from
    from pretrain.train import train

    config = load_config(TINY, [f"data.manifest={harmonic_manifest}", *D2V2_SMALL_RUN])
    model = EHMAMPretrainModel(config)
    notes = initialise_from(CHECKPOINT, model)
    assert "freshly initialised: heads.predictor, heads.teacher_predictor" in notes[-1]
    ckpt = load_checkpoint(CHECKPOINT)
    assert_same_tensors(model.encoder.state_dict(), ckpt["encoder"])
    assert_same_tensors(model.teacher.context.state_dict(), ckpt["teacher_context"])
    assert_same_tensors(model.decoder.state_dict(), ckpt["heads"]["decoder"])

    run = [
        f"data.manifest={harmonic_manifest}",
        f"run.out_dir={tmp_path / 'run'}",
        f"run.init_from={CHECKPOINT}",
        "optim.max_steps=2",
        "optim.warmup_steps=1",
        "run.save_every=2",
        "data.max_samples=32000",
        "data.max_batch_samples=64000",
        "run.device=cpu",
        *D2V2_SMALL_RUN,
    ]
    with caplog.at_level("INFO", logger="pretrain"):
        run_dir = train(load_config(TINY, run))
    assert f"run.init_from: weights from {CHECKPOINT}" in caplog.text
    written = load_checkpoint(run_dir / "last.pt")
    assert written["train_state"]["update"] == 2
    assert convert([str(run_dir / "last.pt"), "--out", str(tmp_path / "fairseq.pt"), "--to", "fairseq"]) == 0

    other = load_config(TINY, [f"data.manifest={harmonic_manifest}", *D2V2_SMALL_RUN, "model.num_layers=3"])
    with pytest.raises(ValueError, match=r"run\.init_from .*checkpoint\.pt: has model\.num_layers=2, but the config"):
        initialise_from(CHECKPOINT, EHMAMPretrainModel(other))


def base_cfg(depth: int, prenet_depth: int, with_predictor: bool) -> dict:
    """cfg.model of the released Base models (data2vec 2.0 base_libri; the EH-MAM release)."""
    audio = {
        "type": "AUDIO",
        "prenet_depth": prenet_depth,
        "prenet_layerdrop": 0.05,
        "prenet_dropout": 0.1,
        "use_alibi_encoder": True,
        "learned_alibi_scale": True,
        "learned_alibi_scale_per_head": True,
        "num_alibi_heads": 12,
        "decoder": {"decoder_dim": 384, "decoder_groups": 16, "decoder_kernel": 7, "decoder_layers": 4},
        "conv_pos_width": 95,
        "conv_pos_groups": 16,
        "conv_pos_depth": 5,
    }
    model = {"_name": "data2vec_multi", "depth": depth, "norm_eps": 1e-5, "layerdrop": 0.05, "ema_encoder_only": False}
    model.update({"supported_modality": "AUDIO", "modalities": {"audio": audio}})
    if with_predictor:
        model["learning_loss"] = 1.0
    return model


@pytest.mark.parametrize("keys, depth, prenet_depth", [("data2vec2_base.txt", 12, 0), ("ehmam_release_base.txt", 8, 4)])
def test_the_key_lists_of_the_released_base_files_map_completely(keys, depth, prenet_depth):
    """Every key of a real Base file (names and shapes listed in tests/data/base_state_dict_keys) is taken, none is
    missing, and the parts have the parameter counts of docs/design.md: encoder 93,163,532, decoder 619,776, the
    release's predictor 620,544, the teacher 88,561,932 plus the predictor's EMA copy."""
    from upstream_ehmam.fairseq_config import read_fairseq_model_config
    from upstream_ehmam.fairseq_state import read_fairseq_state

    state: dict = {}
    for line in (REPO / "tests" / "data" / "base_state_dict_keys" / keys).read_text().splitlines():
        if line.startswith("#"):
            continue
        name, shape = line.split("\t")
        target = state.setdefault("_ema", {}) if name.startswith("_ema.") else state
        target[name.removeprefix("_ema.")] = torch.empty(ast.literal_eval(shape), device="meta")
    release = prenet_depth > 0
    config, layout = read_fairseq_model_config(base_cfg(depth, prenet_depth, release), keys)
    weights = read_fairseq_state(state, config, layout.prenet_depth, layout.heads, keys)

    def count(part: dict | None) -> int:
        return sum(t.numel() for t in part.values()) if part else 0

    assert config.num_layers == 12 and count(weights.encoder) == 93_163_532 and count(weights.decoder) == 619_776
    assert count(weights.teacher_context) == 88_561_932
    assert count(weights.predictor) == count(weights.teacher_predictor) == (620_544 if release else 0)
