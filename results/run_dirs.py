"""Reading s3prl downstream run directories: which task, upstream, learning rate and ER fold a run is, and which
of its runner invocations evaluated the test split. Scores are computed elsewhere (results/run_scores.py)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import yaml

from results import scores
from superb.registry import BY_CTC_CORPUS, BY_DOWNSTREAM, BY_LABEL, ER_FOLD_NAMES


class RunDirError(ValueError):
    """A directory that cannot be read as an s3prl run of one of the seven tasks."""


# A run directory holds args_<time>.yaml / config_<time>.yaml pairs, one per runner invocation.


class _LenientLoader(yaml.SafeLoader):
    """SafeLoader that reads the python/* tags `yaml.dump` may write (tuples...) as plain data."""


def _construct_python_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)


_LenientLoader.add_multi_constructor("tag:yaml.org,2002:python/", _construct_python_tag)


def load_yaml(path: Path) -> dict:
    """A YAML mapping, or RunDirError naming the file."""
    try:
        with Path(path).open(encoding="utf-8") as file:
            data = yaml.load(file, Loader=_LenientLoader)  # noqa: S506 - a safe loader subclass
    except (OSError, yaml.YAMLError) as error:
        raise RunDirError(f"{path}: unreadable YAML ({error})") from error
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: expected a mapping, found {type(data).__name__}")
    return data


@dataclass(frozen=True)
class Invocation:
    """One `run_downstream` invocation: its args and config, keyed by s3prl's time tag."""

    time_tag: str
    args: dict
    config: dict

    @property
    def mode(self) -> str:
        return str(self.args.get("mode", ""))


_TAGGED = re.compile(r"^(args|config)_(.+)\.yaml$")


def read_invocations(run_dir: Path) -> list[Invocation]:
    """All invocations in a run dir, oldest first. A config is paired with the args of the same
    time tag, else with the next newer config (the two tags can straddle a second)."""
    args_files, config_files = {}, {}
    for entry in sorted(run_dir.iterdir()):
        match = _TAGGED.match(entry.name)
        if match and entry.is_file():
            (args_files if match.group(1) == "args" else config_files)[match.group(2)] = entry
    config_tags = sorted(config_files)
    invocations = []
    for tag in sorted(args_files):
        paired = [t for t in config_tags if t >= tag]
        config = load_yaml(config_files[paired[0]]) if paired else {}
        invocations.append(Invocation(tag, load_yaml(args_files[tag]), config))
    return invocations


def nested_get(mapping: dict, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _task_from_files(run_dir: Path) -> str | None:
    """Fallback when the args name no downstream: the score files are task-specific."""
    names = {p.name for p in run_dir.iterdir()}
    if any(re.match(r"(test|dev)_fold\d_predict\.txt$", n) for n in names):
        return "ER"
    if "test_predict.csv" in names or "dev_predict.csv" in names:
        return "IC"
    if any(n.endswith("-noLM-hyp.ark") for n in names):
        return "ASR"
    for split in ("test", "dev"):
        ref = run_dir / f"{split}-ref.ark"
        if ref.is_file():
            return "SF" if re.search(r"\bB-\S+ ", " ".join(scores.read_ark(ref).values())) else "PR"
        truth = run_dir / f"{split}_truth.txt"
        if truth.is_file():
            labels = [line.split(" ", 1)[-1] for line in truth.read_text("utf-8").splitlines() if line]
            if labels and all(re.fullmatch(r"id\d{5}", label) for label in labels):
                return "SID"
            return "KS"
    return None


def identify_task(run_dir: Path, invocations: Sequence[Invocation]) -> str:
    """The SUPERB task of a run dir from its args/config YAMLs, else from its files."""
    for inv in reversed(invocations):
        downstream = inv.args.get("downstream")
        if downstream in BY_DOWNSTREAM:
            return BY_DOWNSTREAM[downstream].label
        if downstream == "ctc":
            corpus = nested_get(inv.config, "downstream_expert", "corpus", "name")
            if corpus in BY_CTC_CORPUS:
                return BY_CTC_CORPUS[corpus].label
            text_mode = nested_get(inv.config, "downstream_expert", "text", "mode")
            if text_mode == "word":
                return "PR"
            if isinstance(text_mode, str) and "slot" in text_mode:
                return "SF"
        elif downstream is not None:
            raise RunDirError(
                f"{run_dir}: downstream {downstream!r} is not one of the SUPERB tasks "
                f"this table covers ({', '.join(sorted(BY_DOWNSTREAM))}, ctc)"
            )
    task = _task_from_files(run_dir)
    if task is None:
        raise RunDirError(
            f"{run_dir}: nothing identifies the task (no `downstream` in args_*.yaml, "
            "no ctc corpus.name in config_*.yaml, no task-specific score files)"
        )
    return task


def format_lr(value: Any) -> str | None:
    """1e-4 style; None when the config has no optimizer.lr. Strings such as '1e-4' are parsed."""
    if value is None:
        return None
    try:
        lr = float(value)
    except (TypeError, ValueError):
        return str(value)
    mantissa, exponent = f"{lr:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


@dataclass(frozen=True)
class RunDir:
    """An identified s3prl run directory (one task, one upstream, one ER fold)."""

    path: Path
    task: str
    upstream: str
    model_key: tuple[str, ...]  # upstream, ckpt, layer, trainable, feature selection
    lr: str | None
    fold: str | None  # ER only
    evaluate: Invocation | None  # the newest evaluate invocation on the task's split
    latest_train: Invocation | None


def read_run_dir(run_dir: Path) -> RunDir:
    """Identify task, upstream, lr and evaluate invocation of a run dir, or raise RunDirError."""
    run_dir = Path(run_dir)
    invocations = read_invocations(run_dir)
    if not invocations:
        raise RunDirError(f"{run_dir}: no args_*.yaml, not an s3prl run directory")
    try:
        task = identify_task(run_dir, invocations)
    except RunDirError:
        raise
    except (OSError, ValueError) as error:  # unreadable score files met by the file fallback
        raise RunDirError(f"{run_dir}: cannot identify the task: {error}") from error
    split = BY_LABEL[task].test_split
    trains = [inv for inv in invocations if inv.mode == "train"]
    evaluates = [
        inv for inv in invocations if inv.mode == "evaluate" and inv.args.get("evaluate_split", "test") == split
    ]
    describing = trains[-1] if trains else invocations[-1]
    args = describing.args
    upstream = str(args.get("upstream") or "?")
    model_key = (
        upstream,
        os.path.normpath(str(args["upstream_ckpt"])) if args.get("upstream_ckpt") else "",
        "" if args.get("upstream_layer_selection") is None else str(args["upstream_layer_selection"]),
        "fine-tuned" if args.get("upstream_trainable") else "",
        ""
        if args.get("upstream_feature_selection") in (None, "hidden_states")
        else str(args["upstream_feature_selection"]),
    )
    fold = None
    if task == "ER":
        newest = evaluates[-1] if evaluates else describing
        fold = (
            nested_get(newest.config, "downstream_expert", "datarc", "test_fold")
            or newest.args.get("downstream_variant")
            or ER_FOLD_NAMES[0]
        )  # s3prl's own default
        if fold not in ER_FOLD_NAMES:
            raise RunDirError(f"{run_dir}: ER test_fold {fold!r} is not one of {', '.join(ER_FOLD_NAMES)}")
    return RunDir(
        path=run_dir,
        task=task,
        upstream=upstream,
        model_key=model_key,
        lr=format_lr(nested_get(describing.config, "optimizer", "lr")),
        fold=fold,
        evaluate=evaluates[-1] if evaluates else None,
        latest_train=trains[-1] if trains else None,
    )


def find_run_dirs(paths: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Run dirs (dirs holding args_*.yaml) in the given dirs or under the given roots, and the
    paths that yielded none with the reason."""
    found: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        if not path.is_dir():
            skipped.append((path, "does not exist" if not path.exists() else "not a directory"))
            continue
        before = len(found)
        for root, dirs, files in os.walk(path):
            dirs.sort()
            if any(_TAGGED.match(f) and f.startswith("args_") for f in files):
                found.append(Path(root))
                dirs.clear()  # an expdir does not nest other expdirs
        if len(found) == before:
            skipped.append((path, "no s3prl run directory (args_*.yaml) under it"))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, skipped


Read = TypeVar("Read")


def read_each_run_dir(
    paths: Sequence[Path], read: Callable[[Path], Read], errors: tuple[type[Exception], ...]
) -> tuple[list[Read], list[tuple[Path, str]]]:
    """`read(run_dir)` for every run dir found under `paths`; a path without run dirs, or a run dir whose read
    raises one of `errors`, is skipped with the reason."""
    run_dirs, skipped = find_run_dirs(paths)
    found = []
    for run_dir in run_dirs:
        try:
            found.append(read(run_dir))
        except errors as error:
            skipped.append((run_dir, str(error)))
    return found, skipped
