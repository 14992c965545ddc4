"""Generated data files a run needs when the corpus folder lacks them: ASR bucket CSVs and ER fold
meta JSONs, written once into the per-dataset cache and regenerated when the corpus changes."""

from __future__ import annotations

from pathlib import Path

from .cache import dataset_cache_dir, ensure_generated, tree_fingerprint
from .prepare import librispeech_splits, write_asr_bucket_csvs, write_iemocap_meta
from .tasks import PathValue, Task


def ensure_derived_paths(task: Task, paths: dict[str, PathValue]) -> tuple[dict[str, PathValue], list[str]]:
    """Point `datarc.bucket_file` (ASR) / `datarc.meta_data` (ER) at the cache when the default
    folder inside the corpus does not exist, generating the files there first."""
    paths = dict(paths)
    notes: list[str] = []
    if task.name == "asr" and "datarc.bucket_file" in paths and not Path(paths["datarc.bucket_file"]).is_dir():
        libri_root = Path(paths.get("datarc.libri_root", Path(paths["datarc.bucket_file"]).parent))
        paths["datarc.bucket_file"] = asr_bucket_cache(libri_root, notes)
    if task.name == "er" and "datarc.meta_data" in paths and not Path(paths["datarc.meta_data"]).is_dir():
        iemocap_root = Path(paths.get("datarc.root", Path(paths["datarc.meta_data"]).parent))
        paths["datarc.meta_data"] = iemocap_meta_cache(iemocap_root, notes)
    return paths, notes


def asr_bucket_cache(libri_root: Path, notes: list[str]) -> Path:
    folder = dataset_cache_dir(libri_root) / "len_for_bucket"
    fingerprint = tree_fingerprint(libri_root, ("*.flac",))
    made = ensure_generated(
        folder, fingerprint, lambda out: write_asr_bucket_csvs(libri_root, librispeech_splits(libri_root), out)
    )
    state = "generated" if made else "cached"
    notes.append(f"ASR bucket CSVs: {state} in {folder} ({libri_root}/len_for_bucket does not exist)")
    return folder


def iemocap_meta_cache(iemocap_root: Path, notes: list[str]) -> Path:
    folder = dataset_cache_dir(iemocap_root) / "meta_data"
    fingerprint = tree_fingerprint(iemocap_root, ("*.wav", "EmoEvaluation/*.txt"))
    made = ensure_generated(folder, fingerprint, lambda out: write_iemocap_meta(iemocap_root, out))
    state = "generated" if made else "cached"
    notes.append(f"ER meta data: {state} in {folder} ({iemocap_root}/meta_data does not exist)")
    return folder
