"""Profiles: named sets of overrides per task (downstream_configs/profiles/<name>.yaml), laid over our official
task configs by `run_downstream.py --profile NAME`; each key is checked against the official config so that a
typo is an error, and each value is written as an `-o` entry s3prl reads back."""

from __future__ import annotations

import re
from typing import Mapping

import yaml

from superb.config_overrides import read_yaml
from superb.registry import CONFIG_DIR, TASKS, Task

PROFILE_DIR = CONFIG_DIR / "profiles"
PROFILE_SECTIONS = ("runner", "optimizer", "downstream_expert", "specaug")
# Keys a profile may add although the official config lacks them: the optional parts of s3prl's heads
# (e.g. UtteranceLevel's pre_net) and further keyword arguments of the torch optimizer (weight_decay).
# Everything else must exist in the official config, so a typo is an error.
PROFILE_NEW_KEY_PREFIXES = (
    "downstream_expert.modelrc.UtteranceLevel.",
    "downstream_expert.model.FrameLevel.",
    "optimizer.",
)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _flatten(mapping: Mapping, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _profile_value(value: object, where: str) -> str:
    """A value s3prl's -o reads back (it eval()s the text): Python literals, strings quoted."""
    if isinstance(value, (bool, int, float)) or value is None:
        text = repr(value)
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, list):
        text = "[" + ", ".join(_profile_value(v, where) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{}"
    else:
        raise ValueError(f"{where}: unsupported value {value!r} ({type(value).__name__})")
    if "=" in text or ",," in text:
        raise ValueError(f"{where}: s3prl's -o cannot carry a value containing '=' or ',,': {text}")
    return text


def profile_overrides(name: str, task: Task) -> dict[str, str]:
    """`config.<key>` -> value text for `task` from profile `name`, checked against our official config."""
    path = PROFILE_DIR / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not path.is_file():
        raise ValueError(
            f"--profile {name!r}: no such profile; "
            f"choose from {', '.join(available_profiles()) or 'none'} ({PROFILE_DIR})"
        )
    try:
        profile = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: unreadable YAML ({error})") from None
    if not isinstance(profile, dict):
        raise ValueError(f"{path}: expected a mapping of task names to settings, found {type(profile).__name__}")
    # top-level keys starting with "_" only hold YAML anchors shared by several tasks
    unknown = sorted(k for k in set(profile) - set(TASKS) if not str(k).startswith("_"))
    if unknown:
        raise ValueError(
            f"{path}: unknown task(s) {', '.join(map(str, unknown))}; tasks are {', '.join(TASKS)} "
            f"(keys starting with '_' may hold shared YAML anchors)"
        )
    section = profile.get(task.name)
    if not isinstance(section, dict) or not section:
        raise ValueError(f"{path}: profile {name!r} has no settings for task {task.name!r}")
    official = _flatten(read_yaml(task.config))
    official_prefixes = {k.rsplit(".", i)[0] for k in official for i in range(k.count(".") + 1)}
    overrides = {}
    for key, value in _flatten(section).items():
        where = f"{path}: {task.name}.{key}"
        if key.split(".")[0] not in PROFILE_SECTIONS:
            raise ValueError(f"{where}: a profile sets only {', '.join(PROFILE_SECTIONS)} keys")
        if key not in official and key not in official_prefixes and not key.startswith(PROFILE_NEW_KEY_PREFIXES):
            raise ValueError(f"{where}: {task.config.name} has no key {key!r} (a typo?)")
        overrides[f"config.{key}"] = _profile_value(value, where)
    return overrides
