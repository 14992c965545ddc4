"""LibriSpeech tree for PR and ASR: flac + trans.txt per chapter, the
lexicon, phoneme vocabulary, character dictionary, bucket CSVs and frame-level phone alignments."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from superb.prepare import write_asr_bucket_csvs  # the project's one bucket-CSV writer
from upstream_ehmam.frontend import SAMPLE_RATE

from .common import Context, Plan, lead_silence, write_lines
from .dsp import Channel
from .jobs import Job, JobResult
from .scales import SCALES, Scale
from .sentences import words_of
from .text import PHONE_VOCAB
from .voices import US_ACCENTS, alternating_genders, render, sample_speakers

SPLITS = ("train-clean-100", "dev-clean", "test-clean")
CHAR_SYMBOLS = ("|",) + tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + ("'",)
LEXICON_FILE = "librispeech-lexicon.txt"


def plan(ctx: Context) -> Plan:
    root = ctx.out_dir / "LibriSpeech"
    borrowed = Draw()
    if ctx.scale.libri_dev_from:  # another scale's dev-clean, utterance for utterance (its speakers excluded here)
        borrowed = _draw(ctx, SCALES[ctx.scale.libri_dev_from], root).only(SPLITS[1])
    draw = _draw(
        ctx,
        ctx.scale,
        root,
        skip=SPLITS[1] if ctx.scale.libri_dev_from else None,
        taken=borrowed,
        first_job=borrowed.num_drawn,
    )
    jobs, entries = borrowed.jobs + draw.jobs, borrowed.entries + draw.entries
    genders = borrowed.genders | draw.genders

    def finish(results: list[JobResult]) -> None:
        _write_transcripts(root, entries)
        _write_alignments(root, entries, results)
        write_lines(root / LEXICON_FILE, [f"{w.upper()} {' '.join(ctx.prons[w])}" for w in sorted(ctx.prons)])
        write_lines(root / "phonemes.txt", list(PHONE_VOCAB))
        _write_char_dict(root / "char.dict", [e[3] for e in entries if e[0] == SPLITS[0]])
        write_asr_bucket_csvs(root, SPLITS, root / "len_for_bucket")
        minutes = Counter()
        for (split, spk, _, _), res in zip(entries, results):
            minutes[spk] += res.num_samples / SAMPLE_RATE / 60
        write_lines(
            root / "SPEAKERS.TXT",
            [
                "; mini-SUPERB synthetic speakers (espeak-ng pseudo-speakers)",
                ";ID  |SEX| SUBSET           |MINUTES| NAME",
            ]
            + [
                f"{spk:<5}| {g} | {split:<16} | {minutes[spk]:5.2f} | Synthetic {spk}"
                for spk, (g, split) in sorted(genders.items(), key=lambda x: int(x[0]))
            ],
        )

    return Plan(("LibriSpeech",), jobs, finish)


@dataclass
class Draw:
    """The utterances one scale's sizes draw: audio jobs, (split, speaker, utterance id, words) entries, each
    speaker's (sex, split), and how many jobs the draw numbered (their seeds)."""

    jobs: list[Job] = field(default_factory=list)
    entries: list[tuple[str, str, str, list[str]]] = field(default_factory=list)
    genders: dict[str, tuple[str, str]] = field(default_factory=dict)
    num_drawn: int = 0

    @property
    def chapters(self) -> set[int]:
        return {int(utt_id.split("-")[1]) for _, _, utt_id, _ in self.entries}

    def only(self, split: str) -> "Draw":
        keep = [k for k, e in enumerate(self.entries) if e[0] == split]
        return Draw(
            [self.jobs[k] for k in keep],
            [self.entries[k] for k in keep],
            {s: g for s, g in self.genders.items() if g[1] == split},
            self.num_drawn,
        )


def _draw(
    ctx: Context, scale: Scale, root: Path, skip: str | None = None, taken: Draw | None = None, first_job: int = 0
) -> Draw:
    """Speakers, chapters and texts of every split but `skip`, avoiding the speaker and chapter ids in `taken`.
    The same context and scale always draw the same utterances."""
    rng = ctx.rng("LibriSpeech", 0)
    sizes = {s: n for s, n in zip(SPLITS, (scale.libri_train, scale.libri_dev, scale.libri_test)) if s != skip}
    n_speakers = sum(n for n, _ in sizes.values())
    taken = taken or Draw()
    taken_ids = {int(s) for s in taken.genders}
    taken_chapters = taken.chapters
    speaker_ids = [
        int(i) for i in rng.choice([i for i in range(10, 10000) if i not in taken_ids], size=n_speakers, replace=False)
    ]
    chapter_ids = iter(
        int(i)
        for i in rng.choice(
            [i for i in range(1000, 330000) if i not in taken_chapters], size=2 * n_speakers, replace=False
        )
    )
    speakers = sample_speakers(
        rng, [str(i) for i in speaker_ids], alternating_genders(n_speakers, rng), US_ACCENTS
    )  # American English, like the LibriVox readers PR expects
    draw = Draw()
    spk_iter = iter(speakers)
    for split, (n_spk, n_utt) in sizes.items():
        for _ in range(n_spk):
            spk = next(spk_iter)
            draw.genders[spk.name] = (spk.gender.upper(), split)
            chapters = [next(chapter_ids) for _ in range(1 if n_utt < 4 else 2)]
            per_chapter: Counter = Counter()
            for k in range(n_utt):
                chapter = chapters[k * len(chapters) // n_utt]
                index = per_chapter[chapter]
                per_chapter[chapter] += 1
                utt_id = f"{spk.name}-{chapter}-{index:04d}"
                n_sentences = int(rng.integers(scale.libri_sentences[0], scale.libri_sentences[1] + 1))
                tokens = [t for _ in range(n_sentences) for t in ctx.sentence(rng)]
                words = words_of(tokens)
                path = root / split / spk.name / str(chapter) / f"{utt_id}.flac"
                draw.jobs.append(
                    Job(
                        path=str(path),
                        seed=ctx.job_seed("LibriSpeech", first_job + len(draw.jobs)),
                        render=render(spk, ctx.espeak_text(tokens), rng),
                        align=ctx.phones(words),
                        channel=Channel(pad_start=lead_silence(rng)),
                    )
                )
                draw.entries.append((split, spk.name, utt_id, words))
    draw.num_drawn = first_job + len(draw.jobs)
    return draw


def _write_transcripts(root: Path, entries: list[tuple[str, str, str, list[str]]]) -> None:
    chapters: dict[Path, list[str]] = {}
    for split, spk, utt_id, words in entries:
        chapter = utt_id.split("-")[1]
        path = root / split / spk / chapter / f"{spk}-{chapter}.trans.txt"
        chapters.setdefault(path, []).append(f"{utt_id} {' '.join(w.upper() for w in words)}")
    for path, lines in chapters.items():
        write_lines(path, sorted(lines))


def _write_alignments(root: Path, entries: list[tuple[str, str, str, list[str]]], results: list[JobResult]) -> None:
    """alignments/<split>.jsonl: {"id", "phones", "starts", "num_samples"}; phones cover
    [starts[i], starts[i+1]) and, without SIL, equal the lexicon label of the transcript."""
    per_split: dict[str, list[str]] = {s: [] for s in SPLITS}
    for (split, _, utt_id, _), res in sorted(zip(entries, results), key=lambda x: x[0][2]):
        per_split[split].append(
            json.dumps(
                {"id": utt_id, "phones": list(res.phones), "starts": list(res.starts), "num_samples": res.num_samples}
            )
        )
    for split, lines in per_split.items():
        write_lines(root / "alignments" / f"{split}.jsonl", lines)


def _write_char_dict(path: Path, transcripts: list[list[str]]) -> None:
    """fairseq dictionary: fixed symbol order, counts from the training transcripts."""
    counts = Counter()
    for words in transcripts:
        counts["|"] += len(words)
        for w in words:
            counts.update(w.upper())
    write_lines(path, [f"{s} {counts[s]}" for s in CHAR_SYMBOLS])
