"""Files of a run directory: atomic writes, the code version a checkpoint records, and the temporaries a killed
save leaves."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

LAST = "last.pt"  # the checkpoint a rerun of the same command continues from


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Delete the temporary files a killed save leaves behind (never a complete checkpoint); returns them."""
    stale = [
        p for p in Path(out_dir).glob(".*") if p.is_file() and (p.name.endswith(".tmp") or p.name == f".{LAST}.link")
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a renamed temporary file: a crash never leaves a truncated manifest (a smaller corpus) or log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
