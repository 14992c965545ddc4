"""Configs as one dataclass per section under a root dataclass, read from YAML (with `base:` files), overridden
with `section.key=value`, checked by the field rules of upstream_ehmam/config.py (errors name the key), and compared
on resume. pretrain.config and finetune.config call these with their own root and moved-key table."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from upstream_ehmam.config import check_fields, check_mapping

Root = TypeVar("Root")


def sections_of(root: type) -> dict[str, type]:
    """Section name -> dataclass of a root config dataclass, in field order."""
    return typing.get_type_hints(root)


def section_from_dict(cls: type, values: dict | None, where: str, moved: dict[str, str] | None = None) -> Any:
    """One section dataclass from its YAML mapping; a key in `moved` ("section.key" -> message) is refused with
    its message."""
    if hasattr(cls, "from_dict"):
        return cls.from_dict({} if values is None else values, where=where)
    values = check_mapping(cls, {} if values is None else values, where, moved or {})
    return cls(**check_fields(cls, values, where, numbers_from_text=True))


def root_from_dict(
    root: type[Root], values: dict, source: str = "<config>", moved: dict[str, str] | None = None
) -> Root:
    """The root config from a mapping of sections; an unknown section names the allowed ones."""
    sections = sections_of(root)
    if not isinstance(values, dict):
        raise ValueError(f"{source}: expected a YAML mapping of sections, got {type(values).__name__}")
    unknown = sorted(set(values) - set(sections))
    if unknown:
        raise ValueError(f"{source}: unknown section '{unknown[0]}'; allowed: {', '.join(sections)}")
    return root(**{name: section_from_dict(cls, values.get(name), name, moved) for name, cls in sections.items()})


def apply_overrides(values: dict, overrides: list[str], sections: typing.Iterable[str]) -> dict:
    """Apply `section.key=value` strings (values parsed as YAML) to a nested dict, in order; `sections` are the
    root's section names."""
    sections = list(sections)
    values = {k: dict(v or {}) for k, v in values.items()}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected section.key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"--set {item!r}: the key must be section.key, e.g. optim.max_steps")
        section, key = parts
        if section not in sections:
            raise ValueError(f"--set {item!r}: unknown section '{section}'; allowed: {', '.join(sections)}")
        values.setdefault(section, {})[key] = yaml.safe_load(raw)
    return values


def read_yaml_mapping(path: str | Path) -> dict:
    """The top-level mapping of a YAML config file (also read by finetune/config.py); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a YAML mapping of sections, got {type(values).__name__}")
    return values


def read_config_file(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A config file's sections with its `base:` file's underneath: `base: tiny.yaml` (relative to the file) reads
    that file first, then each section here replaces the base's keys it names. Bases may have bases; a cycle or a
    missing base is an error naming the files."""
    path = Path(path)
    values = read_yaml_mapping(path)
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str) or not base:
        raise ValueError(f"{path}: base must name a config file, found {base!r}")
    base_path = (path.parent / base).resolve()
    chain = (*_chain, path.resolve())
    if base_path in chain:
        raise ValueError(f"{path}: base {base} makes a cycle: {' -> '.join(p.name for p in (*chain, base_path))}")
    if not base_path.is_file():
        raise FileNotFoundError(f"{path}: base config file not found: {base_path}")
    merged = read_config_file(base_path, chain)
    for section, keys in values.items():
        if isinstance(keys, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **keys}
        else:
            merged[section] = keys
    return merged


def load_root(
    root: type[Root], path: str | Path, overrides: list[str] | None = None, moved: dict[str, str] | None = None
) -> Root:
    """A root config from a YAML file (and its `base:` chain) with `section.key=value` overrides applied."""
    values = apply_overrides(read_config_file(path), overrides or [], sections_of(root))
    return root_from_dict(root, values, str(path), moved)


def save_config(config: Any, path: str | Path) -> None:
    """The resolved config (its to_dict()) as YAML, sections in order."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def config_changes(saved: dict, current: dict) -> list[tuple[str, Any, Any]]:
    """("section.key", saved value, current value) for every key whose value differs between two config dicts (a
    key only one of them has counts, with None for the missing side), in the current config's order."""
    changes = []
    sections = list(current) + [name for name in saved if name not in current]
    for section in sections:
        old, new = saved.get(section) or {}, current.get(section) or {}
        for key in list(new) + [k for k in old if k not in new]:
            if old.get(key) != new.get(key):
                changes.append((f"{section}.{key}", old.get(key), new.get(key)))
    return changes
