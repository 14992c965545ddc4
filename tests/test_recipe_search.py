"""experiments.recipe_search and its report (results.recipe_search): the arms file is validated with errors
naming the entry, and one tiny arm runs end to end
with the ABX monitor, its row reading the monitor's first and last evaluations."""

import csv

import pytest

from experiments import recipe_search
from results import recipe_search as search_report


def test_read_arms_validates_every_entry(tmp_path):
    path = tmp_path / "arms.yaml"
    path.write_text("- {name: a, config: pretrain/tiny.yaml, set: [optim.lr=1e-3]}\n")
    assert recipe_search.read_arms(path)[0].overrides == ("optim.lr=1e-3",)
    for text, message in [
        ("- {name: a, config: pretrain/nope.yaml}\n", r"arm 1 \(a\): 'config' must name a config file"),
        (
            "- {name: a, config: pretrain/tiny.yaml}\n- {name: a, config: pretrain/tiny.yaml}\n",
            r"arm 2: 'name' must be a unique",
        ),
        ("- {name: a, config: pretrain/tiny.yaml, sets: []}\n", r"arm 1: unknown key 'sets'"),
        ("- {name: a, config: pretrain/tiny.yaml, set: [lr]}\n", r"'set' must be a list of section.key=value"),
        ("{}\n", r"expected a non-empty YAML list"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            recipe_search.read_arms(path)


@pytest.mark.slow
def test_one_arm_end_to_end(minisuperb_ci, tmp_path):
    arms = tmp_path / "arms.yaml"
    arms.write_text(
        "- name: tiny\n  config: pretrain/tiny.yaml\n  about: smoke\n  set: [optim.max_steps=4, "
        "optim.warmup_steps=1, data.max_samples=32000, data.max_batch_samples=64000, run.log_every=1]\n"
    )
    out = tmp_path / "out"
    code = recipe_search.main(
        [
            "--data",
            str(minisuperb_ci),
            "--arms",
            str(arms),
            "--runs",
            str(tmp_path / "runs"),
            "--out",
            str(out),
            "--eval-every",
            "2",
        ]
    )
    assert code == 0
    with (out / "search.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["name"] == "tiny" and row["updates"] == "4" and float(row["wall_s"]) > 0
    assert 0 <= float(row["init_across"]) <= 100 and 0 <= float(row["end_across"]) <= 100
    assert float(row["best_across"]) <= min(float(row["init_across"]), float(row["end_across"]))
    text = (out / "search.md").read_text()
    assert "| log-mel, normalised |" in text and "| tiny | 4 |" in text
    # a rerun reports the finished arm without training it again
    assert (
        recipe_search.main(
            [
                "--data",
                str(minisuperb_ci),
                "--arms",
                str(arms),
                "--runs",
                str(tmp_path / "runs"),
                "--out",
                str(out),
                "--eval-every",
                "2",
            ]
        )
        == 0
    )
    assert (out / "search.md").read_text() == text


def test_selector_scalars_are_second_half_means_and_seeds_are_grouped(tmp_path):
    """The selector's scalars are averaged over the logged updates after half the run, NaN records left out; arms
    NAME-s<k> get a mean-over-seeds row with the range."""
    import json
    import math

    run_dir = tmp_path / "arm"
    run_dir.mkdir()
    records = [
        {
            "step": s,
            "loss": 1.0,
            "rec_loss": 1.0,
            "teacher_rho": 0.0 if s <= 50 else 0.4,
            "teacher_span_rho": 0.5,
            "student_rho": 0.6,
            "masked_fraction": 0.38,
            "hardness_lift": math.nan if s < 80 else (1.1 if s == 80 else 1.3),
        }
        for s in (10, 50, 60, 80, 100)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    log = search_report.read_run(run_dir)
    assert log.updates == 100
    assert log.mechanism["teacher_rho"] == pytest.approx(0.4) and log.mechanism["hardness_lift"] == pytest.approx(1.2)
    rows = [search_report.arm_row(name, "", (), log, 1.0) for name in ("sel-s0", "sel-s1", "other")]
    rows[1]["hardness_lift"] = 1.0
    lines = search_report.seed_means_table(rows)
    sel = next(line for line in lines if line.startswith("| sel |"))
    assert "| 2 |" in sel and "1.100 [1.000, 1.200]" in sel and "0.400 [0.400, 0.400]" in sel
    assert any(line.startswith("| other | 1 |") for line in lines)  # a single-seed setting keeps its row
    assert search_report.seed_means_table(rows[2:]) == []


def test_curves_bin_the_selector_scalars_and_list_every_abx_evaluation(tmp_path):
    """curves.md: every monitor record of an arm, and tenth-of-run means of the scalars with NaN left out."""
    import json
    import math

    from results.search_curves import binned_means, curves_markdown

    run_dir = tmp_path / "arm"
    run_dir.mkdir()
    dense = [
        {
            "step": s,
            "loss": 1.0,
            "rec_loss": float(s),
            "teacher_rho": 0.1,
            "teacher_span_rho": 0.2,
            "student_rho": 0.5,
            "hardness_lift": math.nan if s <= 10 else 1.5,
        }
        for s in range(1, 101)
    ]
    abx = [{"step": s, "abx": {"best_layer": 2, "best_within": 7.0, "best_across": 20.0 - s / 100}} for s in (0, 100)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dense + abx))
    rows = binned_means(dense)
    assert [r["until"] for r in rows] == list(range(10, 101, 10))
    assert rows[0]["rec_loss"] == 5.5 and math.isnan(rows[0]["hardness_lift"]) and rows[1]["hardness_lift"] == 1.5
    text = curves_markdown({"arm": run_dir})
    assert "| 100 | 2 | 7.0 | 19.0 |" in text and "| 10 | 5.500 | 0.10 / 0.20 | 0.50 | – |" in text
