"""results.finetune_runs and `results.lowresource --table`: run folders in, settings and scores out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from finetune.config import load_config
from results.finetune_runs import encoder_label, error_rates, read_run
from results.lowresource import main

ROOT = Path(__file__).resolve().parent.parent
PRESET = ROOT / "finetune" / "tiny_cpu.yaml"


def _run(folder: Path, init: str, seed: int, overrides: list[str], hyps: list[str], refs: list[str]) -> Path:
    folder.mkdir(parents=True)
    config = load_config(PRESET, [f"model.init={init!r}", f"run.seed={seed}", *overrides]).to_dict()
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    validations = [
        {"step": 400, "valid_subset": "dev-other", "wer": 80.0, "ler": 50.0},
        {"step": 600, "valid_subset": "dev-other", "wer": 90.0, "ler": 55.0},
    ]
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [{"step": 1, "loss": 3.0}, *validations]))
    (folder / "decode").mkdir()
    (folder / "decode" / "test-clean.ref").write_text("".join(r + "\n" for r in refs))
    (folder / "decode" / "test-clean.viterbi.hyp").write_text("".join(h + "\n" for h in hyps))
    (folder / "cpu_seconds").write_text("110.5 9.5\n")
    return folder


REFS = ["THE CAT SAT", "A DOG RAN", "THE DOG"]


def test_error_rates_count_words_and_letters_as_finetune_decode_does():
    scores = error_rates(["THE CAT SAT", "A DOG", "THE DOG"], REFS)
    assert scores["wer"].value == pytest.approx(100 * 1 / 8)
    assert scores["ler"].value == pytest.approx(100 * 4 / (11 + 9 + 7))  # " RAN" deleted: 4 letter edits
    assert scores["ler"].low <= scores["ler"].value <= scores["ler"].high
    perfect = error_rates(REFS, REFS)
    assert (perfect["ler"].value, perfect["ler"].low, perfect["ler"].high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="2 hypotheses for 3 references"):
        error_rates(REFS[:2], REFS)


def test_a_run_folder_gives_its_settings_cost_selection_and_scores(tmp_path):
    run = _run(
        tmp_path / "r", "random:/x/seed0/ehmam/pretrain/last.pt", 1, ["optim.lr=0.002"], ["THE CAT", "", ""], REFS
    )
    found = read_run(run, "test-clean", load_config(PRESET).to_dict())
    assert found.settings == {"optim.lr": 0.002}
    assert found.encoder == "random init (seed0/ehmam/pretrain)"
    assert (found.seed, found.cpu_minutes, found.last_dev) == (1, 2.0, (90.0, 55.0, 600))
    assert found.scores["viterbi"]["wer"].value == pytest.approx(100 * 6 / 8)
    assert "lm" not in found.scores
    assert encoder_label("/a/b/c/last.pt") == "a/b/c" and encoder_label("export.pt") == "export.pt"


def test_lowresource_table_lists_every_run_folder(tmp_path):
    root = tmp_path / "search"
    _run(root / "a_pre", "/w/seed0/ehmam/pretrain/last.pt", 0, [], REFS, REFS)
    _run(root / "b_rand", "random:/w/seed0/ehmam/pretrain/last.pt", 0, ["model.freeze_updates=300"], ["", "", ""], REFS)
    (root / "not_a_run").mkdir()
    out = tmp_path / "out"
    assert main(["--out", str(out), "--preset", str(PRESET), "--table", f"search={root}"]) == 0
    rows = list(csv.DictReader((out / "search.csv").open()))
    assert [r["run"] for r in rows] == ["a_pre", "b_rand"]
    assert rows[0]["LER Viterbi"] == "0.0 [0.0, 0.0]" and rows[0]["settings against the preset"] == "(the preset)"
    assert rows[1]["LER Viterbi"].startswith("100.0") and rows[1]["settings against the preset"] == (
        "model.freeze_updates=300"
    )
    assert "| a_pre | seed0/ehmam/pretrain | 0 |" in (out / "search.md").read_text()
    assert main(["--out", str(out), "--table", f"x={tmp_path / 'empty'}"]) == 2
