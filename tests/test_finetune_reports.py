"""The low-resource table (results.lowresource) and the synthetic LibriLight tree through finetune.prepare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.letters import LETTERS, read_dictionary
from finetune.prepare import prepare
from minisuperb.finetuning import split_sizes
from results import lowresource


def _decoded_10m_run(root: Path) -> None:
    decode = root / "finetune_10m" / "decode"
    decode.mkdir(parents=True)
    decode.joinpath("wer.json").write_text(
        json.dumps(
            {
                "splits": {
                    "test-clean": {"viterbi": {"wer": 40.04}, "lm": {"wer": 12.0}},
                    "test-other": {"viterbi": {"wer": 50.0}, "lm": {"wer": 20.55}},
                },
                "lm": {"lm_weight": 2.0},
            }
        )
    )


@pytest.mark.parametrize("command", ["lowresource", "tabulate"])
def test_lowresource_table_shows_runs_missing_runs_and_published_rows(tmp_path, command):
    """A decoded 10m run fills its Viterbi and LM cells; the other splits read "missing"; published rows follow.
    `results.tabulate --lowresource RUNS` writes the same table as `results.lowresource --runs RUNS`."""
    from results import tabulate

    _decoded_10m_run(tmp_path)
    out = tmp_path / "out"
    if command == "lowresource":
        assert lowresource.main(["--runs", str(tmp_path), "--out", str(out)]) == 0
    else:
        assert tabulate.main(["--lowresource", str(tmp_path), "--out", str(out)]) == 0
    rows = (out / "lowresource.md").read_text().splitlines()
    ours = [r for r in rows if r.startswith("| EH-MAM")]
    assert ours[0].split(" | ")[2:] == ["40.0 / 50.0", "missing", "missing", "missing |"]
    assert ours[1].split(" | ")[2] == "12.0 / 20.6"
    assert any(r.startswith("| wav2vec 2.0 Base (published) | 4-gram LM | 9.1 / 15.6") for r in rows)
    assert any(r.startswith("| WavLM Base (published) | 4-gram LM | – | – / 10.8") for r in rows)


@pytest.mark.slow
def test_minisuperb_librilight_tree_prepares_every_split(minisuperb_ci, tmp_path):
    """The ci corpus has six 1h folds with clean and other halves and a 9h part; prepare writes all eight splits
    with 10m within 1h within 10h, an LM text, the fixed dictionary and a lexicon of every transcript word."""
    root = minisuperb_ci / "librispeech_finetuning"
    sizes = split_sizes(root)
    assert sorted(sizes) == [f"1h/{k}" for k in range(6)] + ["9h"]
    assert (minisuperb_ci / "LibriSpeech" / "librispeech-lm-norm.txt").read_text().strip()
    counts = prepare(
        minisuperb_ci / "LibriSpeech",
        root,
        tmp_path,
        ["10m", "1h", "10h", "100h", "dev-clean", "dev-other", "test-clean", "test-other"],
    )
    assert counts["10m"] == sizes["1h/0"] < counts["1h"] < counts["10h"] == counts["1h"] + sizes["9h"]
    assert read_dictionary(tmp_path / "dict.ltr.txt") == list(LETTERS)
    lexicon = dict(line.split("\t") for line in (tmp_path / "lexicon.txt").read_text().splitlines())
    words = {
        w for split in counts for line in (tmp_path / f"{split}.wrd").read_text().splitlines() for w in line.split()
    }
    assert set(lexicon) == words and lexicon[min(words)].endswith(" |")
    tsv = (tmp_path / "10h.tsv").read_text().splitlines()
    assert Path(tsv[0]) == root.absolute() and any(line.startswith("9h/other/") for line in tsv[1:])
