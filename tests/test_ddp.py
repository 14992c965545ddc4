"""DDP computes the single-process function (docs/design.md "Distributed training"): two gloo processes
started by torchrun match one process that sees the same global batches, update for update."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pretrain.config import load_config
from pretrain.data import build_loader
from pretrain.ehmam import EHMAMPretrainModel
from pretrain.manifest import write_manifest
from pretrain.step import mask_plan_for
from pretrain.train import train

ROOT = Path(__file__).resolve().parent.parent
CROP = 32_000  # every utterance is longer, so each global batch of 4 holds 4 crops of 2 s (99 frames)

# Exact equivalence needs the draws that are per rank by design switched off: dropout and mask-token noise.
# Adam's eps is raised from 1e-6 so that fp32 rounding of near-zero gradients (the ranks sum 2 + 2 rows, the
# single process 4) is not amplified up to lr / eps = 1000 times into the parameters.
DETERMINISTIC = [
    "model.dropout=0",
    "model.attention_dropout=0",
    "model.prenet_dropout=0",
    "heads.input_dropout=0",
    "mask.noise_std=0",
    "optim.eps=1.0e-4",
]
# Layerdrop (the same blocks skipped on every rank), two clones per utterance and gradient accumulation are on,
# so their DDP paths are part of the comparison.
RUN = [
    "optim.max_steps=3",
    "optim.warmup_steps=1",
    "optim.grad_accum=2",
    "mask.clone_batch=2",
    "model.layerdrop=0.3",
    "run.log_every=1",
    "run.save_every=3",
    "run.device=cpu",
    f"data.max_samples={CROP}",
    "data.num_workers=0",
    "run.collapse_check_after=100000",
]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    for i in range(8):
        t = np.arange(36_000) / 16_000
        wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.05 * rng.standard_normal(t.shape)
        sf.write(root / f"utt{i}.flac", wav.astype(np.float32), 16_000, subtype="PCM_16")
    write_manifest(root, root / "train.tsv")
    return root / "train.tsv"


def _overrides(manifest: Path, out_dir: Path, max_batch_samples: int) -> list[str]:
    return [
        f"data.manifest={manifest}",
        f"run.out_dir={out_dir}",
        f"data.max_batch_samples={max_batch_samples}",
        *RUN,
        *DETERMINISTIC,
    ]


def test_ranks_take_their_rows_of_the_global_mask_plan(manifest):
    """Rank r's mask plan is the single process's plan at r's global positions (both clones of each), with the
    global batch's span count N, whatever the rank's own rows would give."""
    config = load_config(ROOT / "pretrain" / "tiny.yaml", _overrides(manifest, Path("unused"), 4 * CROP))
    frames = [99] * 4
    loader, sampler = build_loader(manifest, 4 * CROP, CROP, CROP, seed=0, num_workers=0)
    sampler.set_epoch(1)
    single = mask_plan_for(config, frames, next(iter(loader))["position"].tolist(), 0.5, world_size=1, seed=11)
    assert single.offsets.shape == (8,) and single.num_hard == single.num_spans - int(single.num_spans * 0.5)
    for rank in (0, 1):
        loader, sampler = build_loader(manifest, 4 * CROP, CROP, CROP, seed=0, num_workers=0, rank=rank, world_size=2)
        sampler.set_epoch(1)
        batch = next(iter(loader))
        assert batch["position"].tolist() == [rank, rank + 2]
        local = mask_plan_for(config, frames[:2], batch["position"].tolist(), 0.5, world_size=2, seed=11)
        rows = [2 * p + c for p in (rank, rank + 2) for c in (0, 1)]
        assert torch.equal(local.offsets, single.offsets[rows])
        assert torch.equal(local.cell_scores, single.cell_scores[rows])
        assert (local.num_spans, local.num_hard, local.num_cells) == (
            single.num_spans,
            single.num_hard,
            single.num_cells,
        )


def test_two_gloo_processes_match_one_process(manifest, tmp_path):
    """torchrun --nproc_per_node 2 (gloo, 2 crops per rank) and one process (4 crops) with the same global batches:
    the same logged losses (ranks averaged) and the same student, teacher and head parameters to 1e-6 after
    3 updates of 2 micro-batches each."""
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(ROOT / "pretrain" / "run.py"),
        "--config",
        str(ROOT / "pretrain" / "tiny.yaml"),
    ]
    for item in _overrides(manifest, ddp_dir, 2 * CROP):  # data.max_batch_samples is per process
        command += ["--set", item]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each DDP process runs
    try:
        config = load_config(ROOT / "pretrain" / "tiny.yaml", _overrides(manifest, single_dir, 4 * CROP))
        train(config)
    finally:
        torch.set_num_threads(before)

    records = [
        [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (ddp_dir, single_dir)
    ]
    assert [r["step"] for r in records[0]] == [r["step"] for r in records[1]] == [1, 2, 3]
    # losses of ~8 in float32 summed in another order: 1e-6 relative is a few ulps
    np.testing.assert_allclose([r["loss"] for r in records[0]], [r["loss"] for r in records[1]], rtol=1e-6, atol=0)
    ddp, single = (torch.load(d / "last.pt", weights_only=True) for d in (ddp_dir, single_dir))
    assert ddp["train_state"] == single["train_state"]
    parts = ["encoder", "teacher_context"]
    for part in parts:
        for key, value in single[part].items():
            torch.testing.assert_close(ddp[part][key], value, rtol=0, atol=1e-6, msg=f"{part}.{key}")
    for head, state in single["heads"].items():
        for key, value in state.items():
            torch.testing.assert_close(ddp["heads"][head][key], value, rtol=0, atol=1e-6, msg=f"{head}.{key}")
    torch.manual_seed(config.run.seed)  # train() builds the initial model from this seed
    initial = EHMAMPretrainModel(config).encoder.state_dict()
    assert max(float((ddp["encoder"][k] - v).abs().max()) for k, v in initial.items()) > 1e-4  # it did train
