"""Audio SNIPS as SUPERB SF reads it: {train,valid,test}/<Speaker>-snips-<split>-<n>.wav
named after s3prl's default voice lists, all.iob.snips.txt (bare slot tags, intent last) and slots.txt."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from .common import Context, Plan, lead_silence, write_lines
from .dsp import Channel
from .jobs import Job, JobResult
from .voices import Speaker, render, sample_speakers

ROOT_DIR = "SNIPS"
# s3prl's default speaker lists per split directory (the real data is Amazon Polly voices).
SPEAKERS = {
    "train": ("Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly", "Matthew", "Salli"),
    "valid": ("Aditi", "Amy", "Geraint", "Nicole"),
    "test": ("Brian", "Emma", "Raveena", "Russell"),
}
_GENDER = {
    "Ivy": "f",
    "Joanna": "f",
    "Joey": "m",
    "Justin": "m",
    "Kendra": "f",
    "Kimberly": "f",
    "Matthew": "m",
    "Salli": "f",
    "Aditi": "f",
    "Amy": "f",
    "Geraint": "m",
    "Nicole": "f",
    "Brian": "m",
    "Emma": "f",
    "Raveena": "f",
    "Russell": "m",
}
_ACCENT = {
    "Amy": "en-gb-x-rp",
    "Brian": "en-gb-x-rp",
    "Emma": "en-gb-x-rp",
    "Geraint": "en-gb-x-gbcwmd",
    "Nicole": "en",
    "Russell": "en",
    "Aditi": "en-029",
    "Raveena": "en-029",
}  # others en-us

TEMPLATES = {
    "AddToPlaylist": (
        "add {artist} to my {playlist} playlist",
        "put this {music_item} on {playlist}",
        "add this {music_item} by {artist} to {playlist}",
        "add {artist} to {playlist}",
    ),
    "GetWeather": (
        "will it rain in {city} {timeRange}",
        "what is the weather in {city}",
        "is it going to be {condition_description} {timeRange}",
        "how {condition_temperature} will it be in {city} {timeRange}",
        "what is the weather",
    ),
    "PlayMusic": (
        "play the {music_item} by {artist}",
        "play some {genre} music",
        "play {artist} on {service}",
        "play something from {year}",
        "play something",
    ),
    "BookRestaurant": (
        "book a table for {party_size_number} at a {restaurant_type} in {city}",
        "i need a reservation for {party_size_number} people {timeRange}",
        "book a {restaurant_type} that serves {served_dish}",
    ),
    "RateBook": (
        "rate this book {rating_value} out of {best_rating}",
        "give this {object_type} {rating_value} out of {best_rating} stars",
        "rate {object_name} {rating_value} stars",
    ),
    "SearchCreativeWork": (
        "find the {object_type} called {object_name}",
        "show me the {object_type} {object_name}",
        "i am looking for the {object_type} {object_name}",
    ),
    "SearchScreeningEvent": (
        "find movie times for {movie_name} {timeRange}",
        "where can i see {movie_name}",
        "what movies are playing at {location_name}",
        "show me the movie schedule",
    ),
}
FILLERS = {
    "artist": (
        "taylor swift",
        "john lennon",
        "elvis presley",
        "bob dylan",
        "miles davis",
        "frank sinatra",
        "louis armstrong",
        "stevie wonder",
        "johnny cash",
        "billie holiday",
    ),
    "playlist": (
        "road trip",
        "summer party",
        "morning coffee",
        "workout",
        "dinner jazz",
        "sunday morning",
        "rainy day",
        "late night",
    ),
    "music_item": ("song", "track", "album", "tune"),
    "city": (
        "new york",
        "boston",
        "chicago",
        "paris",
        "london",
        "seattle",
        "denver",
        "san francisco",
        "dallas",
        "miami",
        "berlin",
        "tokyo",
        "madrid",
    ),
    "timeRange": (
        "tomorrow",
        "tonight",
        "next week",
        "this weekend",
        "on friday",
        "in the morning",
        "at noon",
        "this afternoon",
    ),
    "condition_description": ("sunny", "rainy", "cloudy", "windy", "foggy", "snowy"),
    "condition_temperature": ("hot", "cold", "warm", "chilly", "freezing"),
    "genre": ("jazz", "rock", "blues", "country", "classical", "folk", "soul", "pop"),
    "service": ("pandora", "youtube", "napster", "itunes"),
    "year": ("nineteen eighty", "the sixties", "the seventies", "nineteen ninety two"),
    "party_size_number": ("two", "three", "four", "five", "six", "eight", "ten"),
    "restaurant_type": ("restaurant", "bar", "pub", "diner", "cafe", "bistro", "steakhouse", "pizzeria"),
    "served_dish": ("pizza", "pasta", "sushi", "soup", "steak", "burgers", "tacos", "noodles"),
    "rating_value": ("one", "two", "three", "four", "five", "six"),
    "best_rating": ("five", "six", "ten"),
    "object_type": ("book", "novel", "song", "album", "movie", "show", "game", "painting", "series"),
    "object_name": (
        "war and peace",
        "little women",
        "the old man and the sea",
        "moby dick",
        "the secret garden",
        "treasure island",
        "black beauty",
    ),
    "movie_name": (
        "star wars",
        "the lion king",
        "home alone",
        "the dark river",
        "silent night",
        "the matrix",
        "jurassic park",
    ),
    "location_name": ("the city cinema", "the grand theater", "the regal cinema", "the mall"),
}
SLOTS = sorted(FILLERS)
WORDS = {w for ts in TEMPLATES.values() for t in ts for w in re.sub(r"\{\w+\}", " ", t).split()} | {
    w for fs in FILLERS.values() for f in fs for w in f.split()
}


def _utterance(rng: np.random.Generator, template: str) -> tuple[list[str], list[str]]:
    """(words, bare slot tags) for one filled template."""
    words, tags = [], []
    for tok in template.split():
        m = re.fullmatch(r"\{(\w+)\}", tok)
        if m:
            value = str(rng.choice(FILLERS[m.group(1)])).split()
            words += value
            tags += [m.group(1)] * len(value)
        else:
            words.append(tok)
            tags.append("O")
    return words, tags


def _on_training_variants(speakers: list[Speaker]) -> list[Speaker]:
    """Valid and test voices on the espeak variants (formant sets) of same-sex training voices, keeping their
    own pitch, vocal-tract factor, tilt, rate and level: new speakers on formant sets that training heard."""
    pool = {g: [s.variant for s in speakers if s.name in SPEAKERS["train"] and s.gender == g] for g in "mf"}
    return [
        s if s.name in SPEAKERS["train"] else replace(s, variant=pool[s.gender][k % len(pool[s.gender])])
        for k, s in enumerate(speakers)
    ]


def plan(ctx: Context) -> Plan:
    sc = ctx.scale
    root = ctx.out_dir / ROOT_DIR
    rng = ctx.rng("snips", 0)
    names = [n for split in SPEAKERS for n in SPEAKERS[split]]
    speakers = sample_speakers(rng, names, [_GENDER[n] for n in names])
    if sc.sf_voices == "polly":
        voices = {s.name: replace(s, accent=_ACCENT.get(s.name, "en-us")) for s in speakers}
    elif sc.sf_voices == "train_variants":
        voices = {s.name: replace(s, accent="en-us") for s in _on_training_variants(speakers)}
    else:
        raise ValueError(f"scale field sf_voices is {sc.sf_voices!r}; expected 'polly' or 'train_variants'")
    intents = sorted(TEMPLATES)
    jobs: list[Job] = []
    lines: list[str] = []
    seen: set[str] = set()
    for split, n_texts in (("train", sc.sf_train), ("valid", sc.sf_valid), ("test", sc.sf_test)):
        own = list(SPEAKERS[split])
        others = [n for s in SPEAKERS if s != split for n in SPEAKERS[s]]
        for k in range(n_texts + sc.sf_distractors):
            for _ in range(1000):  # texts never repeat across (or within) splits
                if split == "train" and k == 0:
                    intent, template = "PlayMusic", "play something"  # a slot-free sentence
                else:
                    intent = intents[int(rng.integers(len(intents)))]
                    template = str(rng.choice(TEMPLATES[intent]))
                words, tags = _utterance(rng, template)
                # valid and test open with a slot value: s3prl's slot-value CER divides by their count
                if " ".join(words) not in seen and (split == "train" or k > 0 or set(tags) != {"O"}):
                    break
            seen.add(" ".join(words))
            # Every voice of the split says every text of it, as in the real release; distractors: one voice of
            # another split inside this split's folder, which s3prl's speaker filter must drop. The slot-free text has
            # one voice: eight copies would fill whole length buckets whose logged slot-value CER divides by zero.
            voices_of_text = own if k < n_texts else [others[int(rng.integers(len(others)))]]
            for speaker in voices_of_text[:1] if split == "train" and k == 0 else voices_of_text:
                utt_id = f"{speaker}-snips-{split}-{k}"
                jobs.append(
                    Job(
                        path=str(root / split / f"{utt_id}.wav"),
                        seed=ctx.job_seed("snips", len(jobs)),
                        render=render(voices[speaker], ctx.espeak_text(words), rng),
                        channel=Channel(pad_start=lead_silence(rng)),
                    )
                )
                lines.append(f"{utt_id} BOS {' '.join(w.upper() for w in words)} EOS\tO {' '.join(tags)} {intent}")

    def finish(results: list[JobResult]) -> None:
        write_lines(root / "all.iob.snips.txt", lines)
        # The first line is ignored by s3prl, hence "O" first; no trailing empty slot.
        (root / "slots.txt").write_text("\n".join(["O"] + SLOTS), encoding="utf-8")

    return Plan((ROOT_DIR,), jobs, finish)
