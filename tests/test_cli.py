"""The shared flag vocabulary: every old spelling is refused with a message naming the flag that replaced it."""

import importlib

import pytest

from trainkit.cli import RENAMED_FLAGS, comma_list


@pytest.mark.parametrize(
    "module, argv, old",
    [
        ("finetune.run", ["--config", "finetune/tiny_cpu.yaml", "--init", "a.pt"], "--init"),
        ("finetune.decode", ["--ckpt", "best.pt", "--data", "manifests"], "--data"),
        ("results.abx.__main__", ["--out", "abx", "--max-files", "3"], "--max-files"),
        ("experiments.demo", ["--checkpoint", "last.pt"], "--checkpoint"),
        ("experiments.study", ["--probe-utterances", "100"], "--probe-utterances"),
        ("pretrain.mel_stats", ["train.tsv", "--max-files", "3"], "--max-files"),
    ],
)
def test_old_spellings_name_their_replacement(module, argv, old, capsys):
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main(argv)
    assert stop.value.code == 2
    assert f"{old} is now {RENAMED_FLAGS[old]}" in capsys.readouterr().err


def test_comma_lists_drop_empty_items():
    assert comma_list("a.pt, b.pt,,") == ["a.pt", "b.pt"]
