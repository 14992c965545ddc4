"""mini-SUPERB: the invariants s3prl's seven SUPERB loaders rely on (docs/design.md
"s3prl compatibility layer"), checked on the shared ci corpus with independent re-implementations of the loaders'
rules, plus determinism and errors."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import minisuperb
from minisuperb.__main__ import main as cli_main
from minisuperb.engine import EngineUnavailable
from minisuperb.text import PHONE_VOCAB, align_to_lexicon, arpabet_to_espeak, espeak_reads_back

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
FSC_VALUES = {
    "action": {"activate", "bring", "change language", "deactivate", "decrease", "increase"},
    "object": {
        "none",
        "music",
        "lights",
        "volume",
        "heat",
        "lamp",
        "newspaper",
        "juice",
        "socks",
        "shoes",
        "Chinese",
        "Korean",
        "English",
        "German",
    },
    "location": {"none", "kitchen", "bedroom", "washroom"},
}
SNIPS_SPEAKERS = {
    "train": ["Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly", "Matthew", "Salli"],
    "valid": ["Aditi", "Amy", "Geraint", "Nicole"],
    "test": ["Brian", "Emma", "Raveena", "Russell"],
}
LIBRI_SPLITS = ["train-clean-100", "dev-clean", "test-clean"]


def ks_role(file_name: str) -> str:
    """s3prl's Speech Commands split rule, written from its documented form (independent of minisuperb)."""
    speaker = file_name.split("_nohash_")[0]
    value = int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 2**27
    percent = value * 100.0 / (2**27 - 1)
    return "dev" if percent < 10 else "discarded" if percent < 20 else "train"


def read_lexicon(root: Path) -> dict[str, list[str]]:
    lexicon: dict[str, list[str]] = {}
    for line in (root / "LibriSpeech" / "librispeech-lexicon.txt").read_text().splitlines():
        word, *phones = line.split()
        lexicon.setdefault(word, phones)
    return lexicon


def read_transcripts(root: Path, split: str) -> dict[str, list[str]]:
    out = {}
    for trans in (root / "LibriSpeech" / split).rglob("*.trans.txt"):
        for line in trans.read_text().splitlines():
            utt, *words = line.split()
            out[utt] = words
    return out


# --- pure units -------------------------------------------------------------------------------------


def test_phone_vocabulary_is_the_71_token_stress_marked_set():
    assert len(PHONE_VOCAB) == 71 and PHONE_VOCAB[:2] == ("SIL", "SPN")
    assert list(PHONE_VOCAB[2:]) == sorted(PHONE_VOCAB[2:])
    assert sum(p[-1].isdigit() for p in PHONE_VOCAB) == 45


def test_arpabet_to_espeak_matches_the_documented_example():
    words = [["DH", "AH0"], ["K", "W", "IH1", "K"], ["B", "R", "AW1", "N"], ["F", "AA1", "K", "S"]]
    assert " ".join(arpabet_to_espeak(w) for w in words) == "D@ kw'Ik br'aUn f'A:ks"
    assert espeak_reads_back(["K", "AO1", "R", "T", "SH", "IH2", "P"]) is False  # t+S would read as CH
    with pytest.raises(ValueError, match="not an ARPAbet phone"):
        arpabet_to_espeak(["XX1"])


def test_alignment_keeps_lexicon_phones_and_splits_unmatched_spans():
    lexicon = ["DH", "AH0", "K", "AE1", "T"]
    # espeak realised a flap for T, dropped AE, and paused at the end
    events = [("D", 100), ("@", 300), ("k", 500), ("t#", 900), ("_:", 1200), ("_", 1500)]
    phones, starts = align_to_lexicon(lexicon, events, 1500)
    assert [p for p in phones if p != "SIL"] == lexicon
    assert phones[0] == "SIL" and starts[0] == 0 and phones[-1] == "SIL" and starts[-1] == 1200
    assert starts == sorted(starts) and starts[phones.index("AE1")] == 700  # half of K's span
    # espeak reports a post-vocalic R at the next phone's sample: R gets part of the vowel instead
    phones, starts = align_to_lexicon(
        ["Y", "AO1", "R", "M"], [("j", 0), ("'O:", 200), ("r", 800), ("m", 800), ("_", 1000)], 1000
    )
    assert phones == ["Y", "AO1", "R", "M"] and starts == [0, 200, 500, 800]


# --- PR / ASR ---------------------------------------------------------------------------------------


def test_every_transcript_word_is_in_the_lexicon_and_every_phone_in_the_vocabulary(minisuperb_ci):
    lexicon = read_lexicon(minisuperb_ci)
    vocab = (minisuperb_ci / "LibriSpeech" / "phonemes.txt").read_text().split()
    assert vocab == list(PHONE_VOCAB)
    assert {p for phones in lexicon.values() for p in phones} <= set(vocab[2:])
    for split in LIBRI_SPLITS:
        transcripts = read_transcripts(minisuperb_ci, split)
        flacs = {p.stem for p in (minisuperb_ci / "LibriSpeech" / split).rglob("*.flac")}
        assert flacs == set(transcripts) and flacs
        for words in transcripts.values():
            assert words and all(w == w.upper() and w in lexicon for w in words)


def test_ci_sizes_meet_the_tiny_run_minimums(minisuperb_ci):
    train = read_transcripts(minisuperb_ci, "train-clean-100")
    speakers = {u.split("-")[0] for u in train}
    assert len(speakers) >= 3 and len(train) >= 24
    assert all(len(train) % b != 1 for b in (2, 4, 8, 16, 32))  # ASR drops a 1-utterance bucket
    assert len(read_transcripts(minisuperb_ci, "dev-clean")) >= 6
    assert len(read_transcripts(minisuperb_ci, "test-clean")) >= 6


def test_asr_bucket_csvs_match_the_audio(minisuperb_ci):
    libri = minisuperb_ci / "LibriSpeech"
    for split in LIBRI_SPLITS:
        with open(libri / "len_for_bucket" / f"{split}.csv", newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["", "file_path", "length", "label"]
        lengths = [int(r[2]) for r in rows[1:]]
        assert lengths == sorted(lengths, reverse=True)
        assert {r[1] for r in rows[1:]} == {p.relative_to(libri).as_posix() for p in (libri / split).rglob("*.flac")}
        for _, path, length, label in rows[1:]:
            assert sf.info(str(libri / path)).frames == int(length) and label == ""
    symbols = [line.split() for line in (libri / "char.dict").read_text().splitlines()]
    assert [s for s, _ in symbols] == ["|"] + [chr(c) for c in range(65, 91)] + ["'"]
    assert all(n.isdigit() for _, n in symbols) and int(symbols[0][1]) > 0


def test_alignments_cover_each_utterance_with_the_lexicon_label(minisuperb_ci):
    libri = minisuperb_ci / "LibriSpeech"
    lexicon = read_lexicon(minisuperb_ci)
    for split in LIBRI_SPLITS:
        transcripts = read_transcripts(minisuperb_ci, split)
        records = [json.loads(line) for line in (libri / "alignments" / f"{split}.jsonl").read_text().splitlines()]
        assert {r["id"] for r in records} == set(transcripts)
        for r in records:
            expected = [p for w in transcripts[r["id"]] for p in lexicon[w]]
            assert [p for p in r["phones"] if p != "SIL"] == expected
            assert len(r["starts"]) == len(r["phones"]) and r["starts"][0] == 0
            assert r["starts"] == sorted(r["starts"]) and r["starts"][-1] < r["num_samples"]
            spk, chapter, _ = r["id"].split("-")
            assert sf.info(str(libri / split / spk / chapter / f"{r['id']}.flac")).frames == r["num_samples"]
            # phones take real time: the median phone lasts 30-200 ms
            durations = np.diff(r["starts"] + [r["num_samples"]]) / 16000
            assert 0.03 < np.median(durations) < 0.2


# --- KS ---------------------------------------------------------------------------------------------


def test_speech_commands_hash_split_keeps_every_keyword_in_train(minisuperb_ci):
    assert [ks_role(f"{i:08x}_nohash_0.wav") for i in (0, 7, 0xB, 0xF, 0x19, 0x1A)] == ["dev"] * 6
    assert [ks_role(f"{i:08x}_nohash_0.wav") for i in (2, 0x18, 0x26)] == ["discarded"] * 3
    assert [ks_role(f"{i:08x}_nohash_0.wav") for i in (1, 3, 4, 5, 6, 8)] == ["train"] * 6
    root = minisuperb_ci / "speech_commands_v0.01"
    roles: dict[str, Counter] = defaultdict(Counter)
    for wav in root.glob("*/*.wav"):
        if wav.parent.name != "_background_noise_":
            roles[wav.parent.name][ks_role(wav.name)] += 1
    noise = list((root / "_background_noise_").glob("*.wav"))
    assert all(sf.info(str(n)).frames >= 16000 for n in noise) and len(noise) >= 2
    assert all(roles[k]["train"] >= 1 and roles[k]["dev"] >= 1 for k in KEYWORDS)
    assert sum(c["train"] for c in roles.values()) + len(noise) >= 32  # one batch with drop_last
    assert set(roles) - set(KEYWORDS)  # filler words for _unknown_
    test_root = minisuperb_ci / "speech_commands_test_set_v0.01"
    labels = {d.name for d in test_root.iterdir() if d.is_dir()}
    assert labels == set(KEYWORDS) | {"_unknown_", "_silence_"}
    assert all(any((test_root / lab).glob("*.wav")) for lab in labels)


# --- IC ---------------------------------------------------------------------------------------------


def test_fluent_commands_valid_and_test_values_appear_in_train(minisuperb_ci):
    root = minisuperb_ci / "fluent_speech_commands_dataset"
    splits = {}
    for split in ("train", "valid", "test"):
        with open(root / "data" / f"{split}_data.csv", newline="") as fh:
            reader = csv.reader(fh)
            assert next(reader) == ["", "path", "speakerId", "transcription", "action", "object", "location"]
            splits[split] = list(reader)
    for rows in splits.values():
        assert rows and [int(r[0]) for r in rows] == list(range(len(rows)))
        for r in rows:
            assert (root / r[1]).is_file() and r[1] == f"wavs/speakers/{r[2]}/{Path(r[1]).name}"
            assert r[4] in FSC_VALUES["action"] and r[5] in FSC_VALUES["object"] and r[6] in FSC_VALUES["location"]
    train_values = [{r[k] for r in splits["train"]} for k in (4, 5, 6)]
    for split in ("valid", "test"):
        for r in splits[split]:
            assert all(r[k] in train_values[k - 4] for k in (4, 5, 6))
    assert len({tuple(r[4:]) for r in splits["train"]}) == 31  # ci covers every intent
    speakers = [{r[2] for r in rows} for rows in splits.values()]
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])


# --- SID --------------------------------------------------------------------------------------------


def test_voxceleb_every_speaker_in_every_split(minisuperb_ci):
    root = minisuperb_ci / "VoxCeleb1"
    by_split: dict[str, set] = defaultdict(set)
    for line in (root / "iden_split.txt").read_text().splitlines():
        code, rel = line.split()
        assert re.fullmatch(r"id1\d{4}/[\w-]{11}/\d{5}\.wav", rel)
        assert len(list(root.glob(f"*/wav/{rel}"))) == 1
        by_split[code].add(rel.split("/")[0])
    assert set(by_split) == {"1", "2", "3"}
    assert by_split["1"] == by_split["2"] == by_split["3"] and len(by_split["1"]) >= 6
    assert all(0 <= int(s[2:]) - 10001 < 1251 for s in by_split["1"])
    assert min(int(s[2:]) for s in by_split["1"]) == 10001


# --- ER ---------------------------------------------------------------------------------------------


def test_iemocap_each_fold_test_session_holds_all_four_emotions(minisuperb_ci):
    root = minisuperb_ci / "IEMOCAP_full_release"
    raw = Counter()
    for session in range(1, 6):
        wavs = {p.stem for p in (root / f"Session{session}" / "sentences" / "wav").rglob("*.wav")}
        labels = Counter()
        for txt in (root / f"Session{session}" / "dialog" / "EmoEvaluation").glob("*.txt"):
            for line in txt.read_text().splitlines():
                if line.startswith("["):  # the rule of s3prl's IEMOCAP_preprocess
                    fields = [f for f in re.split("[\t\n]", line) if f]
                    assert fields[1] in wavs and re.fullmatch(r"\[\d+\.\d{4} - \d+\.\d{4}\]", fields[0])
                    raw[fields[2]] += 1
                    if fields[2] in ("neu", "hap", "ang", "sad", "exc"):
                        labels[fields[2].replace("exc", "hap")] += 1
        assert set(labels) == {"neu", "hap", "ang", "sad"}, f"Session{session}: {labels}"
        assert {w.split("_")[-1][0] for w in wavs} == {"F", "M"}  # both speakers of the session
    assert raw["exc"] and raw["fru"] and raw["xxx"]  # the label mapping and the filter are exercised


def test_s3prl_iemocap_preprocess_reads_the_tree(minisuperb_ci, tmp_path):
    """Runs the generator that ships in PyPI s3prl (loaded by file: the package __init__ needs the
    project's compatibility layer) on a copy of the tree."""
    import importlib.util
    import shutil

    spec = importlib.util.find_spec("s3prl")
    assert spec is not None, "s3prl is not installed: `make test` installs it (pip install -e '.[s3prl]')"
    script = Path(list(spec.submodule_search_locations)[0]) / "downstream" / "emotion" / "IEMOCAP_preprocess.py"
    module_spec = importlib.util.spec_from_file_location("iemocap_preprocess", script)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    root = tmp_path / "IEMOCAP"
    shutil.copytree(minisuperb_ci / "IEMOCAP_full_release", root)
    module.main(str(root))
    for k in range(1, 6):
        test = json.loads((root / "meta_data" / f"Session{k}" / "test_meta_data.json").read_text())
        train = json.loads((root / "meta_data" / f"Session{k}" / "train_meta_data.json").read_text())
        assert {m["label"] for m in test["meta_data"]} == {"neu", "hap", "ang", "sad"}
        assert all(m["path"].startswith(f"Session{k}/") and (root / m["path"]).is_file() for m in test["meta_data"])
        assert len(train["meta_data"]) > 3 * len(test["meta_data"])


# --- SF ---------------------------------------------------------------------------------------------


def test_snips_ids_transcripts_and_slots(minisuperb_ci):
    root = minisuperb_ci / "SNIPS"
    slots = (root / "slots.txt").read_text().split("\n")
    assert slots[0] == "O" and "" not in slots
    lines = {}
    for line in (root / "all.iob.snips.txt").read_text().splitlines():
        text, tags = line.split("\t")
        utt, *words = text.split()
        tag_list = tags.split()
        assert words[0] == "BOS" and words[-1] == "EOS" and tag_list[0] == "O"
        assert len(tag_list) == len(words)  # O for BOS, one tag per word, intent last
        assert set(tag_list[1:-1]) <= set(slots) and not re.search(r"\b[BI]-", tags)
        assert all(re.fullmatch(r"[A-Z']+", w) for w in words[1:-1])
        lines[utt] = tag_list
    texts = {
        line.split("\t")[0].split(maxsplit=1)[0]: line.split("\t")[0].split(maxsplit=1)[1]
        for line in (root / "all.iob.snips.txt").read_text().splitlines()
    }
    for split, speakers in SNIPS_SPEAKERS.items():
        ids = [p.stem for p in (root / split).glob("*.wav")]
        assert all(i in lines and re.fullmatch(rf"[A-Za-z]+-snips-{split}-\d+", i) for i in ids)
        by_text = defaultdict(set)
        for i in ids:
            if i.split("-")[0] in speakers:
                by_text[i.rsplit("-", 1)[1]].add(i.split("-")[0])
        # every voice of the split says every text of it, the same words each time (the real release's layout),
        # but for train's slot-free text, said by one voice
        assert by_text and all(voices == set(speakers) for n, voices in by_text.items() if (split, n) != ("train", "0"))
        assert split != "train" or (
            by_text["0"] == {speakers[0]} and set(lines[f"{speakers[0]}-snips-train-0"][1:-1]) == {"O"}
        )
        assert all(len({texts[f"{v}-snips-{split}-{n}"] for v in voices}) == 1 for n, voices in by_text.items())
        assert any(i.split("-")[0] not in speakers for i in ids)  # a distractor for s3prl's speaker filter
        # a slot value in every split (s3prl's slot-value CER divides by their number)
        assert any(set(lines[i][1:-1]) != {"O"} for i in ids if i.split("-")[0] in speakers)
    assert any(set(t[1:-1]) == {"O"} for t in lines.values())  # a slot-free sentence


# --- audio, pretraining, README ---------------------------------------------------------------------


def test_every_audio_file_is_16k_mono_16bit(minisuperb_ci):
    files = [p for p in minisuperb_ci.rglob("*") if p.suffix in (".wav", ".flac")]
    assert len(files) > 250
    for p in files:
        info = sf.info(str(p))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), p
        assert info.format == ("FLAC" if p.suffix == ".flac" else "WAV")


def test_pretraining_manifests_list_8_to_15_second_files(minisuperb_ci):
    root = minisuperb_ci / "pretrain"
    seen = set()
    for split in ("train", "valid"):
        head, *rows = (root / f"{split}.tsv").read_text().splitlines()
        assert Path(head) == root / "audio" and Path(head).is_absolute() and rows
        for row in rows:
            rel, n = row.split("\t")
            assert sf.info(str(Path(head) / rel)).frames == int(n) and 8 * 16000 <= int(n) <= 15 * 16000
            seen.add(rel)
    assert seen == {p.relative_to(root / "audio").as_posix() for p in (root / "audio").rglob("*.flac")}


def test_readme_and_marker_describe_the_run(minisuperb_ci):
    info = minisuperb.read_marker(minisuperb_ci)
    assert info["complete"] and info["seed"] == 0 and info["scale"] == "ci"
    readme = (minisuperb_ci / "README.md").read_text()
    assert f"version {minisuperb.__version__}" in readme and "seed 0" in readme
    libri = minisuperb_ci / "LibriSpeech"
    other = [p for split in ("dev-other", "test-other") for p in (libri / split).rglob("*.flac")]
    assert other  # the fine-tuning planner's LibriSpeech "other" evaluation sets
    assert info["corpora"]["LibriSpeech"]["audio_files"] == sum(1 for _ in libri.rglob("*.flac")) - len(other)
    assert info["corpora"]["librispeech_finetuning"]["audio_files"] == len(other) + sum(
        1 for _ in (minisuperb_ci / "librispeech_finetuning").rglob("*.flac")
    )


# --- determinism and errors -------------------------------------------------------------------------


def _hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.suffix == ".tsv":  # the first line is the absolute root
                data = data.split(b"\n", 1)[1]
            out[p.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


def test_one_and_two_workers_write_identical_files(tmp_path):
    one = minisuperb.generate(tmp_path / "w1", "tiny", seed=0, workers=1, progress=False)
    two = minisuperb.generate(tmp_path / "w2", "tiny", seed=0, workers=2, progress=False)
    assert one["total"]["audio_files"] == two["total"]["audio_files"] > 50
    assert _hashes(tmp_path / "w1") == _hashes(tmp_path / "w2")
    other = minisuperb.generate(tmp_path / "s1", "tiny", seed=1, workers=2, corpora=["snips"], progress=False)
    assert other["corpora"]["snips"]["audio_files"] == one["corpora"]["snips"]["audio_files"]
    a, b = _hashes(tmp_path / "w1" / "SNIPS"), _hashes(tmp_path / "s1" / "SNIPS")
    assert a["slots.txt"] == b["slots.txt"] and a["all.iob.snips.txt"] != b["all.iob.snips.txt"]


def test_non_empty_or_foreign_output_folders_are_refused(tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty.*--force"):
        minisuperb.check_setup(tmp_path / "busy")
    (tmp_path / "busy" / "LibriSpeech").mkdir()  # looks like real data: never deleted
    with pytest.raises(FileExistsError, match="refusing to delete"):
        minisuperb.check_setup(tmp_path / "busy", force=True)
    assert cli_main(["--out", str(tmp_path / "busy"), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError):
        minisuperb.check_setup(tmp_path / "afile" / "out")
    with pytest.raises(ValueError, match="unknown scale"):
        minisuperb.check_setup(tmp_path / "new", scale="huge")


def test_unwritable_folder_and_missing_engine_say_what_to_fix(tmp_path, monkeypatch):
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    with pytest.raises(PermissionError, match="cannot write to"):
        minisuperb.check_setup(tmp_path / "out")
    monkeypatch.setattr(os, "access", real_access)
    monkeypatch.setitem(__import__("sys").modules, "espeakng_loader", None)  # import fails
    with pytest.raises(EngineUnavailable, match="pip install espeakng-loader"):
        minisuperb.check_setup(tmp_path / "out")


def test_force_replaces_a_previous_output(tmp_path):
    first = minisuperb.generate(tmp_path / "o", "tiny", workers=2, corpora=["voxceleb1"], progress=False)
    stale = tmp_path / "o" / "VoxCeleb1" / "stale.txt"
    stale.write_text("left over")
    second = minisuperb.generate(tmp_path / "o", "tiny", workers=2, force=True, corpora=["voxceleb1"], progress=False)
    assert not stale.exists() and first["corpora"]["voxceleb1"]["files"] == second["corpora"]["voxceleb1"]["files"]


# --- the demo scale: test sets sized for narrow intervals ---------------------------------------------


def test_demo_scale_test_sets_keep_accuracy_intervals_within_six_points():
    """KS, IC, SID and ER (pooled over the five folds) each have enough test utterances that the 95 % Wilson
    interval is at most +-6 points even at 50 % accuracy, where it is widest."""
    from minisuperb.scales import SCALES
    from results.intervals import wilson_half_width

    demo = SCALES["demo"]
    test_sizes = {
        "KS": demo.ks_test_speakers * (len(KEYWORDS) + demo.ks_fillers_per_speaker) + demo.ks_test_silence,
        "IC": demo.fsc_test[0] * demo.fsc_test[1],
        "SID": demo.vox_speakers * demo.vox_eval_utts[1],
        # each of the 5 sessions x 2 speakers says er_sentences sentences in all 4 emotions (extras not counted)
        "ER": 5 * 2 * demo.er_sentences * 4,
    }
    for task, n in test_sizes.items():
        assert wilson_half_width(n) <= 6.0, (task, n)
    assert SCALES["ci"].vox_eval_utts == SCALES["small"].vox_eval_utts == (1, 1)  # their layouts are unchanged


def test_demo_dev_clean_is_small_dev_clean_and_shares_no_speaker_or_chapter():
    """libri_dev_from: the demo scale's dev-clean jobs (path, seed, render, alignment, channel) are small's, so
    the phone ABX of both scales is measured on the same items; the demo's own speakers and chapters differ."""
    from dataclasses import replace

    from minisuperb import librispeech
    from minisuperb.common import Context
    from minisuperb.generate import _pronunciations
    from minisuperb.scales import SCALES
    from minisuperb.sentences import Grammar

    grammar = Grammar.load()
    base = Context(
        out_dir=Path("/corpus"), scale=SCALES["small"], seed=3, grammar=grammar, prons=_pronunciations(grammar)
    )

    def jobs(scale: str) -> dict[str, list]:
        by_split: dict[str, list] = defaultdict(list)
        for job in librispeech.plan(replace(base, scale=SCALES[scale])).jobs:
            by_split[Path(job.path).relative_to("/corpus/LibriSpeech").parts[0]].append(job)
        return by_split

    small, demo = jobs("small"), jobs("demo")
    assert SCALES["demo"].libri_dev_from == "small"
    assert sorted(demo["dev-clean"], key=lambda j: j.path) == sorted(small["dev-clean"], key=lambda j: j.path)
    assert len(demo["train-clean-100"]) == 24 * 20 and len(demo["test-clean"]) == 8 * 12
    ids = {split: {Path(j.path).parts[-3:-1] for j in js} for split, js in demo.items()}
    own = ids["train-clean-100"] | ids["test-clean"]
    assert not {s for s, _ in own} & {s for s, _ in ids["dev-clean"]}
    assert not {c for _, c in own} & {c for _, c in ids["dev-clean"]}
    assert len({j.seed for js in demo.values() for j in js}) == sum(len(js) for js in demo.values())


@pytest.mark.parametrize("sf_voices", ["polly", "train_variants"])
def test_snips_valid_and_test_voices_follow_the_scale(sf_voices):
    """polly: valid/test voices on espeak variants training never heard, with their Polly namesakes' accents;
    train_variants: American voices on the training voices' variants of the same sex."""
    from dataclasses import replace

    from minisuperb import snips
    from minisuperb.common import Context
    from minisuperb.generate import _pronunciations
    from minisuperb.scales import SCALES
    from minisuperb.sentences import Grammar

    grammar = Grammar.load()
    ctx = Context(
        out_dir=Path("/corpus"),
        scale=replace(SCALES["ci"], sf_voices=sf_voices),
        seed=0,
        grammar=grammar,
        prons=_pronunciations(grammar),
    )
    voice = {Path(j.path).name.split("-")[0]: j.render.voice for j in snips.plan(ctx).jobs}
    assert set(voice) == {v for vs in SNIPS_SPEAKERS.values() for v in vs}
    train_variants = {voice[v].split("+")[1] for v in SNIPS_SPEAKERS["train"]}
    held_out = SNIPS_SPEAKERS["valid"] + SNIPS_SPEAKERS["test"]
    if sf_voices == "polly":
        assert not {voice[v].split("+")[1] for v in held_out} & train_variants
        assert voice["Brian"].startswith("en-gb-x-rp+") and voice["Raveena"].startswith("en-029+")
    else:
        assert {voice[v].split("+")[1] for v in held_out} <= train_variants
        assert all(v.startswith("en-us+") for v in voice.values())
    with pytest.raises(ValueError, match="sf_voices"):
        snips.plan(replace(ctx, scale=replace(SCALES["ci"], sf_voices="american")))
