"""LibriLight limited-resource tree for CTC fine-tuning (`librispeech_finetuning/1h/0..5/{clean,other}/...` and
`9h/{clean,other}/...`, flac + trans.txt per chapter), the LibriSpeech `dev-other` / `test-other` evaluation sets,
and `LibriSpeech/librispeech-lm-norm.txt`, an upper-case LM text (one sentence per line) like OpenSLR 11's.
"Other" audio is spoken in a reverberant, noisy room, as the harder LibriSpeech half is harder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .common import Context, Plan, lead_silence, write_lines
from .dsp import NOISE_KINDS, Channel
from .jobs import Job, JobResult
from .sentences import words_of
from .voices import US_ACCENTS, alternating_genders, render, sample_speakers

ROOT_DIR = "librispeech_finetuning"
LM_TEXT = "librispeech-lm-norm.txt"
FOLDS = 6


def _groups(ctx: Context) -> list[tuple[Path, int, int]]:
    """(folder, speakers, utterances per speaker) of every leaf set of the plan."""
    sc, root, libri = ctx.scale, ctx.out_dir / ROOT_DIR, ctx.out_dir / "LibriSpeech"
    groups = [(root / "1h" / str(fold) / kind, *sc.ft_fold) for fold in range(FOLDS) for kind in ("clean", "other")]
    groups += [(root / "9h" / kind, *sc.ft_9h) for kind in ("clean", "other")]
    return groups + [(libri / split, *sc.libri_other) for split in ("dev-other", "test-other")]


def _channel(folder: Path, rng: np.random.Generator) -> Channel:
    if "other" not in folder.parts[-1]:
        return Channel(pad_start=lead_silence(rng))
    return Channel(
        pad_start=lead_silence(rng),
        rt60=float(rng.uniform(0.3, 0.7)),
        drr_db=float(rng.uniform(0, 6)),
        noise=str(rng.choice(NOISE_KINDS)),
        snr_db=float(rng.uniform(8, 20)),
    )


def plan(ctx: Context) -> Plan:
    rng = ctx.rng("librispeech_finetuning", 0)
    groups = _groups(ctx)
    n_speakers = sum(n for _, n, _ in groups)
    # ids above LibriSpeech's 10..9999, so that no synthetic speaker is in two corpora
    speaker_ids = [str(int(i)) for i in rng.choice(range(10_000, 100_000), size=n_speakers, replace=False)]
    speakers = iter(sample_speakers(rng, speaker_ids, alternating_genders(n_speakers, rng), US_ACCENTS))
    lo, hi = ctx.scale.libri_sentences
    jobs: list[Job] = []
    transcripts: dict[Path, list[str]] = {}
    for folder, n_spk, n_utt in groups:
        for _ in range(n_spk):
            spk = next(speakers)
            chapter = int(rng.integers(1000, 330000))
            for index in range(n_utt):
                tokens = [t for _ in range(int(rng.integers(lo, hi + 1))) for t in ctx.sentence(rng)]
                utt_id = f"{spk.name}-{chapter}-{index:04d}"
                path = folder / spk.name / str(chapter) / f"{utt_id}.flac"
                jobs.append(
                    Job(
                        path=str(path),
                        seed=ctx.job_seed("librispeech_finetuning", len(jobs)),
                        render=render(spk, ctx.espeak_text(tokens), rng),
                        channel=_channel(folder, rng),
                    )
                )
                trans = path.parent / f"{spk.name}-{chapter}.trans.txt"
                transcripts.setdefault(trans, []).append(f"{utt_id} {' '.join(w.upper() for w in words_of(tokens))}")
    lm_sentences = [" ".join(w.upper() for w in words_of(ctx.sentence(rng))) for _ in range(ctx.scale.lm_sentences)]

    def finish(results: list[JobResult]) -> None:
        for path, lines in transcripts.items():
            write_lines(path, sorted(lines))
        write_lines(ctx.out_dir / "LibriSpeech" / LM_TEXT, lm_sentences)

    return Plan((ROOT_DIR,), jobs, finish)


def split_sizes(root: Path) -> Counter:
    """Utterances per top-level part of a librispeech_finetuning tree (`1h/0`, ..., `9h`), for reports and tests."""
    counts: Counter = Counter()
    for path in Path(root).rglob("*.flac"):
        parts = path.relative_to(root).parts
        counts["/".join(parts[:2]) if parts[0] == "1h" else parts[0]] += 1
    return counts
