"""Tests of pretrain.data: bucketed crop batches, resume, multi-rank splits, the dataset and the loader."""

from __future__ import annotations

import logging
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pretrain.data import (
    AudioDataset,
    AudioItem,
    BucketBatchSampler,
    SampleRef,
    build_loader,
    check_audio,
    collate_batch,
)
from pretrain.manifest import write_manifest
from trainkit.faults import BadAudioLog
from trainkit.runtime import init_loader_worker

MIN, MAX, BUDGET = 1_000, 8_000, 40_000


def _lengths(n: int = 300, seed: int = 0) -> list[int]:
    """Lengths 200..12000 with some exact ties, so short items, capped items and ties all occur."""
    lengths = np.random.default_rng(seed).integers(200, 12_000, size=n)
    lengths[::7] = 5_000
    return lengths.tolist()


def _sampler(lengths: list[int], **kwargs) -> BucketBatchSampler:
    args = dict(max_batch_samples=BUDGET, min_samples=MIN, max_samples=MAX, seed=3)
    args.update(kwargs)
    return BucketBatchSampler(lengths, **args)


def test_batches_fit_budget_crop_to_shortest_and_cover_epoch_once() -> None:
    """n * crop <= budget, crop = min effective size <= max_samples, each long-enough item exactly once."""
    lengths = _lengths()
    sampler = _sampler(lengths)
    batches = sampler.batches_for_epoch(0)
    for batch in batches:
        crops = {ref.crop_length for ref in batch}
        assert len(crops) == 1
        crop = crops.pop()
        assert len(batch) * crop <= BUDGET
        assert crop == min(min(lengths[ref.index], MAX) for ref in batch) <= MAX
    seen = [ref.index for batch in batches for ref in batch]
    long_enough = [i for i, n in enumerate(lengths) if n >= MIN]
    assert sorted(seen) == long_enough  # no index twice, none missing, no short one
    assert sampler.num_skipped_short == len(lengths) - len(long_enough) > 0
    assert sampler.num_dropped == 0 and len(sampler) == len(batches) == len(list(sampler))


def test_batches_are_dense() -> None:
    """Consecutive sorted items fill the budget: few batches, little audio cropped away."""
    lengths = _lengths()
    batches = _sampler(lengths).batches_for_epoch(0)
    kept = sum(len(b) * b[0].crop_length for b in batches)
    available = sum(min(lengths[r.index], MAX) for b in batches for r in b)
    assert kept / available > 0.95
    assert kept / (len(batches) * BUDGET) > 0.75


def test_sampler_is_deterministic_per_epoch_and_differs_across_epochs() -> None:
    """Same (seed, epoch) gives identical batches and crop seeds; another epoch or seed gives different ones."""
    lengths = _lengths()
    a, b = _sampler(lengths), _sampler(lengths)
    assert a.batches_for_epoch(2) == b.batches_for_epoch(2)
    assert a.batches_for_epoch(2) != a.batches_for_epoch(3)
    assert a.batches_for_epoch(2) != _sampler(lengths, seed=4).batches_for_epoch(2)
    seeds = {ref.index: ref.crop_seed for batch in a.batches_for_epoch(0) for ref in batch}
    seeds_next = {ref.index: ref.crop_seed for batch in a.batches_for_epoch(1) for ref in batch}
    assert len(set(seeds.values())) == len(seeds)  # distinct per utterance
    assert all(0 <= s < 2**63 for s in seeds.values())
    assert all(seeds[i] != seeds_next[i] for i in seeds)
    a.set_epoch(2)
    assert list(a) == b.batches_for_epoch(2)


def test_batch_order_is_shuffled_but_each_batch_is_length_sorted() -> None:
    """Batches are visited in a seeded random order (not shortest first), and ties of one length are grouped in
    another order each epoch."""
    lengths = _lengths()
    sampler = _sampler(lengths)
    crops = [b[0].crop_length for b in sampler.batches_for_epoch(0)]
    assert crops != sorted(crops) and crops != sorted(crops, reverse=True)
    ties = [[r.index for r in b] for e in (0, 1) for b in sampler.batches_for_epoch(e) if b[0].crop_length == 5_000]
    assert ties[: len(ties) // 2] != ties[len(ties) // 2 :]


def test_resume_skips_the_first_batches_of_the_epoch() -> None:
    """set_epoch(e, start_batch=k) in a fresh sampler yields exactly the tail of epoch e."""
    lengths = _lengths()
    full = _sampler(lengths).batches_for_epoch(5)
    resumed = _sampler(lengths)
    resumed.set_epoch(5, start_batch=7)
    assert len(resumed) == len(full) - 7
    assert list(resumed) == full[7:]
    resumed.set_epoch(6)
    assert list(resumed) == resumed.batches_for_epoch(6)
    with pytest.raises(ValueError, match="start_batch"):
        resumed.set_epoch(5, start_batch=len(full) + 1)


def test_two_ranks_together_see_the_single_process_global_batches() -> None:
    """world_size=2: per step the ranks' items are the world_size=1 batch less its odd item, same crop."""
    lengths = _lengths()
    single = _sampler(lengths).batches_for_epoch(1)
    ranks = [_sampler(lengths, rank=r, world_size=2) for r in (0, 1)]
    per_rank = [s.batches_for_epoch(1) for s in ranks]
    survivors = [b for b in single if len(b) >= 2]  # a lone item cannot be split over two ranks
    assert len(per_rank[0]) == len(per_rank[1]) == len(survivors) == len(ranks[0])
    dropped = 0

    def items(refs: list[SampleRef]) -> set[tuple[int, int, int]]:
        return {(r.index, r.crop_length, r.crop_seed) for r in refs}

    for whole, mine, theirs in zip(survivors, *per_rank):
        assert len(mine) == len(theirs) == len(whole) // 2
        assert items(mine).isdisjoint(items(theirs)) and items(mine) | items(theirs) <= items(whole)
        # positions number the global batch: rank r holds r, r + 2, ...
        assert [r.position for r in mine] == list(range(0, len(whole) - len(whole) % 2, 2))
        assert [r.position for r in theirs] == list(range(1, len(whole) - len(whole) % 2, 2))
        dropped += len(whole) % 2
    dropped += sum(len(b) for b in single if len(b) < 2)
    assert ranks[0].num_dropped == ranks[1].num_dropped == dropped > 0
    globals_ = ranks[0].global_batches_for_epoch(1)
    assert [g[0::2] for g in globals_] == per_rank[0] and [g[1::2] for g in globals_] == per_rank[1]


def test_world_size_remainders_vary_so_every_utterance_is_seen() -> None:
    """The items dropped to make batches even change per epoch: within 8 epochs every utterance appears."""
    lengths = _lengths()
    sampler = _sampler(lengths, rank=0, world_size=2)
    seen = {r.index for e in range(8) for b in sampler.global_batches_for_epoch(e) for r in b}
    assert seen == {i for i, n in enumerate(lengths) if n >= MIN}


def test_sampler_refuses_a_corpus_without_one_long_enough_utterance() -> None:
    """No utterance reaching min_samples is a ValueError that says how many there were."""
    with pytest.raises(ValueError, match="none of the 2 utterances has at least min_samples=8000"):
        _sampler([10, 20], min_samples=MAX)


# ---- dataset and loader ----


def _write_corpus(root: Path, lengths: list[int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i, n in enumerate(lengths):
        # offset and scale differ per file so that normalisation is visible
        wav = (0.2 * rng.uniform(-1, 1) + 0.05 * (i + 1) * rng.standard_normal(n)).clip(-1, 1)
        sf.write(str(root / f"utt{i:02d}.{'flac' if i % 2 else 'wav'}"), wav.astype(np.float32), 16_000)


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list[int]]:
    root = tmp_path / "audio"
    root.mkdir()
    lengths = [1_500, 2_000, 2_600, 3_100, 3_900, 4_400, 5_000, 6_100, 7_000, 8_500, 900, 12_000]
    _write_corpus(root, lengths)
    write_manifest(root, tmp_path / "train.tsv")
    return tmp_path / "train.tsv", lengths


def test_dataset_normalises_the_whole_utterance(corpus: tuple[Path, list[int]]) -> None:
    """With crop = full length the item has mean 0 and std 1 and equals the float64 z-norm of the file."""
    manifest, lengths = corpus
    dataset = AudioDataset(manifest)
    assert dataset.lengths == lengths
    i = 9
    item = dataset[SampleRef(index=i, crop_length=lengths[i], crop_seed=1, position=3)]
    assert (item.index, item.position, item.bad_audio) == (i, 3, ())
    item = item.wav
    assert item.dtype == torch.float32 and item.shape == (lengths[i],)
    assert abs(item.mean().item()) < 1e-4 and abs(item.std(correction=0).item() - 1) < 1e-3
    raw, _ = sf.read(str(dataset.root / dataset.relative_paths[i]), dtype="float64")
    expected = (raw - raw.mean()) / np.sqrt(raw.var() + 1e-5)
    np.testing.assert_allclose(item.numpy(), expected, atol=1e-4)


def test_crop_is_a_seeded_window_of_the_normalised_utterance(corpus: tuple[Path, list[int]]) -> None:
    """The crop offset comes from default_rng(crop_seed); the window is cut after whole-utterance norm."""
    manifest, lengths = corpus
    dataset = AudioDataset(manifest)
    i, crop = 11, 3_000
    full = dataset[SampleRef(i, lengths[i], 0)].wav
    first = dataset[SampleRef(i, crop, 1234)].wav
    offset = int(np.random.default_rng(1234).integers(0, lengths[i] - crop + 1))
    torch.testing.assert_close(first, full[offset : offset + crop], atol=0, rtol=0)
    torch.testing.assert_close(dataset[SampleRef(i, crop, 1234)].wav, first, atol=0, rtol=0)
    assert not torch.equal(dataset[SampleRef(i, crop, 99)].wav, first)
    raw = AudioDataset(manifest, normalize=False)[SampleRef(i, crop, 1234)].wav
    expected_raw, _ = sf.read(str(dataset.root / dataset.relative_paths[i]), dtype="float32")
    torch.testing.assert_close(raw, torch.from_numpy(expected_raw[offset : offset + crop]), atol=0, rtol=0)


BAD_AUDIO = [  # (problem, what the error says)
    ("missing", "does not exist"),
    ("corrupt", "cannot decode audio"),
    ("empty_file", "cannot decode audio"),
    ("no_samples", "contains no audio samples"),
    ("short", "has 500 samples, fewer than the 600 needed"),
    ("stereo", "expected mono audio, found 2 channels"),
    ("rate", "expected 16000 Hz, found 8000 Hz"),
    ("nan", "NaN or infinite"),
    ("inf", "NaN or infinite"),
]


def _bad_audio_file(root: Path, problem: str) -> Path:
    """A file with `problem` that a manifest lists with 600 samples (so the sampler would crop 600 from it)."""
    path = root / f"{problem}.wav"
    if problem == "missing":
        return path
    if problem == "corrupt":
        path.write_bytes(b"RIFF0000WAVEjunk" * 10)
    elif problem == "empty_file":
        path.write_bytes(b"")
    elif problem == "no_samples":
        sf.write(str(path), np.zeros(0, dtype=np.float32), 16_000)
    elif problem == "short":
        sf.write(str(path), np.zeros(500, dtype=np.float32), 16_000)
    elif problem == "stereo":
        sf.write(str(path), np.zeros((600, 2), dtype=np.float32), 16_000)
    elif problem == "rate":
        sf.write(str(path), np.zeros(600, dtype=np.float32), 8_000)
    else:
        wav = np.zeros(600, dtype=np.float32)
        wav[10] = np.nan if problem == "nan" else -np.inf
        sf.write(str(path), wav, 16_000, subtype="FLOAT")
    return path


def _manifest_bad_then_good(tmp_path: Path, problem: str) -> tuple[Path, Path]:
    """Manifest: a short file, the bad file, a good file (index 2) the skip policy falls back to."""
    bad = _bad_audio_file(tmp_path, problem)
    rng = np.random.default_rng(0)
    sf.write(str(tmp_path / "tiny.wav"), rng.standard_normal(100).astype(np.float32), 16_000)
    sf.write(str(tmp_path / "good.wav"), 0.1 * rng.standard_normal(900).astype(np.float32), 16_000)
    manifest = tmp_path / "m.tsv"
    manifest.write_text(f"{tmp_path}\ntiny.wav\t100\n{bad.name}\t600\ngood.wav\t900\n")
    return manifest, bad


@pytest.mark.parametrize(("problem", "match"), BAD_AUDIO)
def test_bad_audio_error_policy_names_file_and_problem(tmp_path: Path, problem: str, match: str) -> None:
    """bad_audio="error": unusable audio raises at once (FileNotFoundError if missing, else ValueError) naming
    the file and the problem."""
    manifest, bad = _manifest_bad_then_good(tmp_path, problem)
    expected = FileNotFoundError if problem == "missing" else ValueError
    with pytest.raises(expected, match=match) as err:
        AudioDataset(manifest, bad_audio="error")[SampleRef(1, 600, 0)]
    assert str(bad) in str(err.value)


@pytest.mark.parametrize(("problem", "match"), BAD_AUDIO)
def test_bad_audio_skip_policy_fills_from_next_usable_file(tmp_path: Path, problem: str, match: str) -> None:
    """bad_audio="skip": the item is the same-seed crop of the next usable, long-enough file (the 100-sample file
    after it in cyclic order is passed over), and it carries the bad file's path and problem."""
    manifest, bad = _manifest_bad_then_good(tmp_path, problem)
    dataset = AudioDataset(manifest, bad_audio="skip")
    item = dataset[SampleRef(1, 600, 77, position=5)]
    expected = dataset[SampleRef(2, 600, 77)].wav
    torch.testing.assert_close(item.wav, expected, atol=0, rtol=0)
    assert (item.index, item.position) == (1, 5)
    assert len(item.bad_audio) == 1 and item.bad_audio[0][0] == str(bad)
    assert re.search(match, item.bad_audio[0][1]) and str(bad) not in item.bad_audio[0][1]


def test_bad_audio_skip_gives_up_on_a_broken_corpus(tmp_path: Path) -> None:
    """When no usable file follows, "skip" raises a ValueError naming the manifest and the first bad file."""
    (tmp_path / "m.tsv").write_text(f"{tmp_path}\ngone1.flac\t600\ngone2.flac\t600\n")
    with pytest.raises(ValueError, match=r"m\.tsv: 2 unusable files in a row from .*gone1\.flac"):
        AudioDataset(tmp_path / "m.tsv", bad_audio="skip")[SampleRef(0, 600, 0)]


def test_bad_audio_reports_reach_the_main_process_from_workers(tmp_path: Path) -> None:
    """With a worker process, batches carry (path, problem) of replaced files; BadAudioLog logs each file once and
    counts every replacement."""
    root = tmp_path / "audio"
    root.mkdir()
    _write_corpus(root, [2_000] * 4)
    write_manifest(root, tmp_path / "train.tsv")
    (root / "utt01.flac").write_bytes(b"broken")  # corrupted after the manifest was written
    loader, sampler = build_loader(tmp_path / "train.tsv", 8_000, 1_000, 2_000, seed=0, num_workers=1)
    reports = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        for batch in loader:
            assert batch["wav"].shape == (4, 2_000) and torch.isfinite(batch["wav"]).all()
            assert sorted(batch["index"].tolist()) == [0, 1, 2, 3] and batch["position"].tolist() == [0, 1, 2, 3]
            reports += batch["bad_audio"]
    assert [path for path, _ in reports] == [str(root / "utt01.flac")] * 2
    bad_log = BadAudioLog()
    with _capture_warnings() as records:
        bad_log.record(reports)
    assert bad_log.num_files == 1 and bad_log.num_replacements == 2
    assert len(records) == 1 and "utt01.flac" in records[0] and "cannot decode" in records[0]
    assert "1 unusable file(s) skipped, replaced 2 time(s)" in bad_log.summary()
    assert BadAudioLog(bad_log.files).files == bad_log.files  # round trip through a checkpoint's plain data


class _capture_warnings:
    """The messages pretrain.data and trainkit (BadAudioLog) log at WARNING while the block runs."""

    def __enter__(self) -> list[str]:
        self.records: list[str] = []
        self.handler = logging.Handler(level=logging.WARNING)
        self.handler.emit = lambda record: self.records.append(record.getMessage())
        for name in ("pretrain.data", "trainkit"):
            logging.getLogger(name).addHandler(self.handler)
        return self.records

    def __exit__(self, *exc) -> None:
        for name in ("pretrain.data", "trainkit"):
            logging.getLogger(name).removeHandler(self.handler)


def test_check_audio_accepts_good_audio() -> None:
    """check_audio passes finite 16 kHz mono audio that is long enough (and only that)."""
    check_audio(Path("ok.wav"), np.zeros(100, dtype=np.float32), 16_000, 100)
    with pytest.raises(ValueError, match="inf.wav: contains NaN or infinite"):
        check_audio(Path("inf.wav"), np.full(100, np.inf, dtype=np.float32), 16_000, 100)


def test_collate_stacks_equal_crops_and_rejects_ragged_ones() -> None:
    """collate_batch gives (B, S) float32, (B,) lengths, indices and positions, and the items' bad-audio reports;
    unequal or empty batches are ValueErrors."""
    items = [AudioItem(torch.randn(50), index=7 + i, position=2 * i) for i in range(3)]
    items[1] = AudioItem(items[1].wav, 8, 2, (("a.wav", "cannot decode audio"),))
    batch = collate_batch(items)
    assert batch["wav"].shape == (3, 50) and batch["wav"].dtype == torch.float32
    assert batch["wav_lengths"].tolist() == [50, 50, 50] and batch["wav_lengths"].dtype == torch.long
    assert batch["index"].tolist() == [7, 8, 9] and batch["position"].tolist() == [0, 2, 4]
    assert batch["bad_audio"] == [("a.wav", "cannot decode audio")]
    torch.testing.assert_close(batch["wav"][1], items[1].wav)
    with pytest.raises(ValueError, match=r"\(49,\), \(50,\)"):
        collate_batch([AudioItem(torch.randn(50), 0, 0), AudioItem(torch.randn(49), 1, 1)])
    with pytest.raises(ValueError, match="empty"):
        collate_batch([])


def _epoch_batches(loader: torch.utils.data.DataLoader, sampler: BucketBatchSampler, epoch: int) -> list[dict]:
    sampler.set_epoch(epoch)
    return list(loader)


def test_loader_batches_identical_with_and_without_workers(corpus: tuple[Path, list[int]]) -> None:
    """num_workers 0 and 2 yield identical batches over two epochs; batches match the sampler's plan."""
    manifest, _ = corpus
    args = dict(max_batch_samples=16_000, min_samples=1_000, max_samples=8_000, seed=7)
    loader0, sampler0 = build_loader(manifest, num_workers=0, **args)
    loader2, sampler2 = build_loader(manifest, num_workers=2, **args)
    assert loader2.persistent_workers and loader2.worker_init_fn is init_loader_worker
    for epoch in (0, 1):
        plan = sampler0.batches_for_epoch(epoch)
        batches0 = _epoch_batches(loader0, sampler0, epoch)
        batches2 = _epoch_batches(loader2, sampler2, epoch)
        assert len(batches0) == len(batches2) == len(plan) > 1
        for b0, b2, refs in zip(batches0, batches2, plan):
            assert b0["wav"].shape == (len(refs), refs[0].crop_length)
            assert b0["wav"].shape[0] * b0["wav"].shape[1] <= args["max_batch_samples"]
            torch.testing.assert_close(b0["wav"], b2["wav"], atol=0, rtol=0)
            assert torch.equal(b0["wav_lengths"], b2["wav_lengths"])
    assert sampler0.num_skipped_short == 1  # the 900-sample file


def test_worker_init_limits_torch_threads_and_leaves_sigint_to_the_main_process() -> None:
    """Loader workers run torch single-threaded, so N workers do not oversubscribe the cores, and ignore SIGINT,
    so that Ctrl-C lets the main process finish its update and checkpoint."""
    before, handler = torch.get_num_threads(), signal.getsignal(signal.SIGINT)
    try:
        init_loader_worker(0)
        assert torch.get_num_threads() == 1
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        torch.set_num_threads(before)
        signal.signal(signal.SIGINT, handler)
