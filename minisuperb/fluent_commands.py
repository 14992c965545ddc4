"""Fluent Speech Commands as SUPERB IC reads it: data/{train,valid,test}_data.csv and
wavs/speakers/<id>/<uuid>.wav; FSC's 31 (action, object, location) intents from phrase templates."""

from __future__ import annotations

import csv
from dataclasses import replace

from .common import ALNUM, HEX, Context, Plan, lead_silence, random_token
from .dsp import NOISE_KINDS, Channel
from .jobs import Job, JobResult
from .voices import ALL_ACCENTS, alternating_genders, render, sample_speakers

ROOT_DIR = "fluent_speech_commands_dataset"
LOCATIONS = ("kitchen", "bedroom", "washroom")
LANGUAGES = ("Chinese", "English", "German", "Korean")
_ON = ("turn on the {o}", "switch on the {o}", "turn the {o} on", "{o} on")
_OFF = ("turn off the {o}", "switch off the {o}", "turn the {o} off", "{o} off")


def _intents() -> dict[tuple[str, str, str], tuple[str, ...]]:
    """(action, object, location) -> phrasings."""
    t: dict[tuple[str, str, str], tuple[str, ...]] = {}
    for action, forms in (("activate", _ON), ("deactivate", _OFF)):
        t[(action, "lamp", "none")] = tuple(f.format(o="lamp") for f in forms)
        t[(action, "lights", "none")] = tuple(f.format(o="lights") for f in forms)
        for loc in LOCATIONS:
            t[(action, "lights", loc)] = tuple(f.format(o="lights") + f" in the {loc}" for f in forms[:3]) + tuple(
                f.format(o=f"{loc} lights") for f in forms
            )
    t[("activate", "music", "none")] = (
        "play the music",
        "turn on the music",
        "play music",
        "start the music",
        "put on some music",
    )
    t[("deactivate", "music", "none")] = (
        "stop the music",
        "turn off the music",
        "pause the music",
        "stop music",
        "music off",
    )
    t[("increase", "heat", "none")] = (
        "increase the heat",
        "turn up the heat",
        "raise the temperature",
        "make it warmer",
        "heat up",
        "turn the heat up",
    )
    t[("decrease", "heat", "none")] = (
        "decrease the heat",
        "turn down the heat",
        "lower the temperature",
        "make it cooler",
        "turn the heat down",
    )
    for loc in LOCATIONS:
        t[("increase", "heat", loc)] = (
            f"increase the heat in the {loc}",
            f"turn up the heat in the {loc}",
            f"make the {loc} warmer",
            f"turn the {loc} heat up",
            f"raise the temperature in the {loc}",
        )
        t[("decrease", "heat", loc)] = (
            f"decrease the heat in the {loc}",
            f"turn down the heat in the {loc}",
            f"make the {loc} cooler",
            f"turn the {loc} heat down",
            f"lower the temperature in the {loc}",
        )
    t[("increase", "volume", "none")] = (
        "increase the volume",
        "turn up the volume",
        "louder",
        "make it louder",
        "volume up",
        "raise the volume",
    )
    t[("decrease", "volume", "none")] = (
        "decrease the volume",
        "turn down the volume",
        "lower the volume",
        "quieter",
        "volume down",
        "make it quieter",
    )
    for obj, art in (("juice", "some"), ("newspaper", "the"), ("shoes", "my"), ("socks", "my")):
        t[("bring", obj, "none")] = (
            f"bring me {art} {obj}",
            f"get me {art} {obj}",
            f"go get {art} {obj}",
            f"fetch {art} {obj}",
            f"i need {art} {obj}",
        )
    for lang in LANGUAGES:
        t[("change language", lang, "none")] = (
            f"change language to {lang}",
            f"switch the language to {lang}",
            f"set the language to {lang}",
            f"{lang}",
            f"i want {lang}",
        )
    t[("change language", "none", "none")] = (
        "change language",
        "switch language",
        "change the language",
        "language settings",
        "switch the language",
    )
    return t


INTENTS = _intents()
WORDS = {w.lower() for phrases in INTENTS.values() for p in phrases for w in p.split()}


def plan(ctx: Context) -> Plan:
    sc = ctx.scale
    root = ctx.out_dir / ROOT_DIR
    rng = ctx.rng("fluent_commands", 0)
    sizes = {"train": sc.fsc_train, "valid": sc.fsc_valid, "test": sc.fsc_test}
    n_spk = sum(n for n, _ in sizes.values())
    speaker_ids = [random_token(rng, 16, ALNUM) for _ in range(n_spk)]
    speakers = iter(sample_speakers(rng, speaker_ids, alternating_genders(n_spk, rng), ALL_ACCENTS))
    keys = list(INTENTS)
    order = [keys[i] for i in rng.permutation(len(keys))]
    train_intents: list[tuple[str, str, str]] = []
    jobs: list[Job] = []
    rows: dict[str, list[list[str]]] = {split: [] for split in sizes}
    for split, (n_speakers, n_utts) in sizes.items():
        for _ in range(n_speakers):
            spk = next(speakers)
            channel = Channel(
                noise=str(rng.choice(NOISE_KINDS)),
                snr_db=float(rng.uniform(15, 35)),
                lowpass_hz=None if rng.random() < 0.4 else float(rng.uniform(3500, 7500)),
                rt60=None if rng.random() < 0.7 else float(rng.uniform(0.15, 0.4)),
            )
            for _ in range(n_utts):
                if split == "train":  # cycle through all 31 intents so train holds every label value
                    intent = order[len(train_intents) % len(order)]
                    train_intents.append(intent)
                else:  # valid/test values must appear in train (s3prl builds its maps from train)
                    intent = train_intents[int(rng.integers(len(train_intents)))]
                phrase = str(rng.choice(INTENTS[intent]))
                words = phrase.lower().split()
                uuid = (
                    f"{random_token(rng, 8, HEX)}-{random_token(rng, 4, HEX)}-11e9-"
                    f"{random_token(rng, 4, HEX)}-{random_token(rng, 12, HEX)}"
                )
                rel = f"wavs/speakers/{spk.name}/{uuid}.wav"
                jobs.append(
                    Job(
                        path=str(root / rel),
                        seed=ctx.job_seed("fluent_commands", len(jobs)),
                        render=render(spk, ctx.espeak_text(words), rng),
                        channel=replace(channel, pad_start=lead_silence(rng)),
                    )
                )
                rows[split].append([rel, spk.name, phrase[0].upper() + phrase[1:], *intent])

    def finish(results: list[JobResult]) -> None:
        (root / "data").mkdir(parents=True, exist_ok=True)
        for split, split_rows in rows.items():
            with open(root / "data" / f"{split}_data.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(["", "path", "speakerId", "transcription", "action", "object", "location"])
                writer.writerows([k, *row] for k, row in enumerate(split_rows))

    return Plan((ROOT_DIR,), jobs, finish)
