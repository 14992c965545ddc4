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
        ("experiments.demo", ["--seed", "1"], "--seed"),
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


def test_experiment_name_lists_keep_order_and_refuse_unknown_names():
    import argparse

    from experiments.options import names_from, parse_baselines, parse_tasks

    assert names_from("--x", "b, a,b", ("a", "b", "c")) == ["b", "a"]
    assert parse_tasks("SF,pr,ks,pr") == ["pr", "ks", "sf"]  # tasks and baselines in the registry's order
    assert parse_baselines("none") == [] and parse_baselines("random,fbank") == ["fbank", "random"]
    with pytest.raises(argparse.ArgumentTypeError, match=r"--x: unknown \['d'\]; choose from a,b,c or none"):
        names_from("--x", "a,d", ("a", "b", "c"), also="none")
    with pytest.raises(argparse.ArgumentTypeError, match="--x: unknown empty list"):
        names_from("--x", " ,", ("a",))
