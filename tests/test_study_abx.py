"""The study's phone ABX: the pretraining argv turns the monitor on, an arm's abx.csv and monitor records are
collected, and the report gains its two ABX tables only when some arm measured ABX."""

import json

from experiments import study_arms
from results import study_collect, study_report, study_tables
from results.abx.report import write_csv


def _abx_rows(representation: str, errors: dict[int, tuple[float, float]]) -> list[dict]:
    return [
        {"representation": representation, "layer": layer, "condition": c, "error": e, "items": 100, "cells": 10}
        for layer, pair in errors.items()
        for c, e in zip(("within", "across"), pair)
    ]


def _arm_dir(tmp_path, condition: str, seed: int, errors: dict[int, tuple[float, float]], monitor: list[float]):
    cdir = study_collect.condition_dir(tmp_path, condition, seed)
    (cdir / "pretrain").mkdir(parents=True)
    (cdir / "abx").mkdir()
    records = [{"step": 1, "loss": 1.0, "sec_per_step": 1.0, "audio_sec_per_sec": 10.0}]
    records += [
        {"step": 5 * i, "abx": {"within": [], "across": [], "best_layer": 0, "best_within": 10.0 + v, "best_across": v}}
        for i, v in enumerate(monitor)
    ]
    (cdir / "pretrain" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write_csv(
        _abx_rows("last.pt (student)", errors) + _abx_rows("log-mel, normalised", {0: (4.5, 20.0)}),
        cdir / "abx" / "abx.csv",
    )


def test_pretrain_argv_turns_the_monitor_on_only_with_data(tmp_path):
    condition = study_arms.default_conditions()["ehmam"]
    plain = study_arms.pretrain_argv(condition, 0, tmp_path / "c.yaml", tmp_path / "t.tsv", tmp_path / "o", 100)
    monitored = study_arms.pretrain_argv(
        condition, 0, tmp_path / "c.yaml", tmp_path / "t.tsv", tmp_path / "o", 100, tmp_path / "corpus"
    )
    assert not any("run.eval" in a for a in plain)
    assert f"run.eval_data={tmp_path / 'corpus'}" in monitored and "run.eval_every=20" in monitored


def test_collect_and_report_abx(tmp_path):
    _arm_dir(tmp_path, "ehmam", 0, {0: (20.0, 40.0), 1: (10.0, 30.0)}, [50.0, 35.0])
    _arm_dir(tmp_path, "ehmam", 1, {0: (22.0, 42.0), 1: (14.0, 34.0)}, [48.0, 33.0])
    arms = [study_collect.collect_arm(tmp_path, "ehmam", s) for s in (0, 1)]
    assert [r["step"] for r in arms[0].training] == [1] and len(arms[0].abx_monitor) == 2
    assert study_tables.abx_means(arms, "ehmam") == {
        0: {"within": 21.0, "across": 41.0},
        1: {"within": 12.0, "across": 32.0},
    }
    table = study_tables.abx_table(arms, ["ehmam"], {"ehmam": "EH-MAM"})
    assert "| EH-MAM | 1 | 12.0 | 32.0 | 32.0 |" in table
    assert "| log-mel, normalised (reference) | – | 4.5 | 20.0 | – |" in table
    assert "| EH-MAM | 5 | 44.0 | 34.0 |" in study_tables.abx_monitor_table(arms, ["ehmam"], {"ehmam": "EH-MAM"})
    meta = study_report.StudyMeta(
        "cmd",
        [0, 1],
        ["ehmam"],
        {"ehmam": "EH-MAM"},
        {},
        "data",
        "scale",
        10,
        {t: 1 for t in ("pr", "ks", "ic", "sid", "er", "asr", "sf")},
    )
    report = study_report.build_report(meta, arms)
    assert "## Phone ABX per layer" in report and "## Phone ABX during pretraining" in report
    assert "EH-MAM: best phone ABX layer 1, 12.0 % within / 32.0 % across speaker" in report
    for arm in arms:
        arm.abx, arm.abx_monitor = [], []
    assert "Phone ABX" not in study_report.build_report(meta, arms)  # a study without ABX reads as before
