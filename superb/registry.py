"""The seven SUPERB tasks, once: s3prl names, the files an evaluate run leaves, metrics with their direction,
column headers and chance level, and IEMOCAP's folds. Everything that lists the tasks reads them from here.
Pure Python, no third-party imports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "downstream_configs"  # our config per task: <name>.yaml
EXPERT = "config.downstream_expert"  # where s3prl's -o keys of a task's settings start

# how the chance level of a metric is measured on the test set (results/intervals.py computes each)
MAJORITY_LABEL = "majority label"  # the most frequent label's share
CONSTANT_HYPOTHESIS = "constant hypothesis"  # the best single token repeated n times (PER, WER)
CONSTANT_SLOT_TYPES = "constant slot types"  # the best constant set of slot types (SF F1)


@dataclass(frozen=True)
class Metric:
    """One number a task reports, in SUPERB units (%)."""

    key: str  # the score's name in reports: the task label for the official metric, e.g. "SF_CER" otherwise
    task_label: str
    name: str  # "PER", "acc", "WER", "F1", "CER"
    higher_is_better: bool
    chance: str | None  # one of the chance kinds above; None: the metric has no chance level
    qualifier: str = ""  # printed after the arrow, e.g. "(no LM)"

    @property
    def short_header(self) -> str:
        """ "WER ↓ (no LM)": name, direction and qualifier."""
        arrow = "↑" if self.higher_is_better else "↓"
        return f"{self.name} {arrow}" + (f" {self.qualifier}" if self.qualifier else "")

    @property
    def header(self) -> str:
        """ "ASR WER ↓ (no LM)": the column of this metric alone."""
        return f"{self.task_label} {self.short_header}"

    def better(self, a: float, b: float) -> bool:
        """Is score `a` better than score `b`?"""
        return a > b if self.higher_is_better else a < b


@dataclass(frozen=True)
class Task:
    """One SUPERB task: its s3prl downstream and config family, corpus folders, evaluate outputs and metrics."""

    name: str  # SUPERB name as typed on command lines, e.g. "pr"
    label: str  # as printed in tables, e.g. "PR"
    downstream: str  # s3prl `-d`, e.g. "ctc"
    section: str  # the config section holding the data settings: "corpus" (ctc family) or "datarc"
    corpus_dirs: tuple[str, ...]  # canonical folder names under the data root
    official_workers: int  # num_workers in the official config
    metrics: tuple[Metric, ...]  # the official metric first
    test_split: str  # the split evaluated for the official number (s3prl's `-t`)
    score_files: tuple[str, ...]  # what the evaluate run writes; `{fold}` is filled in for ER
    logs_test_accuracy: bool  # KS/IC/SID/ER append `test at step <N>: <acc>` to log.log
    cost_rank: int  # 0 = the slowest downstream run on a CPU; pools start the slowest first
    ctc_corpus: str | None = None  # corpus.name for the ctc tasks
    label_fields: int = 1  # fields of a predict/truth line's label (IC: action, object, location)
    best_checkpoint: str = "dev-best.ckpt"  # the checkpoint s3prl keeps for the best dev score

    @property
    def config(self) -> Path:
        return CONFIG_DIR / f"{self.name}.yaml"

    @property
    def workers_key(self) -> str:
        return f"{EXPERT}.{self.section}.num_workers"

    @property
    def header(self) -> str:
        """The task's table column: "PR PER ↓", "SF F1 ↑ / CER ↓"."""
        return f"{self.label} " + " / ".join(m.short_header for m in self.metrics)

    @property
    def metric(self) -> Metric:
        """The official metric (SF: slot-type F1)."""
        return self.metrics[0]


def _metric(
    task_label: str, name: str, higher_is_better: bool, chance: str | None, key: str = "", qualifier: str = ""
) -> Metric:
    return Metric(key or task_label, task_label, name, higher_is_better, chance, qualifier)


def _accuracy(label: str) -> tuple[Metric, ...]:
    return (_metric(label, "acc", True, MAJORITY_LABEL),)


_ARK_FILES = ("test-hyp.ark", "test-ref.ark")

# SUPERB's order: the order of every table and listing
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "pr",
            "PR",
            "ctc",
            "corpus",
            ("LibriSpeech",),
            24,
            (_metric("PR", "PER", False, CONSTANT_HYPOTHESIS),),
            "test",
            _ARK_FILES,
            False,
            cost_rank=2,
            ctc_corpus="libriphone",
        ),
        Task(
            "ks",
            "KS",
            "speech_commands",
            "datarc",
            ("speech_commands_v0.01", "speech_commands_test_set_v0.01"),
            8,
            _accuracy("KS"),
            "test",
            ("test_predict.txt", "test_truth.txt", "log.log"),
            True,
            cost_rank=5,
        ),
        Task(
            "ic",
            "IC",
            "fluent_commands",
            "datarc",
            ("fluent_speech_commands_dataset",),
            12,
            _accuracy("IC"),
            "test",
            ("test_predict.csv", "test_truth.csv", "log.log"),
            True,
            cost_rank=4,
            label_fields=3,
        ),
        Task(
            "sid",
            "SID",
            "voxceleb1",
            "datarc",
            ("VoxCeleb1",),
            12,
            _accuracy("SID"),
            "test",
            ("test_predict.txt", "test_truth.txt", "log.log"),
            True,
            cost_rank=3,
        ),
        Task(
            "er",
            "ER",
            "emotion",
            "datarc",
            ("IEMOCAP_full_release",),
            6,
            _accuracy("ER"),
            "test",
            ("test_{fold}_predict.txt", "test_{fold}_truth.txt", "log.log"),
            True,
            cost_rank=6,
        ),
        Task(
            "asr",
            "ASR",
            "asr",
            "datarc",
            ("LibriSpeech",),
            12,
            (_metric("ASR", "WER", False, CONSTANT_HYPOTHESIS, qualifier="(no LM)"),),
            "test-clean",
            ("test-clean-noLM-hyp.ark", "test-clean-noLM-ref.ark"),
            False,
            cost_rank=0,
            best_checkpoint="dev-clean-best.ckpt",
        ),
        Task(
            "sf",
            "SF",
            "ctc",
            "corpus",
            ("SNIPS",),
            12,
            (_metric("SF", "F1", True, CONSTANT_SLOT_TYPES), _metric("SF", "CER", False, None, key="SF_CER")),
            "test",
            _ARK_FILES,
            False,
            cost_rank=1,
            ctc_corpus="snips",
        ),
    )
}

TASK_NAMES = tuple(TASKS)  # "pr", "ks", ...
TASK_LABELS = tuple(task.label for task in TASKS.values())  # "PR", "KS", ...
BY_LABEL = {task.label: task for task in TASKS.values()}
BY_DOWNSTREAM = {task.downstream: task for task in TASKS.values() if task.downstream != "ctc"}
BY_CTC_CORPUS = {task.ctc_corpus: task for task in TASKS.values() if task.ctc_corpus}
TASK_HEADERS = {task.label: task.header for task in TASKS.values()}  # one column per task, as tables print it
METRICS = {metric.key: metric for task in TASKS.values() for metric in task.metrics}  # "PR", ..., "SF", "SF_CER"
LOWER_IS_BETTER = frozenset(key for key, metric in METRICS.items() if not metric.higher_is_better)
SLOWEST_FIRST = tuple(sorted(TASKS, key=lambda name: TASKS[name].cost_rank))

# IEMOCAP: five sessions, each the test set of one fold; SUPERB's ER score is the mean over all five
ER_FOLDS = (1, 2, 3, 4, 5)
ER_FOLD_NAMES = tuple(f"fold{k}" for k in ER_FOLDS)  # s3prl's datarc.test_fold values


def er_fold_name(fold: int) -> str:
    """s3prl's name of ER fold K: "foldK"."""
    return ER_FOLD_NAMES[ER_FOLDS.index(fold)]


def er_fold_number(text: str) -> int | None:
    """K for s3prl's fold name "foldK" (K one of ER_FOLDS), else None."""
    return ER_FOLDS[ER_FOLD_NAMES.index(text)] if text in ER_FOLD_NAMES else None


def run_name(task: str, fold: int | None = None) -> str:
    """A downstream run's name: the task, and `_foldK` for an ER fold ("ks", "er_fold3")."""
    return f"{task}_fold{fold}" if fold else task
