"""Labelled manifests (`<subset>.tsv` + `<subset>.ltr`) and padded batches of whole utterances.

A subset's batches are planned from the utterance lengths alone: sorted by length (ties broken at random per epoch
when shuffling), cut greedily so that count x longest <= max_batch_samples, and put in a random order per epoch.
Global batch g is batch g mod N of epoch g div N + 1, so any process can load any global batch, and a resumed run
continues from a position (`batches_consumed`) without replay. Unusable audio follows data.bad_audio: `error`
raises naming the file, `skip` leaves the utterance out of its batch and reports it with the batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pretrain.data import load_usable_audio
from pretrain.manifest import read_manifest
from trainkit.runtime import init_loader_worker
from upstream_ehmam.model import normalize_waveform

from .letters import encode, letters_to_words
from .schedule import micro_batch_slots

log = logging.getLogger("finetune.data")


@dataclass
class LabelledSubset:
    """One subset's audio and letter labels, in manifest order."""

    name: str
    root: Path
    paths: list[str]  # relative to root
    lengths: list[int]  # samples
    labels: list[list[int]]  # symbol indices of each .ltr line
    references: list[str]  # the words of each .ltr line


def read_subset(manifest_dir: Path, subset: str, symbols: list[str]) -> LabelledSubset:
    """<subset>.tsv and <subset>.ltr of `manifest_dir`; a missing file, a line count mismatch or a letter outside
    the dictionary is an error naming the file (and line)."""
    tsv, ltr = Path(manifest_dir) / f"{subset}.tsv", Path(manifest_dir) / f"{subset}.ltr"
    root, entries = read_manifest(tsv)
    if not ltr.is_file():
        raise FileNotFoundError(f"{ltr}: labels of {tsv} not found (python -m finetune.prepare writes both)")
    lines = ltr.read_text(encoding="utf-8").splitlines()
    if len(lines) != len(entries):
        raise ValueError(f"{ltr}: {len(lines)} label lines, but {tsv} lists {len(entries)} audio files")
    labels = [encode(line, symbols, where=f"{ltr}:{i + 1}") for i, line in enumerate(lines)]
    return LabelledSubset(
        subset,
        root,
        [p for p, _ in entries],
        [n for _, n in entries],
        labels,
        [letters_to_words(line) for line in lines],
    )


def plan_batches(
    lengths: list[int], max_batch_samples: int, seed: int, epoch: int, shuffle: bool, keep_oversize: bool
) -> list[list[int]]:
    """Batches of utterance indices with count x longest <= max_batch_samples. A longer utterance is a batch of
    its own when keep_oversize (evaluation), else left out (training, as fairseq skips it)."""
    sizes = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch])
    order = np.lexsort((rng.permutation(len(sizes)), sizes)) if shuffle else np.argsort(sizes, kind="stable")
    batches, current = [], []
    for index in order.tolist():
        if sizes[index] > max_batch_samples:
            if keep_oversize:
                batches.append([index])
            continue
        if current and (len(current) + 1) * sizes[index] > max_batch_samples:  # ascending: index is the longest
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class BatchDataset(Dataset):
    """Item g: the padded global batch g {"wav" (B, S), "wav_lengths" (B,), "targets" (sum of label lengths,),
    "target_lengths" (B,), "index" [manifest indices], "bad_audio" [(path, problem)], "global_index" g}; item None: an
    empty batch (a process with no micro-batch left in an update)."""

    def __init__(
        self, subset: LabelledSubset, max_batch_samples: int, seed: int, shuffle: bool, bad_audio: str, min_samples: int
    ) -> None:
        self.subset, self.max_batch_samples, self.seed, self.shuffle = subset, max_batch_samples, seed, shuffle
        self.bad_audio, self.min_samples = bad_audio, min_samples
        self._plans: dict[int, list[list[int]]] = {}
        self.num_batches = len(self.plan(1))
        if self.num_batches == 0:
            raise ValueError(
                f"{subset.name}: every utterance is longer than data.max_batch_samples ({max_batch_samples}); raise it"
            )
        if not shuffle:
            return
        skipped = sum(n > max_batch_samples for n in subset.lengths)
        if skipped:
            log.warning(
                "%s: %d utterance(s) longer than data.max_batch_samples=%d are left out",
                subset.name,
                skipped,
                max_batch_samples,
            )

    def plan(self, epoch: int) -> list[list[int]]:
        if epoch not in self._plans:
            self._plans = {
                epoch: plan_batches(
                    self.subset.lengths,
                    self.max_batch_samples,
                    self.seed,
                    epoch,
                    self.shuffle,
                    keep_oversize=not self.shuffle,
                )
            }
        return self._plans[epoch]

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, g: int | None) -> dict:
        members = [] if g is None else self.plan(g // self.num_batches + 1)[g % self.num_batches]
        wavs, kept, bad = [], [], []
        for index in members:
            path = self.subset.root / self.subset.paths[index]
            try:
                wav = load_usable_audio(path, self.min_samples)
            except (FileNotFoundError, ValueError) as err:
                if self.bad_audio == "error":
                    raise
                bad.append((str(path), str(err)))
                continue
            wavs.append(normalize_waveform(torch.from_numpy(wav)))
            kept.append(index)
        return {**collate(wavs, kept, self.subset.labels, bad), "global_index": g}


def collate(wavs: list[torch.Tensor], indices: list[int], labels: list[list[int]], bad_audio: list) -> dict:
    lengths = torch.tensor([len(w) for w in wavs], dtype=torch.long)
    wav = torch.zeros(len(wavs), int(lengths.max()) if wavs else 0)  # (B, S), zero-padded
    for row, w in enumerate(wavs):
        wav[row, : len(w)] = w
    return {
        "wav": wav,
        "wav_lengths": lengths,
        "targets": torch.tensor([i for index in indices for i in labels[index]], dtype=torch.long),
        "target_lengths": torch.tensor([len(labels[index]) for index in indices], dtype=torch.long),
        "index": indices,
        "bad_audio": bad_audio,
    }


class UpdateSlotSampler(Sampler):
    """This process's global batch indices from position `start` on, forever: per update, the slots
    micro_batch_slots gives it (None where it has none), then the next update's micro_batches batches."""

    def __init__(self, start: int, micro_batches: int, world_size: int, rank: int) -> None:
        self.start, self.micro_batches = start, micro_batches
        self.slots = micro_batch_slots(micro_batches, world_size, rank)

    def __iter__(self) -> Iterator[int | None]:
        base = self.start
        while True:
            for slot in self.slots:
                yield None if slot is None else base + slot
            base += self.micro_batches


def _as_is(batch: dict) -> dict:
    return batch


def make_loader(dataset: BatchDataset, sampler, num_workers: int) -> DataLoader:
    """Batches as the dataset forms them (batch_size=None: the sampler yields whole-batch indices)."""
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        collate_fn=_as_is,
        num_workers=num_workers,
        worker_init_fn=init_loader_worker if num_workers > 0 else None,
    )
