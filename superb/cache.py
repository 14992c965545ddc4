"""Where generated helper files live: `$XDG_CACHE_HOME/ehmam-superb/<hash of the dataset root>/`
(default `~/.cache/...`), each folder stamped with a fingerprint of what it was made from."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable

FINGERPRINT_FILE = ".fingerprint"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ehmam-superb"


def dataset_cache_dir(dataset_root: Path) -> Path:
    """One folder per dataset, keyed by the dataset's absolute path."""
    key = str(Path(dataset_root).resolve())
    return cache_root() / hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def tree_fingerprint(root: Path, patterns: tuple[str, ...]) -> str:
    """A cheap fingerprint of the files matching `patterns` under `root`: paths, sizes, mtimes."""
    digest = hashlib.sha1()
    for pattern in patterns:
        for path in sorted(Path(root).rglob(pattern)):
            stat = path.stat()
            digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def ensure_generated(folder: Path, fingerprint: str, generate: Callable[[Path], None]) -> bool:
    """Run `generate(folder)` unless `folder` was already made from the same `fingerprint`.

    Returns True when it (re)generated. A stale folder is emptied first, so no old file survives.
    """
    stamp = folder / FINGERPRINT_FILE
    if stamp.is_file() and stamp.read_text() == fingerprint:
        return False
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    generate(folder)
    stamp.write_text(fingerprint)
    return True
