"""A downstream config and the `-o` strings that change it: reading a config YAML, writing a value so that
s3prl's `-o` parser reads it back exactly, parsing the user's `-o` entries and joining ours with theirs."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import yaml

PathValue = Path | list[Path]


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file is missing")
    with path.open() as file:
        return yaml.safe_load(file) or {}


def format_override_value(value: PathValue | str | int) -> str:
    """A value s3prl's `-o` parser reads back exactly: quoted strings and lists, bare integers."""
    if isinstance(value, list):
        text = "[" + ", ".join(format_override_value(item) for item in value) + "]"
    elif isinstance(value, int):
        text = str(value)
    else:
        text = repr(str(value))
    if "=" in text or ",," in text:
        raise ValueError(f"{value}: s3prl's -o cannot carry a value containing '=' or ',,'; rename or move it")
    return text


def parse_overrides(texts: Sequence[str]) -> list[tuple[str, str]]:
    """`-o "config.a=1,,args.b='x'"` strings -> [(key, value text)], in order."""
    entries = []
    for text in texts:
        if text.strip().lower() == "none":
            continue
        for option in text.split(",,"):
            if not option.strip():
                continue
            if option.count("=") != 1:
                raise ValueError(f"-o entry {option.strip()!r}: expected exactly one '=' (key=value)")
            key, value = option.split("=")
            entries.append((key.strip(), value.strip()))
    return entries


def join_overrides(ours: Mapping[str, str], users: Sequence[tuple[str, str]]) -> str | None:
    """Ours first, minus the keys the user sets; the user's entries last, so theirs win."""
    user_keys = {key for key, _ in users}
    entries = [(k, v) for k, v in ours.items() if k not in user_keys] + list(users)
    return ",,".join(f"{key}={value}" for key, value in entries) or None
