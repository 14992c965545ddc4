"""End to end on the mini-SUPERB ci corpus: a real (short) EH-MAM pretraining, then every SUPERB task trained a
few steps and evaluated through s3prl's own runner with `-u ehmam -k <that checkpoint>`, then tabulated.

One `python -m experiments.demo` subprocess does the whole pipeline once for this module (about a minute on 2 cores);
the tests below check each task's evaluation and table cell. ASR is also run exactly as a user types it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from superb_trees import run_downstream_script

from experiments.downstream import short_run_override
from superb.registry import TASK_NAMES

REPO = Path(__file__).resolve().parent.parent
TASK_STEPS = 6
PRETRAIN_STEPS = 6

pytestmark = pytest.mark.slow


def _env(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache")}
    env.pop("SUPERB_DATA", None)
    return env


@pytest.fixture(scope="module")
def demo(minisuperb_ci: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.demo",
            "--out",
            str(out),
            "--data",
            str(minisuperb_ci),
            "--pretrain-steps",
            str(PRETRAIN_STEPS),
            "--task-steps",
            str(TASK_STEPS),
            "--profile",
            "none",
            "--baselines",
            "none",
        ],
        cwd=REPO,
        env=_env(out),
        capture_output=True,
        text=True,
        timeout=900,
    )
    (out / "demo.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return out


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def expected_test_items(corpus: Path, task: str) -> int | None:
    """How many test utterances s3prl's loader should evaluate for `task`, counted from the corpus files."""
    if task in ("pr", "asr"):
        return sum(len(_lines(p)) for p in (corpus / "LibriSpeech" / "test-clean").rglob("*.trans.txt"))
    if task == "ks":
        return sum(1 for _ in (corpus / "speech_commands_test_set_v0.01").rglob("*.wav"))
    if task == "ic":
        return len(_lines(corpus / "fluent_speech_commands_dataset" / "data" / "test_data.csv")) - 1
    if task == "sid":
        return sum(line.startswith("3 ") for line in _lines(corpus / "VoxCeleb1" / "iden_split.txt"))
    if task == "sf":  # files of speakers outside the config's test list are dropped by the loader
        config = yaml.safe_load((REPO / "downstream_configs" / "sf.yaml").read_text())
        speakers = set(config["downstream_expert"]["corpus"]["test_speakers"])
        return sum(p.name.split("-")[0] in speakers for p in (corpus / "SNIPS" / "test").glob("*.wav"))
    return None  # ER: the fold's session after label mapping; checked against its truth file instead


PREDICTION_FILES = {
    "pr": "test-hyp.ark",
    "asr": "test-clean-noLM-hyp.ark",
    "sf": "test-hyp.ark",
    "ks": "test_predict.txt",
    "ic": "test_predict.csv",
    "sid": "test_predict.txt",
}
TABLE_COLUMNS = {
    "pr": "PR PER ↓",
    "ks": "KS acc ↑",
    "ic": "IC acc ↑",
    "sid": "SID acc ↑",
    "er": "ER acc ↑",
    "asr": "ASR WER ↓ (no LM)",
    "sf": "SF F1 ↑ / CER ↓",
}


def read_table_row(demo: Path) -> dict[str, str]:
    with open(demo / "results" / "superb.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["data"] == "mini-SUPERB synthetic"
    return rows[0]


def test_pretraining_checkpoint_is_the_evaluated_upstream(demo):
    summary = json.loads((demo / "demo.json").read_text())
    checkpoint = Path(summary["checkpoint"])
    assert checkpoint == demo / "pretrain" / "last.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["kind"] == "ehmam-pretrain" and state["train_state"]["update"] == PRETRAIN_STEPS
    trains = [s for s in summary["stages"] if s["name"].endswith(" train")]
    assert len(trains) == 6 + 5  # six tasks plus five ER folds
    assert all(f"-u ehmam -k {checkpoint} " in s["command"] for s in trains)
    assert all(s["ok"] for s in summary["stages"]), summary["stages"]


@pytest.mark.parametrize("task", TASK_NAMES)
def test_task_trains_evaluates_and_is_tabulated(demo, minisuperb_ci, task):
    folds = [demo / "downstream" / f"er_fold{k}" for k in range(1, 6)] if task == "er" else [demo / "downstream" / task]
    for expdir in folds:
        assert (expdir / f"states-{TASK_STEPS}.ckpt").is_file(), sorted(p.name for p in expdir.iterdir())
        if task == "er":
            fold = expdir.name.split("_")[-1]
            predicted = _lines(expdir / f"test_{fold}_predict.txt")
            assert predicted and len(predicted) == len(_lines(expdir / f"test_{fold}_truth.txt"))
            assert {line.split()[-1] for line in predicted} <= {"neu", "hap", "ang", "sad"}
        else:
            assert len(_lines(expdir / PREDICTION_FILES[task])) == expected_test_items(minisuperb_ci, task)

    cell = read_table_row(demo)[TABLE_COLUMNS[task]]
    # a number (SF: F1 / CER) with its interval and chance in brackets, not missing/unfinished
    values = [float(part.split(" (")[0]) for part in cell.split(" / ")]
    assert len(values) == (2 if task == "sf" else 1)
    assert all(0.0 <= value <= 100.0 for value in values)
    runs = list(csv.DictReader(open(demo / "results" / "superb_runs.csv", newline="", encoding="utf-8")))
    mine = [r for r in runs if r["task"] == task.upper()]
    assert len(mine) == len(folds) and all(r["status"] == "ok" for r in mine)
    if task == "er":
        mean = sum(float(r["score"]) for r in mine) / len(mine)
        assert values[0] == pytest.approx(mean, abs=0.006)


def test_asr_as_a_user_types_it(demo, minisuperb_ci, tmp_path):
    """`run_downstream.py -m train -u ehmam -k CKPT -d asr` with the corpus from $SUPERB_DATA, then
    `-m evaluate -e <checkpoint>` with nothing else: test-clean is decoded and scored."""
    env = {**_env(tmp_path), "SUPERB_DATA": str(minisuperb_ci)}
    expdir = tmp_path / "asr"

    def run(*args: str) -> str:
        return run_downstream_script(tmp_path, env, *args)

    run(
        "-m",
        "train",
        "-u",
        "ehmam",
        "-k",
        str(demo / "pretrain" / "last.pt"),
        "-d",
        "asr",
        "--workers",
        "0",
        "-p",
        str(expdir),
        "-o",
        short_run_override("asr", TASK_STEPS),
    )
    output = run("-m", "evaluate", "-e", str(expdir / f"states-{TASK_STEPS}.ckpt"))
    assert "test-clean" in output
    hyp = _lines(expdir / "test-clean-noLM-hyp.ark")
    ref = _lines(expdir / "test-clean-noLM-ref.ark")
    assert len(hyp) == len(ref) == expected_test_items(minisuperb_ci, "asr")
    transcripts = {}
    for path in (minisuperb_ci / "LibriSpeech" / "test-clean").rglob("*.trans.txt"):
        transcripts.update(line.split(" ", 1) for line in _lines(path))
    assert dict(line.split(" ", 1) for line in ref) == transcripts


def test_demo_prints_phone_abx_beside_the_table(demo):
    """The demo scores its checkpoint's layers by phone ABX (beside log-mel and MFCC) and shows the pretraining
    monitor's curve: update 0, every quarter of the run, and the last update."""
    log = (demo / "demo.log").read_text()
    assert "Phone ABX (triphone" in log and "| last.pt (student) |" in log and "| log-mel, normalised |" in log
    with open(demo / "abx" / "abx.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    state = torch.load(demo / "pretrain" / "last.pt", map_location="cpu", weights_only=True)
    layers = {int(r["layer"]) for r in rows if r["representation"] == "last.pt (student)"}
    assert layers == set(range(state["model_config"]["num_layers"] + 1))
    every = max(1, PRETRAIN_STEPS // 4)
    steps = [line.split("\t")[0] for line in (demo / "pretrain" / "abx_curve.tsv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in sorted({*range(0, PRETRAIN_STEPS + 1, every), PRETRAIN_STEPS})]
    assert "During pretraining (best student layer)" in log
