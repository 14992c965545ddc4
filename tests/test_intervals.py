"""results.intervals on hand-computed cases, and the intervals and chance levels the table prints."""

from __future__ import annotations

import random

import editdistance
import pytest

from results import intervals, tabulate
from tests.test_tabulate import cell, label_lines, write_ark_run, write_er_folds, write_label_run

ROW = "ehmam (ehmam_base.pt)"


# --- Wilson --------------------------------------------------------------------------------------


def test_wilson_at_zero_all_and_midway():
    """z = 1.96: at 0/10 the upper bound is z²/(n+z²) = 3.8415/13.8415; at 10/10 the lower bound is
    n/(n+z²); 11/20 worked through the formula by hand: centre 0.5419, half-width 0.1999."""
    assert intervals.wilson(0, 10) == pytest.approx((0.0, 27.753), abs=1e-3)
    assert intervals.wilson(10, 10) == pytest.approx((72.247, 100.0), abs=1e-3)
    assert intervals.wilson(11, 20) == pytest.approx((34.209, 74.180), abs=1e-3)
    low, high = intervals.wilson(1, 1)
    assert high == 100.0 and low == pytest.approx(100 / (1 + 1.959964**2), abs=1e-4)


def test_wilson_width_shrinks_with_n_and_bad_counts_are_refused():
    assert intervals.wilson_half_width(267) <= 6.0 < intervals.wilson_half_width(250)
    assert intervals.wilson_half_width(100, p=0.9) < intervals.wilson_half_width(100, p=0.5)
    with pytest.raises(ValueError, match="at least one trial"):
        intervals.wilson(0, 0)
    with pytest.raises(ValueError, match="outside 0..n"):
        intervals.wilson(11, 10)


# --- bootstrap -----------------------------------------------------------------------------------


def test_bootstrap_is_reproducible_by_seed_and_brackets_the_ratio():
    rng = random.Random(3)
    errors = [rng.randint(0, 5) for _ in range(60)]
    lengths = [rng.randint(5, 12) for _ in range(60)]
    first = intervals.bootstrap_ratio(errors, lengths, seed=7)
    assert intervals.bootstrap_ratio(errors, lengths, seed=7) == first
    assert intervals.bootstrap_ratio(errors, lengths, seed=8) != first
    ratio = 100 * sum(errors) / sum(lengths)
    assert first[0] < ratio < first[1] and first[1] - first[0] < 20
    values = [e / n for e, n in zip(errors, lengths)]
    assert intervals.bootstrap_mean(values, seed=7) == intervals.bootstrap_mean(values, seed=7)


def test_bootstrap_of_identical_utterances_has_no_width():
    """Every resample of identical utterances has the same ratio, 1/4."""
    assert intervals.bootstrap_ratio([1] * 9, [4] * 9) == pytest.approx((25.0, 25.0))
    assert intervals.bootstrap_mean([0.5, 0.5]) == pytest.approx((50.0, 50.0))
    with pytest.raises(ValueError, match="undefined"):
        intervals.bootstrap_ratio([0, 0], [0, 0])
    with pytest.raises(ValueError, match="equally long"):
        intervals.bootstrap_ratio([1, 2], [3])


# --- chance levels -------------------------------------------------------------------------------


def test_majority_rate_counts_the_most_frequent_label():
    assert intervals.majority_rate(["a", "b", "a", "c"]) == 50.0
    assert intervals.majority_rate([("x", "y", "z"), ("x", "y", "w"), ("x", "y", "z")]) == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="no test labels"):
        intervals.majority_rate([])


def test_constant_hypothesis_by_hand_and_against_edit_distance():
    """A A C / A B: 'A A' costs 1 + 1 = 2 of 5 tokens (40 %), better than 'A' (3) or 'A A A' (3)."""
    assert intervals.constant_hypothesis_error([["A", "B"], ["A", "A", "C"]]) == (pytest.approx(40.0), "A", 2)
    rng = random.Random(0)
    refs = [[rng.choice("ABCDE") for _ in range(rng.randint(0, 9))] for _ in range(25)]
    rate, token, repeats = intervals.constant_hypothesis_error(refs)
    total = sum(map(len, refs))
    brute = min(sum(editdistance.eval([t] * n, r) for r in refs) for t in "ABCDE" for n in range(0, 10))
    assert rate == pytest.approx(100 * brute / total)
    assert sum(editdistance.eval([token] * repeats, r) for r in refs) == brute
    with pytest.raises(ValueError, match="every reference is empty"):
        intervals.constant_hypothesis_error([[], []])


def test_constant_slot_types_by_hand():
    """{a}, {a,b}, {}: the empty set scores 1/3, {a} (1 + 2/3 + 0)/3 = 5/9, and adding b does not help."""
    f1, chosen = intervals.constant_slot_types_f1([{"a"}, {"a", "b"}, set()])
    assert f1 == pytest.approx(500 / 9) and chosen == {"a"}
    assert intervals.constant_slot_types_f1([set(), set()]) == (100.0, frozenset())


# --- what the table prints -----------------------------------------------------------------------


def test_accuracy_cells_carry_wilson_interval_and_majority_chance(tmp_path):
    """KS 3/4 right with truth labels yes, no, up, up: Wilson(3, 4) and chance 2/4."""
    write_label_run(tmp_path / "ks", "KS", *label_lines(["yes", "no", "up", "down"], ["yes", "no", "up", "up"]))
    report = tabulate.tabulate([tmp_path], data_kind="synthetic")
    low, high = intervals.wilson(3, 4)
    assert cell(report, ROW, "KS") == "75.00"
    assert report.rows[0].text("KS") == f"75.00 ({low:.1f}–{high:.1f}; chance 50.0)" == "75.00 (30.1–95.4; chance 50.0)"
    assert "| 75.00 (30.1–95.4; chance 50.0) |" in report.markdown
    runs = report.runs_csv.splitlines()
    assert runs[0].split(",")[7:11] == ["score_low", "score_high", "chance", "test_utterances"]
    assert runs[1].split(",")[7:11] == [f"{low:.4f}", f"{high:.4f}", "50.0000", "4"]


def test_er_interval_pools_the_folds(tmp_path):
    """Folds with 5/10 and 9/10 right: mean 70, Wilson on 14 of 20 pooled utterances."""
    write_er_folds(tmp_path, {"fold1": 5, "fold2": 9})
    report = tabulate.tabulate([tmp_path])
    low, high = intervals.wilson(14, 20)
    assert report.rows[0].text("ER") == f"70.00 ({low:.1f}–{high:.1f}; chance 100.0; 2/5 folds)"


def test_error_rate_and_slot_cells_carry_bootstrap_and_chance(tmp_path):
    """WER: one utterance, one error in four words -> a zero-width interval at 25; the best constant
    hypothesis is 'THE' (3 errors of 4). SF: one reference with slot types {artist}, F1 chance 100
    (always answering {artist}); CER has no chance level."""
    write_ark_run(tmp_path / "asr", "ASR", {"u": "THE CAT SAT MAT"}, {"u": "THE CAT SAT DOWN"})
    write_ark_run(tmp_path / "sf", "SF", {"u": "PLAY B-artist QUEN E-artist"}, {"u": "PLAY B-artist QUEEN E-artist"})
    report = tabulate.tabulate([tmp_path])
    assert report.rows[0].text("ASR") == "25.00 (25.0–25.0; chance 75.0)"
    assert report.rows[0].text("SF") == "100.00 (100.0–100.0; chance 100.0) / 20.00 (20.0–20.0)"


def test_unfinished_runs_show_no_interval(tmp_path):
    write_ark_run(tmp_path / "pr", "PR", {}, {}, evaluate=False)
    report = tabulate.tabulate([tmp_path])
    assert report.rows[0].text("PR") == "unfinished"


def test_er_folds_of_unequal_size_say_the_interval_is_around_the_pooled_accuracy(tmp_path):
    """5/10 and 2/2 right: the fold mean is 75.00 but the pooled accuracy is 7/12 = 58.33; the interval is
    Wilson(7, 12) and a note says so."""
    write_label_run(tmp_path / "er_fold1", "ER", *label_lines(["neu"] * 5 + ["sad"] * 5, ["neu"] * 10), fold="fold1")
    write_label_run(tmp_path / "er_fold2", "ER", *label_lines(["sad", "sad"], ["sad", "sad"]), fold="fold2")
    report = tabulate.tabulate([tmp_path])
    low, high = intervals.wilson(7, 12)
    row = report.rows[0]
    assert row.text("ER") == f"75.00 ({low:.1f}–{high:.1f}; chance 83.3; 2/5 folds)"
    assert any("pooled accuracy 58.33" in note for note in row.notes)
