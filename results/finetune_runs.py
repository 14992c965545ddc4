"""Tables of fine-tuning runs with 95 % intervals: every run folder under a root, its settings, its training cost,
its last validation and its test scores (WER and letter error rate, Viterbi and with the LM when decoded so).

A run folder is what `python -m finetune.run` writes (config.yaml, metrics.jsonl) plus what `python -m
finetune.decode` writes under decode/ (<split>.ref, <split>.viterbi.hyp, <split>.lm.hyp). `cpu_seconds` (user +
system seconds of the fine-tuning process, e.g. from `/usr/bin/time -f '%U %S' -o RUN/cpu_seconds`) is shown when
present: unlike wall time it does not count pauses or other processes. Intervals are the percentile bootstrap over
test utterances (results/intervals.py), resampling (edits, reference length) pairs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from finetune.evaluate import utterance_edits
from results.intervals import bootstrap_ratio
from trainkit.logs import METRICS_FILE

IGNORED_KEYS = ("model.init", "run.out_dir", "data.manifest_dir", "run.seed")
DECODINGS = ("viterbi", "lm")


@dataclass
class Score:
    """A corpus-level error rate (percent) with its 95 % bootstrap interval."""

    value: float
    low: float
    high: float

    def cell(self) -> str:
        return f"{self.value:.1f} [{self.low:.1f}, {self.high:.1f}]"


@dataclass
class FinetuneRun:
    name: str
    encoder: str
    seed: int
    settings: dict
    cpu_minutes: float | None
    last_dev: tuple[float, float, int] | None  # (WER, LER, update) of the last validation
    scores: dict = field(default_factory=dict)  # decoding -> {"wer": Score, "ler": Score}


def error_rates(hypotheses: list[str], references: list[str]) -> dict[str, Score]:
    """WER and letter error rate as finetune.evaluate counts them (utterance_edits), with bootstrap intervals."""
    counts = utterance_edits(hypotheses, references)
    out = {}
    for key, edits, lengths in (("wer", "word_edits", "words"), ("ler", "letter_edits", "letters")):
        low, high = bootstrap_ratio(counts[edits], counts[lengths])
        out[key] = Score(100.0 * sum(counts[edits]) / max(sum(counts[lengths]), 1), low, high)
    return out


def encoder_label(init: str) -> str:
    """A short name of model.init that holds no machine-specific folder: `random init` or the last three parts."""
    random = init.startswith("random:")
    parts = Path(init.removeprefix("random:")).parts
    short = "/".join(parts[-4:-1] if parts[-1].endswith(".pt") and len(parts) >= 4 else parts[-3:])
    return f"random init ({short})" if random else short


def flatten(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings_against(config: dict, reference: dict) -> dict:
    """The keys whose value differs from the reference config (both nested dicts), but the per-run ones."""
    mine, theirs = flatten(config), flatten(reference)
    return {k: v for k, v in mine.items() if k not in IGNORED_KEYS and theirs.get(k) != v}


def _last_dev(run_dir: Path) -> tuple[float, float, int] | None:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    valid = [r for r in records if "valid_subset" in r and math.isfinite(r.get("wer", math.nan))]
    if not valid:
        return None
    last = max(valid, key=lambda r: r["step"])
    return last["wer"], last.get("ler", math.nan), last["step"]


def _cpu_minutes(run_dir: Path) -> float | None:
    path = run_dir / "cpu_seconds"
    if not path.is_file():
        return None
    try:
        return sum(float(v) for v in path.read_text().split()[-2:]) / 60.0
    except ValueError:
        raise ValueError(f"{path}: expected '<user seconds> <system seconds>' on its last line") from None


def read_run(run_dir: Path, split: str, reference: dict) -> FinetuneRun:
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: not found; not a finetune.run folder")
    config = yaml.safe_load(config_path.read_text())
    decode = run_dir / "decode"
    refs_path = decode / f"{split}.ref"
    scores = {}
    if refs_path.is_file():
        refs = refs_path.read_text().split("\n")[:-1]
        for decoding in DECODINGS:
            hyp_path = decode / f"{split}.{decoding}.hyp"
            if hyp_path.is_file():
                scores[decoding] = error_rates(hyp_path.read_text().split("\n")[:-1], refs)
    return FinetuneRun(
        name=run_dir.name,
        encoder=encoder_label(config["model"]["init"]),
        seed=int(config["run"]["seed"]),
        settings=settings_against(config, reference),
        cpu_minutes=_cpu_minutes(run_dir),
        last_dev=_last_dev(run_dir),
        scores=scores,
    )


def read_runs(root: Path, split: str, reference: dict) -> list[FinetuneRun]:
    """Every run folder (one holding config.yaml) directly under root, by name."""
    folders = sorted(p for p in Path(root).iterdir() if (p / "config.yaml").is_file()) if Path(root).is_dir() else []
    if not folders:
        raise FileNotFoundError(f"{root}: no fine-tuning run folders (folders holding config.yaml) in it")
    return [read_run(p, split, reference) for p in folders]


def _settings_cell(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(settings.items())) or "(the preset)"


HEADER = [
    "run",
    "encoder",
    "seed",
    "settings against the preset",
    "CPU min",
    "dev WER / LER (update)",
    "WER Viterbi",
    "LER Viterbi",
    "WER 3-gram LM",
    "LER 3-gram LM",
]


def rows(runs: list[FinetuneRun]) -> list[list[str]]:
    out = []
    for run in runs:
        cells = [
            run.name,
            run.encoder,
            str(run.seed),
            _settings_cell(run.settings),
            "–" if run.cpu_minutes is None else f"{run.cpu_minutes:.1f}",
            "–" if run.last_dev is None else f"{run.last_dev[0]:.1f} / {run.last_dev[1]:.1f} ({run.last_dev[2]})",
        ]
        for decoding in DECODINGS:
            score = run.scores.get(decoding)
            cells += [score["wer"].cell(), score["ler"].cell()] if score else ["–", "–"]
        out.append(cells)
    return out


def markdown(runs: list[FinetuneRun], title: str, split: str) -> str:
    lines = [
        f"# {title}",
        "",
        f"Test split `{split}`; error rates in % with 95 % bootstrap intervals over its utterances; LER = letter "
        "error rate (letter and word-boundary edits over the reference's letters). Written by "
        "`python -m results.lowresource`.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * 3 + "---|" + "---:|" * (len(HEADER) - 4),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows(runs)]
    return "\n".join(lines) + "\n"
