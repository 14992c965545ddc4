"""Published checkpoints through s3prl: run_downstream.py checks -k and -d before s3prl sees them, the Python route
(`superb.setup_s3prl()` + s3prl.nn.S3PRLUpstream + Featurizer) takes a project checkpoint and a fairseq file, and
s3prl's own runner trains and evaluates on the fairseq reference file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from superb_trees import make_librispeech, run_downstream_script

from superb.argv_checks import check_argv
from superb.entry import main
from upstream_ehmam.checkpoint import export_encoder
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.model import random_init_encoder

REPO = Path(__file__).resolve().parent.parent
FAIRSEQ_FILE = REPO / "tests" / "data" / "d2v2_small" / "checkpoint.pt"


def exit_message(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return str(done.value.code)


def test_bad_k_and_d_are_one_line_before_s3prl(tmp_path):
    """A missing, directory, corrupt or foreign -k and an unknown -d end in one line naming the flag and the problem;
    good values pass (a SUPERB task name, one of s3prl's downstreams, a fairseq file)."""
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    cases = {
        str(tmp_path / "missing.pt"): "missing.pt: checkpoint file not found",
        str(tmp_path): "not a regular file",
        str(tmp_path / "corrupt.pt"): "corrupt.pt: corrupt or truncated checkpoint",
        str(tmp_path / "other.pt"): "other.pt: missing key 'format_version'",
    }
    for path, problem in cases.items():
        message = exit_message(["-m", "train", "-u", "ehmam", "-k", path, "-d", "pr"])
        assert message.startswith(f"run_downstream.py: error: -k {path}") and problem in message
        assert "\n" not in message
    message = exit_message(["-m", "train", "-u", "ehmam", "-k", str(FAIRSEQ_FILE), "-d", "xyz"])
    assert message.startswith("run_downstream.py: error: -d xyz: no such downstream; SUPERB tasks: pr ks ic")
    assert "speech_commands" in message and "\n" not in message
    assert "needs -k" in exit_message(["-m", "train", "-u", "ehmam_teacher", "-d", "ks"])
    for good in (["-d", "pr"], ["-d", "example"], ["-d", "speech_commands"]):
        check_argv(["-m", "train", "-u", "ehmam", "-k", str(FAIRSEQ_FILE), *good])
    check_argv(["-m", "train", "-u", "fbank", "-k", "not/a/file/for/fbank", "-d", "pr"])  # s3prl's own upstreams


def test_bad_d_from_the_command_line_exits_nonzero(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "run_downstream.py"), "-m", "train", "-u", "fbank", "-d", "xyz"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("run_downstream.py: error: -d xyz: no such downstream")
    assert "Traceback" not in done.stderr


S3PRL_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    from superb import setup_s3prl

    registered = setup_s3prl()
    from s3prl.nn import Featurizer, S3PRLUpstream

    results = {"registered": registered}
    for name, ckpt in zip(("project", "fairseq"), sys.argv[1:]):
        upstream = S3PRLUpstream("ehmam", path_or_url=ckpt).eval()
        featurizer = Featurizer(upstream)
        wavs, lengths = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)), torch.tensor([16000, 9000])
        with torch.no_grad():
            hidden, hidden_lengths = upstream(wavs, lengths)
            features, _ = featurizer(hidden, hidden_lengths)
            alone = upstream.upstream([wavs[1, :9000]])["hidden_states"][-1][0]
        frames = alone.shape[0]
        results[name] = {
            "layers": upstream.num_layers,
            "features": list(features.shape),
            "padded_vs_alone": (hidden[-1][1, :frames] - alone).abs().max().item(),
        }
    print(json.dumps(results))
    """
)


def test_s3prl_upstream_and_featurizer_from_python(tmp_path):
    """setup_s3prl() is the one call a toolkit needs: S3PRLUpstream("ehmam", path_or_url=...) + Featurizer then
    run on a project checkpoint and on a fairseq file, and a padded utterance equals the same utterance alone."""
    config = EncoderConfig(
        conv_layers=[[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2,
        embed_dim=64,
        num_layers=3,
        num_heads=4,
        ffn_dim=128,
        pos_conv_depth=2,
    )
    export_encoder(random_init_encoder(config, seed=0), tmp_path / "project.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", S3PRL_SCRIPT, str(tmp_path / "project.pt"), str(FAIRSEQ_FILE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["registered"] == ["ehmam", "ehmam_teacher"]
    assert results["project"]["layers"] == 4 and results["project"]["features"][::2] == [2, 64]
    assert results["fairseq"]["layers"] == 3 and results["fairseq"]["features"][::2] == [2, 96]
    assert results["project"]["padded_vs_alone"] < 1e-4 and results["fairseq"]["padded_vs_alone"] < 1e-4


SMOKE = (
    "config.runner.total_steps=2,,config.runner.eval_step=2,,config.runner.save_step=2,,"
    "config.runner.log_step=1,,config.runner.gradient_accumulate_steps=1,,config.downstream_expert.corpus.batch_size=2"
)


@pytest.mark.slow
def test_fairseq_file_through_s3prls_runner(tmp_path):
    """`run_downstream.py -u ehmam -k <fairseq data2vec 2.0 file> -d pr` trains 2 steps and evaluates through s3prl's
    runner; -g teacher reads the file's EMA weights the same way."""
    data = tmp_path / "data"
    make_librispeech(data / "LibriSpeech", {"train-clean-100": 4, "dev-clean": 2, "test-clean": 2})
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "SUPERB_DATA": str(data), "OMP_NUM_THREADS": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)

    def run(*args: str) -> str:
        return run_downstream_script(tmp_path, env, *args)

    expdir = tmp_path / "exp"
    common = ["-u", "ehmam", "-k", str(FAIRSEQ_FILE), "-d", "pr", "--workers", "0", "-o", SMOKE]
    train = run("-m", "train", *common, "-g", "teacher", "-p", str(expdir))
    assert "dev per:" in train and (expdir / "dev-best.ckpt").is_file()
    evaluate = run("-m", "evaluate", "-e", str(expdir / "dev-best.ckpt"), "--workers", "0")
    assert [line for line in evaluate.splitlines() if line.startswith("test per: ")]
