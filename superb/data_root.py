"""The data root (`--data-root DIR` or $SUPERB_DATA): the canonical folder of each task's corpus under it, the
files a user must put there, and the check, before s3prl starts, that the paths a run needs exist."""

from __future__ import annotations

from pathlib import Path

from superb.config_overrides import PathValue
from superb.registry import EXPERT, Task

DATA_ROOT_ENV = "SUPERB_DATA"
SYNTHETIC_HINT = "`python -m minisuperb --out {root}` makes a synthetic one"
LEXICON_FILE = "librispeech-lexicon.txt"


def data_paths(task: Task, root: Path) -> dict[str, PathValue]:
    """Override keys (below `config.downstream_expert.`) -> paths, for corpora in canonical folders."""
    root = Path(root).absolute()
    libri = root / "LibriSpeech"
    return {
        "pr": {"corpus.path": libri, "corpus.lexicon": [libri / LEXICON_FILE]},
        "asr": {"datarc.libri_root": libri, "datarc.bucket_file": libri / "len_for_bucket"},
        "ks": {
            "datarc.speech_commands_root": root / "speech_commands_v0.01",
            "datarc.speech_commands_test_root": root / "speech_commands_test_set_v0.01",
        },
        "ic": {"datarc.file_path": root / "fluent_speech_commands_dataset"},
        "sid": {"datarc.file_path": root / "VoxCeleb1", "datarc.meta_data": root / "VoxCeleb1" / "iden_split.txt"},
        "er": {
            "datarc.root": root / "IEMOCAP_full_release",
            "datarc.meta_data": root / "IEMOCAP_full_release" / "meta_data",
        },
        "sf": {"corpus.path": root / "SNIPS", "text.slots_file": root / "SNIPS" / "slots.txt"},
    }[task.name]


# files a user must supply inside a corpus folder, per task: key -> what to do when missing
REQUIRED_FILES = {
    "pr": {
        "corpus.lexicon": "download librispeech-lexicon.txt from OpenSLR 11 (https://www.openslr.org/11/) "
        "into the LibriSpeech folder"
    },
    "sid": {"datarc.meta_data": "put VoxCeleb1's identification split file iden_split.txt into the VoxCeleb1 folder"},
    "sf": {"text.slots_file": "the SNIPS folder needs slots.txt (one slot name per line, 'O' first)"},
}


def checked_data_paths(task: Task, root: Path | None, user_keys: set[str], needs_all: bool) -> dict[str, PathValue]:
    """The task's data-root paths the user did not override, after checking that they exist."""
    if root is None:
        if needs_all:
            missing = [k for k in data_paths(task, Path("/")) if f"{EXPERT}.{k}" not in user_keys]
            if missing:
                raise ValueError(
                    f"{task.name}: no data root: pass --data-root DIR or set ${DATA_ROOT_ENV} (each corpus in its "
                    f"canonical folder under DIR; {SYNTHETIC_HINT.format(root='DIR')}), "
                    f"or give {', '.join(EXPERT + '.' + k for k in missing)} with -o"
                )
        return {}
    root = Path(root).absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data root is missing ({SYNTHETIC_HINT.format(root=root)})")
    paths = {k: v for k, v in data_paths(task, root).items() if f"{EXPERT}.{k}" not in user_keys}
    for corpus_dir in task.corpus_dirs:
        folder = root / corpus_dir
        uses = [k for k, v in paths.items() if any(Path(p).is_relative_to(folder) for p in _as_list(v))]
        if uses and not folder.is_dir():
            raise FileNotFoundError(
                f"{task.name}: corpus folder {corpus_dir}/ is missing under the data root {root} "
                f"(expected {folder}); put the corpus there, or {SYNTHETIC_HINT.format(root=root)}"
            )
    for key, hint in REQUIRED_FILES.get(task.name, {}).items():
        for path in _as_list(paths.get(key, [])):
            if not path.is_file():
                raise FileNotFoundError(f"{task.name}: {path} is missing: {hint}")
    return paths


def _as_list(value: PathValue) -> list[Path]:
    return list(value) if isinstance(value, list) else [value]
