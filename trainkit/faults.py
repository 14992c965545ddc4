"""Fault counting shared by the training loops: unusable audio passed over, and a loader worker's error unwrapped."""

from __future__ import annotations

import logging
from typing import Protocol, Sequence

from .runtime import TrainingAborted

log = logging.getLogger("trainkit")


class BadAudioLog:
    """Unusable audio met under data.bad_audio=skip: each file logged once, every replacement counted. `files`
    (path -> [problem, times passed over]) is plain data, so it goes into checkpoints as is."""

    def __init__(self, files: dict[str, list] | None = None) -> None:
        self.files: dict[str, list] = {path: list(entry) for path, entry in (files or {}).items()}

    def record(self, entries: Sequence[tuple[str, str]]) -> None:
        for path, problem in entries:
            if path not in self.files:
                log.warning("bad audio skipped (data.bad_audio=skip): %s: %s", path, problem)
                self.files[path] = [problem, 0]
            self.files[path][1] += 1

    num_files = property(lambda self: len(self.files))
    num_replacements = property(lambda self: sum(count for _, count in self.files.values()))

    def summary(self, limit: int = 20) -> str:
        """A few lines: how many files and replacements, then up to `limit` files with their problems."""
        if not self.files:
            return "bad audio: none met"
        lines = [
            f"bad audio: {self.num_files} unusable file(s) skipped, replaced {self.num_replacements} time(s) "
            f"by the next usable utterance"
        ]
        lines += [f"  {path}: {problem} (x{count})" for path, (problem, count) in sorted(self.files.items())[:limit]]
        if self.num_files > limit:
            lines.append(f"  ... and {self.num_files - limit} more")
        return "\n".join(lines)


def unwrap_worker_error(err: Exception) -> Exception:
    """A DataLoader worker's ValueError/FileNotFoundError is re-raised in the main process with the worker's whole
    traceback as its message; return the same kind of error with the original message (its last line) instead."""
    text, prefix = str(err).rstrip(), f"{type(err).__name__}: "
    last = text.splitlines()[-1] if text else ""
    from_worker = text.startswith("Caught ") and "Original Traceback" in text and last.startswith(prefix)
    return type(err)(last[len(prefix) :]) if from_worker else err


class SkipCounts(Protocol):
    update: int  # updates done
    skipped_updates: int  # in all
    consecutive_skips: int  # in a row, up to now


def count_skip(state: SkipCounts, why: str, limit: int, kept: str, advice: str) -> None:
    """Record a skipped update in `state`; `limit` (run.max_nonfinite_skips) in a row stop the run with a message
    saying what is `kept` (the last checkpoint) and what to try (`advice`)."""
    state.skipped_updates += 1
    state.consecutive_skips += 1
    log.warning(
        "update %d skipped: %s (%d in a row, %d in all, stop at %d in a row)",
        state.update + 1,
        why,
        state.consecutive_skips,
        state.skipped_updates,
        limit,
    )
    if state.consecutive_skips >= limit:
        raise TrainingAborted(
            f"{state.consecutive_skips} updates in a row were skipped ({why}; "
            f"run.max_nonfinite_skips={limit}), stopping before update {state.update + 1}; {kept}. "
            f"{advice}"
        )
