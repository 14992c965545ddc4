"""Runtime fixes for s3prl 0.4.18's downstream runner (docs/design.md "s3prl compatibility layer"), applied after
`superb.compat.apply_compat()`: graft the missing ctc corpus package, stop the ctc loader from
mutating its config, move the SID file-list cache out of site-packages, and turn a train loader
with zero batches (which makes the runner loop forever) into an error; on a CPU, run the ASR/SF heads' recurrent
layer with torch's fused kernel (superb/fused_rnn.py)."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Callable

from .cache import dataset_cache_dir, ensure_generated, file_digest
from .fused_rnn import fuse_cpu_rnns

log = logging.getLogger("superb.runner_fixes")

_MARK = "__superb_fix__"
SUPERB_PACKAGE_DIR = Path(__file__).resolve().parent  # holds corpus/


def apply_runner_fixes() -> None:
    graft_ctc_corpus()
    fix_ctc_num_workers()
    relocate_sid_cache()
    guard_runner()
    fuse_cpu_rnns()


def graft_ctc_corpus() -> None:
    """Make `s3prl.downstream.ctc.corpus` resolve to `superb/corpus` (PyPI s3prl lacks that package)."""
    import s3prl.downstream.ctc as ctc

    if str(SUPERB_PACKAGE_DIR) not in ctc.__path__:
        ctc.__path__.append(str(SUPERB_PACKAGE_DIR))


def fix_ctc_num_workers() -> None:
    """ctc's `load_dataset` pops `num_workers` from the shared corpus dict, so every later loader
    (dev, test, evaluate) silently gets 12 workers. Hand it a copy instead, under both names."""
    import s3prl.downstream.ctc.data as data
    import s3prl.downstream.ctc.expert as expert

    if getattr(data.load_dataset, _MARK, False):
        return
    original = data.load_dataset

    @functools.wraps(original)
    def load_dataset(split: str, tokenizer: Any, corpus: dict) -> Any:
        return original(split, tokenizer, dict(corpus))

    setattr(load_dataset, _MARK, True)
    data.load_dataset = expert.load_dataset = load_dataset


def relocate_sid_cache() -> None:
    """SID caches its file lists in site-packages keyed only by split name, so another dataset's
    stale lists get reused. Point `CACHE_PATH` at `<cache>/<hash of the VoxCeleb1 root>/sid/`,
    wiped whenever the split file's content changes."""
    import s3prl.downstream.voxceleb1.dataset as sid

    dataset_class = sid.SpeakerClassifiDataset
    if getattr(dataset_class.__init__, _MARK, False):
        return
    original_init = dataset_class.__init__

    @functools.wraps(original_init)
    def __init__(self, mode: str, file_path: Any, meta_data: str, max_timestep: int | None = None) -> None:
        folder = sid_cache_dir(Path(file_path), Path(meta_data))
        sid.CACHE_PATH = str(folder) + os.sep  # read by the original __init__ at call time
        original_init(self, mode, file_path, meta_data, max_timestep)

    setattr(__init__, _MARK, True)
    dataset_class.__init__ = __init__


def sid_cache_dir(voxceleb_root: Path, split_file: Path) -> Path:
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file}: VoxCeleb1 identification split file (iden_split.txt) is missing")
    folder = dataset_cache_dir(voxceleb_root) / "sid"
    # the cached lists hold paths as globbed from the root as given, so a relative root adds the CWD
    root_as_given = str(voxceleb_root) if voxceleb_root.is_absolute() else f"{os.getcwd()}:{voxceleb_root}"
    fingerprint = "\0".join([root_as_given, str(split_file.resolve()), file_digest(split_file)])
    if ensure_generated(folder, fingerprint, lambda _: None):
        log.info("SID file-list cache: %s (fresh)", folder)
    return folder


def refuse_empty_train_loader(get_dataloader: Callable, train_split: str) -> Callable:
    """Wrap an expert's `get_dataloader` so a train loader with zero batches raises: the runner's
    `while step < total_steps: for batch in loader` would otherwise spin forever."""

    @functools.wraps(get_dataloader)
    def checked(split: str, *args: Any, **kwargs: Any) -> Any:
        loader = get_dataloader(split, *args, **kwargs)
        try:
            batches = len(loader)
        except TypeError:  # an iterable-style loader has no length to check
            return loader
        if split == train_split and batches == 0:
            dataset, size = loader.dataset, getattr(loader, "batch_size", None)
            raise ValueError(
                f"the '{split}' dataloader has no batches ({len(dataset)} items, batch_size {size}, "
                f"drop_last {getattr(loader, 'drop_last', None)}): the runner would loop forever; "
                "add training data or lower the task's batch_size with -o"
            )
        return loader

    return checked


def guard_runner() -> None:
    """Check every Runner's downstream train loader (see refuse_empty_train_loader), and warn when
    eval_step > total_steps, since then no dev evaluation and no best checkpoint ever happen."""
    from s3prl.downstream.runner import Runner

    if getattr(Runner._get_downstream, _MARK, False):
        return
    original = Runner._get_downstream

    @functools.wraps(original)
    def _get_downstream(self: Any) -> Any:
        entry = original(self)
        runner_config = self.config.get("runner", {})
        train_split = runner_config.get("train_dataloader", "train")
        entry.model.get_dataloader = refuse_empty_train_loader(entry.model.get_dataloader, train_split)
        if self.args.mode == "train" and runner_config.get("eval_step", 0) > runner_config.get("total_steps", 0):
            log.warning(
                "eval_step %s > total_steps %s: no dev evaluation and no best checkpoint will be written",
                runner_config.get("eval_step"),
                runner_config.get("total_steps"),
            )
        return entry

    setattr(_get_downstream, _MARK, True)
    Runner._get_downstream = _get_downstream
