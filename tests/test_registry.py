"""superb.registry is the one list of the SUPERB tasks: the demo, the study, the tabulator, the layer-weight
plot and run_downstream.py read their task names, headers, metrics and ER folds from it."""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from superb import registry

REPO = Path(__file__).resolve().parent.parent


def test_the_seven_tasks_in_superb_order_with_their_headers():
    assert registry.TASK_NAMES == ("pr", "ks", "ic", "sid", "er", "asr", "sf")
    assert registry.TASK_LABELS == tuple(name.upper() for name in registry.TASK_NAMES)
    assert registry.TASK_HEADERS == {
        "PR": "PR PER ↓",
        "KS": "KS acc ↑",
        "IC": "IC acc ↑",
        "SID": "SID acc ↑",
        "ER": "ER acc ↑",
        "ASR": "ASR WER ↓ (no LM)",
        "SF": "SF F1 ↑ / CER ↓",
    }
    assert {key: m.header for key, m in registry.METRICS.items()} == {
        **{label: header for label, header in registry.TASK_HEADERS.items() if label != "SF"},
        "SF": "SF F1 ↑",
        "SF_CER": "SF CER ↓",
    }
    assert registry.LOWER_IS_BETTER == {"PR", "ASR", "SF_CER"}
    assert registry.METRICS["KS"].better(60.0, 50.0) and registry.METRICS["ASR"].better(50.0, 60.0)
    assert sorted(registry.SLOWEST_FIRST) == sorted(registry.TASK_NAMES)


def test_s3prl_names_map_back_to_the_task():
    """Every task is reachable from s3prl's -d name, or from the ctc corpus for the two ctc tasks."""
    found = {t.name for t in registry.BY_DOWNSTREAM.values()} | {t.name for t in registry.BY_CTC_CORPUS.values()}
    assert found == set(registry.TASK_NAMES)
    assert registry.BY_CTC_CORPUS["libriphone"].label == "PR" and registry.BY_DOWNSTREAM["emotion"].label == "ER"
    for task in registry.TASKS.values():
        assert task.config.is_file(), task.name


def test_er_folds():
    assert registry.ER_FOLD_NAMES == ("fold1", "fold2", "fold3", "fold4", "fold5")
    assert [registry.er_fold_number(n) for n in ("fold3", "fold6", "3", "")] == [3, None, None, None]
    assert registry.er_fold_name(5) == "fold5"
    assert registry.run_name("er", 2) == "er_fold2" and registry.run_name("ks") == "ks"


def test_every_reader_uses_the_registry_objects():
    """The same objects, not copies: a task added or renamed in the registry reaches every table."""
    from experiments import demo, downstream, options, study
    from results import layer_weights, study_collect, study_report, tabulate
    from superb import tasks

    assert tasks.TASKS is registry.TASKS
    assert demo.TASK_NAMES is registry.TASK_NAMES and study.TASK_NAMES is registry.TASK_NAMES
    assert demo.ER_FOLDS is registry.ER_FOLDS and study_report.ER_FOLDS is registry.ER_FOLDS
    assert downstream.SLOWEST_FIRST is registry.SLOWEST_FIRST
    assert tabulate.TASK_LABELS is registry.TASK_LABELS and tabulate.TASK_HEADERS is registry.TASK_HEADERS
    assert study_report.TASK_HEADERS is registry.TASK_HEADERS and study_report.METRICS is registry.METRICS
    assert study_collect.TASK_LABELS is registry.TASK_LABELS and layer_weights.TASK_LABELS is registry.TASK_LABELS
    assert tabulate.MAIN_COLUMNS[1:-1] == tuple(registry.TASK_HEADERS.values())
    score_header = study_report.score_table({}, ["ehmam"], {}).splitlines()[0]
    assert score_header == "| condition | " + " | ".join(m.header for m in registry.METRICS.values()) + " |"
    with pytest.raises(argparse.ArgumentTypeError, match="wav"):
        options.parse_tasks("ks,wav")
    assert options.parse_tasks("sf,pr,ks") == ["pr", "ks", "sf"]
    assert set(downstream.CPU_SMOKE_OVERRIDES) == set(registry.TASK_NAMES)


def test_no_other_module_lists_the_tasks():
    """No project module but the registry spells out the task list (upper or lower case) or the fold names."""
    task_list = re.compile(r"""["'](PR|pr)["'],\s*["'](KS|ks)["'],\s*["'](IC|ic)["']""")
    fold_list = re.compile(r"""["']fold1["'],\s*["']fold2["']""")
    offenders = []
    for folder in ("results", "superb", "minisuperb", "finetune", "bench", "pretrain"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "registry.py" and path.parent.name == "superb":
                continue
            text = path.read_text(encoding="utf-8")
            if task_list.search(text) or fold_list.search(text):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_the_registry_imports_no_third_party_package():
    code = "import sys, superb.tasks; print(sorted(m for m in ('torch', 'numpy', 's3prl') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
