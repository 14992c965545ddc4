"""LibriSpeech tree for PR and ASR: flac + trans.txt per chapter, the
lexicon, phoneme vocabulary, character dictionary, bucket CSVs and frame-level phone alignments."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from superb.prepare import write_asr_bucket_csvs  # the project's one bucket-CSV writer

from .common import Context, Plan, lead_silence, write_lines
from .dsp import Channel
from .jobs import Job, JobResult
from .sentences import words_of
from .text import PHONE_VOCAB
from .voices import US_ACCENTS, alternating_genders, render, sample_speakers

SPLITS = ("train-clean-100", "dev-clean", "test-clean")
CHAR_SYMBOLS = ("|",) + tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + ("'",)
LEXICON_FILE = "librispeech-lexicon.txt"


def plan(ctx: Context) -> Plan:
    root = ctx.out_dir / "LibriSpeech"
    rng = ctx.rng("LibriSpeech", 0)
    sizes = dict(zip(SPLITS, (ctx.scale.libri_train, ctx.scale.libri_dev, ctx.scale.libri_test)))
    n_speakers = sum(n for n, _ in sizes.values())
    speaker_ids = [int(i) for i in rng.choice(range(10, 10000), size=n_speakers, replace=False)]
    chapter_ids = iter(int(i) for i in rng.choice(range(1000, 330000), size=2 * n_speakers, replace=False))
    speakers = sample_speakers(rng, [str(i) for i in speaker_ids], alternating_genders(n_speakers, rng),
                               US_ACCENTS)  # American English, like the LibriVox readers PR expects
    sentences = {split: ctx.scale.libri_sentences for split in SPLITS}
    sentences[SPLITS[1]] = ctx.scale.libri_dev_sentences or ctx.scale.libri_sentences
    jobs: list[Job] = []
    entries: list[tuple[str, str, str, list[str]]] = []  # (split, speaker, utterance id, words)
    genders: dict[str, tuple[str, str]] = {}
    spk_iter = iter(speakers)
    for split, (n_spk, n_utt) in sizes.items():
        lo, hi = sentences[split]
        for _ in range(n_spk):
            spk = next(spk_iter)
            genders[spk.name] = (spk.gender.upper(), split)
            chapters = [next(chapter_ids) for _ in range(1 if n_utt < 4 else 2)]
            per_chapter: Counter = Counter()
            for k in range(n_utt):
                chapter = chapters[k * len(chapters) // n_utt]
                index = per_chapter[chapter]
                per_chapter[chapter] += 1
                utt_id = f"{spk.name}-{chapter}-{index:04d}"
                tokens = [t for _ in range(int(rng.integers(lo, hi + 1))) for t in ctx.sentence(rng)]
                words = words_of(tokens)
                path = root / split / spk.name / str(chapter) / f"{utt_id}.flac"
                jobs.append(Job(path=str(path), seed=ctx.job_seed("LibriSpeech", len(jobs)),
                                render=render(spk, ctx.espeak_text(tokens), rng), align=ctx.phones(words),
                                channel=Channel(pad_start=lead_silence(rng))))
                entries.append((split, spk.name, utt_id, words))

    def finish(results: list[JobResult]) -> None:
        _write_transcripts(root, entries)
        _write_alignments(root, entries, results)
        write_lines(root / LEXICON_FILE,
                    [f"{w.upper()} {' '.join(ctx.prons[w])}" for w in sorted(ctx.prons)])
        write_lines(root / "phonemes.txt", list(PHONE_VOCAB))
        _write_char_dict(root / "char.dict", [e[3] for e in entries if e[0] == SPLITS[0]])
        write_asr_bucket_csvs(root, SPLITS, root / "len_for_bucket")
        minutes = Counter()
        for (split, spk, _, _), res in zip(entries, results):
            minutes[spk] += res.num_samples / 16000 / 60
        write_lines(root / "SPEAKERS.TXT",
                    ["; mini-SUPERB synthetic speakers (espeak-ng pseudo-speakers)",
                     ";ID  |SEX| SUBSET           |MINUTES| NAME"]
                    + [f"{spk:<5}| {g} | {split:<16} | {minutes[spk]:5.2f} | Synthetic {spk}"
                       for spk, (g, split) in sorted(genders.items(), key=lambda x: int(x[0]))])

    return Plan(("LibriSpeech",), jobs, finish)


def _write_transcripts(root: Path, entries: list[tuple[str, str, str, list[str]]]) -> None:
    chapters: dict[Path, list[str]] = {}
    for split, spk, utt_id, words in entries:
        chapter = utt_id.split("-")[1]
        path = root / split / spk / chapter / f"{spk}-{chapter}.trans.txt"
        chapters.setdefault(path, []).append(f"{utt_id} {' '.join(w.upper() for w in words)}")
    for path, lines in chapters.items():
        write_lines(path, sorted(lines))


def _write_alignments(root: Path, entries: list[tuple[str, str, str, list[str]]],
                      results: list[JobResult]) -> None:
    """alignments/<split>.jsonl: {"id", "phones", "starts", "num_samples"}; phones cover
    [starts[i], starts[i+1]) and, without SIL, equal the lexicon label of the transcript."""
    per_split: dict[str, list[str]] = {s: [] for s in SPLITS}
    for (split, _, utt_id, _), res in sorted(zip(entries, results), key=lambda x: x[0][2]):
        per_split[split].append(json.dumps({"id": utt_id, "phones": list(res.phones),
                                            "starts": list(res.starts), "num_samples": res.num_samples}))
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

