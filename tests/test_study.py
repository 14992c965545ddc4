"""experiments.study: the arms' commands, the numbers read from an arm's run dir, and the report built from
fabricated per-run scores (means, spreads and the sentences derived from them)."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from experiments import study, study_arms
from experiments.downstream import short_run_override
from experiments.options import parse_seeds, parse_task_steps
from experiments.pretraining import random_init_like_config
from results import study_collect, study_report, study_tables
from upstream_ehmam.checkpoint import load_checkpoint, load_encoder

REPO = Path(__file__).resolve().parent.parent
LABELS = {"ehmam": "EH-MAM", "random_mask": "random masking", "fbank": "FBANK"}


# --- planning ---------------------------------------------------------------------------------------------


def test_random_mask_overrides_come_from_its_yaml():
    """random masking = what pretrain/random_mask.yaml changes relative to ehmam.yaml in the method sections:
    curriculum off (alpha fixed at 0) and no auxiliary loss; no size, optimiser, data or run keys."""
    overrides = study_arms.baseline_overrides(REPO / "pretrain" / "random_mask.yaml", REPO / "pretrain" / "ehmam.yaml")
    assert sorted(overrides) == ["curriculum.mode=none", "loss.aux_weight=0.0"]
    from pretrain.config import load_config

    resolved = load_config(REPO / "pretrain" / "tiny.yaml", list(overrides))
    assert resolved.curriculum.mode == "none" and resolved.loss.aux_weight == 0.0
    assert not resolved.uses_loss_predictor


def test_pretrain_argv_equal_budget_per_arm(tmp_path):
    """Every pretrained arm runs the same config, updates, warm-up and seed; only its own overrides differ."""
    conditions = study_arms.default_conditions()
    config, manifest = REPO / "pretrain" / "tiny.yaml", tmp_path / "train.tsv"
    argvs = {
        name: study_arms.pretrain_argv(conditions[name], 3, config, manifest, tmp_path / name, 300)
        for name in ("ehmam", "random_mask", "no_aux")
    }

    def sets(argv):
        return [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]

    common = [f"data.manifest={manifest}", "run.seed=3", "optim.max_steps=300", "optim.warmup_steps=30"]
    for name, argv in argvs.items():
        assert argv[0] == str(REPO / "pretrain" / "run.py") and argv[1:3] == ["--config", str(config)]
        assert all(s in sets(argv) for s in common) and f"run.out_dir={tmp_path / name}" in sets(argv)
    extra = {
        name: [s for s in sets(argv) if s not in common and not s.startswith("run.out_dir")]
        for name, argv in argvs.items()
    }
    assert extra == {
        "ehmam": [],
        "random_mask": ["curriculum.mode=none", "loss.aux_weight=0.0"],
        "no_aux": ["loss.aux_weight=0.0"],
    }


def test_downstream_argv_per_arm(tmp_path):
    """EH-MAM arms train with `-u ehmam -k CKPT`, fbank with `-u fbank` and no -k; ER has one run per fold;
    s3prl's --seed is the study seed; the rest is demo.py's short-run command."""
    conditions = study_arms.default_conditions()
    ckpt, data = tmp_path / "last.pt", tmp_path / "data"
    runs = study_arms.plan_study_runs(conditions["ehmam"], 1, ["ks", "er"], [1, 3], tmp_path / "ds")
    assert [r.label for r in runs] == ["ks", "er_fold1", "er_fold3"]
    argv = runs[0].train_argv(ckpt, data, 60)
    assert argv == [
        "-m",
        "train",
        "-u",
        "ehmam",
        "-k",
        str(ckpt),
        "-d",
        "ks",
        "--data-root",
        str(data),
        "--workers",
        "0",
        "--cache-features",
        "-p",
        str(tmp_path / "ds" / "ks"),
        "-o",
        short_run_override("ks", 60),
        "--seed",
        "1",
    ]
    assert runs[2].train_argv(ckpt, data, 60)[-4:] == ["--fold", "3", "--seed", "1"]
    fbank_run = study_arms.plan_study_runs(conditions["fbank"], 0, ["pr"], [1], tmp_path / "fb")[0]
    fbank = fbank_run.train_argv(None, data, 9)
    assert fbank[:4] == ["-m", "train", "-u", "fbank"] and "-k" not in fbank and "ehmam" not in fbank
    assert fbank[fbank.index("-d") + 1] == "pr" and fbank[-2:] == ["--seed", "0"]
    assert runs[0].evaluate_argv(tmp_path / "dev-best.ckpt", data)[:4] == [
        "-m",
        "evaluate",
        "-e",
        str(tmp_path / "dev-best.ckpt"),
    ]


def test_export_random_init_is_seeded_and_leaves_global_rng(tmp_path):
    """The random-init arm is an encoder export of the pretraining config's shape; the same seed gives the same
    weights, another seed other weights, and the caller's global RNG state is untouched."""
    config = REPO / "pretrain" / "tiny.yaml"
    state = torch.random.get_rng_state()
    a = random_init_like_config(config, tmp_path / "a.pt", seed=0)
    b = random_init_like_config(config, tmp_path / "b.pt", seed=0)
    c = random_init_like_config(config, tmp_path / "c.pt", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert load_checkpoint(a)["kind"] == "ehmam-encoder"
    sa, sb, sc = (load_checkpoint(p)["encoder"] for p in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert load_encoder(a).config.num_layers == 4 and load_encoder(a).config.embed_dim == 128


def test_parsers_reject_bad_lists():
    """--conditions and --seeds name what is wrong."""
    import argparse

    assert study.parse_conditions("fbank, ehmam,fbank") == ["fbank", "ehmam"]
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown \['wav2vec'\]"):
        study.parse_conditions("ehmam,wav2vec")
    assert parse_seeds("0,1,1") == [0, 1]
    with pytest.raises(argparse.ArgumentTypeError, match="--seeds"):
        parse_seeds("a")


def test_task_steps_give_named_tasks_their_own_count():
    """--task-steps N gives every task N; N,TASK=M overrides the named tasks; bad parts are named."""
    import argparse

    from results.study_report import describe_task_steps

    assert set(parse_task_steps("60").values()) == {60}
    steps = parse_task_steps("300, KS=2000,ic=1500")
    assert steps == {"pr": 300, "ks": 2000, "ic": 1500, "sid": 300, "er": 300, "asr": 300, "sf": 300}
    assert describe_task_steps(steps) == "300 updates per task (KS 2000, IC 1500)"
    assert describe_task_steps(steps, ["ks", "ic"]) == "1500 updates per task (KS 2000)"  # a tie: the smaller
    for bad, message in (
        ("ks=5", "lacks the count"),
        ("60,wav=3", "unknown task 'wav'"),
        ("60,ks=0", "'ks=0'"),
        ("sixty", "'sixty'"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse_task_steps(bad)


# --- reading an arm ---------------------------------------------------------------------------------------


def test_training_totals_weight_each_record_by_its_step_gap():
    """updates = last step; audio and time sum sec_per_step x audio_sec_per_sec over the steps each record covers."""
    records = [
        {"step": 1, "sec_per_step": 0.5, "audio_sec_per_sec": 20.0},
        {"step": 11, "sec_per_step": 0.4, "audio_sec_per_sec": 25.0},
    ]
    updates, audio, seconds = study_collect.training_totals(records)
    assert updates == 11
    assert audio == pytest.approx(1 * 0.5 * 20 + 10 * 0.4 * 25)
    assert seconds == pytest.approx(0.5 + 4.0)


def test_rho_measured_follows_the_config():
    """student rho needs the ranking loss; teacher rho needs the predictor (curriculum or ranking loss)."""

    def measured(student: bool, teacher: bool) -> dict:
        return {
            "student_rho": student,
            "student_span_rho": student,
            "teacher_rho": teacher,
            "teacher_span_rho": teacher,
        }

    assert study_collect.rho_measured({}) == measured(True, True)
    assert study_collect.rho_measured({"loss": {"aux_weight": 0.0}}) == measured(False, True)
    assert study_collect.rho_measured({"loss": {"aux_weight": 0.0}, "curriculum": {"mode": "none"}}) == measured(
        False, False
    )


def test_collect_arm_reads_metrics_config_probes_and_stages(tmp_path):
    """An arm dir's metrics.jsonl, config.yaml, layerwise.csv and condition.json become one ArmResult."""
    cdir = study_collect.condition_dir(tmp_path, "random_mask", 2)
    (cdir / "pretrain").mkdir(parents=True)
    (cdir / "layerwise").mkdir()
    records = [
        {
            "step": s,
            "sec_per_step": 1.0,
            "audio_sec_per_sec": 10.0,
            "teacher_rho": 0.0,
            "student_rho": 0.0,
            "masked_fraction": 0.48,
            "alpha": 0.0,
        }
        for s in (1, 10)
    ]
    (cdir / "pretrain" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (cdir / "pretrain" / "config.yaml").write_text(
        yaml.safe_dump({"loss": {"aux_weight": 0.0}, "curriculum": {"mode": "none"}})
    )
    (cdir / "layerwise" / "layerwise.csv").write_text(
        "layer,probe,metric,value,n_train,n_test\n0,phone,frame_accuracy,0.25,10,5\n1,phone,frame_accuracy,0.5,10,5\n"
    )
    (cdir / "condition.json").write_text(
        json.dumps(
            {
                "wall_s": {"pretrain": 12.0, "downstream": 30.0},
                "stages": [{"name": "ks train", "ok": False, "detail": "boom"}],
            }
        )
    )
    arm = study_collect.collect_arm(tmp_path, "random_mask", 2)
    assert (arm.updates, arm.audio_seconds, arm.train_seconds) == (10, 100.0, 10.0)
    assert not any(arm.rho_measured.values())
    assert [r["value"] for r in arm.layerwise] == [0.25, 0.5]
    assert arm.wall_s["downstream"] == 30.0 and arm.failed == ["ks train: boom"] and arm.scores == {}
    means = study_tables.training_means([arm], "random_mask")
    assert means[10] == {"masked_fraction": 0.48, "alpha": 0.0}  # the unmeasured rho columns are left out


# --- the report from fabricated numbers -------------------------------------------------------------------


def arms_fixture() -> list:
    """Two seeds of EH-MAM and random masking, one of FBANK, with known scores."""
    scores = {
        ("ehmam", 0): {
            "PR": 40.0,
            "KS": 80.0,
            "IC": 50.0,
            "SID": 20.0,
            "ER": 40.0,
            "ASR": 90.0,
            "SF": 30.0,
            "SF_CER": 60.0,
        },
        ("ehmam", 1): {
            "PR": 44.0,
            "KS": 90.0,
            "IC": 50.0,
            "SID": 22.0,
            "ER": 44.0,
            "ASR": 96.0,
            "SF": 34.0,
            "SF_CER": 62.0,
        },
        ("random_mask", 0): {"PR": 50.0, "KS": 70.0, "IC": 50.0, "SID": 30.0, "ER": 41.0, "ASR": 95.0, "SF": 20.0},
        ("random_mask", 1): {"PR": 52.0, "KS": 75.0, "IC": 50.0, "SID": 34.0, "ER": 45.0, "ASR": 93.0, "SF": 22.0},
        ("fbank", 0): {"KS": 60.0},
    }
    arms = []
    for (condition, seed), values in scores.items():
        arm = study_collect.ArmResult(condition, seed, scores=values)
        if condition != "fbank":
            measured = condition == "ehmam"
            arm.rho_measured = {
                key: measured for key in ("student_rho", "student_span_rho", "teacher_rho", "teacher_span_rho")
            }
            arm.training = [
                {
                    "step": s,
                    "teacher_rho": 0.1 * s / 100 + 0.1 * seed,
                    "student_rho": 0.2,
                    "teacher_span_rho": 0.3 if measured else math.nan,
                    "student_span_rho": 0.25,
                    "hardness_lift": 1.2 if measured and s > 1 else math.nan,  # NaN: alpha 0, no predictor
                    "masked_fraction": 0.5 - 0.001 * s,
                    "alpha": s / 100,
                }
                for s in (1, 50, 100)
            ]
            arm.updates, arm.audio_seconds, arm.train_seconds = 100, 1000.0 + seed, 50.0
            arm.layerwise = [
                {"layer": layer, "probe": "phone", "value": v + 0.01 * seed}
                for layer, v in enumerate((0.2, 0.4, 0.3) if measured else (0.2, 0.25, 0.35))
            ]
        arms.append(arm)
    return arms


def test_summaries_mean_std_and_range():
    """Per condition and metric: mean, sample std, min and max over seeds."""
    summaries = study_report.score_summaries(arms_fixture())
    ks = summaries["ehmam"]["KS"]
    assert (ks.mean, ks.low, ks.high, ks.n) == (85.0, 80.0, 90.0, 2)
    assert ks.std == pytest.approx(math.sqrt(50.0))
    assert ks.text() == "85.00 ± 7.07 [80.00, 90.00]"
    assert summaries["fbank"]["KS"].text() == "60.00" and summaries["fbank"]["KS"].std == 0.0
    assert "PR" not in summaries["fbank"]


def test_compare_respects_direction_and_seed_spread():
    """Wins use lower-is-better for PR/ASR; a clear win needs A's worst seed to beat B's best seed."""
    summaries = study_report.score_summaries(arms_fixture())
    result = study_report.compare(summaries["ehmam"], summaries["random_mask"])
    # PR 42 vs 51 (lower better: win, clear: 44 < 50); KS 85 vs 72.5 (clear: 80 > 75); IC tie; SID 21 vs 32 loss
    # (clear: 30 > 22); ER 42 vs 43 loss (not clear); ASR 93 vs 94 win (not clear: 96 > 93); SF 32 vs 21 clear win
    assert result.wins == ("PR", "KS", "ASR", "SF") and result.losses == ("SID", "ER") and result.ties == ("IC",)
    assert result.clear_wins == ("PR", "KS", "SF") and result.clear_losses == ("SID",)
    assert result.compared == 7 and result.seeds == 2
    sentence = study_report.comparison_sentence("EH-MAM", "random masking", result)
    assert sentence.startswith(
        "EH-MAM beats random masking on 4 of 7 tasks (mean over 2 seeds: PR, KS, ASR, SF); "
        "random masking is better on 2 and they tie on 1."
    )
    assert "EH-MAM on 3, random masking on 1." in sentence
    one_seed = study_report.comparison_sentence("A", "B", study_report.compare(summaries["ehmam"], summaries["fbank"]))
    assert one_seed.startswith("A beats B on 1 of 1 tasks (one seed: KS)") and "no spread" in one_seed
    assert "Beyond the seed spread" not in one_seed
    reverse = study_report.compare(summaries["random_mask"], summaries["ehmam"])
    assert reverse.wins == result.losses and reverse.clear_wins == result.clear_losses


def test_build_report_states_the_numbers():
    """study.md carries the command, seeds, compute, the score table with spreads, the derived sentences,
    the training table (n/a where an arm measured nothing) and the layer-wise table."""
    meta = study_report.StudyMeta(
        command="python -m experiments.study --seeds 0,1",
        seeds=[0, 1],
        conditions=["ehmam", "random_mask", "fbank"],
        labels=LABELS,
        about={"ehmam": "as is"},
        data="/data",
        scale="mini-SUPERB synthetic, scale ci",
        steps=100,
        task_steps=parse_task_steps("60,ks=500"),
        er_folds=[1, 2],
        pretrain_commands={"ehmam": "python pretrain/run.py --config tiny.yaml"},
    )
    report = study_report.build_report(meta, arms_fixture())
    assert "Command: `python -m experiments.study --seeds 0,1`" in report and "Seeds: 0, 1." in report
    assert "Synthetic mini-SUPERB data" in report and "`python pretrain/run.py --config tiny.yaml`" in report
    assert (
        "Downstream: PR, KS, IC, SID, ER, ASR, SF; official configs, 60 updates per task (KS 500) (ER: folds 1, 2 of 5)"
    ) in report
    assert "- EH-MAM beats random masking on 4 of 7 tasks (mean over 2 seeds: PR, KS, ASR, SF)" in report
    assert "- EH-MAM beats FBANK on 1 of 1 tasks (one seed: KS)" in report
    assert "| EH-MAM | 42.00 ± 2.83 [40.00, 44.00] | 85.00 ± 7.07 [80.00, 90.00] |" in report
    assert "| FBANK | missing | 60.00 | missing |" in report
    assert "| FBANK | 0 | missing | 60.00 | missing |" in report  # per-run rows: the number when no cell is known
    # training: EH-MAM's teacher rho mean over seeds at step 100 = 0.1 + 0.05; random masking measured none
    assert "| EH-MAM | 100 | 0.150 | 0.300 | 0.200 | 0.250 | 1.200 | 0.400 | 1.000 |" in report
    assert "| EH-MAM | 1 | 0.051 | 0.300 | 0.200 | 0.250 | n/a | 0.499 | 0.010 |" in report  # no lift at alpha 0
    assert "| random masking | 100 | n/a | n/a | n/a | n/a | n/a | 0.400 | 1.000 |" in report
    assert "goes from 0.05 (step 1) to 0.15 (step 100), peaking at 0.15 (step 100)" in report
    # layer-wise: EH-MAM best layer 1 (0.405 over seeds) vs random masking best layer 2 (0.355)
    assert "phone probe, best layer: EH-MAM 0.405 (layer 1) is higher than random masking 0.355 (layer 2)." in report
    assert "| EH-MAM | 1 (0.405) / 0.305 |" in report
    assert "| EH-MAM | 2 | 100 | 1000 | 50 |" in report  # compute: seeds, updates, audio s, time s


def test_report_sentences_follow_the_numbers_either_way():
    """Flip the scores and the same code says the opposite; nothing is hard-coded."""
    arms = arms_fixture()
    for arm in arms:
        if arm.condition == "ehmam":
            arm.condition = "random_mask"
        elif arm.condition == "random_mask":
            arm.condition = "ehmam"
    meta = study_report.StudyMeta(
        "cmd", [0, 1], ["ehmam", "random_mask"], LABELS, {}, "/d", "real corpora", 1, parse_task_steps("1")
    )
    report = study_report.build_report(meta, arms)
    assert (
        "- EH-MAM beats random masking on 2 of 7 tasks (mean over 2 seeds: SID, ER); random masking is "
        "better on 4 and they tie on 1." in report
    )
    assert "Synthetic" not in report


def test_sample_steps_pick_the_nearest_logged_steps():
    """The training table samples the logged steps nearest to 0, 25, 50, 75 and 100 % of the last one."""
    records = [{"step": s} for s in (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)]
    assert study_tables.sample_steps(records) == [1, 20, 50, 70, 100]  # ties go to the earlier step
    assert study_tables.sample_steps([]) == []


def test_write_report_only_from_disk(tmp_path, monkeypatch):
    """--report-only rebuilds study.md and both figures from study.json and the arm folders."""
    cdir = study_collect.condition_dir(tmp_path, "ehmam", 0)
    (cdir / "layerwise").mkdir(parents=True)
    (cdir / "layerwise" / "layerwise.csv").write_text(
        "layer,probe,metric,value,n_train,n_test\n0,speaker,accuracy,0.5,4,4\n1,speaker,accuracy,0.75,4,4\n"
    )
    (tmp_path / "study.json").write_text(
        json.dumps(
            {
                "command": "python -m experiments.study --seeds 0",
                "seeds": [0],
                "conditions": ["ehmam"],
                "steps": 5,
                "task_steps": 2,
                "data": str(tmp_path / "nodata"),
                "pretrain_config": str(REPO / "pretrain" / "tiny.yaml"),
            }
        )
    )
    assert study.main(["--out", str(tmp_path), "--report-only"]) == 0
    report = (tmp_path / "study.md").read_text()
    assert "Command: `python -m experiments.study --seeds 0`" in report and "| EH-MAM | 1 (0.750) / 0.750 |" in report
    assert "EH-MAM has no scores" in report
    assert (tmp_path / "training_curves.png").is_file() and (tmp_path / "layerwise_curves.png").is_file()
    assert study.main(["--out", str(tmp_path / "empty"), "--report-only"]) == 2


def test_report_names_the_profile_and_prints_each_seeds_cells_with_intervals():
    meta = study_report.StudyMeta(
        command="python -m experiments.study",
        seeds=[0, 1],
        conditions=["ehmam", "fbank"],
        labels=LABELS,
        about={},
        data="runs/corpora/demo",
        scale="mini-SUPERB synthetic, scale demo",
        steps=1000,
        task_steps=None,
        er_folds=[1, 2, 3, 4, 5],
        profile="cpu",
    )
    arms = arms_fixture()
    fbank = next(a for a in arms if a.condition == "fbank")
    fbank.cells = {"KS": "60.00 (54.1–65.6; chance 21.4)"}
    report = study_report.build_report(meta, arms)
    assert (
        "Downstream: PR, KS, IC, SID, ER, ASR, SF; profile cpu, the profile's schedule (ER: all five folds, averaged)"
    ) in report
    assert "| FBANK | 0 | missing | 60.00 (54.1–65.6; chance 21.4) | missing |" in report


def test_a_study_of_some_tasks_reports_only_those():
    """A study of PR and KS: its tables have those two columns, its comparisons count two tasks, no ER text."""
    meta = study_report.StudyMeta(
        command="python -m experiments.study --tasks pr,ks",
        seeds=[0, 1],
        conditions=["ehmam", "random_mask"],
        labels=LABELS,
        about={},
        data="d",
        scale="real corpora",
        steps=10,
        task_steps=None,
        profile="cpu",
        tasks=["ks", "pr"],
    )
    report = study_report.build_report(meta, arms_fixture())
    assert "| condition | PR PER ↓ | KS acc ↑ |\n" in report and "ASR WER" not in report
    assert "Downstream: PR, KS; profile cpu, the profile's schedule, s3prl" in report and "ER:" not in report
    assert "EH-MAM beats random masking on 2 of 2 tasks" in report


def test_probe_sentences_compare_the_values_as_printed():
    """0.50301 and 0.50349 print as 0.503 each: the sentence says equal, not higher."""
    arms = [study_collect.ArmResult(name, 0) for name in ("ehmam", "random_mask")]
    arms[0].layerwise = [{"layer": 2, "probe": "phone", "value": 0.50349}]
    arms[1].layerwise = [{"layer": 2, "probe": "phone", "value": 0.50301}]
    (sentence,) = study_tables.layerwise_sentences(arms, "ehmam", "random_mask", LABELS)
    assert "EH-MAM 0.503 (layer 2) is equal to random masking 0.503 (layer 2)" in sentence
    arms[1].layerwise[0]["value"] = 0.5021
    (sentence,) = study_tables.layerwise_sentences(arms, "ehmam", "random_mask", LABELS)
    assert "is higher than random masking 0.502" in sentence
