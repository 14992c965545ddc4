"""Speech Commands v0.01 as SUPERB KS reads it: 1 s word clips in per-word folders with
hashed speaker ids chosen for s3prl's SHA-1 train/dev rule, _background_noise_/, and the 12-label test set."""

from __future__ import annotations

import hashlib
import re

from .common import HEX, Context, Plan, random_token, write_lines
from .dsp import NOISE_KINDS, SAMPLE_RATE, Channel
from .jobs import Job, JobResult
from .voices import ALL_ACCENTS, alternating_genders, render, sample_speakers

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
FILLERS = (
    "bed",
    "bird",
    "cat",
    "dog",
    "eight",
    "five",
    "four",
    "happy",
    "house",
    "marvin",
    "nine",
    "one",
    "seven",
    "sheila",
    "six",
    "three",
    "tree",
    "two",
    "wow",
    "zero",
)
TEST_LABELS = KEYWORDS + ("_unknown_", "_silence_")
# The real _background_noise_ file names, with synthetic stand-ins (dsp.background_noise kinds).
BACKGROUND = {
    "doing_the_dishes": "doing_the_dishes",
    "dude_miaowing": "dude_miaowing",
    "exercise_bike": "exercise_bike",
    "pink_noise": "pink",
    "running_tap": "running_tap",
    "white_noise": "white",
}
TRAIN_DIR, TEST_DIR = "speech_commands_v0.01", "speech_commands_test_set_v0.01"
CLIP = SAMPLE_RATE  # 1 s


def hash_split(file_name: str) -> str:
    """'dev', 'discarded' or 'train' for a file name, by the SHA-1 rule s3prl applies."""
    speaker = re.sub(r"_nohash_.*$", "", file_name)
    max_per_class = 2**27 - 1
    value = int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16)
    percent = (value % (max_per_class + 1)) * (100.0 / max_per_class)
    return "dev" if percent < 10 else "discarded" if percent < 20 else "train"


def plan(ctx: Context) -> Plan:
    sc = ctx.scale
    root, test_root = ctx.out_dir / TRAIN_DIR, ctx.out_dir / TEST_DIR
    rng = ctx.rng("speech_commands", 0)
    wanted = {"train": sc.ks_train_speakers, "dev": sc.ks_dev_speakers}
    ids: dict[str, list[str]] = {"train": [], "dev": []}
    used: set[str] = set()
    while any(len(ids[k]) < wanted[k] for k in ids):  # ids whose hash lands where we want them
        sid = random_token(rng, 8, HEX)
        role = hash_split(f"{sid}_nohash_0.wav")
        if sid not in used and role in ids and len(ids[role]) < wanted[role]:
            ids[role].append(sid)
            used.add(sid)
    test_ids = []
    while len(test_ids) < sc.ks_test_speakers:
        sid = random_token(rng, 8, HEX)
        if sid not in used:
            test_ids.append(sid)
            used.add(sid)
    names = ids["train"] + ids["dev"] + test_ids
    speakers = sample_speakers(rng, names, alternating_genders(len(names), rng), ALL_ACCENTS)
    fillers = [str(w) for w in rng.permutation(FILLERS)]
    jobs: list[Job] = []

    def word_job(spk, word, path, device):
        jobs.append(
            Job(
                path=str(path),
                seed=ctx.job_seed("speech_commands", len(jobs)),
                render=render(spk, ctx.espeak_text([word]), rng, rate_factor=float(rng.uniform(1.0, 1.2))),
                channel=Channel(
                    length=CLIP,
                    place=True,
                    noise=str(rng.choice(NOISE_KINDS)),
                    snr_db=float(rng.uniform(10, 40)),
                    **device,
                ),
            )
        )

    for k, spk in enumerate(speakers):
        device = {
            "lowpass_hz": None if rng.random() < 0.5 else float(rng.uniform(3500, 7500)),
            "rt60": None if rng.random() < 0.7 else float(rng.uniform(0.15, 0.4)),
        }
        own_fillers = [
            fillers[(k * sc.ks_fillers_per_speaker + j) % len(fillers)] for j in range(sc.ks_fillers_per_speaker)
        ]
        if spk.name in test_ids:
            for word in KEYWORDS:
                word_job(spk, word, test_root / word / f"{spk.name}_nohash_0.wav", device)
            for j, word in enumerate(own_fillers):
                word_job(spk, word, test_root / "_unknown_" / f"{spk.name}_nohash_{j}.wav", device)
        else:
            for word in KEYWORDS + tuple(own_fillers):
                word_job(spk, word, root / word / f"{spk.name}_nohash_0.wav", device)
    for name, kind in BACKGROUND.items():
        jobs.append(
            Job(
                path=str(root / "_background_noise_" / f"{name}.wav"),
                seed=ctx.job_seed("speech_commands", len(jobs)),
                noise=kind,
                noise_dbfs=float(rng.uniform(-32, -20)),
                channel=Channel(length=int(sc.ks_noise_seconds * SAMPLE_RATE)),
            )
        )
    for j in range(sc.ks_test_silence):
        jobs.append(
            Job(
                path=str(test_root / "_silence_" / f"{random_token(rng, 8, HEX)}_nohash_{j}.wav"),
                seed=ctx.job_seed("speech_commands", len(jobs)),
                noise=str(rng.choice(list(BACKGROUND.values()))),
                noise_dbfs=float(rng.uniform(-45, -20)),
                channel=Channel(length=CLIP),
            )
        )

    def finish(results: list[JobResult]) -> None:
        # The TensorFlow split lists follow the same hash rule (s3prl ignores them; other loaders use them).
        clips = sorted(
            f"{p.parent.name}/{p.name}" for p in root.glob("*/*.wav") if p.parent.name != "_background_noise_"
        )
        write_lines(root / "validation_list.txt", [c for c in clips if hash_split(c.split("/")[1]) == "dev"])
        write_lines(root / "testing_list.txt", [c for c in clips if hash_split(c.split("/")[1]) == "discarded"])

    return Plan((TRAIN_DIR, TEST_DIR), jobs, finish)
