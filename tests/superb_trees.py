"""Tiny hand-made corpus trees (noise audio, real layouts) for the superb/ tests, and the run_downstream.py
script as those tests call it; not a test module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parent.parent

SAMPLE_RATE = 16000
LEXICON = {  # stress-marked CMU phones, all in downstream_configs/vocab/phoneme.txt
    "A": "AH0",
    "CAT": "K AE1 T",
    "SAT": "S AE1 T",
    "ON": "AA1 N",
    "THE": "DH AH0",
    "MAT": "M AE1 T",
    "DOG": "D AO1 G",
    "RAN": "R AE1 N",
}
SENTENCES = ["THE CAT SAT", "A DOG RAN ON THE MAT", "THE DOG SAT ON A CAT", "A CAT RAN", "THE MAT"]


def write_noise(path: Path, num_samples: int, seed: int, channels: int = 1) -> np.ndarray:
    """Write seeded low-level noise as 16-bit PCM; returns what soundfile will read back (float32)."""
    rng = np.random.default_rng(seed)
    shape = (num_samples,) if channels == 1 else (num_samples, channels)
    pcm = (rng.standard_normal(shape) * 3000).clip(-32768, 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, pcm, SAMPLE_RATE, subtype="PCM_16")
    return pcm.astype(np.float32) / 32768.0


def make_librispeech(
    root: Path, utterances: dict[str, int], lexicon: dict[str, str] = LEXICON
) -> dict[str, list[Path]]:
    """`root/<split>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac` + transcripts + lexicon.

    `utterances` maps split -> count; lengths vary (0.3 s steps) so bucket order is testable.
    """
    files: dict[str, list[Path]] = {}
    for split_index, (split, count) in enumerate(utterances.items()):
        speaker, chapter = 100 + split_index, 2000 + split_index
        folder = root / split / str(speaker) / str(chapter)
        lines = []
        for n in range(count):
            uttid = f"{speaker}-{chapter}-{n:04d}"
            write_noise(folder / f"{uttid}.flac", int(SAMPLE_RATE * (0.6 + 0.3 * (n % 4))), seed=split_index * 100 + n)
            lines.append(f"{uttid} {SENTENCES[n % len(SENTENCES)]}")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
        files[split] = sorted(folder.glob("*.flac"))
    (root / "librispeech-lexicon.txt").write_text("".join(f"{w}\t{p}\n" for w, p in lexicon.items()))
    return files


SLOTS = ["O", "artist", "playlist"]
SNIPS_LINES = [  # (words, tags): bare slot names, consecutive equal tags form one span
    ("PLAY SOME JAZZ", "O O playlist"),
    ("ADD ELTON JOHN TO MY LIST", "O artist artist O O O"),
    ("PLAY MUSIC", "O O"),
    ("PUT QUEEN ON", "O artist O"),
]


def make_snips(root: Path, speakers: dict[str, list[str]], per_speaker: int = 2) -> None:
    """`root/<split>/<Speaker>-snips-<split>-<n>.wav`, `all.iob.snips.txt` and `slots.txt`."""
    lines = []
    for split, voices in speakers.items():
        for voice in voices:
            for n in range(per_speaker):
                uttid = f"{voice}-snips-{split}-{n}"
                words, tags = SNIPS_LINES[n % len(SNIPS_LINES)]
                write_noise(root / split / f"{uttid}.wav", SAMPLE_RATE // 2, seed=n)
                lines.append(f"{uttid} BOS {words} EOS\tO {tags} PlayMusic")
    (root / "all.iob.snips.txt").write_text("\n".join(lines) + "\n")
    (root / "slots.txt").write_text("\n".join(SLOTS))


def make_iemocap(root: Path, sessions: int = 2) -> dict[str, list[tuple[str, str]]]:
    """`Session<k>/sentences/wav/<dialog>/<utt>.wav` + `dialog/EmoEvaluation/<dialog>.txt`.

    Returns session -> [(utterance, expected label)] for the lines that should be kept.
    """
    emotions = ["neu", "hap", "ang", "sad", "exc", "fru", "xxx", "sur"]
    kept: dict[str, list[tuple[str, str]]] = {}
    for k in range(1, sessions + 1):
        session = f"Session{k}"
        dialog = f"Ses0{k}F_impro01"
        lines = ["% header line that is not an utterance", ""]
        kept[session] = []
        for n, emotion in enumerate(emotions):
            turn = f"{'FM'[n % 2]}{n:03d}"
            utterance = f"{dialog}_{turn}"
            write_noise(root / session / "sentences" / "wav" / dialog / f"{utterance}.wav", 4000, seed=n)
            lines.append(f"[{n}.0 - {n}.9]\t{utterance}\t{emotion}\t[2.5, 2.5, 2.5]")
            if emotion in ("neu", "hap", "ang", "sad", "exc"):
                kept[session].append((utterance, "hap" if emotion == "exc" else emotion))
        # a labelled utterance without a wav is skipped
        lines.append(f"[9.0 - 9.5]\t{dialog}_F099\tneu\t[2.5, 2.5, 2.5]")
        label_dir = root / session / "dialog" / "EmoEvaluation"
        label_dir.mkdir(parents=True, exist_ok=True)
        (label_dir / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
        (label_dir / "Categorical").mkdir(exist_ok=True)  # the real subfolders hold other ratings
        (label_dir / "Categorical" / f"{dialog}_e1_cat.txt").write_text(f"{dialog}_F000 :Anger; ()\n")
    return kept


def run_downstream_script(cwd: Path, env: dict, *args: str, timeout: int = 300) -> str:
    """`python run_downstream.py ARGS` in its own process, as a user runs it; asserts it exits 0 and returns its
    stdout and stderr together."""
    done = subprocess.run(
        [sys.executable, str(REPO / "run_downstream.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr
