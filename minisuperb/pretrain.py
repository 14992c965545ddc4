"""Pretraining audio: 8-15 s utterances from their own speakers, with seeded room reverb and noise, plus
fairseq manifests pretrain/{train,valid}.tsv (first line the absolute root, then `path<TAB>samples`)."""

from __future__ import annotations

from .common import Context, Plan, lead_silence, write_lines
from .dsp import NOISE_KINDS, SAMPLE_RATE, Channel
from .jobs import Job, JobResult
from .sentences import words_of
from .voices import ALL_ACCENTS, alternating_genders, render, sample_speakers

ROOT_DIR = "pretrain"
MIN_SECONDS, MAX_SECONDS = 8.0, 15.0


def plan(ctx: Context) -> Plan:
    sc = ctx.scale
    audio_root = ctx.out_dir / ROOT_DIR / "audio"
    rng = ctx.rng("pretrain", 0)
    n_spk = sc.pt_speakers + sc.pt_valid_speakers
    names = [f"{k + 1:04d}" for k in range(n_spk)]
    speakers = sample_speakers(rng, names, alternating_genders(n_spk, rng), ALL_ACCENTS)
    jobs: list[Job] = []
    manifest: list[tuple[str, str]] = []  # (split, path relative to audio_root)
    for k, spk in enumerate(speakers):
        split = "train" if k < sc.pt_speakers else "valid"
        for u in range(sc.pt_utts_per_speaker):
            seconds = float(rng.uniform(MIN_SECONDS, MAX_SECONDS))
            tokens: list[str] = []
            # Overshoot the target (~2.4 words/s at 175 wpm incl. pauses) and crop to it after synthesis.
            while len(words_of(tokens)) / (spk.rate / 60) + 0.4 * tokens.count(".") < seconds + 2.0:
                tokens += ctx.sentence(rng)
            rel = f"{spk.name}/{spk.name}-{u:04d}.flac"
            channel = Channel(
                pad_start=lead_silence(rng),
                length=int(seconds * SAMPLE_RATE),
                rt60=float(rng.uniform(0.15, 0.6)),
                drr_db=float(rng.uniform(0, 12)),
                noise=str(rng.choice(NOISE_KINDS)),
                snr_db=float(rng.uniform(5, 30)),
            )
            jobs.append(
                Job(
                    path=str(audio_root / rel),
                    seed=ctx.job_seed("pretrain", len(jobs)),
                    render=render(spk, ctx.espeak_text(tokens), rng),
                    channel=channel,
                )
            )
            manifest.append((split, rel))

    def finish(results: list[JobResult]) -> None:
        for split in ("train", "valid"):
            rows = sorted(f"{rel}\t{res.num_samples}" for (s, rel), res in zip(manifest, results) if s == split)
            write_lines(ctx.out_dir / ROOT_DIR / f"{split}.tsv", [str(audio_root)] + rows)

    return Plan((ROOT_DIR,), jobs, finish)
