"""Pseudo-speakers (seeded espeak voice parameters + VTLP + tilt) and emotions as prosody offsets with
random intensity; both resolve to a `Render`, the complete recipe for one synthesised utterance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Human-sounding espeak-ng variants by gender (robotic, whispering and effect voices left out).
MALE_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "Andy",
    "Lee",
    "Denis",
    "Hugo",
    "Michael",
    "Mike",
    "antonio",
    "gustave",
    "iven3",
    "john",
    "marcelo",
    "michel",
    "miguel",
    "norbert",
    "paul",
    "pedro",
    "quincy",
    "robert",
    "travis",
    "victor",
    "adam",
    "david",
    "edward",
)
FEMALE_VARIANTS = (
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "Alicia",
    "Andrea",
    "Annie",
    "anika",
    "aunty",
    "belinda",
    "linda",
    "steph",
    "steph2",
    "steph3",
    "shelby",
    "grandma",
)
# en-us weighted x3 (the accent most of LibriSpeech has); PR/ASR use the American accents only.
ALL_ACCENTS = {
    "en-us": 3.0,
    "en-us-nyc": 1.0,
    "en": 1.0,
    "en-gb-x-rp": 1.0,
    "en-gb-scotland": 1.0,
    "en-gb-x-gbclan": 1.0,
    "en-gb-x-gbcwmd": 1.0,
    "en-029": 1.0,
}
US_ACCENTS = {"en-us": 3.0, "en-us-nyc": 1.0}


@dataclass(frozen=True)
class Speaker:
    """A pseudo-speaker: fixed espeak voice and parameters, VTLP factor, spectral tilt and level."""

    name: str
    gender: str  # "f" | "m"
    accent: str
    variant: str
    pitch: float  # espeak pitch 0-100
    prange: float  # espeak pitch range 0-100
    rate: float  # words per minute after VTLP
    alpha: float  # vocal tract length factor: formants, f0 and tempo scale by alpha
    tilt: float  # first-order spectral tilt coefficient (>0 brighter, <0 darker)
    gain_db: float  # recording level relative to the corpus target


@dataclass(frozen=True)
class Render:
    """Everything the worker needs to synthesise and colour one utterance."""

    text: str  # espeak input ([[...]] phoneme blocks and punctuation)
    voice: str  # "<accent>+<variant>"
    rate: int  # espeak rate (wpm) before VTLP, so that the result has the wanted rate
    pitch: int
    prange: int
    alpha: float
    tilt: float
    gain_db: float
    lowpass_hz: float | None = None  # emotion: muffled (sad)
    drive: float | None = None  # emotion: tanh soft clipping (angry)


def sample_speakers(
    rng: np.random.Generator, names: list[str], genders: list[str], accents: dict[str, float] = ALL_ACCENTS
) -> list[Speaker]:
    """One speaker per name. Variants cycle through a shuffled per-gender list so that speakers of a
    corpus share a variant only when there are more speakers than variants."""
    pools = {g: list(rng.permutation(v)) for g, v in (("m", MALE_VARIANTS), ("f", FEMALE_VARIANTS))}
    used = {"m": 0, "f": 0}
    accent_names = list(accents)
    accent_p = np.array([accents[a] for a in accent_names]) / sum(accents.values())
    out = []
    for name, gender in zip(names, genders):
        variant = str(pools[gender][used[gender] % len(pools[gender])])
        used[gender] += 1
        female = gender == "f"
        out.append(
            Speaker(
                name=name,
                gender=gender,
                accent=str(rng.choice(accent_names, p=accent_p)),
                variant=variant,
                pitch=float(rng.uniform(35, 80) if female else rng.uniform(20, 65)),
                prange=float(rng.uniform(30, 70)),
                rate=float(rng.uniform(145, 200)),
                alpha=float(rng.uniform(0.98, 1.12) if female else rng.uniform(0.88, 1.03)),
                tilt=float(rng.uniform(-0.5, 0.5)),
                gain_db=float(rng.uniform(-4, 4)),
            )
        )
    return out


def alternating_genders(n: int, rng: np.random.Generator) -> list[str]:
    """n genders, balanced, starting at random."""
    first = int(rng.integers(2))
    return ["fm"[(k + first) % 2] for k in range(n)]


# prototype deltas at full intensity:
# (delta pitch, target range, rate factor, gain dB, low-pass Hz at full intensity, tanh drive)
EMOTIONS = {
    "neu": (0.0, None, 1.00, 0.0, None, None),
    "hap": (18.0, 90.0, 1.12, 1.6, None, None),
    "sad": (-15.0, 12.0, 0.78, -3.7, 3000.0, None),
    "ang": (8.0, 75.0, 1.15, 5.1, None, 3.0),
}


def render(
    speaker: Speaker,
    text: str,
    rng: np.random.Generator,
    emotion: str = "neu",
    intensity: float = 0.0,
    rate_factor: float = 1.0,
) -> Render:
    """The speaker saying `text`, with natural per-utterance jitter and an emotion at `intensity`
    (0 = neutral, 1 = the full prototype deltas)."""
    d_pitch, target_range, rate_mul, gain, lowpass, drive = EMOTIONS[emotion]
    k = float(intensity)
    pitch = speaker.pitch + rng.uniform(-4, 4) + d_pitch * k
    prange = speaker.prange if target_range is None else speaker.prange + (target_range - speaker.prange) * k
    wpm = speaker.rate * rng.uniform(0.94, 1.06) * (1 + (rate_mul - 1) * k) * rate_factor
    return Render(
        text=text,
        voice=f"{speaker.accent}+{speaker.variant}",
        # VTLP speeds the audio up by alpha, so synthesise slower by the same factor.
        rate=int(round(np.clip(wpm / speaker.alpha, 80, 450))),
        pitch=int(round(np.clip(pitch, 0, 100))),
        prange=int(round(np.clip(prange, 0, 100))),
        alpha=speaker.alpha,
        tilt=speaker.tilt,
        gain_db=speaker.gain_db + float(rng.uniform(-2, 2)) + gain * k,
        lowpass_hz=None if lowpass is None else 8000.0 - (8000.0 - lowpass) * k,
        drive=None if drive is None else 1.0 + (drive - 1.0) * k,
    )
