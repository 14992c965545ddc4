"""A fairseq data2vec 2.0 file (tests/data/d2v2_small) goes wherever a project checkpoint goes: CTC fine-tuning
(`finetune.run --ckpt`), phone ABX (`results.abx --ckpt`) and the layer-wise probes (`results.layerwise --ckpt`)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from finetune.letters import words_to_letters, write_dictionary
from finetune.run import main as finetune_main
from results import layerwise
from results.abx.__main__ import main as abx_main
from upstream_ehmam.checkpoint import load_encoder

REPO = Path(__file__).resolve().parent.parent
FAIRSEQ_FILE = REPO / "tests" / "data" / "d2v2_small" / "checkpoint.pt"


def test_finetune_from_a_fairseq_file(tmp_path, one_torch_thread):
    """`finetune.run --ckpt FILE --weights teacher` starts from the file's EMA weights; the fine-tuned encoder is a
    project checkpoint again."""
    rng = np.random.default_rng(0)
    for subset, count in (("10m", 4), ("dev-other", 2)):
        rows, labels = [str(tmp_path)], []
        for i in range(count):
            t = np.arange(int(rng.uniform(1.0, 1.5) * 16000)) / 16000
            wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.05 * rng.standard_normal(t.shape)
            sf.write(tmp_path / f"{subset}{i}.flac", wav.astype(np.float32), 16000, subtype="PCM_16")
            rows.append(f"{subset}{i}.flac\t{len(t)}")
            labels.append(words_to_letters(" ".join(rng.choice(["CAT", "DOG", "A"], size=2))))
        (tmp_path / f"{subset}.tsv").write_text("\n".join(rows) + "\n")
        (tmp_path / f"{subset}.ltr").write_text("\n".join(labels) + "\n")
    write_dictionary(tmp_path / "dict.ltr.txt", {})
    out = tmp_path / "run"
    settings = [
        f"data.manifest_dir={tmp_path}",
        f"run.out_dir={out}",
        "data.train_subset=10m",
        "data.max_batch_samples=50000",
        "optim.max_steps=2",
        "model.freeze_updates=0",
        "run.device=cpu",
        "run.valid_every=2",
        "mask.channel_length=4",
    ]
    argv = ["--config", str(REPO / "finetune" / "tiny_cpu.yaml"), "--ckpt", str(FAIRSEQ_FILE), "--weights", "teacher"]
    for setting in settings:
        argv += ["--set", setting]
    assert finetune_main(argv) == 0
    tuned = load_encoder(out / "last.pt")
    start = load_encoder(FAIRSEQ_FILE, weights="teacher")
    assert tuned.config.embed_dim == 96 and len(tuned.context.blocks) == 2
    same_front_end = torch.equal(tuned.local.convs[0].weight, start.local.convs[0].weight)  # frozen, as always
    assert same_front_end and not torch.equal(tuned.context.blocks[1].fc2.weight, start.context.blocks[1].fc2.weight)


def test_abx_and_layerwise_take_a_fairseq_file(minisuperb_ci, tmp_path, one_torch_thread):
    out = tmp_path / "abx"
    argv = ["--ckpt", str(FAIRSEQ_FILE), "--weights", "teacher", "--data", str(minisuperb_ci), "--out", str(out)]
    assert abx_main([*argv, "--max-utterances", "12", "--no-random-init", "--conditions", "within"]) == 0
    with (out / "abx.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["representation"] == "checkpoint.pt (teacher)"]
    assert sorted(int(r["layer"]) for r in rows) == [0, 1, 2]
    rows = layerwise.run_layerwise(FAIRSEQ_FILE, minisuperb_ci, tmp_path / "probes", max_utterances=3, max_frames=200)
    assert {r["layer"] for r in rows} == {0, 1, 2}
