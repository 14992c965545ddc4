"""The log-mel front end (`model.frontend: mel`): frame geometry, padding, the filterbank, config,
checkpoints, the s3prl expert contract, pretraining, resume, layer-wise probes and the real SUPERB runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from upstream_ehmam import frontend, hubconf
from upstream_ehmam.checkpoint import (
    FORMAT_VERSION,
    build_encoder,
    check_state_dict,
    export_encoder,
    load_encoder,
    save_atomic,
)
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.model import ContextEncoder, EHMAMEncoder, normalize_waveforms

REPO = Path(__file__).resolve().parent.parent
DIM, NUM_LAYERS = 32, 2


def mel_config(**overrides) -> EncoderConfig:
    values = dict(
        frontend="mel",
        embed_dim=DIM,
        num_layers=NUM_LAYERS,
        num_heads=4,
        ffn_dim=64,
        pos_conv_depth=2,
        pos_conv_groups=8,
    )
    return EncoderConfig(**{**values, **overrides})


def cnn_config(**overrides) -> EncoderConfig:
    return mel_config(frontend="cnn", **overrides)


@pytest.fixture(scope="module")
def mel_local():
    torch.manual_seed(0)
    return EHMAMEncoder(mel_config()).local.eval()


# --- frame geometry ---------------------------------------------------------------------------------------


def test_geometry_is_320x_with_a_560_sample_field():
    cfg = mel_config()
    assert cfg.downsample_rate == 320 and cfg.receptive_field == 560
    assert [cfg.frames_for_samples(n) for n in (0, 399, 400, 559, 560, 879, 880, 16000, 320000)] == [
        0,
        0,
        0,
        0,
        1,
        1,
        2,
        49,
        999,
    ]
    lengths = torch.arange(0, 20000)
    expected = ((lengths - 560).div(320, rounding_mode="floor") + 1).clamp(min=0)
    assert torch.equal(cfg.frames_for_samples(lengths), expected)
    assert [cfg.frames_for_samples(int(n)) for n in lengths[::997]] == expected[::997].tolist()


@torch.inference_mode()
def test_output_frame_count_equals_frames_for_samples_for_every_length(mel_local):
    """Every length from 400 to 1200 samples (each residue mod 320 at least twice) and every 2333rd length
    up to 20 s, one by one through the real module."""
    cfg = mel_local.config
    wav = torch.randn(320_000, generator=torch.Generator().manual_seed(1))
    for n in [*range(400, 1200), *range(1200, 320_001, 2333), 320_000]:
        features, lengths = mel_local(wav[None, :n], torch.tensor([n]))
        assert features.shape[1] == int(lengths[0]) == cfg.frames_for_samples(n), n


@torch.inference_mode()
def test_under_the_minimum_gives_zero_frames(mel_local):
    """Under 560 samples the front end returns an empty (B, 0, D) tensor and length 0, a defined result (the
    expert pads such inputs to 560 samples: see the expert contract below)."""
    for n in (1, 100, 399, 559):
        features, lengths = mel_local(torch.randn(1, n), torch.tensor([n]))
        assert features.shape == (1, 0, DIM) and lengths.tolist() == [0]


@pytest.mark.parametrize("norm", ["utterance", "global"])
@torch.inference_mode()
def test_padded_batch_equals_one_by_one(norm):
    torch.manual_seed(0)
    cfg = mel_config(mel_norm=norm, mel_mean=-3.0, mel_std=[2.0] * 80)
    model = EHMAMEncoder(cfg).eval()
    g = torch.Generator().manual_seed(2)
    wavs = [torch.randn(n, generator=g) for n in (16000, 561, 9001, 3333)]
    padded, lengths = normalize_waveforms(wavs)
    batched, frames = model.extract_features(padded, lengths)
    for b, w in enumerate(wavs):
        alone, alone_frames = model.extract_features(*normalize_waveforms([w]))
        T = int(alone_frames[0])
        assert int(frames[b]) == T == cfg.frames_for_samples(w.shape[0])
        for h_batch, h_alone in zip(batched, alone):
            torch.testing.assert_close(h_batch[b, :T], h_alone[0], atol=2e-5, rtol=1e-4)
            assert h_batch[b, T:].abs().max() == 0 if h_batch.shape[1] > T else True


@torch.inference_mode()
def test_frame_t_reads_exactly_samples_320t_to_320t_plus_560():
    """With fixed (global) statistics, changing samples outside [320 t, 320 t + 560) leaves frame t unchanged,
    and changing one inside changes it."""
    torch.manual_seed(0)
    local = EHMAMEncoder(mel_config(mel_norm="global")).local.eval()
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(3))
    base, _ = local(wav, torch.tensor([8000]))
    t = 7
    lo, hi = 320 * t, 320 * t + local.config.receptive_field
    outside = wav.clone()
    outside[:, :lo] += 1.0
    outside[:, hi:] += 1.0
    moved, _ = local(outside, torch.tensor([8000]))
    torch.testing.assert_close(moved[0, t], base[0, t], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(moved[0, t - 1], base[0, t - 1]) and not torch.allclose(moved[0, t + 1], base[0, t + 1])
    for inside in (lo + 40, hi - 40):  # Hann weights vanish towards the window's ends
        changed = wav.clone()
        changed[:, inside] += 5.0
        out, _ = local(changed, torch.tensor([8000]))
        assert not torch.allclose(out[0, t], base[0, t], atol=1e-4)


def test_log_mel_matches_torchaudio_melspectrogram():
    """The front end's log-mel is torchaudio's MelSpectrogram (25 ms Hann, 10 ms hop, no centring, HTK, power 2)."""
    from superb.compat import import_torchaudio

    import_torchaudio()  # this machine's torchaudio cannot load its compiled extension without the stub
    import torchaudio.transforms as transforms

    wav = torch.randn(2, 4000, generator=torch.Generator().manual_seed(4))
    reference = transforms.MelSpectrogram(
        16000, n_fft=400, hop_length=160, n_mels=80, center=False, power=2.0, norm=None, mel_scale="htk"
    )(wav)  # (B, n_mels, M)
    ours = frontend.log_mel(wav, frontend.mel_filterbank(80), torch.hann_window(400))
    torch.testing.assert_close(ours, torch.log(reference.transpose(1, 2) + frontend.LOG_FLOOR), atol=1e-4, rtol=1e-4)


def test_filterbank_is_torchaudios_and_builds_without_torchaudio():
    """The upstream folder builds torchaudio's HTK filterbank bit for bit in a fresh interpreter, importing neither
    torchaudio nor the project's compatibility layer."""
    from superb.compat import import_torchaudio

    functional = import_torchaudio().functional
    for n_mels, n_fft in ((80, 400), (40, 512), (64, 400)):
        reference = functional.melscale_fbanks(n_fft // 2 + 1, 0.0, 8000.0, n_mels, 16000, norm=None, mel_scale="htk")
        assert torch.equal(frontend.mel_filterbank(n_mels, n_fft=n_fft), reference)
    code = (
        "import sys, torch; from upstream_ehmam.frontend import mel_filterbank; fb = mel_filterbank(80); "
        "assert not {'superb', 'superb.compat', 'torchaudio'} & set(sys.modules); "
        "print(fb.shape[0], fb.shape[1], float(fb.sum()))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows, cols, total = done.stdout.split()
    here = frontend.mel_filterbank(80)
    assert (int(rows), int(cols)) == (201, 80) == tuple(here.shape)
    assert float(total) == pytest.approx(float(here.sum()), rel=1e-6)
    assert here.min() >= 0 and bool((here.max(0).values > 0).all())  # every filter reaches some bin


# --- config -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, message",
    [
        ({"frontend": "fbank"}, "model.frontend: must be one of cnn, mel"),
        ({"frontend": "mel", "mel_norm": "batch"}, "model.mel_norm"),
        ({"frontend": "mel", "mel_bins": 0}, "model.mel_bins"),
        ({"frontend": "mel", "mel_bins": "80"}, "model.mel_bins"),
        ({"frontend": "mel", "mel_mean": [0.0] * 3}, "model.mel_mean: a list must have mel_bins=80"),
        ({"frontend": "mel", "mel_std": 0.0}, "model.mel_std: must be positive"),
        ({"frontend": "mel", "mel_std": "one"}, "model.mel_std"),
        ({"frontend": "mel", "mel_window": 400}, "model.mel_window: unknown key"),
    ],
)
def test_bad_frontend_settings_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig.from_dict(values)


def test_old_configs_without_frontend_are_cnn_and_mel_round_trips():
    old = cnn_config().to_dict()
    for key in ("frontend", "mel_bins", "mel_norm", "mel_mean", "mel_std"):
        old.pop(key)
    assert EncoderConfig.from_dict(old).frontend == "cnn"
    cfg = mel_config(mel_norm="global", mel_mean=list(range(80)), mel_std=2)
    again = EncoderConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.mel_std == 2.0 and isinstance(again.mel_mean[1], float)


def test_pretrain_config_rejects_crops_too_short_for_a_mel_frame():
    from pretrain.config import load_config

    with pytest.raises(ValueError, match="data.min_samples: 500 samples give no frame with model.frontend=mel"):
        load_config(REPO / "pretrain" / "tiny_mel.yaml", ["data.min_samples=500", "mask.mask_prob=0.01"])
    base = load_config(REPO / "pretrain" / "mel.yaml")
    assert base.model.frontend == "mel" and base.model.embed_dim == 768 and base.model.num_layers == 12


# --- checkpoints and the expert ---------------------------------------------------------------------------


def _pretrain_ckpt(encoder: EHMAMEncoder, path: Path) -> Path:
    teacher = ContextEncoder(encoder.config)
    save_atomic(
        {
            "format_version": FORMAT_VERSION,
            "kind": "ehmam-pretrain",
            "model_config": encoder.config.to_dict(),
            "encoder": encoder.state_dict(),
            "teacher_context": teacher.state_dict(),
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def mel_ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return _pretrain_ckpt(EHMAMEncoder(mel_config()), tmp_path_factory.mktemp("mel") / "pretrain.pt")


@torch.inference_mode()
def test_checkpoint_and_export_round_trip(mel_ckpt, tmp_path):
    wav = torch.randn(1, 12345, generator=torch.Generator().manual_seed(5))
    lengths = torch.tensor([12345])
    student = load_encoder(mel_ckpt)
    assert student.config.frontend == "mel" and "local.proj.weight" in student.state_dict()
    assert not any("fbank" in k or "window" in k for k in student.state_dict())  # rebuilt from the config
    export_encoder(student, tmp_path / "enc.pt")
    again = load_encoder(tmp_path / "enc.pt")
    for a, b in zip(student.extract_features(wav, lengths)[0], again.extract_features(wav, lengths)[0]):
        assert torch.equal(a, b)
    teacher = load_encoder(mel_ckpt, weights="teacher")
    assert torch.equal(teacher.local.proj.weight, student.local.proj.weight)
    assert not torch.allclose(
        teacher.extract_features(wav, lengths)[0][-1], student.extract_features(wav, lengths)[0][-1]
    )


def test_the_other_front_ends_weights_are_a_clear_error(mel_ckpt, tmp_path):
    torch.manual_seed(0)
    cnn = EHMAMEncoder(cnn_config())
    mel = load_encoder(mel_ckpt)
    with pytest.raises(ValueError, match="model.frontend=cnn weights, but the model has model.frontend=mel"):
        check_state_dict(mel.state_dict(), cnn.state_dict(), "x.pt", "encoder")
    with pytest.raises(ValueError, match="frontend=mel.*frontend=cnn"):
        cnn.load_state_dict(mel.state_dict())
    with pytest.raises(ValueError, match="frontend=cnn.*frontend=mel"):
        mel.load_state_dict(cnn.state_dict())
    ckpt = torch.load(mel_ckpt, weights_only=True)
    ckpt["model_config"].pop("frontend")  # a mel file whose config says (by default) cnn
    with pytest.raises(ValueError, match="model.frontend=mel weights, but the model has model.frontend=cnn"):
        build_encoder(ckpt, source="edited.pt")


@torch.inference_mode()
def test_expert_contract_for_a_mel_checkpoint(mel_ckpt):
    """s3prl's contract: L+1 hidden states of (B, T, D) float32 at 320x, T = frames of the longest input (padded
    to one 560-sample field), short inputs give one frame; teacher and num_layers options work."""
    expert = hubconf.ehmam(ckpt=str(mel_ckpt)).eval()
    assert expert.get_downsample_rates("hidden_states") == 320
    for lengths in ([16000], [100], [100, 800, 16000], [559, 560, 561, 880]):
        out = expert([torch.randn(n) for n in lengths])
        T = max(1, (max(lengths) - 560) // 320 + 1)
        assert len(out["hidden_states"]) == NUM_LAYERS + 1
        assert all(h.shape == (len(lengths), T, DIM) and h.dtype == torch.float32 for h in out["hidden_states"])
        assert all(torch.isfinite(h).all() for h in out["hidden_states"])
    assert expert([torch.randn(16000)])["hidden_states"][0].shape[1] == 16000 // 320 - 1
    one = hubconf.ehmam(ckpt=str(mel_ckpt), model_config="num_layers=1")([torch.randn(3200)])
    assert len(one["hidden_states"]) == 2
    teacher = hubconf.ehmam_teacher(ckpt=str(mel_ckpt)).eval()
    wav = [torch.randn(4000, generator=torch.Generator().manual_seed(6))]
    assert not torch.allclose(expert(wav)["last_hidden_state"], teacher(wav)["last_hidden_state"])


# --- pretraining, resume, layer-wise probes, the real runner ----------------------------------------------


@pytest.fixture(scope="module")
def manifest(harmonic_manifest: Path) -> Path:
    return harmonic_manifest


def _config(manifest: Path, out_dir: Path, *extra: str, yaml: str = "tiny_mel.yaml"):
    from pretrain.config import load_config

    return load_config(
        REPO / "pretrain" / yaml,
        [
            f"data.manifest={manifest}",
            f"run.out_dir={out_dir}",
            "optim.max_steps=12",
            "optim.warmup_steps=3",
            "run.log_every=1",
            "run.save_every=6",
            "run.keep_checkpoints=5",
            "data.max_samples=32000",
            "data.max_batch_samples=128000",
            "run.collapse_check_after=100000",
            *extra,
        ],
    )


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_tiny_mel_pretraining_learns_and_its_checkpoint_is_an_upstream(manifest, tmp_path):
    from pretrain.mask_budget import overlapping_share
    from pretrain.train import train

    config = _config(manifest, tmp_path / "run", "optim.max_steps=20", "run.save_every=20")
    run_dir = train(config)
    metrics = _metrics(run_dir)
    losses = [m["rec_loss"] for m in metrics]
    assert len(losses) == 20 and all(m["skipped_updates"] == 0 for m in metrics)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
    # the grid masks data2vec 2.0's share of these 4 rows of T frames, within one span of it at every update
    T, L = config.model.frames_for_samples(32000), config.mask.span_length
    share = overlapping_share(T, config.mask.mask_prob, L, rows=4)
    assert all(abs(m["masked_fraction"] - share) <= L / T + 1e-6 for m in metrics), (share, metrics)
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    assert ckpt["model_config"]["frontend"] == "mel" and ckpt["config"]["model"]["frontend"] == "mel"
    expert = hubconf.ehmam(ckpt=str(run_dir / "last.pt"), model_config="teacher")
    with torch.inference_mode():
        hs = expert([torch.randn(16000), torch.randn(8000)])["hidden_states"]
    assert len(hs) == 5 and hs[0].shape == (2, 49, 128)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_mel_resume_continues_exactly_and_refuses_a_cnn_config(manifest, tmp_path):
    from pretrain.checkpointing import restore_training_checkpoint
    from pretrain.ehmam import EHMAMPretrainModel
    from pretrain.train import train

    steps = ("optim.max_steps=8", "run.save_every=4")
    full = train(_config(manifest, tmp_path / "full", *steps))
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copy(full / "checkpoint_00000004.pt", resumed_dir / "last.pt")
    resumed = train(_config(manifest, resumed_dir, *steps), resume=True)
    assert [m["loss"] for m in _metrics(full)][4:] == [m["loss"] for m in _metrics(resumed)]
    a = torch.load(full / "last.pt", weights_only=True)["encoder"]
    b = torch.load(resumed / "last.pt", weights_only=True)["encoder"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the same run's checkpoint into a cnn model of the same width: an error naming both front ends
    cnn = _config(
        manifest, tmp_path / "cnn", *steps, "model.frontend=cnn", f"model.conv_layers={EncoderConfig().conv_layers}"
    )
    model = EHMAMPretrainModel(cnn)
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="trained with model.frontend='mel', but the config says model.frontend='cnn'"):
        restore_training_checkpoint(full / "last.pt", model, optimizer)
    # a checkpoint from before the key existed was a cnn one: resuming it with a mel config names both
    old = torch.load(full / "last.pt", weights_only=True)
    old["model_config"].pop("frontend")
    torch.save(old, tmp_path / "old.pt")
    mel = EHMAMPretrainModel(_config(manifest, tmp_path / "mel", *steps))
    with pytest.raises(ValueError, match="trained with model.frontend='cnn', but the config says model.frontend='mel'"):
        restore_training_checkpoint(tmp_path / "old.pt", mel, torch.optim.AdamW(mel.parameters()))


@pytest.mark.slow
def test_layerwise_probes_run_on_a_mel_checkpoint(mel_ckpt, minisuperb_ci, tmp_path):
    from results.layerwise import main

    assert (
        main(
            [
                "--ckpt",
                str(mel_ckpt),
                "--data",
                str(minisuperb_ci),
                "--out",
                str(tmp_path),
                "--max-utterances",
                "24",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    import csv

    rows = list(csv.DictReader(open(tmp_path / "layerwise.csv")))
    assert {int(r["layer"]) for r in rows} == set(range(NUM_LAYERS + 1))
    assert all(np.isfinite(float(r["value"])) for r in rows)


@pytest.mark.slow
def test_real_runner_trains_ks_on_a_mel_checkpoint(mel_ckpt, minisuperb_ci, tmp_path):
    """`run_downstream.py -m train -u ehmam -k <mel checkpoint> -d ks` through s3prl's own runner."""
    from superb_trees import run_downstream_script

    from experiments.downstream import short_run_override

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("SUPERB_DATA", None)
    expdir = tmp_path / "ks"
    run_downstream_script(
        tmp_path,
        env,
        "-m",
        "train",
        "-u",
        "ehmam",
        "-k",
        str(mel_ckpt),
        "-d",
        "ks",
        "--data-root",
        str(minisuperb_ci),
        "--workers",
        "0",
        "-p",
        str(expdir),
        "-o",
        short_run_override("ks", 3),
        timeout=600,
    )
    assert (expdir / "states-3.ckpt").is_file()


def test_bench_quick_counts_fewer_flops_for_mel(capsys):
    """bench/frontend.py --quick: both tiny front ends counted and timed; the mel step needs fewer FLOPs."""
    from bench import frontend as bench

    assert bench.main(["--quick", "--threads", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith("| tiny |")]
    flops = [r for r in rows if len(r) == 6]
    assert sorted(r[1] for r in rows if len(r) == 7) == ["cnn", "mel"]  # the step-time table
    assert {r[1] for r in flops} == {"cnn", "mel"}
    by_frontend = {r[1]: float(r[4]) for r in flops}
    assert by_frontend["mel"] < by_frontend["cnn"]
    assert "Pretraining step time" in out


def test_mel_stats_cli_gives_a_valid_global_config(manifest, tmp_path, capsys):
    """python -m pretrain.mel_stats: per-bin statistics of the normalised audio that a mel_norm=global config
    accepts, and that centre the model's own log-mel frames."""
    import yaml

    from pretrain.config import load_config
    from pretrain.mel_stats import main

    assert main([str(manifest), "--max-utterances", "3", "--out", str(tmp_path / "stats.yaml")]) == 0
    stats = yaml.safe_load((tmp_path / "stats.yaml").read_text())
    assert len(stats["mel_mean"]) == len(stats["mel_std"]) == 80 and min(stats["mel_std"]) > 0
    cfg = load_config(
        REPO / "pretrain" / "tiny_mel.yaml",
        ["model.mel_norm=global", f"model.mel_mean={stats['mel_mean']}", f"model.mel_std={stats['mel_std']}"],
    ).model
    local = EHMAMEncoder(cfg).local.eval()
    from pretrain.data import read_audio
    from pretrain.manifest import read_manifest
    from upstream_ehmam.model import normalize_waveform

    root, entries = read_manifest(manifest)
    wavs = [normalize_waveform(torch.from_numpy(read_audio(root / rel)[0])) for rel, _ in entries[:3]]
    padded, lengths = normalize_waveforms(wavs)
    with torch.inference_mode():
        mel, frames = local.normalized_log_mel(padded, lengths)
    valid = torch.cat([mel[b, : 2 * int(frames[b])] for b in range(len(wavs))])
    assert valid.mean(0).abs().max() < 1e-2 and (valid.std(0) - 1).abs().max() < 1e-2
    assert main([str(tmp_path / "missing.tsv")]) == 2 and "missing.tsv" in capsys.readouterr().err
