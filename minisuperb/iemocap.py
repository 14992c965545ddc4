"""IEMOCAP as SUPERB ER reads it: Session{1..5}/sentences/wav/<dialog>/<turn>.wav and
dialog/EmoEvaluation/<dialog>.txt in the real line format. Each speaker says the same sentences in all four
emotions (text cannot leak the label), at random intensity; a few exc/fru/xxx turns exercise the mapping."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from upstream_ehmam.frontend import SAMPLE_RATE

from .common import Context, Plan, lead_silence, write_lines
from .dsp import Channel
from .jobs import Job, JobResult
from .sentences import sentence_case, words_of
from .voices import ALL_ACCENTS, render, sample_speakers

ROOT_DIR = "IEMOCAP_full_release"
EMOTIONS = ("neu", "hap", "ang", "sad")
EXTRA_LABELS = ("exc", "fru", "xxx")
# label -> (rendered as, intensity range); exc is relabelled hap by s3prl, fru/xxx are filtered out
_EXTRA_RENDER = {"exc": ("hap", (0.7, 1.0)), "fru": ("ang", (0.2, 0.5)), "xxx": (None, (0.1, 0.4))}
_EVALUATOR_WORD = {
    "neu": "Neutral",
    "hap": "Happiness",
    "ang": "Anger",
    "sad": "Sadness",
    "exc": "Excited",
    "fru": "Frustration",
}
_VAD = {
    "neu": (2.5, 2.5, 2.5),
    "hap": (3.5, 3.0, 3.0),
    "ang": (1.8, 3.8, 3.8),
    "sad": (2.0, 2.0, 2.5),
    "exc": (3.8, 3.8, 3.2),
    "fru": (2.0, 3.2, 3.2),
    "xxx": (2.5, 3.0, 3.0),
}


def plan(ctx: Context) -> Plan:
    sc = ctx.scale
    root = ctx.out_dir / ROOT_DIR
    rng = ctx.rng("iemocap", 0)
    jobs: list[Job] = []
    turns: list[dict] = []  # one per job, in dialog order
    n_extra = 0  # rotates exc/fru/xxx across speakers and sessions
    for session in range(1, 6):
        spk_f, spk_m = sample_speakers(rng, [f"Ses0{session}F", f"Ses0{session}M"], ["f", "m"], ALL_ACCENTS)
        channel = Channel(
            rt60=float(rng.uniform(0.2, 0.45)),
            drr_db=float(rng.uniform(4, 10)),
            noise="pink",
            snr_db=float(rng.uniform(25, 40)),
        )
        dialogs = [
            f"Ses0{session}{'FM'[j % 2]}_{'impro' if j % 2 == 0 else 'script'}0{j // 2 + 1}"
            + ("" if j % 2 == 0 else "_1")
            for j in range(sc.er_dialogs)
        ]
        per_dialog: dict[str, dict[str, list]] = {d: {"F": [], "M": []} for d in dialogs}
        for gender, spk in (("F", spk_f), ("M", spk_m)):
            lines = []
            for _ in range(sc.er_sentences):
                tokens = ctx.sentence(rng, 3, 10)
                lines += [(tokens, emo) for emo in EMOTIONS]
            for _ in range(sc.er_extra):
                lines.append((ctx.sentence(rng, 3, 10), EXTRA_LABELS[n_extra % len(EXTRA_LABELS)]))
                n_extra += 1
            for i, k in enumerate(rng.permutation(len(lines))):
                per_dialog[dialogs[i % len(dialogs)]][gender].append((spk, *lines[k]))
        for dialog in dialogs:
            lead = dialog[5]
            order = [lead, "M" if lead == "F" else "F"]
            queues = {g: list(per_dialog[dialog][g]) for g in order}
            counters = {g: 0 for g in order}
            while any(queues.values()):
                for g in order:
                    if not queues[g]:
                        continue
                    spk, tokens, label = queues[g].pop(0)
                    turn = f"{dialog}_{g}{counters[g]:03d}"
                    counters[g] += 1
                    emotion, (lo, hi) = _EXTRA_RENDER.get(label, (label, (0.4, 1.0)))
                    if emotion is None:
                        emotion = str(rng.choice(EMOTIONS))
                    path = root / f"Session{session}" / "sentences" / "wav" / dialog / f"{turn}.wav"
                    jobs.append(
                        Job(
                            path=str(path),
                            seed=ctx.job_seed("iemocap", len(jobs)),
                            channel=replace(channel, pad_start=lead_silence(rng)),
                            render=render(spk, ctx.espeak_text(tokens), rng, emotion, float(rng.uniform(lo, hi))),
                        )
                    )
                    turns.append(
                        {
                            "session": session,
                            "dialog": dialog,
                            "turn": turn,
                            "label": label,
                            "text": sentence_case(words_of(tokens), ctx.grammar.proper_nouns()),
                            "gap": float(rng.uniform(0.2, 1.5)),
                            "vad": [float(np.clip(v + rng.uniform(-0.5, 0.5), 1, 5)) for v in _VAD[label]],
                        }
                    )

    def finish(results: list[JobResult]) -> None:
        by_dialog: dict[tuple[int, str], list[tuple[dict, JobResult]]] = {}
        for t, res in zip(turns, results):
            by_dialog.setdefault((t["session"], t["dialog"]), []).append((t, res))
        for (session, dialog), items in by_dialog.items():
            _write_dialog(root / f"Session{session}" / "dialog", dialog, items)

    return Plan((ROOT_DIR,), jobs, finish)


def _write_dialog(dialog_dir: Path, dialog: str, items: list[tuple[dict, JobResult]]) -> None:
    """EmoEvaluation/<dialog>.txt (the lines s3prl's IEMOCAP_preprocess parses) and transcriptions."""
    evaluation = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    transcript = []
    t = 2.0
    for turn, res in items:
        start, end = t, t + res.num_samples / SAMPLE_RATE
        t = end + turn["gap"]
        v, a, d = turn["vad"]
        label = turn["label"]
        evaluation.append(f"[{start:.4f} - {end:.4f}]\t{turn['turn']}\t{label}\t[{v:.4f}, {a:.4f}, {d:.4f}]")
        words = [_EVALUATOR_WORD.get(label, "Neutral"), _EVALUATOR_WORD.get(label, "Other")]
        if label == "xxx":
            words = ["Neutral", "Anger"]  # evaluators disagree: no majority label
        evaluation += [f"C-E{k + 1}:\t{w};\t()" for k, w in enumerate(words)]
        evaluation += [f"A-E1:\tval {round(v)}; act {round(a)}; dom  {round(d)};\t()", ""]
        transcript.append(f"{turn['turn']} [{start:08.4f}-{end:08.4f}]: {turn['text']}")
    write_lines(dialog_dir / "EmoEvaluation" / f"{dialog}.txt", evaluation)
    write_lines(dialog_dir / "transcriptions" / f"{dialog}.txt", transcript)
