"""results.tabulate / results.scores on fake s3prl run directories whose scores are computed by hand."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml

from results import scores, tabulate
from results.baselines import DEFAULT_BASELINES, PUBLISHED

TRAIN_TAG, EVAL_TAG = "2025-01-01-10-00-00", "2025-01-01-12-00-00"
CTC_CORPUS = {"PR": "libriphone", "SF": "snips"}
DOWNSTREAM = {
    "PR": "ctc",
    "SF": "ctc",
    "ASR": "asr",
    "KS": "speech_commands",
    "IC": "fluent_commands",
    "SID": "voxceleb1",
    "ER": "emotion",
}


def write_yaml(path: Path, data: dict) -> None:
    path.write_text(yaml.dump(data))


def write_invocation(
    run_dir: Path,
    task: str,
    mode: str,
    tag: str,
    *,
    upstream="ehmam",
    ckpt="/ckpts/ehmam_base.pt",
    lr=1e-4,
    fold=None,
    ckpt_name="dev-best.ckpt",
    trained_in: Path | None = None,
):
    """args_<tag>.yaml + config_<tag>.yaml as s3prl's run_downstream writes them."""
    run_dir.mkdir(parents=True, exist_ok=True)
    args = {
        "mode": mode,
        "downstream": DOWNSTREAM[task],
        "upstream": upstream,
        "upstream_ckpt": ckpt,
        "expdir": str(run_dir),
        "upstream_layer_selection": None,
        "upstream_trainable": False,
        "upstream_feature_selection": "hidden_states",
        "evaluate_split": "test-clean" if task == "ASR" else "test",
        "init_ckpt": None,
    }
    if mode == "evaluate":
        args["init_ckpt"] = str((trained_in or run_dir) / ckpt_name)
    expert: dict = {}
    if task in CTC_CORPUS:
        expert["corpus"] = {"name": CTC_CORPUS[task]}
    if task == "ER":
        expert["datarc"] = {"test_fold": fold}
    config = {
        "runner": {"eval_dataloaders": ["dev"]},
        "optimizer": {"name": "TorchAdam", "lr": lr},
        "downstream_expert": expert,
    }
    write_yaml(run_dir / f"args_{tag}.yaml", args)
    write_yaml(run_dir / f"config_{tag}.yaml", config)


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def write_ark_run(run_dir: Path, task: str, hyp: dict, ref: dict, evaluate=True, **kw) -> None:
    write_invocation(run_dir, task, "train", TRAIN_TAG, **kw)
    if evaluate:
        write_invocation(run_dir, task, "evaluate", EVAL_TAG, **kw)
        prefix = "test-clean-noLM" if task == "ASR" else "test"
        write_lines(run_dir / f"{prefix}-hyp.ark", [f"{u} {t}" for u, t in hyp.items()])
        write_lines(run_dir / f"{prefix}-ref.ark", [f"{u} {t}" for u, t in ref.items()])


def write_label_run(
    run_dir: Path, task: str, predict: list[str], truth: list[str], evaluate=True, fold=None, log_acc=None, **kw
) -> None:
    """KS/SID/ER (`<id> <label>`) or IC (`<id>,<a>,<o>,<l>`) predict/truth + log.log."""
    write_invocation(run_dir, task, "train", TRAIN_TAG, fold=fold, **kw)
    ext = "csv" if task == "IC" else "txt"
    stem = f"test_{fold}" if task == "ER" else "test"
    write_lines(run_dir / f"{stem}_predict.{ext}", predict)
    write_lines(run_dir / f"{stem}_truth.{ext}", truth)
    correct = sum(p == t for p, t in zip(predict, truth)) / len(truth)
    lines = ["dev at step 100: 0.5", f"test at step 100: {correct}"]
    if evaluate:
        write_invocation(run_dir, task, "evaluate", EVAL_TAG, fold=fold, **kw)
        lines.append(f"test at step 0: {correct if log_acc is None else log_acc}")
    write_lines(run_dir / "log.log", lines)


def label_lines(labels_pred: list[str], labels_true: list[str]) -> tuple[list[str], list[str]]:
    ids = [f"utt{i}" for i in range(len(labels_true))]
    return ([f"{u} {p}" for u, p in zip(ids, labels_pred)], [f"{u} {t}" for u, t in zip(ids, labels_true)])


def parse_markdown_table(markdown: str, first_header: str) -> list[list[str]]:
    """The rows (header included) of the first Markdown table whose header starts with first_header."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if line.startswith("|---"):
            continue
        table.append([c.strip().replace("\\|", "|") for c in line.strip()[2:-2].split(" | ")])
    return table


def cell(report: tabulate.Report, row_label: str, task: str) -> str:
    row = next(r for r in report.rows if r.label == row_label)
    return row.cells[task]


# ---------------------------------------------------------------------------------------------


def test_per_one_substitution_in_ten_phones(tmp_path):
    """PER = 1 substitution / 10 reference phones = 10.00, with arks aligned by uttid not line."""
    ref = {"a": "HH AH L OW", "b": "W ER L D AH S"}
    hyp = {"b": "W ER L D AH S", "a": "HH AA L OW"}  # other order, one substitution in "a"
    write_ark_run(tmp_path / "pr", "PR", hyp, ref, lr=1e-2)
    report = tabulate.tabulate([tmp_path], data_kind="synthetic")
    assert report.runs[0].values == pytest.approx((10.0,))
    assert cell(report, "ehmam (ehmam_base.pt)", "PR") == "10.00"
    assert report.rows[0].lrs["PR"] == "1e-2"


def test_wer_deletion_and_insertion(tmp_path):
    """WER = (1 deletion + 1 insertion) / 8 reference words = 25.00 from the noLM arks."""
    ref = {"u1": "THE CAT SAT DOWN", "u2": "ON THE RED MAT"}
    hyp = {"u1": "THE CAT DOWN", "u2": "ON THE RED MAT NOW"}
    write_ark_run(tmp_path / "asr", "ASR", hyp, ref)
    report = tabulate.tabulate([tmp_path])
    assert cell(report, "ehmam (ehmam_base.pt)", "ASR") == "25.00"


def test_accuracies_ks_sid_and_ic_needs_all_three_slots(tmp_path):
    """KS 3/4 = 75.00, SID 1/2 = 50.00; IC counts a row right only when action, object and
    location all match: 2/4 = 50.00."""
    write_label_run(tmp_path / "ks", "KS", *label_lines(["yes", "no", "up", "up"], ["yes", "no", "up", "down"]))
    write_label_run(tmp_path / "sid", "SID", *label_lines(["id10001", "id10003"], ["id10001", "id10002"]))
    truth = ["s1,activate,lights,kitchen", "s2,bring,shoes,none", "s3,increase,heat,bedroom", "s4,decrease,volume,none"]
    predict = [
        "s1,activate,lights,kitchen",
        "s2,bring,shoes,none",
        "s3,increase,heat,kitchen",  # only the location is wrong
        "s4,increase,volume,none",
    ]
    write_label_run(tmp_path / "ic", "IC", predict, truth)
    report = tabulate.tabulate([tmp_path])
    label = "ehmam (ehmam_base.pt)"
    assert [cell(report, label, t) for t in ("KS", "SID", "IC")] == ["75.00", "50.00", "50.00"]


SF_REF = {"u1": "WEATHER IN B-city BOSTON E-city B-date TODAY E-date", "u2": "PLAY SOME MUSIC"}
SF_HYP = {"u1": "WEATHER IN B-city BOSTN E-city", "u2": "PLAY SOME MUSIC"}
# u1: types ref {city, date}, hyp {city}: P = 1, R = 1/2, F1 = 2/3; u2: no slots on either side: 1.
SF_F1 = 100 * (2 / 3 + 1) / 2  # 83.33
# city: BOSTN vs BOSTON = 1 edit of 6 chars; date absent from hyp: '' vs TODAY = 5 edits of 5.
SF_CER = 100 * (1 + 5) / (6 + 5)  # 54.55


def test_slot_filling_by_hand_both_implementations(tmp_path, monkeypatch):
    """SF F1 = 83.33 and CER = 54.55 with s3prl's metric functions and with our own fallback."""
    write_ark_run(tmp_path / "sf", "SF", SF_HYP, SF_REF)
    hyp, ref = tmp_path / "sf" / "test-hyp.ark", tmp_path / "sf" / "test-ref.ark"
    f1, cer, implementation = scores.slot_filling_scores(hyp, ref)
    assert implementation == "s3prl"
    assert (f1, cer) == pytest.approx((SF_F1, SF_CER))
    monkeypatch.setattr(scores, "s3prl_slot_metrics", lambda: None)
    report = tabulate.tabulate([tmp_path])
    assert cell(report, "ehmam (ehmam_base.pt)", "SF") == f"{SF_F1:.2f} / {SF_CER:.2f}"
    assert any("own implementation" in n for n in report.runs[0].notes)


@pytest.mark.parametrize(
    "hyp, ref",
    [
        ("B-city BOSTON E-city", "B-city BOSTON E-city"),
        ("", "B-city NEW  YORK E-city AND B-state TEXAS E-state"),
        ("B-city NEW YORK E-city B-city BOSTN E-city", "B-city BOSTON E-city"),
        ("B-city B-date BOS E-date TON E-city", "B-city BOSTON E-city B-date NOW E-date"),
        ("B-album ABBEY ROAD E-album", "PLAY B-artist THE BEATLES E-artist"),
        ("PLAY MUSIC", "PLAY MUSIC"),
        ("B-artist THE BEATLE E-artist", "B-artist THE BEATLES E-artist B-artist ABBA E-artist"),
    ],
)
def test_own_slot_metrics_match_s3prl(hyp, ref):
    """The fallback slot_type_f1 / slot_value_cer equal s3prl's own functions, alone and pooled."""
    metric = pytest.importorskip("s3prl.downstream.ctc.metric")
    hyps, refs = [hyp, "B-city PARIS E-city"], [ref, "B-city PARIS E-city"]
    for h, r in ((hyps[:1], refs[:1]), (hyps, refs)):
        assert scores.slot_type_f1(h, r) == pytest.approx(metric.slot_type_f1(h, r), abs=1e-12)
        if any(scores._slot_spans(x, strip_inner_tags=False) for x in r):
            assert scores.slot_value_cer(h, r) == pytest.approx(metric.slot_value_cer(h, r), abs=1e-12)


def write_er_folds(root: Path, accs: dict[str, int], lr=1e-4) -> None:
    """One run dir per fold, 10 utterances each, `acc` of them right."""
    for fold, acc in accs.items():
        truth = ["neu"] * 10
        predict = ["neu"] * acc + ["sad"] * (10 - acc)
        write_label_run(root / f"er_{fold}", "ER", *label_lines(predict, truth), fold=fold, lr=lr)


def test_er_mean_of_five_folds(tmp_path):
    """ER = mean of the fold accuracies 50, 60, 70, 80, 90 = 70.00, shown without a fold count."""
    write_er_folds(tmp_path, {"fold1": 5, "fold2": 6, "fold3": 7, "fold4": 8, "fold5": 9})
    report = tabulate.tabulate([tmp_path])
    assert cell(report, "ehmam (ehmam_base.pt)", "ER") == "70.00"


def test_er_partial_folds_are_counted_and_named(tmp_path):
    """3 finished folds (50, 60, 70) give '60.00 (3/5 folds)'; the missing fold4 and the
    unfinished fold5 are named in the notes and do not enter the mean."""
    write_er_folds(tmp_path, {"fold1": 5, "fold2": 6, "fold3": 7})
    truth, predict = label_lines(["neu"] * 10, ["neu"] * 10)
    write_label_run(tmp_path / "er_fold5", "ER", truth, predict, fold="fold5", evaluate=False)
    report = tabulate.tabulate([tmp_path])
    assert cell(report, "ehmam (ehmam_base.pt)", "ER") == "60.00 (3/5 folds)"
    notes = " ".join(report.rows[0].notes)
    assert "ER fold4: missing" in notes
    assert "ER fold5: unfinished" in notes and "training step 100" in notes


def test_missing_tasks_and_training_only_runs(tmp_path):
    """Tasks without a run dir are 'missing'; a PR run without evaluate output is 'unfinished' naming
    test-hyp.ark; a KS run whose last test line is a training step is 'unfinished'. No numbers."""
    write_invocation(tmp_path / "pr", "PR", "train", TRAIN_TAG)
    (tmp_path / "pr" / "dev-hyp.ark").write_text("a X\n")
    write_label_run(tmp_path / "ks", "KS", *label_lines(["yes"], ["yes"]), evaluate=False)
    report = tabulate.tabulate([tmp_path])
    label = "ehmam (ehmam_base.pt)"
    assert cell(report, label, "PR") == "unfinished"
    assert cell(report, label, "KS") == "unfinished"
    for task in ("IC", "SID", "ER", "ASR", "SF"):
        assert cell(report, label, task) == "missing"
    notes = " ".join(report.rows[0].notes)
    assert "PR: missing test-hyp.ark, test-ref.ark" in notes
    assert "KS: no evaluate run" in notes and "training step 100" in notes


def test_truncated_hyp_ark_is_an_error_naming_file_and_id(tmp_path):
    """A hyp ark that lacks one uttid gives 'error' (never a number) and names the file and the id."""
    ref = {"a": "HH AH", "b": "W ER", "c": "L D"}
    write_ark_run(tmp_path / "pr", "PR", {"a": "HH AH", "b": "W ER"}, ref)
    hyp_path = tmp_path / "pr" / "test-hyp.ark"
    with pytest.raises(ValueError, match=r"missing from .*test-hyp\.ark: c"):
        scores.token_error_rate(hyp_path, tmp_path / "pr" / "test-ref.ark")
    report = tabulate.tabulate([tmp_path])
    assert cell(report, "ehmam (ehmam_base.pt)", "PR") == "error"
    assert str(hyp_path.resolve()) in " ".join(report.rows[0].notes)


def test_bad_label_files_and_log_mismatch_are_errors(tmp_path):
    """Misaligned predict/truth ids, a log.log accuracy that the files do not reproduce and a
    non-UTF-8 truth file are errors naming the files."""
    predict = ["u1 yes", "u2 no"]
    write_label_run(tmp_path / "ks", "KS", predict, ["u2 no", "u1 yes"])
    write_label_run(tmp_path / "sid", "SID", *label_lines(["id10001"], ["id10001"]), log_acc=0.5)
    write_label_run(tmp_path / "ic", "IC", ["s1,a,b,c"], ["s1,a,b,c"])
    (tmp_path / "ic" / "test_truth.csv").write_bytes(b"s1,a,b,\xff\n")
    report = tabulate.tabulate([tmp_path])
    label = "ehmam (ehmam_base.pt)"
    assert [cell(report, label, t) for t in ("KS", "SID", "IC")] == ["error"] * 3
    notes = " ".join(report.rows[0].notes)
    assert "test_predict.txt and" in notes and "not aligned" in notes
    assert "reports test acc 50.0000% but test_predict.txt/test_truth.txt give 100.0000%" in notes
    assert "test_truth.csv: not UTF-8 text" in notes


def test_synthetic_title_keeps_published_numbers_out_of_the_table(tmp_path):
    """--synthetic: the title says so, the main table has only our rows, and the published numbers
    sit in a separately labelled section; --real puts them in the main table."""
    write_ark_run(tmp_path / "pr", "PR", {"a": "X Y"}, {"a": "X Y"})
    synthetic = tabulate.tabulate([tmp_path], title="EH-MAM", data_kind="synthetic")
    title = synthetic.markdown.splitlines()[0]
    assert "EH-MAM" in title and "synthetic" in title and "NOT comparable" in title
    main = parse_markdown_table(synthetic.markdown, "model")
    assert [r[0] for r in main[1:]] == ["ehmam (ehmam_base.pt)"]
    published_at = synthetic.markdown.index("## Published SUPERB numbers (real data, NOT comparable")
    assert synthetic.markdown.index("wav2vec 2.0 Base") > published_at
    assert "published" not in synthetic.csv
    real = tabulate.tabulate([tmp_path], data_kind="real")
    real_rows = [r[0] for r in parse_markdown_table(real.markdown, "model")[1:]]
    assert real_rows == ["ehmam (ehmam_base.pt)"] + [f"{b.name} (published)" for b in DEFAULT_BASELINES]
    assert "## Published SUPERB numbers" not in real.markdown


def test_csv_agrees_with_markdown(tmp_path):
    """Every main-table and lr-table cell of the Markdown equals the CSV cell under that header."""
    write_ark_run(tmp_path / "pr", "PR", {"a": "X Y"}, {"a": "X Z"}, lr=1e-2)
    write_ark_run(tmp_path / "sf", "SF", SF_HYP, SF_REF)
    write_er_folds(tmp_path, {"fold1": 5, "fold2": 6}, lr=1e-3)
    write_label_run(tmp_path / "ks_hubert", "KS", *label_lines(["yes"], ["no"]), upstream="hubert", ckpt=None)
    report = tabulate.tabulate([tmp_path], data_kind="real")
    csv_rows = list(csv.DictReader(io.StringIO(report.csv)))
    main = parse_markdown_table(report.markdown, "model")
    lrs = [r for r in parse_markdown_table(report.markdown.split("## Learning rates")[1], "model")]
    assert len(csv_rows) == len(main) - 1 == 2 + len(DEFAULT_BASELINES)
    for csv_row, md_row in zip(csv_rows, main[1:]):
        assert [csv_row[h] for h in main[0]] == md_row
    for lr_row in lrs[1:]:
        csv_row = next(r for r in csv_rows if r["model"] == lr_row[0])
        assert [csv_row[f"{t} lr"] for t in lrs[0][1:]] == lr_row[1:]
    ours = next(r for r in csv_rows if r["model"] == "ehmam (ehmam_base.pt)")
    assert (ours["PR PER ↓"], ours["PR lr"], ours["ER lr"]) == ("50.00 (50.0–50.0; chance 50.0)", "1e-2", "1e-3")
    # ER: Wilson on the two folds' 11/20 pooled test utterances, all labelled neu (chance 100)
    assert ours["ER acc ↑"] == "55.00 (34.2–74.2; chance 100.0; 2/5 folds)" and ours["data"] == "real"


def test_duplicate_runs_are_ambiguous_and_labels_disambiguate(tmp_path):
    """Two PR runs of one model give 'ambiguous', not a silent pick; two checkpoints with the same
    file name in different folders get different row labels."""
    write_ark_run(tmp_path / "pr_lr2", "PR", {"a": "X"}, {"a": "X"}, lr=1e-2)
    write_ark_run(tmp_path / "pr_lr3", "PR", {"a": "Y"}, {"a": "X"}, lr=1e-3)
    write_ark_run(tmp_path / "other", "PR", {"a": "X"}, {"a": "X"}, ckpt="/run2/ehmam_base.pt")
    report = tabulate.tabulate([tmp_path])
    labels = sorted(r.label for r in report.rows)
    assert labels == ["ehmam (ckpts/ehmam_base.pt)", "ehmam (run2/ehmam_base.pt)"]
    assert cell(report, "ehmam (ckpts/ehmam_base.pt)", "PR") == "ambiguous"
    assert cell(report, "ehmam (run2/ehmam_base.pt)", "PR") == "0.00"


def test_evaluation_in_a_separate_expdir_counts_once(tmp_path):
    """Training in one dir and `-m evaluate` into another (-o args.expdir=...) is one PR run: the
    score comes from the evaluate dir and the training dir is named on it, not 'ambiguous'."""
    write_invocation(tmp_path / "pr_train", "PR", "train", TRAIN_TAG)
    write_invocation(tmp_path / "pr_eval", "PR", "evaluate", EVAL_TAG, trained_in=tmp_path / "pr_train")
    write_lines(tmp_path / "pr_eval" / "test-hyp.ark", ["a X Y"])
    write_lines(tmp_path / "pr_eval" / "test-ref.ark", ["a X Z"])
    report = tabulate.tabulate([tmp_path])
    assert cell(report, "ehmam (ehmam_base.pt)", "PR") == "50.00"
    assert f"PR: trained in {(tmp_path / 'pr_train').resolve()}" in report.rows[0].notes


def test_unidentifiable_dir_is_skipped_with_its_path(tmp_path, caplog):
    """A run dir whose task nothing identifies is logged and listed as skipped; the rest tabulates."""
    write_yaml(
        (tmp_path / "odd").mkdir() or tmp_path / "odd" / f"args_{TRAIN_TAG}.yaml",
        {"mode": "train", "upstream": "ehmam"},
    )
    write_ark_run(tmp_path / "pr", "PR", {"a": "X"}, {"a": "X"})
    report = tabulate.tabulate([tmp_path, tmp_path / "does_not_exist"])
    skipped = {p.name: reason for p, reason in report.skipped}
    assert "nothing identifies the task" in skipped["odd"]
    assert skipped["does_not_exist"] == "does not exist"
    assert "odd" in caplog.text and "## Skipped" in report.markdown
    assert cell(report, "ehmam (ehmam_base.pt)", "PR") == "0.00"


def test_cli_writes_markdown_and_csv(tmp_path, capsys):
    """`main` writes <out>/<name>.md, .csv and _runs.csv and prints the Markdown; no runs is an error."""
    write_ark_run(tmp_path / "runs" / "pr", "PR", {"a": "X Y"}, {"a": "X Z"})
    out = tmp_path / "out"
    assert tabulate.main([str(tmp_path / "runs"), "--out", str(out), "--synthetic"]) == 0
    markdown = (out / "superb.md").read_text()
    assert capsys.readouterr().out == markdown
    assert "50.00" in (out / "superb.csv").read_text()
    runs = list(csv.DictReader(io.StringIO((out / "superb_runs.csv").read_text())))
    assert (runs[0]["task"], runs[0]["score"], runs[0]["evaluated_checkpoint"]) == ("PR", "50.0000", "dev-best.ckpt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        tabulate.main([str(tmp_path / "empty"), "--out", str(out)])


def test_published_er_folds_average_to_the_table_value():
    """The per-fold published ER numbers average to the published ER (to the printed precision)."""
    with_folds = [p for p in PUBLISHED if p.er_folds]
    assert len(with_folds) == 4
    for p in with_folds:
        assert sum(p.er_folds) / 5 == pytest.approx(p.er_acc, abs=0.005)
