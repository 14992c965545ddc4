"""results.layerwise (probes with known answers, labels, end to end on mini-SUPERB), the expert's layer dropping
and inline -g options, and results.layer_weights on a checkpoint from a short real s3prl run."""

import csv
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from measure import alignments, logmel
from results import layer_weights, layerwise
from upstream_ehmam import hubconf
from upstream_ehmam.checkpoint import export_encoder
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.expert import _read_options
from upstream_ehmam.model import EHMAMEncoder

REPO = Path(__file__).resolve().parent.parent
NUM_LAYERS = 3


def tiny_config() -> EncoderConfig:
    conv = [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2  # small enough for CPU tests in seconds
    return EncoderConfig(
        conv_layers=conv, embed_dim=32, num_layers=NUM_LAYERS, num_heads=4, ffn_dim=64, pos_conv_depth=2
    )


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> Path:
    """A random-init encoder export (3 blocks, 32 wide) with a teacher context that differs from the student."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = EHMAMEncoder(tiny_config())
        teacher = EHMAMEncoder(tiny_config()).context.state_dict()
    path = tmp_path_factory.mktemp("export") / "tiny.pt"
    export_encoder(encoder, path, teacher_context=teacher)
    return path


# --- probes on synthetic features -------------------------------------------------------------------------


def test_ridge_r2_copy_is_one_and_noise_is_zero():
    """A layer that copies the targets reconstructs them (R^2 ~ 1); independent noise gives R^2 ~ 0."""
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(3000, 20, generator=g) @ torch.randn(20, 20, generator=g)
    train, test = slice(0, 2000), slice(2000, 3000)
    copy = torch.cat([targets, torch.randn(3000, 5, generator=g)], 1)  # the input plus extra dims
    assert layerwise.ridge_r2(copy[train], targets[train], copy[test], targets[test]) > 0.99
    noise = torch.randn(3000, 32, generator=g)
    r2 = layerwise.ridge_r2(noise[train], targets[train], noise[test], targets[test])
    assert -0.05 < r2 < 0.02


def test_r2_score_definition():
    """R^2 is 1 - SSE/SST per column, averaged over columns; the mean predictor scores 0."""
    y = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]], dtype=torch.float64)
    assert layerwise.r2_score(y, y) == pytest.approx(1.0)
    assert layerwise.r2_score(y, y.mean(0, keepdim=True).expand_as(y)) == pytest.approx(0.0)
    half = y.clone()
    half[:, 1] = y[:, 1].mean()
    assert layerwise.r2_score(y, half) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="constant"):
        layerwise.r2_score(torch.ones(4, 2), torch.zeros(4, 2))


def test_logistic_probe_label_layer_high_and_random_layer_at_chance():
    """Features carrying the label give near-perfect accuracy; random features give about 1/C."""
    g = torch.Generator().manual_seed(1)
    C, N = 8, 2000
    labels = torch.randint(0, C, (N,), generator=g)
    names = [f"c{i}" for i in labels.tolist()]
    informative = torch.randn(N, 16, generator=g) * 0.15  # Bayes error ~1e-5
    informative[:, :C] += torch.nn.functional.one_hot(labels, C).float()
    acc = layerwise.probe_accuracy(informative[:1500], names[:1500], informative[1500:], names[1500:])
    assert acc > 0.97
    random = torch.randn(N, 16, generator=g)
    chance = layerwise.probe_accuracy(random[:1500], names[:1500], random[1500:], names[1500:])
    assert abs(chance - 1 / C) < 0.05


def test_probe_is_deterministic_and_unseen_test_labels_count_wrong():
    """Same inputs, same accuracy; a test label absent from training can never be predicted."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200, 4, generator=g)
    y = ["a" if v > 0 else "b" for v in x[:, 0].tolist()]
    first = layerwise.probe_accuracy(x, y, x, y)
    assert first == layerwise.probe_accuracy(x, y, x, y) and first > 0.95
    assert layerwise.probe_accuracy(x, y, x[:10], ["z"] * 10) == 0.0
    with pytest.raises(ValueError, match="at least 2 classes"):
        layerwise.probe_accuracy(x, ["a"] * 200, x, y)


# --- labels and targets -----------------------------------------------------------------------------------


def test_frame_phone_labels_use_the_frame_centre_and_strip_stress():
    """Frame t gets the phone at sample 320 t + 200; stress digits are dropped (AH0 -> AH)."""
    phones, starts = ["SIL", "AH0", "T", "SIL"], [0, 500, 900, 1300]
    labels = alignments.frame_phone_labels(phones, starts, 5)
    # centres 200, 520, 840, 1160, 1480
    assert labels == ["SIL", "AH", "AH", "T", "SIL"]
    assert alignments.strip_stress("ER1") == "ER" and alignments.strip_stress("SIL") == "SIL"


def test_log_mel_frames_align_with_model_frames():
    """log-mel frame t reads samples [320 t, 320 t + 400): as many frames as the model, and a tone switched on
    at frame 10 raises only frames >= 10."""
    cfg = tiny_config()
    wav = torch.zeros(16000)
    t = torch.arange(16000 - 3200) / 16000
    wav[3200:] = torch.sin(2 * torch.pi * 1000 * t)
    T = cfg.frames_for_samples(16000)
    mel = logmel.log_mel_frames(wav, T)
    assert mel.shape == (T, logmel.MEL_BINS) == (49, 80)
    energy = mel.max(1).values
    assert energy[:10].max() < energy[10:].min()
    bank = logmel.mel_filterbank(257, 80)
    assert bank.shape == (257, 80) and (bank >= 0).all() and (bank.sum(0) > 0).all()


def test_pick_round_robin_keeps_every_speaker():
    """A cap smaller than the pool still takes utterances from each speaker, in the original order."""
    utts = [alignments.Utterance(Path(f"{s}-{i}.flac"), s) for s in ("a", "b", "c") for i in range(5)]
    picked = layerwise.pick_round_robin(utts, 6, torch.Generator().manual_seed(0))
    assert len(picked) == 6 and {u.speaker for u in picked} == {"a", "b", "c"}
    assert picked == [u for u in utts if u in picked]
    assert layerwise.pick_round_robin(utts, None, torch.Generator()) == utts


def test_speaker_split_uses_the_same_speakers():
    """Every test utterance's speaker also has training utterances; single-utterance speakers are left out."""
    utts = [alignments.Utterance(Path(f"{s}{i}"), s) for s, n in (("a", 4), ("b", 3), ("c", 1)) for i in range(n)]
    train, test = layerwise.speaker_split(utts, torch.Generator().manual_seed(0))
    assert len(test) == 2 + 1 and len(train) == 2 + 2
    assert {utts[i].speaker for i in test} <= {utts[i].speaker for i in train} == {"a", "b"}


def test_alignment_errors_name_the_file(tmp_path):
    """A missing alignment file or a bad record is a clear error naming the file."""
    libri = tmp_path / "LibriSpeech"
    (libri / "alignments").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"alignments/train-clean-100\.jsonl: phone alignment file missing"):
        alignments.read_alignments(libri, "train-clean-100")
    (libri / "alignments" / "dev-clean.jsonl").write_text('{"id": "1-2-0000", "phones": ["SIL"]}\n')
    with pytest.raises(ValueError, match=r"dev-clean\.jsonl:1: not an alignment record"):
        alignments.read_alignments(libri, "dev-clean")


# --- end to end -------------------------------------------------------------------------------------------


def test_layerwise_end_to_end(minisuperb_ci, tiny_export, tmp_path):
    """On mini-SUPERB with a random-init encoder: every layer x every probe in the CSV, values in range, PNG."""
    rows = layerwise.run_layerwise(
        tiny_export, minisuperb_ci, tmp_path, max_utterances=6, max_frames=600, seed=0, device="cpu"
    )
    with open(tmp_path / "layerwise.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(layerwise.CSV_COLUMNS)
    assert {(int(r["layer"]), r["probe"]) for r in table} == {
        (layer, probe) for layer in range(NUM_LAYERS + 1) for probe in layerwise.PROBES
    }
    assert len(rows) == len(table) == (NUM_LAYERS + 1) * 4
    for row in rows:
        assert row["metric"] == layerwise.PROBES[row["probe"]]
        assert row["n_train"] > 0 and row["n_test"] > 0
        if row["probe"] == "logmel":
            assert row["value"] <= 1.0 and row["n_train"] <= 600
        else:
            assert 0.0 <= row["value"] <= 1.0
    assert (tmp_path / "layerwise.png").stat().st_size > 10_000
    assert layerwise.read_csv(tmp_path / "layerwise.csv")[0]["layer"] == 0


def test_layerwise_librispeech_only_and_cli_errors(minisuperb_ci, tiny_export, tmp_path, caplog, capsys):
    """A folder with only LibriSpeech skips the keyword probe with a message (and, with one utterance per
    speaker, the speaker probe); a missing checkpoint or alignment file exits 2 with an error naming it."""
    only_libri = tmp_path / "data"
    only_libri.mkdir()
    (only_libri / "LibriSpeech").symlink_to(minisuperb_ci / "LibriSpeech")
    with caplog.at_level(logging.INFO, logger="layerwise"):
        rows = layerwise.run_layerwise(tiny_export, only_libri, tmp_path / "out", max_utterances=3, max_frames=200)
    assert {r["probe"] for r in rows} == {"phone", "logmel"}
    assert "keyword probe skipped" in caplog.text and "speaker probe skipped" in caplog.text

    code = layerwise.main(["--ckpt", str(tmp_path / "nope.pt"), "--data", str(only_libri), "--out", str(tmp_path)])
    assert code == 2 and "nope.pt: checkpoint file not found" in capsys.readouterr().err
    no_alignments = tmp_path / "bare"
    (no_alignments / "LibriSpeech").mkdir(parents=True)
    code = layerwise.main(["--ckpt", str(tiny_export), "--data", str(no_alignments), "--out", str(tmp_path)])
    assert code == 2 and "train-clean-100.jsonl: phone alignment file missing" in capsys.readouterr().err


# --- layer dropping and inline -g -------------------------------------------------------------------------


def test_num_layers_returns_first_k_plus_one_states(tiny_export):
    """-g num_layers=K (inline form) gives K+1 hidden states equal to the full model's first K+1."""
    g = torch.Generator().manual_seed(3)
    wavs = [0.1 * torch.randn(n, generator=g) for n in (4000, 2600)]
    with torch.no_grad():
        full = hubconf.ehmam(ckpt=str(tiny_export)).eval()(wavs)["hidden_states"]
        for k in (1, 2):
            cut = hubconf.ehmam(ckpt=str(tiny_export), model_config=f"num_layers={k}").eval()(wavs)["hidden_states"]
            assert len(cut) == k + 1
            for a, b in zip(cut, full[: k + 1]):
                torch.testing.assert_close(a, b, atol=0, rtol=0)
        teacher_full = hubconf.ehmam(ckpt=str(tiny_export), model_config="teacher").eval()(wavs)["hidden_states"]
        teacher_cut = hubconf.ehmam(ckpt=str(tiny_export), model_config=" teacher , num_layers=2").eval()(wavs)[
            "hidden_states"
        ]
    assert len(teacher_cut) == 3
    for a, b in zip(teacher_cut, teacher_full[:3]):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert (teacher_cut[-1] - full[2]).abs().max() > 1e-3  # the teacher's weights were really used


def test_inline_options_parse_and_validate(tiny_export):
    """`teacher`, `student` and num_layers=K parse to typed options; malformed, unknown or repeated entries,
    non-integer or out-of-range num_layers and the old weights= key are ValueErrors that quote the option."""
    assert _read_options("teacher,num_layers=8") == {"teacher": True, "num_layers": 8}
    assert _read_options("num_layers=2") == {"teacher": None, "num_layers": 2}
    assert _read_options("student") == {"teacher": False, "num_layers": None}
    for text, message in (
        ("num_layers=", "num_layers must be an integer, found ''"),
        ("num_layers=2,", "unknown entry ''"),
        ("layers=2", "unknown entry 'layers=2'"),
        ("num_layers=2,num_layers=3", "'num_layers' is given twice"),
        ("num_layers=two", "num_layers must be an integer, found 'two'"),
        ("weights=ema", "weights=ema is no longer an option: choose the teacher with -g teacher"),
    ):
        with pytest.raises(ValueError, match=f"model_config '{text}'.*{message}"):
            _read_options(text)
    with pytest.raises(ValueError, match="no such file"):
        _read_options("options.yaml")
    with pytest.raises(ValueError, match=r"num_layers must be an int in 1\.\.3, found 9"):
        hubconf.ehmam(ckpt=str(tiny_export), model_config="num_layers=9")


# --- learned layer weights of a real downstream run -------------------------------------------------------


def test_layer_weights_from_a_short_real_run(minisuperb_ci, tiny_export, tmp_path):
    """A 2-update KS run through s3prl's runner: its checkpoint's Featurizer weights are read, softmaxed (L+1
    of them, summing to 1), labelled KS from the run dir, plotted and written to CSV."""
    expdir = tmp_path / "ks_run"
    override = (
        "config.runner.total_steps=2,,config.runner.eval_step=2,,config.runner.save_step=2,,"
        "config.runner.log_step=2,,config.downstream_expert.datarc.batch_size=4"
    )
    done = subprocess.run(
        [
            sys.executable,
            "run_downstream.py",
            "-m",
            "train",
            "-u",
            "ehmam",
            "-k",
            str(tiny_export),
            "-d",
            "ks",
            "--data-root",
            str(minisuperb_ci),
            "--workers",
            "0",
            "-p",
            str(expdir),
            "-o",
            override,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = layer_weights.read_run_weights(expdir)
    assert run.task == "KS" and run.fold is None and run.checkpoint.name in ("dev-best.ckpt", "states-2.ckpt")
    assert len(run.weights) == NUM_LAYERS + 1 and sum(run.weights) == pytest.approx(1.0, abs=1e-6)
    logits = torch.load(run.checkpoint, weights_only=False)["Featurizer"]["weights"]
    torch.testing.assert_close(torch.tensor(run.weights), torch.softmax(logits.float(), -1), atol=1e-6, rtol=0)

    png = tmp_path / "plots" / "weights.png"
    assert layer_weights.main([str(tmp_path), "--out", str(png)]) == 0  # a root holding the run dir
    assert png.stat().st_size > 5_000
    with open(png.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["layer"]) for r in rows] == list(range(NUM_LAYERS + 1))
    assert all(r["task"] == "KS" for r in rows)
    assert sum(float(r["weight"]) for r in rows) == pytest.approx(1.0, abs=1e-5)

    # without the run dir's YAMLs the task comes from the checkpoint's own pickled args
    checkpoint = torch.load(run.checkpoint, weights_only=False)
    bare = tmp_path / "bare"
    bare.mkdir()
    torch.save(checkpoint, bare / "states-2.ckpt")
    assert layer_weights.read_run_weights(bare).task == "KS"

    # a checkpoint without learned weights (-l LAYER, single-layer upstreams) is reported, not misread
    checkpoint["Featurizer"] = {}
    bad = tmp_path / "no_weights"
    bad.mkdir()
    torch.save(checkpoint, bad / "dev-best.ckpt")
    with pytest.raises(ValueError, match=r"dev-best\.ckpt: 'Featurizer' has no learned 'weights'"):
        layer_weights.read_run_weights(bad)
    with pytest.raises(FileNotFoundError, match="no dev-best.ckpt"):
        layer_weights.pick_checkpoint(tmp_path / "plots")


def test_plot_curves_average_er_folds():
    """ER folds become one averaged curve; a task seen once keeps its own name."""
    runs = [
        layer_weights.RunWeights(Path(f"er{k}"), "ER", f"fold{k}", Path("x"), 1, w)
        for k, w in ((1, [0.2, 0.8]), (2, [0.4, 0.6]))
    ]
    runs.append(layer_weights.RunWeights(Path("ks"), "KS", None, Path("x"), 1, [0.5, 0.5]))
    curves = layer_weights.plot_curves(runs)
    assert curves["ER (mean of 2)"] == pytest.approx([0.3, 0.7]) and curves["KS"] == [0.5, 0.5]
