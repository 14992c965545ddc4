"""The clean-room ctc corpus loaders (superb/corpus) and the ctc num_workers fix, on tiny trees."""

from __future__ import annotations

from pathlib import Path

import pytest
from superb_trees import LEXICON, SENTENCES, make_librispeech, make_snips, write_noise

from superb import compat
from superb.corpus.libriphone import LibriPhoneDataset
from superb.corpus.snips import SnipsDataset
from superb.registry import CONFIG_DIR

compat.import_torchaudio()  # s3prl's ctc modules import torchaudio at module level
from s3prl.downstream.ctc.text import CharacterTextSlotEncoder, WordTextEncoder  # noqa: E402

PHONES = WordTextEncoder.load_from_file(str(CONFIG_DIR / "vocab" / "phoneme.txt"))
SPLITS = {"train-clean-100": 7, "dev-clean": 3}


@pytest.fixture(scope="module")
def libri(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("LibriSpeech")
    make_librispeech(root, SPLITS)
    return root


def libriphone(
    root: Path, bucket_size: int = 1, split: str = "train-clean-100", lexicon=None, **extra
) -> LibriPhoneDataset:
    return LibriPhoneDataset(
        [split],
        PHONES,
        bucket_size,
        path=str(root),
        lexicon=lexicon or [str(root / "librispeech-lexicon.txt")],
        **extra,
    )


def test_libriphone_targets_are_lexicon_phones_sorted_longest_first(libri):
    """Each item is (flac path, word-tokenizer ids of the concatenated phones + <eos>), longest first."""
    dataset = libriphone(libri, num_workers=0, train=["train-clean-100"], ratio=1.0, offset=0)  # extra keys ignored
    assert len(dataset) == SPLITS["train-clean-100"]
    lengths = [len(tokens) for _, tokens in dataset.items]
    assert lengths == sorted(lengths, reverse=True)
    for audio, tokens in dataset.items:
        n = int(Path(audio).stem.split("-")[-1])
        phones = " ".join(LEXICON[word] for word in SENTENCES[n % len(SENTENCES)].split())
        assert tokens == PHONES.encode(phones) and tokens[-1] == PHONES.eos_idx
        assert PHONES.unk_idx not in tokens


def test_libriphone_bucket_windows(libri):
    """With bucket_size > 1, item i is the window of bucket_size items from min(len - size, i)."""
    flat = libriphone(libri).items
    buckets = libriphone(libri, bucket_size=3)
    assert len(buckets) == len(flat)
    for i in range(len(buckets)):
        start = min(len(flat) - 3, i)
        assert buckets[i] == flat[start : start + 3]
    too_big = libriphone(libri, bucket_size=50)
    assert too_big[0] == flat and too_big[len(flat) - 1] == flat


def test_libriphone_first_pronunciation_wins_across_files(libri, tmp_path):
    """A word's first pronunciation over the ordered lexicon list is used."""
    override = tmp_path / "first.txt"
    override.write_text("CAT  K AE1 T S\nCAT K AH0\n")
    dataset = libriphone(libri, lexicon=[str(override), str(libri / "librispeech-lexicon.txt")])
    sentence = SENTENCES.index("THE CAT SAT")
    (tokens,) = [t for a, t in dataset.items if int(Path(a).stem.split("-")[-1]) % len(SENTENCES) == sentence][:1]
    assert tokens == PHONES.encode("DH AH0 K AE1 T S S AE1 T")


def test_libriphone_names_a_word_missing_from_the_lexicon(libri, tmp_path):
    """An out-of-lexicon word raises a ValueError naming the word and the transcript file."""
    partial = tmp_path / "partial.txt"
    partial.write_text("".join(f"{w} {p}\n" for w, p in LEXICON.items() if w != "DOG"))
    with pytest.raises(ValueError, match=r"trans\.txt: word 'DOG' is not in the lexicon"):
        libriphone(libri, lexicon=[str(partial)])


def test_libriphone_rejects_phones_outside_the_vocabulary(libri, tmp_path):
    """A lexicon phone the vocabulary lacks would silently become <unk>; it raises instead."""
    bad = tmp_path / "bad.txt"
    bad.write_text("".join(f"{w} {p}\n" for w, p in LEXICON.items()) + "ZEBRA Z IY1 B R AX\n")
    with pytest.raises(ValueError, match=r"\['AX'\]"):
        libriphone(libri, lexicon=[str(bad)])


def test_libriphone_clear_errors_for_missing_inputs(libri, tmp_path):
    """Missing lexicon file, empty split and missing transcript line each name what is missing."""
    with pytest.raises(FileNotFoundError, match="openslr"):
        libriphone(libri, lexicon=[str(tmp_path / "nope.txt")])
    with pytest.raises(FileNotFoundError, match="test-other"):
        libriphone(libri, split="test-other")
    broken = tmp_path / "LibriSpeech"
    files = make_librispeech(broken, {"dev-clean": 2})
    transcript = next(files["dev-clean"][0].parent.glob("*.trans.txt"))
    transcript.write_text(transcript.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match=files["dev-clean"][1].stem):
        libriphone(broken, split="dev-clean")


SNIPS_VOICES = {"train": ["Ivy", "Joanna", "Kendra"], "valid": ["Aditi", "Amy"]}


@pytest.fixture(scope="module")
def snips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("SNIPS")
    make_snips(root, SNIPS_VOICES, per_speaker=2)
    return root


def slot_tokenizer(root: Path) -> CharacterTextSlotEncoder:
    return CharacterTextSlotEncoder.load_from_file(str(CONFIG_DIR / "vocab" / "character.txt"), str(root / "slots.txt"))


def test_snips_filters_by_split_speakers_and_transcripts(tmp_path):
    """Only wavs whose id is in all.iob.snips.txt and starts with a listed voice are used."""
    make_snips(tmp_path, SNIPS_VOICES, per_speaker=2)
    write_noise(tmp_path / "train" / "Ivy-snips-train-99.wav", 800, seed=0)  # not in the transcripts
    dataset = SnipsDataset(
        ["train"], slot_tokenizer(tmp_path), 1, path=str(tmp_path), train_speakers=["Ivy", "Joanna"], num_workers=0
    )
    voices = sorted({Path(audio).stem.split("-")[0] for audio, _ in dataset.items})
    assert voices == ["Ivy", "Joanna"] and len(dataset) == 4


def test_snips_targets_carry_slot_spans_and_sort_longest_first(snips):
    """Targets decode to the words with B-/E- slot tags around spans, items longest first."""
    tokenizer = slot_tokenizer(snips)
    dataset = SnipsDataset(["valid"], tokenizer, 2, path=str(snips), valid_speakers=["Aditi", "Amy"])
    lengths = [len(tokens) for _, tokens in dataset.items]
    assert lengths == sorted(lengths, reverse=True)
    texts = {tokenizer.decode(tokens) for _, tokens in dataset.items}
    assert texts == {"PLAY SOME B-playlist JAZZ E-playlist", "ADD B-artist ELTON JOHN E-artist TO MY LIST"}
    assert isinstance(dataset[0], list) and dataset[0] == dataset.items[:2]


def test_snips_clear_errors(snips, tmp_path):
    """Missing speaker list, unknown slot tag, word/tag count mismatch and a plain tokenizer raise."""
    tokenizer = slot_tokenizer(snips)
    with pytest.raises(ValueError, match="corpus.train_speakers"):
        SnipsDataset(["train"], tokenizer, 1, path=str(snips))
    with pytest.raises(FileNotFoundError, match="Brian"):
        SnipsDataset(["valid"], tokenizer, 1, path=str(snips), valid_speakers=["Brian"])
    bad = tmp_path / "bad"
    make_snips(bad, {"train": ["Ivy"]}, per_speaker=1)
    lines = (bad / "all.iob.snips.txt").read_text().replace("O O playlist", "O O genre")
    (bad / "all.iob.snips.txt").write_text(lines)
    with pytest.raises(ValueError, match="Ivy-snips-train-0: slot tag 'B-genre'"):
        SnipsDataset(["train"], tokenizer, 1, path=str(bad), train_speakers=["Ivy"])
    (bad / "all.iob.snips.txt").write_text(lines.replace("O O genre", "O genre"))
    with pytest.raises(ValueError, match="all.iob.snips.txt:1: .* 5 words and 4 tags"):
        SnipsDataset(["train"], tokenizer, 1, path=str(bad), train_speakers=["Ivy"])
    with pytest.raises(ValueError, match="character-slot"):
        SnipsDataset(["train"], PHONES, 1, path=str(snips), train_speakers=["Ivy"])


def test_ctc_num_workers_fix_keeps_the_corpus_dict(libri, monkeypatch):
    """s3prl's ctc load_dataset pops num_workers from the shared dict (later loaders get 12);
    after the fix the dict is untouched and every loader uses the configured count. The grafted
    corpus package serves s3prl's import, and a batch reads through the soundfile torchaudio.load."""
    import s3prl.downstream.ctc.data as data
    import s3prl.downstream.ctc.expert as expert
    import torchaudio

    from superb import runner_fixes

    # s3prl's own function, also when an in-process runner call earlier in the session installed the fix
    original = getattr(data.load_dataset, "__wrapped__", data.load_dataset)
    monkeypatch.setattr(data, "load_dataset", original)
    monkeypatch.setattr(expert, "load_dataset", original)
    monkeypatch.setattr(torchaudio, "load", compat.load_with_soundfile)
    runner_fixes.graft_ctc_corpus()
    corpus = {
        "name": "libriphone",
        "path": str(libri),
        "lexicon": [str(libri / "librispeech-lexicon.txt")],
        "train": ["train-clean-100"],
        "dev": ["dev-clean"],
        "bucketing": True,
        "batch_size": 2,
        "num_workers": 0,
    }
    buggy = dict(corpus)
    data.load_dataset("dev", PHONES, buggy)
    assert "num_workers" not in buggy  # the bug: the next loader would fall back to 12 workers

    runner_fixes.fix_ctc_num_workers()
    assert expert.load_dataset is data.load_dataset
    loaders = [expert.load_dataset(split, PHONES, corpus) for split in ("train", "dev", "dev")]
    assert corpus["num_workers"] == 0 and [loader.num_workers for loader in loaders] == [0, 0, 0]
    wavs, tokens, names = next(iter(loaders[0]))
    assert len(wavs) == 2 and all(w.ndim == 1 for w in wavs) and names[0].startswith("100-2000-")
