"""Phone alignments of a LibriSpeech-layout corpus (LibriSpeech/alignments/<split>.jsonl) and the utterance record
the probes and ABX read."""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ALIGNMENT_FORMAT = (
    'one JSON object per line: {"id": "<utterance id>", "phones": [...], "starts": '
    '[first sample of each phone], "num_samples": N}'
)


def strip_stress(phone: str) -> str:
    """'AH0' -> 'AH': the 39 CMUdict base phones plus SIL/SPN."""
    return re.sub(r"\d+$", "", phone)


def frame_phone_labels(
    phones: Sequence[str], starts: Sequence[int], num_frames: int, rate: int = 320, receptive_field: int = 400
) -> list[str]:
    """The phone (stress stripped) at the centre of each model frame t, i.e. sample t * rate + field / 2."""
    labels = []
    for t in range(num_frames):
        centre = t * rate + receptive_field // 2
        labels.append(strip_stress(phones[max(0, bisect.bisect_right(starts, centre) - 1)]))
    return labels


@dataclass(frozen=True)
class Utterance:
    path: Path
    speaker: str
    label: str = ""  # keyword for Speech Commands
    phones: tuple[str, ...] = ()
    starts: tuple[int, ...] = ()
    num_samples: int = 0


def read_alignments(libri: Path, split: str) -> list[Utterance]:
    """LibriSpeech/alignments/<split>.jsonl -> utterances with their flac path and speaker."""
    path = libri / "alignments" / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: phone alignment file missing. mini-SUPERB writes it (python -m minisuperb); for real "
            f"LibriSpeech convert forced alignments (e.g. Montreal Forced Aligner) to this format: {ALIGNMENT_FORMAT}"
        )
    utterances = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            utt_id, phones, starts = str(entry["id"]), tuple(entry["phones"]), tuple(int(s) for s in entry["starts"])
            num_samples = int(entry["num_samples"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{path}:{number}: not an alignment record ({error}); expected {ALIGNMENT_FORMAT}"
            ) from error
        if not phones or len(phones) != len(starts) or list(starts) != sorted(starts):
            raise ValueError(
                f"{path}:{number}: {utt_id}: phones and starts must be non-empty, of equal length, starts ascending"
            )
        speaker, chapter = utt_id.split("-")[:2]
        flac = libri / split / speaker / chapter / f"{utt_id}.flac"
        utterances.append(Utterance(flac, speaker, "", phones, starts, num_samples))
    if not utterances:
        raise ValueError(f"{path}: no utterances")
    return utterances
