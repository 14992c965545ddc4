"""VoxCeleb1 as SUPERB SID reads it: {dev,test}/wav/id1xxxx/<ytid>/<nnnnn>.wav and
iden_split.txt; every speaker in all three splits, each split from its own "videos" (own channel)."""

from __future__ import annotations

from dataclasses import replace

from .common import ALNUM, Context, Plan, lead_silence, random_token, write_lines
from .dsp import NOISE_KINDS, Channel
from .jobs import Job, JobResult
from .voices import ALL_ACCENTS, alternating_genders, render, sample_speakers

ROOT_DIR = "VoxCeleb1"
FIRST_ID = 10001  # s3prl's label is int(id[2:]) - 10001
SPLIT_CODE = {"train": 1, "dev": 2, "test": 3}


def plan(ctx: Context) -> Plan:
    sc = ctx.scale
    root = ctx.out_dir / ROOT_DIR
    rng = ctx.rng("voxceleb1", 0)
    names = [f"id{FIRST_ID + k}" for k in range(sc.vox_speakers)]
    genders = alternating_genders(len(names), rng)
    speakers = sample_speakers(rng, names, genders, ALL_ACCENTS)
    # Like the real release, the last speakers' folders sit under test/wav (the verification test set).
    n_test_folder = max(1, len(names) // 6)
    lo, hi = sc.vox_sentences
    jobs: list[Job] = []
    split_lines: list[tuple[str, str]] = []  # (relative path, split)
    for k, spk in enumerate(speakers):
        folder = "test" if k >= len(names) - n_test_folder else "dev"
        n_dev, n_test = sc.vox_eval_utts
        videos = [("train", sc.vox_utts_per_video)] * sc.vox_train_videos + [("dev", n_dev), ("test", n_test)]
        for split, n_utts in videos:
            ytid = random_token(rng, 1, ALNUM) + random_token(rng, 10, ALNUM + "-_")
            channel = Channel(
                rt60=None if rng.random() < 0.3 else float(rng.uniform(0.15, 0.7)),
                drr_db=float(rng.uniform(0, 10)),
                noise=str(rng.choice(NOISE_KINDS)),
                snr_db=float(rng.uniform(5, 25)),
                lowpass_hz=None if rng.random() < 0.7 else float(rng.uniform(3400, 7000)),
            )
            for u in range(n_utts):
                tokens = [t for _ in range(int(rng.integers(lo, hi + 1))) for t in ctx.sentence(rng)]
                rel = f"{spk.name}/{ytid}/{u + 1:05d}.wav"
                jobs.append(
                    Job(
                        path=str(root / folder / "wav" / rel),
                        seed=ctx.job_seed("voxceleb1", len(jobs)),
                        render=render(spk, ctx.espeak_text(tokens), rng),
                        channel=replace(channel, pad_start=lead_silence(rng)),
                    )
                )
                split_lines.append((rel, split))

    def finish(results: list[JobResult]) -> None:
        write_lines(root / "iden_split.txt", [f"{SPLIT_CODE[s]} {rel}" for rel, s in sorted(split_lines)])
        write_lines(
            root / "vox1_meta.csv",
            ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
            + [
                f"{s.name}\tSynthetic_{s.name}\t{s.gender}\t{s.accent}\t"
                f"{'test' if k >= len(names) - n_test_folder else 'dev'}"
                for k, s in enumerate(speakers)
            ],
        )

    return Plan((ROOT_DIR,), jobs, finish)
