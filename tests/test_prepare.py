"""Preparation helpers (superb/prepare.py): ASR bucket CSVs and IEMOCAP fold meta, read back by s3prl."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import soundfile
from superb_trees import make_iemocap, make_librispeech

from superb import compat
from superb.prepare import ER_LABELS, librispeech_splits, main, write_asr_bucket_csvs, write_iemocap_meta
from superb.registry import CONFIG_DIR


def test_bucket_csv_lengths_are_sample_counts_longest_first(tmp_path):
    """One pandas-readable CSV per split: relative file_path, length == soundfile frames, empty
    label, rows sorted by length descending."""
    root = tmp_path / "LibriSpeech"
    files = make_librispeech(root, {"train-clean-100": 6, "dev-clean": 3})
    write_asr_bucket_csvs(root, ["train-clean-100", "dev-clean"], tmp_path / "buckets")
    for split, paths in files.items():
        table = pd.read_csv(tmp_path / "buckets" / f"{split}.csv", index_col=0)
        assert list(table.columns) == ["file_path", "length", "label"]
        assert list(table.index) == list(range(len(paths)))
        assert sorted(table.file_path) == sorted(p.relative_to(root).as_posix() for p in paths)
        for file_path, length in zip(table.file_path, table.length):
            assert file_path.startswith(f"{split}/") and length == soundfile.info(root / file_path).frames
        assert list(table.length) == sorted(table.length, reverse=True)
        assert table.label.isna().all()


def test_bucket_csv_errors_name_the_split(tmp_path):
    """A missing split folder, or one without .flac, raises FileNotFoundError naming it; nothing is written."""
    root = tmp_path / "LibriSpeech"
    make_librispeech(root, {"dev-clean": 2})
    (root / "test-clean" / "1" / "2").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="train-clean-360"):
        write_asr_bucket_csvs(root, ["dev-clean", "train-clean-360"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no .flac .*test-clean"):
        write_asr_bucket_csvs(root, ["test-clean"], tmp_path / "out")
    assert not (tmp_path / "out" / "dev-clean.csv").exists()
    assert librispeech_splits(root) == ["dev-clean"]


def test_s3prl_asr_dataset_reads_our_csvs_and_dictionary(tmp_path):
    """s3prl's own ASR SequenceDataset buckets our CSVs and encodes transcripts with our char.dict."""
    compat.import_torchaudio()
    from s3prl.downstream.asr.dataset import SequenceDataset
    from s3prl.downstream.asr.dictionary import Dictionary

    root = tmp_path / "LibriSpeech"
    make_librispeech(root, {"train-clean-100": 5})
    write_asr_bucket_csvs(root, ["train-clean-100"], tmp_path / "len_for_bucket")
    dictionary = Dictionary.load(str(CONFIG_DIR / "asr" / "char.dict"))
    assert len(dictionary.symbols) == 4 + 28  # fairseq's 4 specials + | A-Z '
    dataset = SequenceDataset(
        "train", 2, dictionary, str(root), str(tmp_path / "len_for_bucket"), train=["train-clean-100"]
    )
    table = pd.read_csv(tmp_path / "len_for_bucket" / "train-clean-100.csv", index_col=0)
    # buckets of 2 in CSV order, each halved (> 2000 samples); s3prl drops the trailing single utterance
    assert dataset.X == [[path] for path in table.file_path[:4]]
    assert all(dictionary.unk() not in label for label in dataset.Y.values())


def test_iemocap_meta_folds_labels_and_paths(tmp_path):
    """Session k's test JSON holds its neu/hap/ang/sad utterances (exc -> hap, other emotions and
    wav-less lines skipped); train holds the other sessions; paths are relative to the root."""
    root = tmp_path / "IEMOCAP_full_release"
    kept = make_iemocap(root, sessions=3)
    write_iemocap_meta(root, tmp_path / "meta")
    for k, session in enumerate(sorted(kept), 1):
        test = json.loads((tmp_path / "meta" / session / "test_meta_data.json").read_text())
        train = json.loads((tmp_path / "meta" / session / "train_meta_data.json").read_text())
        assert test["labels"] == train["labels"] == ER_LABELS
        got = [(entry["path"].split("/")[-1][:-4], entry["label"]) for entry in test["meta_data"]]
        assert got == kept[session]
        assert all(
            (root / entry["path"]).is_file() and entry["path"].startswith(f"{session}/sentences/wav/")
            for entry in test["meta_data"]
        )
        assert sorted(e["path"] for e in train["meta_data"]) == sorted(
            e["path"] for other in kept if other != session for e in _test_entries(tmp_path / "meta", other)
        )
        speakers = {entry["speaker"] for entry in test["meta_data"]}
        assert speakers == {f"Ses0{k}F", f"Ses0{k}M"}


def _test_entries(meta, session):
    return json.loads((meta / session / "test_meta_data.json").read_text())["meta_data"]


def test_s3prl_emotion_dataset_reads_our_meta(tmp_path):
    """s3prl's IEMOCAPDataset loads our JSON: class map, resampler and label ids."""
    compat.import_torchaudio()
    import torchaudio
    from s3prl.downstream.emotion.dataset import IEMOCAPDataset

    root = tmp_path / "IEMOCAP_full_release"
    kept = make_iemocap(root, sessions=2)
    write_iemocap_meta(root, tmp_path / "meta")
    original_load = torchaudio.load
    torchaudio.load = compat.load_with_soundfile
    try:
        dataset = IEMOCAPDataset(str(root), str(tmp_path / "meta" / "Session2" / "test_meta_data.json"), pre_load=False)
        labels = [dataset[i][1] for i in range(len(dataset))]
    finally:
        torchaudio.load = original_load
    assert labels == [ER_LABELS[label] for _, label in kept["Session2"]]


def test_iemocap_meta_errors(tmp_path):
    """No Session folders, or a session without annotations, raise errors that name the path."""
    with pytest.raises(FileNotFoundError, match="Session"):
        (tmp_path / "empty").mkdir()
        write_iemocap_meta(tmp_path / "empty", tmp_path / "meta")
    (tmp_path / "bare" / "Session1").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="EmoEvaluation"):
        write_iemocap_meta(tmp_path / "bare", tmp_path / "meta")


def test_cli_writes_default_locations_and_reports_errors(tmp_path, capsys):
    """`python -m superb.prepare asr-buckets|er-meta ROOT` writes into ROOT; bad input exits with a message."""
    libri = tmp_path / "LibriSpeech"
    make_librispeech(libri, {"dev-clean": 2, "test-clean": 2})
    main(["asr-buckets", str(libri)])
    assert sorted(p.name for p in (libri / "len_for_bucket").iterdir()) == ["dev-clean.csv", "test-clean.csv"]
    iemocap = tmp_path / "IEMOCAP_full_release"
    make_iemocap(iemocap, sessions=2)
    main(["er-meta", str(iemocap)])
    assert (iemocap / "meta_data" / "Session2" / "train_meta_data.json").is_file()
    with pytest.raises(SystemExit, match="error: .*train-other-500"):
        main(["asr-buckets", str(libri), "--splits", "train-other-500"])
