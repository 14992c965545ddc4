"""ABX items: one per phone occurrence in its triphone context, read from alignments or ZeroSpeech `.item` files.

An item spans from the start of the previous phone to the end of the next one and is labelled (centre phone,
previous phone, next phone, speaker). Silence is never a centre phone. Times are kept in samples at 16 kHz;
which frames of a representation an item keeps depends on that representation's frame geometry
(`FrameGeometry`): frame t is taken to be centred on sample `rate * t + field / 2`, and an item keeps the frames
whose centre lies inside [onset, offset].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from measure.alignments import read_alignments, strip_stress
from upstream_ehmam.frontend import SAMPLE_RATE

# never a centre phone: silences and spoken noise, in the spellings aligners use
NON_SPEECH = frozenset({"SIL", "SP", "SPN", "NSN", "<SIL>", "<UNK>", ""})
ITEM_HEADER = "#file onset offset #phone prev-phone next-phone speaker"
AUDIO_SUFFIXES = (".flac", ".wav")


@dataclass(frozen=True)
class FrameGeometry:
    """Frame t of a representation reads samples [rate * t, rate * t + field): EH-MAM and wav2vec 2.0 Base have
    rate 320 and field 400 (20 ms frames, 25 ms receptive field)."""

    rate: int
    field: int

    def frames_for(self, num_samples: int) -> int:
        return max(0, (num_samples - self.field) // self.rate + 1)


@dataclass(frozen=True)
class AudioFile:
    id: str
    path: Path
    speaker: str
    num_samples: int = 0  # 0: unknown until read


@dataclass
class ItemTable:
    """Items as parallel arrays; `file` indexes `files`, phone/prev/next index `phones`, speaker `speakers`."""

    files: list[AudioFile]
    file: np.ndarray
    onset: np.ndarray  # samples (float: .item files give seconds)
    offset: np.ndarray
    phone: np.ndarray
    prev: np.ndarray
    next: np.ndarray
    speaker: np.ndarray
    phones: list[str]
    speakers: list[str]

    def __len__(self) -> int:
        return len(self.file)

    def subset(self, keep: np.ndarray) -> "ItemTable":
        """The items where `keep` (bool or indices) holds; the files that still have items, renumbered."""
        index = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=np.int64)
        used = np.unique(self.file[index])
        renumber = np.full(len(self.files), -1, dtype=np.int64)
        renumber[used] = np.arange(len(used))
        return ItemTable(
            [self.files[i] for i in used],
            renumber[self.file[index]],
            self.onset[index],
            self.offset[index],
            self.phone[index],
            self.prev[index],
            self.next[index],
            self.speaker[index],
            self.phones,
            self.speakers,
        )

    def frame_spans(self, geometry: FrameGeometry, frames_per_file: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(first frame, number of frames) of every item: the frames whose centre lies in [onset, offset], cut to
        the file's frames. An item shorter than one frame gets 0 frames."""
        half = geometry.field / 2
        first = np.ceil((self.onset - half) / geometry.rate - 1e-9).astype(np.int64)
        last = np.floor((self.offset - half) / geometry.rate + 1e-9).astype(np.int64)
        total = np.asarray(frames_per_file, dtype=np.int64)[self.file]
        first = np.maximum(first, 0)
        last = np.minimum(last, total - 1)
        return first, np.maximum(last - first + 1, 0)


class _Codes:
    """Strings -> dense ints in order of first appearance."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        return self.index.setdefault(name, len(self.index))

    @property
    def names(self) -> list[str]:
        return list(self.index)


def _table(files: list[AudioFile], rows: list[tuple[int, float, float, str, str, str, str]]) -> ItemTable:
    phones, speakers = _Codes(), _Codes()
    coded = [(f, on, off, phones(p), phones(a), phones(b), speakers(s)) for f, on, off, p, a, b, s in rows]
    columns = list(zip(*coded)) if coded else [[]] * 7
    ints = [np.asarray(c, dtype=np.int64) for c in columns]
    return ItemTable(
        files,
        ints[0],
        np.asarray(columns[1], dtype=np.float64),
        np.asarray(columns[2], dtype=np.float64),
        ints[3],
        ints[4],
        ints[5],
        ints[6],
        phones.names,
        speakers.names,
    )


def triphone_rows(
    file_index: int, phones: Sequence[str], starts: Sequence[int], num_samples: int, speaker: str
) -> list[tuple[int, float, float, str, str, str, str]]:
    """One row (file, onset, offset, phone, prev, next, speaker) per phone that has a phone on both sides and is
    not silence; stress digits are stripped."""
    names = [strip_stress(p) for p in phones]
    ends = list(starts[1:]) + [num_samples]
    return [
        (file_index, float(starts[i - 1]), float(ends[i + 1]), names[i], names[i - 1], names[i + 1], speaker)
        for i in range(1, len(names) - 1)
        if names[i].upper() not in NON_SPEECH
    ]


def items_from_alignments(libri: Path, splits: Sequence[str], max_files: int | None = None) -> ItemTable:
    """Triphone items of LibriSpeech/alignments/<split>.jsonl (the first `max_files` utterances in file order)."""
    files, rows = [], []
    for split in splits:
        for utt in read_alignments(Path(libri), split):
            if max_files is not None and len(files) >= max_files:
                break
            rows += triphone_rows(len(files), utt.phones, utt.starts, utt.num_samples, utt.speaker)
            files.append(AudioFile(utt.path.stem, utt.path, utt.speaker, utt.num_samples))
    return _checked(_table(files, rows), f"{libri}/alignments ({', '.join(splits)})")


def index_audio(root: Path) -> dict[str, Path]:
    """{file stem: path} of every .flac/.wav under `root`; a stem found twice is an error naming both."""
    found: dict[str, Path] = {}
    for path in sorted(Path(root).rglob("*")):
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            if path.stem in found:
                raise ValueError(f"{root}: two audio files for {path.stem!r}: {found[path.stem]} and {path}")
            found[path.stem] = path
    return found


def items_from_item_file(item_file: Path, audio_root: Path) -> ItemTable:
    """A ZeroSpeech/Libri-light `.item` file (header `#file onset offset #phone prev-phone next-phone speaker`,
    times in seconds); audio is looked up under `audio_root` by file name (recursively, .flac or .wav)."""
    item_file, audio_root = Path(item_file), Path(audio_root)
    if not item_file.is_file():
        raise FileNotFoundError(f"{item_file}: .item file not found")
    if not audio_root.is_dir():
        raise FileNotFoundError(f"{audio_root}: audio folder not found")
    audio = index_audio(audio_root)
    lines = item_file.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split() != ITEM_HEADER.split():
        raise ValueError(f"{item_file}:1: expected the header {ITEM_HEADER!r}, found {lines[0] if lines else ''!r}")
    files: list[AudioFile] = []
    file_index: dict[str, int] = {}
    rows = []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 7:
            raise ValueError(f"{item_file}:{number}: expected 7 fields ({ITEM_HEADER}), found {len(fields)}")
        name, onset, offset, phone, prev, nxt, speaker = fields
        try:
            onset_s, offset_s = float(onset), float(offset)
        except ValueError:
            raise ValueError(
                f"{item_file}:{number}: onset/offset must be seconds, found {onset!r} {offset!r}"
            ) from None
        if not 0 <= onset_s < offset_s:
            raise ValueError(f"{item_file}:{number}: need 0 <= onset < offset, found {onset_s} {offset_s}")
        if name not in file_index:
            if name not in audio:
                raise FileNotFoundError(
                    f"{item_file}:{number}: no audio file {name}.flac or {name}.wav under {audio_root}"
                )
            file_index[name] = len(files)
            files.append(AudioFile(name, audio[name], speaker))
        if phone.upper() in NON_SPEECH:
            continue
        rows.append((file_index[name], onset_s * SAMPLE_RATE, offset_s * SAMPLE_RATE, phone, prev, nxt, speaker))
    return _checked(_table(files, rows), str(item_file))


def _checked(table: ItemTable, where: str) -> ItemTable:
    if len(table) == 0:
        raise ValueError(f"{where}: no triphone items (every utterance needs at least 3 phones)")
    return table


def sample_items(table: ItemTable, lengths: Sequence[np.ndarray], max_per_group: int, seed: int) -> ItemTable:
    """Keep items that have at least one frame in every representation (`lengths`: frame counts per item, one
    array per frame geometry), then at most `max_per_group` items per (phone, context, speaker), drawn with
    `seed`: the reference tools' cap, which keeps a frequent triphone of one speaker from dominating."""
    usable = np.ones(len(table), dtype=bool)
    for n in lengths:
        usable &= np.asarray(n) > 0
    index = np.flatnonzero(usable)
    if len(index) == 0:
        raise ValueError("no item has a frame in every representation (items shorter than one frame)")
    keys = np.stack([table.phone, table.prev, table.next, table.speaker], axis=1)[index]
    group = np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)
    shuffled = np.random.default_rng(seed).permutation(len(index))
    order = shuffled[np.argsort(group[shuffled], kind="stable")]  # grouped, in random order within a group
    rank = np.arange(len(order)) - np.searchsorted(group[order], group[order])  # position inside its group
    return table.subset(np.sort(index[order[rank < max_per_group]]))


def seconds_of(table: ItemTable) -> float:
    """Total audio of the table's files, in seconds (files with unknown length count 0)."""
    return sum(f.num_samples for f in table.files) / SAMPLE_RATE
