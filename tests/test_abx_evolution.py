"""results.abx_evolution on fabricated monitor records."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from results.abx_evolution import layer_summary, main, read_evolution


def _record(step: int, across: list[float], within: list[float]) -> dict:
    return {"step": step, "abx": {"within": within, "across": across, "best_layer": 0, "seconds": 1.0}}


def _write(run_dir: Path, lines: list[dict]) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return run_dir


def _dense(step: int) -> dict:
    return {"step": step, "loss": 1.0}


def test_every_layer_and_update_reaches_the_csv_with_its_values(tmp_path):
    """Known values in, the same values out; training records between the evaluations are ignored."""
    a = _write(
        tmp_path / "a",
        [
            _record(0, [30.0, 31.0, 32.0], [10.0, 11.0, 12.0]),
            _dense(10),
            _record(100, [20.0, 18.5, 25.0], [8.0, 7.5, 9.0]),
            _dense(110),
            _record(200, [19.0, 17.25, 27.0], [7.0, 7.25, 9.5]),
        ],
    )
    b = _write(tmp_path / "b", [_record(0, [40.0, 41.0], [12.0, 13.0]), _record(50, [35.0, 33.0], [11.0, 10.0])])
    out = tmp_path / "out"
    assert main([str(a), f"wide={b}", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "abx_evolution.csv").open()))
    assert len(rows) == 3 * 3 + 2 * 2
    got = {(r["run"], int(r["update"]), int(r["layer"])): (float(r["within"]), float(r["across"])) for r in rows}
    assert got[("a", 100, 1)] == (7.5, 18.5)
    assert got[("a", 200, 2)] == (9.5, 27.0)
    assert got[("a", 0, 0)] == (10.0, 30.0)
    assert got[("wide", 50, 1)] == (10.0, 33.0)
    assert {run for run, _, _ in got} == {"a", "wide"}
    assert (out / "abx_evolution.png").stat().st_size > 10_000
    summary = (out / "abx_evolution.md").read_text()
    assert "## a" in summary and "## wide" in summary


def test_a_resumed_run_counts_each_update_once_and_the_last_record_wins(tmp_path):
    """A resume replays updates 100-200: the monitor logs 100 and 200 again; each update appears once in the CSV,
    with the values logged last."""
    run = _write(
        tmp_path / "resumed",
        [
            _record(0, [30.0, 30.0], [10.0, 10.0]),
            _record(100, [25.0, 26.0], [9.0, 9.0]),
            _record(200, [24.0, 27.0], [8.0, 8.0]),
            _record(100, [25.5, 26.5], [9.5, 9.5]),
            _record(200, [23.0, 28.0], [7.0, 7.0]),
            _record(300, [22.0, 29.0], [6.0, 6.0]),
        ],
    )
    evolution = read_evolution(run)
    assert evolution.steps == [0, 100, 200, 300]
    assert evolution.errors["across"][1] == [25.5, 26.5]
    assert evolution.errors["across"][2] == [23.0, 28.0]
    out = tmp_path / "out"
    assert main([str(run), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "abx_evolution.csv").open()))
    assert sorted({int(r["update"]) for r in rows}) == [0, 100, 200, 300]
    assert len(rows) == 4 * 2


def test_layer_summary_measures_the_fall_back_of_a_layer_after_its_best_point(tmp_path):
    run = read_evolution(
        _write(
            tmp_path / "r",
            [
                _record(0, [30.0, 30.0], [10.0, 10.0]),
                _record(100, [25.0, 20.0], [9.0, 9.0]),
                _record(200, [24.0, 26.0], [8.0, 8.0]),
            ],
        )
    )
    bottom, top = layer_summary(run)
    assert (bottom["lowest"], bottom["lowest_update"], bottom["rise"]) == (24.0, 200, 0.0)
    assert (top["first"], top["lowest"], top["lowest_update"], top["last"], top["rise"]) == (30.0, 20.0, 100, 26.0, 6.0)


def test_bad_run_folders_are_refused_naming_the_file(tmp_path, capsys):
    no_abx = _write(tmp_path / "no_abx", [_dense(1), _dense(2)])
    assert main([str(no_abx), "--out", str(tmp_path / "o")]) == 2
    assert "no_abx/metrics.jsonl: no ABX monitor records" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "missing/metrics.jsonl: not found" in capsys.readouterr().err
    mixed = _write(tmp_path / "mixed", [_record(0, [1.0, 2.0], [1.0, 2.0]), _record(10, [1.0], [1.0])])
    with pytest.raises(ValueError, match="different layer counts"):
        read_evolution(mixed)
