"""Faults the pretrainer survives: SIGTERM/SIGKILL and rerun, a kill during a checkpoint write, non-finite
updates, bad audio in training, bad checkpoints on resume, and the stop-signal and metrics bookkeeping.
(Bad audio per case: tests/test_data.py; bad checkpoint files: tests/test_checkpoint.py; odd upstream input:
tests/test_expert.py; bad config values: tests/test_config.py; soak test with 20 random kills: bench/soak.py.)"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import pretrain.data
from pretrain.checkpointing import TrainState, checkpoint_dict
from pretrain.config import load_config
from pretrain.ehmam import EHMAMPretrainModel
from pretrain.manifest import write_manifest
from pretrain.run import main as run_main
from pretrain.step import update_flags
from pretrain.train import train
from trainkit.logs import truncate_metrics
from trainkit.runtime import Runtime, StopSignal, TrainingAborted
from upstream_ehmam.checkpoint import export_encoder, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "pretrain" / "tiny.yaml"
BASE = [
    "optim.warmup_steps=2",
    "run.log_every=1",
    "data.max_samples=32000",
    "data.max_batch_samples=64000",
    "run.device=cpu",
    "run.collapse_check_after=100000",
    "run.keep_checkpoints=10",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_corpus(root: Path, count: int = 8) -> None:
    rng = np.random.default_rng(1)
    for i in range(count):
        t = np.arange(int(rng.uniform(2.2, 3.0) * 16_000)) / 16_000
        wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t * (1 + 0.2 * t)) + 0.05 * rng.standard_normal(t.shape)
        sf.write(root / f"utt{i}.flac", wav.astype(np.float32), 16_000, subtype="PCM_16")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audio")
    _write_corpus(root)
    write_manifest(root, root / "train.tsv")
    return root / "train.tsv"


def _overrides(manifest: Path, out_dir: Path, *extra: str) -> list[str]:
    return [f"data.manifest={manifest}", f"run.out_dir={out_dir}", *BASE, *extra]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _complete_records(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def _start(overrides: list[str], log_path: Path, script: str | None = None) -> subprocess.Popen:
    """pretrain/run.py with these overrides (or `script` given the same arguments) in a subprocess."""
    program = [str(ROOT / "pretrain" / "run.py")] if script is None else ["-c", script]
    command = [sys.executable, *program, "--config", str(TINY)]
    for item in overrides:
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with open(log_path, "w") as log_file:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def _wait_until(condition, proc: subprocess.Popen, log_path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run exited early ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.01)


def _assert_same_checkpoint_weights(a: dict, b: dict) -> None:
    for part in ("encoder", "teacher_context"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, rtol=0, atol=0, msg=f"{part}.{key}")
    for head, state in a["heads"].items():
        for key, value in state.items():
            torch.testing.assert_close(b["heads"][head][key], value, rtol=0, atol=0, msg=f"{head}.{key}")


# The same run, with torch.save stalling half-way through its first checkpoint, so that a SIGKILL lands mid-write.
_STALLING_RUN = """
import io, sys, time, torch
real_save = torch.save
def stalling_save(obj, f, *args, **kwargs):
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    print("STALLED IN A CHECKPOINT WRITE", flush=True)
    time.sleep(600)
torch.save = stalling_save
from pretrain.run import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_sigkill_and_rerun_continue_exactly(manifest, tmp_path):
    """SIGTERM: the run finishes its update, checkpoints it and exits 0. Rerun, it continues; a SIGKILL half-way
    through its next checkpoint write leaves last.pt at the previous checkpoint, loadable, and loses only the
    updates since then (their log records are dropped and the partial file removed on the next resume). The
    final losses and weights equal an uninterrupted run's bit for bit; only run.keep_checkpoints periodic files
    remain."""
    steps = ["optim.max_steps=10", "run.save_every=4", "run.keep_checkpoints=2"]
    reference = train(load_config(TINY, _overrides(manifest, tmp_path / "reference", *steps)))

    run_dir, log_path = tmp_path / "run", tmp_path / "run.log"
    overrides = _overrides(manifest, run_dir, *steps)
    proc = _start(overrides, log_path)
    _wait_until(lambda: _complete_records(run_dir) >= 1, proc, log_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    stopped_at = torch.load(run_dir / "last.pt", weights_only=True)["train_state"]["update"]
    assert 1 <= stopped_at < 8 and _complete_records(run_dir) == stopped_at
    next_save = (stopped_at // 4 + 1) * 4
    assert "stop signal: checkpoint written at update" in log_path.read_text()

    proc = _start(overrides, log_path, script=_STALLING_RUN)
    _wait_until(lambda: "STALLED IN A CHECKPOINT WRITE" in log_path.read_text(), proc, log_path)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert load_checkpoint(run_dir / "last.pt")["train_state"]["update"] == stopped_at
    assert _complete_records(run_dir) == next_save  # updates up to the stalled save were logged, then lost
    partial = [p.name for p in run_dir.glob(".*")]
    assert len(partial) == 1 and re.fullmatch(rf"\.checkpoint_{next_save:08d}\.pt\.\d+\.[0-9a-f]{{8}}\.tmp", partial[0])

    train(load_config(TINY, overrides), resume=True)
    assert [m["step"] for m in _metrics(run_dir)] == list(range(1, 11))
    assert [m["loss"] for m in _metrics(run_dir)] == [m["loss"] for m in _metrics(reference)]
    _assert_same_checkpoint_weights(
        torch.load(reference / "last.pt", weights_only=True), torch.load(run_dir / "last.pt", weights_only=True)
    )
    assert sorted(p.name for p in run_dir.glob("*.pt")) == [
        "checkpoint_00000008.pt",
        "checkpoint_00000010.pt",
        "last.pt",
    ]
    assert not list(run_dir.glob(".*"))  # the partial file is gone


def _poisoning_collate(poisoned_calls: set[int]):
    """collate_batch that sets one sample of the chosen calls' waveforms (0-based call count) to NaN."""
    original = pretrain.data.collate_batch
    calls = []

    def collate(items):
        batch = original(items)
        if len(calls) in poisoned_calls:
            batch["wav"][0, 100] = float("nan")
        calls.append(1)
        return batch

    return collate


def test_nonfinite_updates_are_skipped_counted_and_stop_the_run(manifest, tmp_path, monkeypatch, caplog):
    """A NaN batch skips its update (no optimiser step, no EMA: the run continues with finite weights) and is
    counted in the log and metrics.jsonl; run.max_nonfinite_skips in a row stop the run with a message naming the
    intact last checkpoint, which is left exactly as it was."""
    # batches: 0 1 -> updates 1 2 (saved) | 2 NaN, skipped | 3 4 -> updates 3 4 (saved) | 5 -> update 5 | 6 7 8 NaN
    monkeypatch.setattr(pretrain.data, "collate_batch", _poisoning_collate({2, 6, 7, 8, 9}))
    run_dir = tmp_path / "run"
    config = load_config(
        TINY, _overrides(manifest, run_dir, "optim.max_steps=10", "run.save_every=2", "run.max_nonfinite_skips=3")
    )
    with caplog.at_level(logging.WARNING, logger="trainkit"):
        with pytest.raises(
            TrainingAborted,
            match=(
                r"3 updates in a row were skipped \(non-finite loss or gradient norm; run\.max_nonfinite_skips=3\), "
                r"stopping before update 6; the last checkpoint .*last\.pt \(update 4\) is intact"
            ),
        ):
            train(config)
    assert "update 3 skipped: non-finite loss or gradient norm (1 in a row, 1 in all" in caplog.text
    assert "update 6 skipped: non-finite loss or gradient norm (3 in a row, 4 in all" in caplog.text
    metrics = _metrics(run_dir)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5]
    assert [m["skipped_updates"] for m in metrics] == [0, 0, 1, 1, 1]
    assert all(np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"]) for m in metrics)
    last = load_checkpoint(run_dir / "last.pt")
    assert last["train_state"]["update"] == 4 and last["train_state"]["skipped_updates"] == 1
    assert (run_dir / "last.pt").samefile(run_dir / "checkpoint_00000004.pt")
    for part in ("encoder", "teacher_context"):
        assert all(torch.isfinite(v).all() for v in last[part].values())


def test_update_flags_catch_a_nonfinite_gradient_with_a_finite_loss():
    """The skip decision reads the gradient norm as well as the loss; the stop flag rides along."""
    cpu = Runtime(torch.device("cpu"), rank=0, world_size=1, autocast_dtype=None)
    assert update_flags(torch.tensor(float("inf")), torch.tensor(1.0), False, cpu) == (True, False)
    assert update_flags(torch.tensor(2.0), torch.tensor(float("nan")), False, cpu) == (True, False)
    assert update_flags(torch.tensor(2.0), torch.tensor(1.0), True, cpu) == (False, True)


@pytest.fixture(scope="module")
def manifest_with_bad_audio(tmp_path_factory) -> tuple[Path, list[Path]]:
    """The corpus with one file corrupted and one NaN file (both listed as long enough)."""
    root = tmp_path_factory.mktemp("bad_audio")
    _write_corpus(root)
    nan = np.zeros(40_000, dtype=np.float32)
    nan[1000] = np.nan
    sf.write(root / "utt8_nan.wav", nan, 16_000, subtype="FLOAT")
    write_manifest(root, root / "train.tsv")
    corrupt = root / "utt3.flac"
    corrupt.write_bytes(corrupt.read_bytes()[:300])  # truncated after the manifest was written
    return root / "train.tsv", [corrupt, root / "utt8_nan.wav"]


def test_bad_audio_skip_policy_trains_and_reports(manifest_with_bad_audio, tmp_path, caplog):
    """data.bad_audio=skip: one epoch trains to the end; each bad file is logged once with its path and problem,
    counted, summarised at the end, and kept in the checkpoint."""
    manifest, bad = manifest_with_bad_audio
    run_dir = tmp_path / "run"
    config = load_config(
        TINY, _overrides(manifest, run_dir, "optim.max_steps=5", "run.save_every=5", "data.bad_audio=skip")
    )
    with caplog.at_level(logging.WARNING):
        train(config)
    for path in bad:
        assert caplog.text.count(f"bad audio skipped (data.bad_audio=skip): {path}") == 1
    assert "bad audio: 2 unusable file(s) skipped" in caplog.text
    assert "cannot decode audio" in caplog.text and "contains NaN or infinite samples" in caplog.text
    assert _metrics(run_dir)[-1]["bad_audio_files"] == 2
    recorded = load_checkpoint(run_dir / "last.pt")["train_state"]["bad_audio"]
    assert sorted(recorded) == sorted(str(p) for p in bad) and all(count >= 1 for _, count in recorded.values())


def test_bad_audio_error_policy_stops_naming_the_file(manifest_with_bad_audio, tmp_path, capsys):
    """data.bad_audio=error: the CLI stops at the first bad file with a one-line error naming it and the problem
    (exit 2), also when a loader worker process read the file."""
    manifest, bad = manifest_with_bad_audio
    args = ["--config", str(TINY)]
    for item in _overrides(
        manifest, tmp_path / "run", "optim.max_steps=5", "data.bad_audio=error", "data.num_workers=1"
    ):
        args += ["--set", item]
    assert run_main(args) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        last_line.startswith(f"error: {bad[0]}: cannot decode audio")
        or last_line == f"error: {bad[1]}: contains NaN or infinite samples"
    ), last_line
    assert not (tmp_path / "run" / "last.pt").exists()


class _RunsCode:
    """A pickle that would create a file when loaded without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def good_checkpoint(manifest) -> dict:
    config = load_config(TINY, _overrides(manifest, Path("unused")))
    torch.manual_seed(0)
    model = EHMAMPretrainModel(config)
    optimizer = torch.optim.AdamW(model.optimizer_groups(0.01), lr=1e-3)
    return checkpoint_dict(model, optimizer, TrainState(update=3), config)


@pytest.mark.parametrize(
    "case, extra, message",
    [
        ("code", [], r"last\.pt: holds pickled Python objects"),
        ("no_optimizer", [], r"last\.pt: missing key 'optimizer' needed to resume training"),
        ("encoder_export", [], r"last\.pt: kind 'ehmam-encoder' is not a pretraining checkpoint"),
        (
            "architecture",
            ["model.embed_dim=64", "heads.decoder_dim=32"],
            r"last\.pt: was trained with model\.embed_dim=128, but the config says model\.embed_dim=64",
        ),
        ("predictor_missing", [], r"last\.pt: missing key 'heads\.predictor'"),
        ("shape", [], r"last\.pt: heads\.decoder key 'proj\.weight' has shape \(3, 3\)"),
        (
            "predictor_switched_off",
            ["curriculum.mode=none", "loss.aux_weight=0"],
            r"last\.pt: the optimizer state does not match the configured model",
        ),
    ],
)
def test_resume_refuses_bad_checkpoints(manifest, good_checkpoint, tmp_path, case, extra, message):
    """A last.pt that pickles code, lacks a key, is an encoder export, or does not fit the configured model
    (architecture, heads, shapes, optimiser groups) stops the run before any update with a ValueError naming the
    file and the problem; loading never runs code. (Truncated files, format versions and the loader's other
    checks on any checkpoint: tests/test_checkpoint.py.)"""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ckpt = dict(good_checkpoint)
    marker = tmp_path / "code_ran"
    if case == "code":
        ckpt["extra"] = _RunsCode(marker)
    elif case == "no_optimizer":
        del ckpt["optimizer"]
    elif case == "predictor_missing":
        ckpt["heads"] = {"decoder": ckpt["heads"]["decoder"]}
    elif case == "shape":
        ckpt["heads"] = {**ckpt["heads"], "decoder": {**ckpt["heads"]["decoder"], "proj.weight": torch.zeros(3, 3)}}
    torch.save(ckpt, run_dir / "last.pt")
    if case == "encoder_export":
        torch.manual_seed(0)
        export_encoder(
            EHMAMPretrainModel(load_config(TINY, _overrides(manifest, run_dir))).encoder, run_dir / "last.pt"
        )
    config = load_config(TINY, _overrides(manifest, run_dir, "optim.max_steps=4", *extra))
    with pytest.raises(ValueError, match=message):
        train(config, resume=True)
    assert not marker.exists()
    assert not (run_dir / "metrics.jsonl").exists()


def test_truncate_metrics_drops_lost_updates_and_torn_lines(tmp_path):
    """On resume at update 2, records of later updates and a torn last line are dropped; earlier ones stay."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9}\n{"step": 3, "loss": 0.8}\n{"step": 4, "lo')
    truncate_metrics(path, 2)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
    truncate_metrics(path, 0)
    assert path.read_text() == ""


@pytest.fixture
def python_sigint_handler():
    """SIGINT as an interactive Python has it, whatever the test runner inherited (a job started with `&` from a
    script has SIGINT ignored)."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


def test_stop_signal_leaves_an_ignored_sigint_ignored(python_sigint_handler):
    """nohup / `cmd &` jobs ignore SIGINT; the run keeps ignoring it (SIGTERM still asks it to stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop.received is None
        assert signal.getsignal(signal.SIGTERM) == stop._handle
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_stop_signal_first_asks_second_interrupts(python_sigint_handler):
    """The first SIGINT is recorded (checkpoint, then exit); a second one interrupts at once; handlers are restored."""
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with StopSignal() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert stop.received == signal.SIGINT
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is before
