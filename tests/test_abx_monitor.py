"""The pretraining ABX monitor: scores every student layer on schedule, logs it everywhere, and a resumed run
logs the same values as an uninterrupted one."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pretrain.config import load_config
from pretrain.monitor import CURVE, abx_records
from pretrain.train import train

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def _config(corpus: Path, out_dir: Path, *extra: str):
    return load_config(
        ROOT / "pretrain" / "tiny.yaml",
        [
            f"data.manifest={corpus / 'pretrain' / 'train.tsv'}",
            f"run.out_dir={out_dir}",
            "optim.max_steps=6",
            "optim.warmup_steps=2",
            "run.log_every=1",
            "run.save_every=3",
            "run.keep_checkpoints=5",
            "data.max_samples=32000",
            "data.max_batch_samples=64000",
            f"run.eval_data={corpus}",
            "run.eval_every=3",
            "run.eval_max_files=6",
            *extra,
        ],
    )


def test_monitor_logs_every_layer_on_schedule_and_resumes_identically(minisuperb_ci, tmp_path):
    full = train(_config(minisuperb_ci, tmp_path / "full"))
    records = abx_records(full / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 3, 6]
    for r in records:
        abx = r["abx"]
        assert len(abx["within"]) == len(abx["across"]) == 5  # transformer input + 4 blocks of tiny.yaml
        assert all(0 <= e <= 100 for e in abx["within"] + abx["across"])
        assert abx["best_across"] == min(abx["across"]) == abx["across"][abx["best_layer"]]
    assert records[0]["abx"]["across"] != records[-1]["abx"]["across"]  # training moved the layers
    curve = (full / CURVE).read_text().splitlines()
    assert curve[0] == "step\tbest_layer\twithin\tacross" and [line.split("\t")[0] for line in curve[1:]] == [
        "0",
        "3",
        "6",
    ]
    losses = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert sum("loss" in r for r in losses) == 6  # the dense records are all still there

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(full / "tb")).Reload()
    assert [e.step for e in events.Scalars("abx/best_across")] == [0, 3, 6]
    assert "abx/within/layer_4" in events.Tags()["scalars"]

    # killed after update 5: the directory holds the update-3 checkpoint and a log that ran past it
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(full / "checkpoint_00000003.pt", resumed / "last.pt")
    shutil.copy(full / "metrics.jsonl", resumed / "metrics.jsonl")
    train(_config(minisuperb_ci, resumed), resume=True)
    again = abx_records(resumed / "metrics.jsonl")
    assert [r["step"] for r in again] == [0, 3, 6]
    for a, b in zip(records, again):
        np.testing.assert_allclose(
            a["abx"]["within"] + a["abx"]["across"], b["abx"]["within"] + b["abx"]["across"], rtol=0, atol=1e-6
        )
    assert (resumed / CURVE).read_text() == (full / CURVE).read_text()


def test_monitor_rejects_a_corpus_without_alignments(minisuperb_ci, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run\.eval_data: .*LibriSpeech not found"):
        train(_config(minisuperb_ci, tmp_path / "run", f"run.eval_data={tmp_path}"))
    with pytest.raises(ValueError, match=r"run\.eval_every: must be >= 1"):
        _config(minisuperb_ci, tmp_path / "run", "run.eval_every=0")
