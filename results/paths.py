"""Paths as the reports print them: relative to the repository root when they lie inside it, so a committed
report names no folder of the machine it was made on and its commands rerun from any checkout."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parent.parent


def repo_relative(text: str | os.PathLike) -> str:
    """`text` (a path, or a command argument such as `data.manifest=/abs/path`) with every absolute path inside
    the repository written relative to its root."""
    text = os.fspath(text)
    if text == str(REPO):
        return "."
    return text.replace(f"{REPO}{os.sep}", "")


def shown(argv: Sequence[str]) -> str:
    """The command line as a user would type it from the repository root."""
    return shlex.join(["python", *(repo_relative(arg) for arg in argv)])
