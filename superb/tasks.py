"""The rewrite of a user's command line into s3prl's (`plan_argv`): our options (--data-root, --workers, --fold,
--profile, --cache-features), our task configs and the resource files passed with them, the default experiment
name, and the task of an `-e` checkpoint. The `-o` strings, the data-root layout and the profiles it applies are
in superb/config_overrides.py, superb/data_root.py and superb/profiles.py. Pure Python: nothing here imports
s3prl."""

from __future__ import annotations

import argparse
import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from superb.config_overrides import PathValue, format_override_value, join_overrides, parse_overrides, read_yaml
from superb.data_root import DATA_ROOT_ENV, checked_data_paths
from superb.data_root import data_paths as data_paths  # re-exported for importers of superb.tasks
from superb.profiles import PROFILE_DIR, profile_overrides
from superb.profiles import available_profiles as available_profiles  # re-exported for importers of superb.tasks
from superb.registry import (
    BY_CTC_CORPUS,
    BY_DOWNSTREAM,
    CONFIG_DIR,
    ER_FOLD_NAMES,
    EXPERT,
    TASKS,
    Task,
    er_fold_name,
    er_fold_number,
    run_name,
)

DEFAULT_CACHE_GIB = 4.0  # --cache-features without a size

# our vocabulary/dictionary files, passed as absolute paths so the CWD does not matter
RESOURCE_FILES = {
    "pr": {"text.vocab_file": CONFIG_DIR / "vocab" / "phoneme.txt"},
    "sf": {"text.vocab_file": CONFIG_DIR / "vocab" / "character.txt"},
    "asr": {"datarc.dict_path": CONFIG_DIR / "asr" / "char.dict"},
}


@dataclass(frozen=True)
class OurOptions:
    data_root: Path | None = None
    workers: int | None = None
    fold: int | None = None
    profile: str | None = None
    cache_features_gib: float | None = None


def _fold(text: str) -> int:
    fold = er_fold_number(text) or er_fold_number(f"fold{text}")
    if fold is None:
        raise argparse.ArgumentTypeError(f"invalid fold {text!r}: expected 1..5 or fold1..fold5")
    return fold


def _workers(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"invalid worker count {text!r}: expected an integer >= 0")
    return int(text)


def _gibibytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid cache size {text!r}: expected a positive number of GiB")
    return value


def our_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, prog="run_downstream.py")
    group = parser.add_argument_group(
        "options added by this project (everything else goes to s3prl)",
        f"-d also takes the SUPERB task names {' '.join(TASKS)} (our configs in downstream_configs/)",
    )
    group.add_argument(
        "--data-root",
        "--data_root",
        dest="data_root",
        type=Path,
        help=f"folder holding every corpus in its canonical folder (default: ${DATA_ROOT_ENV})",
    )
    group.add_argument(
        "--workers", type=_workers, help="num_workers for every dataloader (default: min(official value, CPU count))"
    )
    group.add_argument("--fold", type=_fold, help="ER test fold 1..5 (same as -o ...datarc.test_fold='foldK')")
    group.add_argument(
        "--profile",
        help="train with the task's settings from downstream_configs/profiles/NAME.yaml "
        "on top of the official config (e.g. cpu: small heads and short "
        "schedules for mini-SUPERB on a CPU); -o entries still win",
    )
    group.add_argument(
        "--cache-features",
        dest="cache_features_gib",
        type=_gibibytes,
        nargs="?",
        const=DEFAULT_CACHE_GIB,
        metavar="GIB",
        help="run the frozen upstream once per utterance and reuse its features in later epochs "
        f"(keeps at most GIB GiB on the CPU, default {DEFAULT_CACHE_GIB:g}); not with -f",
    )
    return parser


def split_our_options(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[OurOptions, list[str]]:
    known, rest = our_parser().parse_known_args(list(argv))
    data_root = known.data_root
    if data_root is None and environ.get(DATA_ROOT_ENV):
        data_root = Path(environ[DATA_ROOT_ENV])
    return OurOptions(data_root, known.workers, known.fold, known.profile, known.cache_features_gib), rest


def s3prl_subset_parser() -> argparse.ArgumentParser:
    """The s3prl flags this rewrite reads or changes; all others pass through untouched."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flags, dest in (
        (("-m", "--mode"), "mode"),
        (("-t", "--evaluate_split"), "evaluate_split"),
        (("-e", "--past_exp"), "past_exp"),
        (("-c", "--config"), "config"),
        (("-d", "--downstream"), "downstream"),
        (("-v", "--downstream_variant"), "downstream_variant"),
        (("-u", "--upstream"), "upstream"),
        (("-n", "--expname"), "expname"),
        (("-p", "--expdir"), "expdir"),
        (("--device",), "device"),
    ):
        parser.add_argument(*flags, dest=dest)
    parser.add_argument("-a", "--auto_resume", dest="auto_resume", action="store_true")
    parser.add_argument("-o", "--override", dest="override", action="append", default=[])
    return parser


@dataclass
class Plan:
    """What run_downstream.py hands to s3prl, and why."""

    argv: list[str]
    task: Task | None
    notes: list[str] = field(default_factory=list)
    cache_features_gib: float | None = None


def plan_argv(
    argv: Sequence[str],
    environ: Mapping[str, str],
    cuda_available: bool,
    cpu_count: int,
    derive: Callable[[Task, dict[str, PathValue]], tuple[dict[str, PathValue], list[str]]] | None = None,
    checkpoint_task: Callable[[str], Task | None] | None = None,
) -> Plan:
    """Rewrite our command line into s3prl's.

    * `-d pr|ks|ic|sid|er|asr|sf` (or s3prl's own names) -> s3prl's downstream, plus
      `-c downstream_configs/<task>.yaml` when no `-c` is given;
    * `--data-root DIR` / $SUPERB_DATA -> `-o` entries for every corpus path of the task;
    * `--workers N` (default min(official, cpu_count)) and `--fold K` -> `-o` entries;
    * the user's own `-o` entries win for the same key and come last;
    * `-n <upstream>_<task>` when neither -n nor -p is given (ER: `<upstream>_er_fold<k>`);
    * `-t test-clean` for ASR evaluation when no -t is given;
    * `--device cpu` when no --device is given and CUDA is unavailable.
    `derive` replaces generated paths (ASR buckets, ER meta); `checkpoint_task` reads the task of an
    `-e` checkpoint. Both default to doing nothing, which keeps this function pure.
    """
    ours, rest = split_our_options(argv, environ)
    s3, passthrough = s3prl_subset_parser().parse_known_args(rest)
    user_overrides = parse_overrides(s3.override)
    notes: list[str] = []

    task = _task_of(s3.downstream, s3.config)
    if s3.past_exp:
        task = (checkpoint_task or (lambda _: None))(s3.past_exp) or task
    if s3.downstream in TASKS:
        s3.downstream = TASKS[s3.downstream].downstream
    if task and not s3.past_exp and s3.config is None:
        if not task.config.is_file():
            raise FileNotFoundError(
                f"{task.config}: our {task.name} config is missing (downstream_configs/ not installed?)"
            )
        s3.config = str(task.config)
    config_is_ours = bool(task and s3.config and Path(s3.config).resolve() == task.config.resolve())

    overrides: dict[str, str] = {}
    if task:
        overrides, notes = _task_overrides(
            task, ours, {k for k, _ in user_overrides}, config_is_ours, cpu_count, derive
        )
    if ours.profile is not None:
        profiled = _checked_profile_overrides(ours.profile, task, s3.past_exp, s3.config, config_is_ours)
        overrides.update(profiled)
        notes.append(f"profile {ours.profile}: {len(profiled)} settings from {PROFILE_DIR / (ours.profile + '.yaml')}")
    fold = _resolve_fold(task, ours.fold, s3.downstream_variant, user_overrides)
    if fold is not None:
        overrides[f"{EXPERT}.datarc.test_fold"] = format_override_value(er_fold_name(fold))

    if not (s3.past_exp or s3.expname or s3.expdir) and s3.upstream:
        s3.expname = default_expname(
            s3.upstream, task.name if task else s3.downstream, fold or _config_fold(task, s3.config)
        )
        _refuse_stale_default_expdir(s3.expname, s3.mode, s3.auto_resume)
        notes.append(f"experiment name: {s3.expname} (result/downstream/{s3.expname}; set -n or -p to choose)")
    if task and s3.mode == "evaluate" and s3.evaluate_split is None and task.test_split != "test":
        s3.evaluate_split = task.test_split  # s3prl evaluates "test" unless told
    if s3.device is None and not cuda_available:
        s3.device = "cpu"

    return Plan(
        _s3prl_argv(s3, passthrough, join_overrides(overrides, user_overrides)), task, notes, ours.cache_features_gib
    )


def _s3prl_argv(s3: argparse.Namespace, passthrough: Sequence[str], overrides: str | None) -> list[str]:
    out = list(passthrough) + (["-a"] if s3.auto_resume else [])
    for flag, value in (
        ("-m", s3.mode),
        ("-t", s3.evaluate_split),
        ("-e", s3.past_exp),
        ("-c", s3.config),
        ("-d", s3.downstream),
        ("-v", s3.downstream_variant),
        ("-u", s3.upstream),
        ("-n", s3.expname),
        ("-p", s3.expdir),
        ("--device", s3.device),
        ("-o", overrides),
    ):
        if value is not None:
            out += [flag, value]
    return out


def _checked_profile_overrides(
    profile: str, task: Task | None, past_exp: str | None, config: str | None, config_is_ours: bool
) -> dict[str, str]:
    if past_exp:
        raise ValueError("--profile sets training settings; with -e the run takes them from the checkpoint")
    if task is None:
        raise ValueError(f"--profile needs a SUPERB task: -d {'|'.join(TASKS)}")
    if not config_is_ours:
        raise ValueError(f"--profile {profile} applies to our {task.config.name}, not to -c {config}")
    return profile_overrides(profile, task)


def _task_overrides(
    task: Task,
    ours: OurOptions,
    user_keys: set[str],
    config_is_ours: bool,
    cpu_count: int,
    derive: Callable[[Task, dict[str, PathValue]], tuple[dict[str, PathValue], list[str]]] | None,
) -> tuple[dict[str, str], list[str]]:
    """Our `-o` entries for a task: resource files (our config only), data paths, num_workers."""
    overrides: dict[str, str] = {}
    notes: list[str] = []
    if config_is_ours:
        for key, path in RESOURCE_FILES.get(task.name, {}).items():
            overrides[f"{EXPERT}.{key}"] = format_override_value(path)
    paths = checked_data_paths(task, ours.data_root, user_keys, needs_all=config_is_ours)
    if paths and derive:
        paths, notes = derive(task, paths)
    for key, path in paths.items():
        overrides[f"{EXPERT}.{key}"] = format_override_value(path)
    workers = ours.workers if ours.workers is not None else min(task.official_workers, max(cpu_count, 1))
    overrides[task.workers_key] = format_override_value(workers)
    return overrides, notes


def _refuse_stale_default_expdir(expname: str, mode: str | None, auto_resume: bool) -> None:
    """A default-named train run must not land on an earlier run's checkpoints: s3prl would prune
    its states and leave its *-best.ckpt behind to be evaluated by mistake."""
    expdir = Path("result", "downstream", expname)  # s3prl's rule, relative to the CWD
    if mode == "train" and not auto_resume and any(expdir.glob("*.ckpt")):
        raise FileExistsError(
            f"{expdir} already holds checkpoints of an earlier run: pass -n NAME or -p DIR for a new "
            "experiment, -a to resume it, or delete the folder"
        )


def _task_of(downstream: str | None, config: str | None) -> Task | None:
    if downstream is None:
        return None
    if downstream in TASKS:
        return TASKS[downstream]
    if downstream in BY_DOWNSTREAM:
        return BY_DOWNSTREAM[downstream]
    if downstream == "ctc":
        if config is None:
            raise ValueError("-d ctc needs a config: use -d pr or -d sf (our configs), or pass -c")
        corpus = (read_yaml(Path(config)).get("downstream_expert") or {}).get("corpus") or {}
        return BY_CTC_CORPUS.get(str(corpus.get("name", "")).lower())
    return None


def _resolve_fold(
    task: Task | None, fold: int | None, variant: str | None, user_overrides: Sequence[tuple[str, str]]
) -> int | None:
    """The ER fold from --fold, the user's -o test_fold, or -v foldK (which s3prl itself ignores
    whenever the config sets test_fold, as ours does); None when none is given."""
    is_er = task is not None and task.name == "er"
    user_fold = next((v for k, v in user_overrides if k == f"{EXPERT}.datarc.test_fold"), None)
    if user_fold is not None and is_er:
        number = er_fold_number(re.fullmatch(r"['\"]?(.*?)['\"]?", user_fold).group(1))
        if number is None:
            raise ValueError(f"-o ...datarc.test_fold={user_fold}: expected 'fold1' ... 'fold5' (quoted)")
        user_fold = number
    if fold is not None:
        if not is_er:
            raise ValueError("--fold applies to ER only (-d er)")
        if user_fold is not None and user_fold != fold:
            raise ValueError(f"--fold {fold} contradicts -o ...datarc.test_fold='fold{user_fold}'")
        return fold
    if user_fold is not None:
        return user_fold
    return er_fold_number(variant) if is_er and variant else None


def _config_fold(task: Task | None, config: str | None) -> int | None:
    if task is None or task.name != "er" or config is None:
        return None
    fold = str(
        (read_yaml(Path(config)).get("downstream_expert") or {}).get("datarc", {}).get("test_fold", ER_FOLD_NAMES[0])
    )
    return er_fold_number(fold)


def default_expname(upstream: str, task_name: str | None, fold: int | None = None) -> str:
    """`<upstream>_<task>`, plus `_fold<k>` for ER, with path separators made safe."""
    name = f"{upstream}_{run_name(str(task_name), fold)}"
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def latest_checkpoint(past_exp: str) -> Path:
    """s3prl's rule for `-e DIR`: the states-<step>.ckpt with the highest step."""
    path = Path(past_exp)
    if not path.is_dir():
        return path
    found = glob.glob(os.path.join(glob.escape(str(path)), "states-*.ckpt"))
    if not found:
        raise FileNotFoundError(f"{path}: no states-*.ckpt to resume from")
    return Path(max(found, key=lambda p: int(Path(p).stem.split("-")[-1])))


def task_of_checkpoint_contents(args: object, config: Mapping) -> Task | None:
    """The task of a checkpoint from its pickled Namespace and config dict."""
    downstream = getattr(args, "downstream", None)
    if downstream == "ctc":
        corpus = (config.get("downstream_expert") or {}).get("corpus") or {}
        return BY_CTC_CORPUS.get(str(corpus.get("name", "")).lower())
    return BY_DOWNSTREAM.get(downstream)
