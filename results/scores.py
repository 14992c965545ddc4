"""Score computation from the files an s3prl 0.4.18 evaluate run writes.

Every function reads files and returns SUPERB units (percent); bad files raise ValueError naming the file.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Callable, Sequence

import editdistance

from results.intervals import set_f1

log = logging.getLogger(__name__)

SlotMetric = Callable[..., float]

_TEST_LINE = re.compile(r"^test at step (\d+): (\S+)\s*$")


# ----------------------------------------------------------------------------------------------
# Hypothesis / reference ark files: "<uttid> <text>" per line (PR, ASR, SF).


def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file without line ends; ValueError naming the file otherwise."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def read_ark(path: Path) -> dict[str, str]:
    """Read an s3prl `*-hyp.ark` / `*-ref.ark` file into {uttid: text}; the text may be empty."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ark file not found")
    entries: dict[str, str] = {}
    for line_number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue  # s3prl never writes blank lines; a trailing one carries no utterance
        uttid, _, text = line.partition(" ")
        if not uttid:
            raise ValueError(f"{path}:{line_number}: line starts with a space, no utterance id")
        if uttid in entries:
            raise ValueError(f"{path}:{line_number}: duplicate utterance id {uttid!r}")
        entries[uttid] = text
    if not entries:
        raise ValueError(f"{path}: no utterances (empty file)")
    return entries


def _examples(ids: set[str], limit: int = 3) -> str:
    shown = sorted(ids)[:limit]
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(shown) + more


def aligned_texts(hyp_path: Path, ref_path: Path) -> tuple[list[str], list[str]]:
    """Hypothesis and reference texts aligned by utterance id; the two id sets must be equal."""
    hyp, ref = read_ark(hyp_path), read_ark(ref_path)
    only_ref, only_hyp = set(ref) - set(hyp), set(hyp) - set(ref)
    if only_ref or only_hyp:
        problems = []
        if only_ref:
            problems.append(f"{len(only_ref)} id(s) missing from {hyp_path}: {_examples(only_ref)}")
        if only_hyp:
            problems.append(f"{len(only_hyp)} id(s) missing from {ref_path}: {_examples(only_hyp)}")
        raise ValueError(f"utterance ids of {hyp_path} and {ref_path} differ: " + "; ".join(problems))
    uttids = sorted(ref)
    return [hyp[u] for u in uttids], [ref[u] for u in uttids]


def token_errors(hyp_path: Path, ref_path: Path) -> tuple[list[int], list[list[str]]]:
    """Per utterance (sorted by id): the token edit distance and the reference tokens."""
    hypotheses, references = aligned_texts(hyp_path, ref_path)
    ref_tokens = [r.split() for r in references]
    if not any(ref_tokens):
        raise ValueError(f"{ref_path}: every reference is empty, the error rate is undefined")
    return [editdistance.eval(h.split(), r) for h, r in zip(hypotheses, ref_tokens)], ref_tokens


def token_error_rate(hyp_path: Path, ref_path: Path) -> float:
    """Corpus token error rate in percent: sum of edit distances / sum of reference lengths x 100.

    Tokens are whitespace-separated, so this is PER on phone arks (PR) and WER on word arks (ASR).
    """
    errors, references = token_errors(hyp_path, ref_path)
    return 100.0 * sum(errors) / sum(len(r) for r in references)


# ----------------------------------------------------------------------------------------------
# Slot filling (SF). Texts carry "B-<slot> <value> E-<slot>" spans.

_SLOT_SPAN = re.compile(r"B-(\S+) (.+?) E-\1")
_OPEN_TAG = re.compile(r"B-\S+ ")
_CLOSE_TAG = re.compile(r" E-\S+")


def _slot_spans(text: str, strip_inner_tags: bool) -> list[tuple[str, str]]:
    """(slot type, value) pairs in order of appearance; runs of spaces count as one space."""
    text = re.sub(r" +", " ", text)
    spans = []
    for slot_type, value in _SLOT_SPAN.findall(text):
        if strip_inner_tags:  # a CTC hypothesis may nest stray tags inside a span
            value = _CLOSE_TAG.sub("", _OPEN_TAG.sub("", value))
        spans.append((slot_type, value))
    return spans


def _values_by_type(spans: list[tuple[str, str]]) -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = {}
    for slot_type, value in spans:
        by_type.setdefault(slot_type, []).append(value)
    return by_type


def slot_types(text: str, hypothesis: bool) -> set[str]:
    """The set of slot types tagged in one text."""
    return set(_values_by_type(_slot_spans(text, strip_inner_tags=hypothesis)))


def utterance_slot_type_f1(hyp: str, ref: str) -> float:
    """F1 between the slot-type sets of one hypothesis and its reference (1.0 when both have none)."""
    return set_f1(slot_types(hyp, True), slot_types(ref, False))


def utterance_slot_value_errors(hyp: str, ref: str) -> tuple[int, int]:
    """(character errors, reference characters) over the slot values of one utterance: each reference
    value against the closest hypothesised value of the same type ('' when the type is missing)."""
    hyp_values = _values_by_type(_slot_spans(hyp, strip_inner_tags=True))
    errors, ref_chars = 0, 0
    for slot_type, ref_value in _slot_spans(ref, strip_inner_tags=False):
        candidates = hyp_values.get(slot_type, [""])
        # closest candidate by per-value CER; the first one wins ties
        errors += min(editdistance.eval(c, ref_value) for c in candidates)
        ref_chars += len(ref_value)
    return errors, ref_chars


def slot_type_f1(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean over utterances of the F1 between the sets of slot types (1.0 when both have none).

    Own implementation of the SUPERB definition; returns a fraction.
    """
    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"need equally many hypotheses and references, got {len(hypotheses)} and {len(references)}")
    return sum(utterance_slot_type_f1(h, r) for h, r in zip(hypotheses, references)) / len(references)


def slot_value_cer(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Character error rate between every reference slot value and the closest hypothesised value
    of the same type ('' when the hypothesis lacks the type), pooled over all values; a fraction.

    Own implementation of the SUPERB definition.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"need equally many hypotheses and references, got {len(hypotheses)} and {len(references)}")
    pairs = [utterance_slot_value_errors(h, r) for h, r in zip(hypotheses, references)]
    ref_chars = sum(chars for _, chars in pairs)
    if ref_chars == 0:
        raise ValueError("the references contain no slot values, slot_value_cer is undefined")
    return sum(errors for errors, _ in pairs) / ref_chars


def s3prl_slot_metrics() -> tuple[SlotMetric, SlotMetric] | None:
    """s3prl's own (slot_type_f1, slot_value_cer), or None when s3prl cannot be imported here."""
    try:
        from s3prl.downstream.ctc import metric  # lazy: importing s3prl pulls in torch and friends
    except Exception as error:  # noqa: BLE001 - any import-time failure means "use our own"
        log.warning(
            "s3prl's slot metrics are not importable (%s: %s); using the own implementation",
            type(error).__name__,
            error,
        )
        return None
    return metric.slot_type_f1, metric.slot_value_cer


def slot_filling_scores(hyp_path: Path, ref_path: Path) -> tuple[float, float, str]:
    """(slot-type F1 %, slot-value CER %, implementation used) for SF test arks."""
    hypotheses, references = aligned_texts(hyp_path, ref_path)
    if not any(_slot_spans(r, strip_inner_tags=False) for r in references):
        raise ValueError(
            f"{ref_path}: no B-<slot> ... E-<slot> span in any reference; is this really an SF (snips) run?"
        )
    metrics = s3prl_slot_metrics()
    if metrics is None:
        f1_fn, cer_fn, implementation = slot_type_f1, slot_value_cer, "own"
    else:
        (f1_fn, cer_fn), implementation = metrics, "s3prl"
    # s3prl's metric functions take keyword arguments hypothesis= / groundtruth=
    if implementation == "s3prl":
        f1 = f1_fn(hypothesis=hypotheses, groundtruth=references)
        cer = cer_fn(hypothesis=hypotheses, groundtruth=references)
    else:
        f1, cer = f1_fn(hypotheses, references), cer_fn(hypotheses, references)
    return 100.0 * f1, 100.0 * cer, implementation


# ----------------------------------------------------------------------------------------------
# Classification tasks: line-aligned predict / truth files (KS, SID, ER: txt; IC: csv).


def _read_labels(path: Path, fields: int) -> list[tuple[str, tuple[str, ...]]]:
    """[(id, label fields)] from `<id> <label>` (fields=1) or `<id>,<a>,<o>,<l>` (fields=3) lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prediction/truth file not found")
    rows = []
    for line_number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        if fields == 1:
            parts = line.split(" ", 1)
            expected = "'<id> <label>'"
        else:
            parts = line.split(",")
            expected = "'<id>,<action>,<object>,<location>'"
        if len(parts) != fields + 1 or not parts[0]:
            raise ValueError(f"{path}:{line_number}: expected {expected}, got {line!r}")
        rows.append((parts[0], tuple(parts[1:])))
    if not rows:
        raise ValueError(f"{path}: no predictions (empty file)")
    return rows


def labels(
    predict_path: Path, truth_path: Path, fields: int = 1
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(predicted, true) labels of line-aligned predict/truth files; IC labels are (action, object,
    location). The files must list the same ids in the same order."""
    predicted, truth = _read_labels(predict_path, fields), _read_labels(truth_path, fields)
    if len(predicted) != len(truth):
        raise ValueError(
            f"{predict_path} has {len(predicted)} lines but {truth_path} has {len(truth)}; they must be line-aligned"
        )
    for line_number, ((p_id, _), (t_id, _)) in enumerate(zip(predicted, truth), 1):
        if p_id != t_id:
            raise ValueError(
                f"{predict_path} and {truth_path} are not aligned: line {line_number} has id {p_id!r} vs {t_id!r}"
            )
    return [label for _, label in predicted], [label for _, label in truth]


def accuracy(predict_path: Path, truth_path: Path, fields: int = 1) -> float:
    """Accuracy in percent from line-aligned predict/truth files; with fields=3 (IC) all three slots
    must match."""
    predicted, truth = labels(predict_path, truth_path, fields)
    return 100.0 * sum(p == t for p, t in zip(predicted, truth)) / len(truth)


def last_test_line(log_path: Path) -> tuple[int, float] | None:
    """(step, accuracy fraction) of the last `test at step <N>: <x>` line of log.log, or None."""
    last = None
    for line_number, line in enumerate(_read_lines(log_path), start=1):
        match = _TEST_LINE.match(line.strip())
        if match is None:
            continue
        try:
            last = int(match.group(1)), float(match.group(2))
        except ValueError as error:
            raise ValueError(f"{log_path}:{line_number}: unreadable test line {line!r}") from error
    return last
