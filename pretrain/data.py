"""Pretraining data: length-sorted batches of equal-length random crops, no padding, and the unusable-audio policy
(docs/design.md "Optimiser and data")."""

from __future__ import annotations

import functools
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from pretrain.manifest import read_manifest, soundfile_reason
from trainkit.runtime import init_loader_worker
from upstream_ehmam.frontend import SAMPLE_RATE
from upstream_ehmam.model import normalize_waveform

log = logging.getLogger("pretrain.data")

# Under "skip", this many unusable files in a row (in manifest order) mean a broken corpus, not a few bad files.
MAX_CONSECUTIVE_BAD_FILES = 64

# Streams drawn from np.random.default_rng([seed, epoch, stream]) so that each decision has its own generator
_ORDER_STREAM, _DROP_STREAM, _BATCH_ORDER_STREAM, _CROP_SEED_STREAM = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class SampleRef:
    """One item of a batch: utterance, crop length, seed of the crop offset, position in the global batch."""

    index: int
    crop_length: int
    crop_seed: int
    position: int = 0


@dataclass(frozen=True)
class AudioItem:
    """What the dataset returns for one SampleRef."""

    wav: torch.Tensor  # (crop_length,) float32
    index: int  # the dataset index the sampler asked for (the audio may come from a replacement)
    position: int  # position in the global batch
    bad_audio: tuple[tuple[str, str], ...] = ()  # (path, problem) of unusable files passed over for this item


@dataclass(frozen=True)
class _EpochPlan:
    """Global batches of one epoch as arrays; SampleRefs are built only for the batches asked for."""

    batches: list[np.ndarray]  # dataset indices of each global batch, rank r takes [r::world_size]
    crop_lengths: list[int]
    crop_seeds: np.ndarray  # (num_utterances,) uint64 indexed by dataset index
    num_dropped: int


def crop_seeds_for_epoch(seed: int, epoch: int, num_utterances: int) -> np.ndarray:
    """(num_utterances,) uint64 seeds < 2**63 from (seed, epoch, index): a splitmix64 counter stream (vectorised)."""
    key = np.random.SeedSequence([seed, epoch, _CROP_SEED_STREAM]).generate_state(1, np.uint64)[0]
    x = key + np.arange(num_utterances, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    # the splitmix64 finaliser: a bijection that scrambles consecutive counters
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (x ^ (x >> np.uint64(31))) >> np.uint64(1)


class BucketBatchSampler:
    """Global batches of n length-sorted utterances cropped to their shortest, c, with n * c <= max_batch_samples,
    in a seeded order; rank r takes items r::world_size of each (docs/design.md "Optimiser and data", "Distributed
    training"). The world-size remainder of a batch is dropped at random and counted in `num_dropped`."""

    def __init__(
        self,
        lengths: Sequence[int],
        max_batch_samples: int,
        min_samples: int,
        max_samples: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        all_lengths = np.asarray(lengths, dtype=np.int64)
        is_long_enough = all_lengths >= min_samples
        if not is_long_enough.any():
            raise ValueError(f"none of the {len(all_lengths)} utterances has at least min_samples={min_samples}")
        self.max_batch_samples = max_batch_samples
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.num_utterances = len(all_lengths)
        self.num_skipped_short = int((~is_long_enough).sum())
        self._indices = np.flatnonzero(is_long_enough)  # (N,) dataset indices that can be cropped
        self._sizes = np.minimum(all_lengths[self._indices], max_samples)  # (N,) effective sizes
        self.epoch = 0
        self._start_batch = 0
        self._epoch_plan = functools.lru_cache(maxsize=1)(self._make_plan)  # pure in (seed, epoch)

    def _make_plan(self, epoch: int) -> _EpochPlan:
        tie_break = np.random.default_rng([self.seed, epoch, _ORDER_STREAM]).permutation(len(self._sizes))
        order = np.lexsort((tie_break, self._sizes))
        # greedy [start, end) runs of the ascending sizes with len * run[0] <= max_batch_samples, cropped to run[0]
        # (the run's minimum; every prefix of a run also fits, so dropping items keeps it valid)
        sizes, starts = self._sizes[order].tolist(), [0]
        for pos in range(1, len(sizes)):
            if (pos - starts[-1] + 1) * sizes[starts[-1]] > self.max_batch_samples:
                starts.append(pos)
        ends = starts[1:] + [len(sizes)]
        # ordered before any world-size drop, so every world size walks the formed batches in one order
        batch_order = np.random.default_rng([self.seed, epoch, _BATCH_ORDER_STREAM]).permutation(len(starts))

        drop_rng = np.random.default_rng([self.seed, epoch, _DROP_STREAM])
        batches, crops = [], []
        for b in batch_order:
            members = self._indices[order[starts[b] : ends[b]]]
            remainder = len(members) % self.world_size
            if remainder:
                # random items each epoch (not always the longest), so no utterance is left out for good
                members = members[np.sort(drop_rng.permutation(len(members))[remainder:])]
            if len(members):  # only the greedy pass's last batch can hold fewer than world_size items
                batches.append(members)
                crops.append(sizes[starts[b]])  # the formed batch's minimum, so n * crop stays within budget
        num_dropped = len(self._indices) - sum(len(b) for b in batches)
        crop_seeds = crop_seeds_for_epoch(self.seed, epoch, self.num_utterances)
        return _EpochPlan(batches, crops, crop_seeds, num_dropped)

    def _refs(self, plan: _EpochPlan, b: int, first: int, step: int) -> list[SampleRef]:
        """Items first, first + step, ... of global batch b."""
        members, crop = plan.batches[b], plan.crop_lengths[b]
        return [
            SampleRef(int(members[p]), crop, int(plan.crop_seeds[members[p]]), p)
            for p in range(first, len(members), step)
        ]

    def global_batches_for_epoch(self, epoch: int) -> list[list[SampleRef]]:
        """All ranks' items of each step of the epoch; rank r's batch is global_batch[r::world_size]."""
        plan = self._epoch_plan(epoch)
        return [self._refs(plan, b, 0, 1) for b in range(len(plan.batches))]

    def batches_for_epoch(self, epoch: int) -> list[list[SampleRef]]:
        """This rank's batches of the whole epoch, in the order __iter__ yields them (ignores start_batch)."""
        return [batch[self.rank :: self.world_size] for batch in self.global_batches_for_epoch(epoch)]

    # ---- iteration state ----
    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch; start_batch > 0 skips that many batches of it (resume mid-epoch)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        num_batches = len(self._epoch_plan(epoch).batches)
        if not 0 <= start_batch <= num_batches:
            raise ValueError(f"start_batch must be in [0, {num_batches}] for epoch {epoch}, got {start_batch}")
        self.epoch, self._start_batch = epoch, start_batch

    @property
    def num_dropped(self) -> int:
        """Utterances of the current epoch not yielded: the world-size remainders."""
        return self._epoch_plan(self.epoch).num_dropped

    def __len__(self) -> int:
        """Batches the next __iter__ yields: the epoch's batches after start_batch."""
        return len(self._epoch_plan(self.epoch).batches) - self._start_batch

    def __iter__(self) -> Iterator[list[SampleRef]]:
        plan = self._epoch_plan(self.epoch)
        for b in range(self._start_batch, len(plan.batches)):
            yield self._refs(plan, b, self.rank, self.world_size)


class AudioDataset(Dataset):
    """Item `ref`: the normalised utterance's crop at ref.crop_seed (bad audio: docs/design.md "Optimiser and data")."""

    def __init__(self, manifest: Path, normalize: bool = True, bad_audio: str = "skip") -> None:
        self.manifest = Path(manifest)
        self.root, entries = read_manifest(self.manifest)
        self.relative_paths = [rel for rel, _ in entries]
        self.lengths = [n for _, n in entries]
        self.normalize = normalize
        self.bad_audio = bad_audio

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, ref: SampleRef) -> AudioItem:
        passed_over: list[tuple[str, str]] = []
        for index in self._candidates(ref.index, ref.crop_length):
            path = self.root / self.relative_paths[index]
            try:
                wav = load_usable_audio(path, ref.crop_length)
            except (FileNotFoundError, ValueError) as err:
                if self.bad_audio == "error":
                    raise
                passed_over.append((str(path), str(err).removeprefix(f"{path}: ")))
                continue
            x = torch.from_numpy(wav)  # (T,), T >= crop_length
            if self.normalize:
                x = normalize_waveform(x)  # over the whole utterance, before cropping, as the expert does
            if ref.crop_length < len(x):  # a window at an offset drawn from default_rng(crop_seed)
                offset = int(np.random.default_rng(ref.crop_seed).integers(0, len(x) - ref.crop_length + 1))
                # clone: a view would keep (and ship between processes) the whole utterance's storage
                x = x[offset : offset + ref.crop_length].clone()
            return AudioItem(x, ref.index, ref.position, tuple(passed_over))
        first_path, first_problem = passed_over[0]
        raise ValueError(
            f"{self.manifest}: {len(passed_over)} unusable files in a row from {first_path} "
            f"({first_problem}) and no usable one of at least {ref.crop_length} samples after them; is "
            f"the audio root {self.root} right?"
        )

    def _candidates(self, index: int, min_len: int) -> Iterator[int]:
        """index, then the following utterances (cyclic, manifest order) listed with >= min_len samples."""
        n = len(self.lengths)
        following = (i % n for i in range(index + 1, index + n) if self.lengths[i % n] >= min_len)
        return itertools.chain([index], itertools.islice(following, MAX_CONSECUTIVE_BAD_FILES - 1))


def load_usable_audio(path: Path, min_len: int) -> np.ndarray:
    """(T,) float32 samples of a usable file (read_audio + check_audio); errors name the file and the problem."""
    wav, sr = read_audio(path)
    check_audio(path, wav, sr, min_len)
    return wav


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(float32 samples, sample rate); FileNotFoundError or ValueError naming the file when unreadable."""
    try:
        wav, sr = sf.read(str(path), dtype="float32")
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: audio file listed in the manifest does not exist") from None
        raise ValueError(f"{path}: cannot decode audio: {soundfile_reason(err)}") from None
    return wav, sr


def check_audio(path: Path, wav: np.ndarray, sr: int, min_len: int) -> None:
    """Raise ValueError naming path unless wav is 1-D mono, 16 kHz, at least min_len samples, and finite."""
    if wav.ndim != 1:
        raise ValueError(f"{path}: expected mono audio, found {wav.shape[1]} channels (shape {wav.shape})")
    if sr != SAMPLE_RATE:
        raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz, found {sr} Hz")
    if len(wav) == 0:
        raise ValueError(f"{path}: contains no audio samples")
    if len(wav) < min_len:
        raise ValueError(
            f"{path}: has {len(wav)} samples, fewer than the {min_len} needed (is the manifest out of date?)"
        )
    if not np.isfinite(wav.sum(dtype=np.float64)):  # one pass: any NaN/inf makes the sum non-finite
        raise ValueError(f"{path}: contains NaN or infinite samples")


def collate_batch(items: list[AudioItem]) -> dict:
    """Equal-length crops -> {"wav": (B, S), "wav_lengths", "index", "position": (B,), "bad_audio": [(path, why)]}."""
    if not items:
        raise ValueError("collate_batch got an empty batch")
    shapes = sorted({tuple(item.wav.shape) for item in items})
    if len(shapes) != 1 or len(shapes[0]) != 1:
        raise ValueError(
            f"collate_batch expects 1-D crops of one length (the sampler crops to the shortest), got shapes {shapes}"
        )
    wav = torch.stack([item.wav for item in items]).to(torch.float32)  # (B, S)
    return {
        "wav": wav,
        "wav_lengths": torch.full((len(items),), wav.shape[1], dtype=torch.long),
        "index": torch.tensor([item.index for item in items], dtype=torch.long),
        "position": torch.tensor([item.position for item in items], dtype=torch.long),
        # a list travels from loader workers to the main process, which logs and counts it (BadAudioLog)
        "bad_audio": [entry for item in items for entry in item.bad_audio],
    }


def build_loader(
    manifest: Path,
    max_batch_samples: int,
    min_samples: int,
    max_samples: int,
    seed: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    bad_audio: str = "skip",
) -> tuple[DataLoader, BucketBatchSampler]:
    """DataLoader over the manifest with the bucketed sampler; call sampler.set_epoch before each epoch."""
    dataset = AudioDataset(manifest, normalize=True, bad_audio=bad_audio)
    sampler = BucketBatchSampler(
        dataset.lengths, max_batch_samples, min_samples, max_samples, seed, rank=rank, world_size=world_size
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_batch,
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=init_loader_worker if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
    ), sampler
