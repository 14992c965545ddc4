"""Tests of pretrain.manifest: the fairseq manifest format, skipped-file reporting, and read errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pretrain.manifest import main, read_manifest, write_manifest


def _write_noise(path: Path, num_samples: int, sample_rate: int = 16_000, channels: int = 1, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (num_samples,) if channels == 1 else (num_samples, channels)
    noise = 0.1 * np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    sf.write(str(path), noise, sample_rate)


def test_manifest_has_root_line_sorted_relative_paths_and_exact_lengths(tmp_path: Path) -> None:
    """Line 1 is the absolute root; then every audio file's relative path and exact sample count, sorted."""
    root = tmp_path / "corpus"
    expected = {"b/z.flac": 1601, "a/y.wav": 3203, "a/sub/x.FLAC": 801, "c.wav": 4000}
    for i, (rel, n) in enumerate(expected.items()):
        _write_noise(root / rel, n, seed=i)
    (root / "a" / "notes.txt").write_text("not audio")

    out = tmp_path / "train.tsv"
    summary = write_manifest(root, out)

    lines = out.read_text().splitlines()
    assert lines[0] == str(root.resolve())
    assert lines[1:] == [f"{rel}\t{expected[rel]}" for rel in sorted(expected)]
    assert (summary.num_train, summary.num_skipped, summary.train_samples) == (4, 0, sum(expected.values()))
    assert read_manifest(out) == (root.resolve(), sorted(expected.items()))


def test_extensions_select_files(tmp_path: Path) -> None:
    """Only files with a requested extension are listed."""
    _write_noise(tmp_path / "r" / "a.wav", 500)
    _write_noise(tmp_path / "r" / "b.flac", 600)
    write_manifest(tmp_path / "r", tmp_path / "m.tsv", extensions=("flac",))
    assert read_manifest(tmp_path / "m.tsv")[1] == [("b.flac", 600)]


def test_bad_files_are_reported_with_reasons_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Corrupt, empty, zero-sample, stereo and 8 kHz files are logged, counted and left out; no crash."""
    root = tmp_path / "corpus"
    _write_noise(root / "good.flac", 1000)
    (root / "corrupt.flac").write_bytes(np.random.default_rng(0).bytes(3000))
    (root / "empty.wav").write_bytes(b"")
    sf.write(str(root / "no_samples.wav"), np.zeros(0, dtype=np.float32), 16_000)
    _write_noise(root / "stereo.wav", 1000, channels=2)
    _write_noise(root / "rate8k.wav", 1000, sample_rate=8_000)

    with caplog.at_level(logging.WARNING, logger="pretrain.manifest"):
        summary = write_manifest(root, tmp_path / "train.tsv")

    assert read_manifest(tmp_path / "train.tsv")[1] == [("good.flac", 1000)]
    reasons = dict(summary.skipped)
    assert sorted(reasons) == ["corrupt.flac", "empty.wav", "no_samples.wav", "rate8k.wav", "stereo.wav"]
    assert reasons["corrupt.flac"].startswith("unreadable")
    assert reasons["empty.wav"].startswith("unreadable")
    assert reasons["no_samples.wav"].startswith("empty")
    assert reasons["stereo.wav"] == "channels: 2, expected mono"
    assert reasons["rate8k.wav"] == "sample rate: 8000 Hz, expected 16000"
    assert (summary.num_candidates, summary.num_train, summary.num_skipped) == (6, 1, 5)
    for rel in reasons:
        assert str(root.resolve() / rel) in caplog.text
    report = summary.format()
    assert "5 skipped" in report and "1 x channels" in report and "2 x unreadable" in report


def test_no_usable_audio_raises_naming_root(tmp_path: Path) -> None:
    """A root without usable audio is an error naming the root, not an empty manifest."""
    (tmp_path / "bad.wav").write_bytes(b"RIFF")
    with pytest.raises(ValueError, match=str(tmp_path)):
        write_manifest(tmp_path, tmp_path / "train.tsv")
    assert not (tmp_path / "train.tsv").exists()
    with pytest.raises(FileNotFoundError, match="not a directory"):
        write_manifest(tmp_path / "missing", tmp_path / "train.tsv")


def test_valid_split_is_seeded_disjoint_and_sized(tmp_path: Path) -> None:
    """The valid split takes round(fraction * n) files, disjoint from train, the same for the same seed."""
    root = tmp_path / "corpus"
    for i in range(20):
        _write_noise(root / f"u{i:02d}.wav", 100 + i, seed=i)

    def split(seed: int, tag: str) -> tuple[list, list]:
        train, valid = tmp_path / f"train{tag}.tsv", tmp_path / f"valid{tag}.tsv"
        summary = write_manifest(root, train, valid_out=valid, valid_fraction=0.25, seed=seed)
        assert (summary.num_train, summary.num_valid) == (15, 5)
        return read_manifest(train)[1], read_manifest(valid)[1]

    train, valid = split(0, "a")
    assert sorted(train + valid) == [(f"u{i:02d}.wav", 100 + i) for i in range(20)]
    assert train == sorted(train) and valid == sorted(valid)
    assert split(0, "b") == (train, valid)
    assert split(1, "c")[1] != valid
    with pytest.raises(ValueError, match="valid_out"):
        write_manifest(root, tmp_path / "x.tsv", valid_fraction=0.1)


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ("", 1, "root directory"),
        ("/data\ta.flac\t10\n", 1, "root directory"),
        ("/data\na.flac\t10\nb.flac 20\n", 3, "relative/path<TAB>num_samples"),
        ("/data\na.flac\tten\n", 2, "must be an integer"),
        ("/data\na.flac\t0\n", 2, "must be positive"),
        ("/data\na.flac\t10\t3\n", 2, "relative/path<TAB>num_samples"),
        ("/data\na.flac\t10\n\nb.flac\t5\n", 3, "relative/path<TAB>num_samples"),
    ],
)
def test_read_manifest_errors_name_file_and_line(tmp_path: Path, content: str, line: int, problem: str) -> None:
    """Malformed manifests raise ValueError with `file:line` and what is wrong."""
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"{path}:{line}: .*{problem}".replace("<", ".").replace(">", ".")):
        read_manifest(path)


def test_read_manifest_missing_file(tmp_path: Path) -> None:
    """A missing manifest is a FileNotFoundError naming it."""
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_manifest(tmp_path / "nope.tsv")


def test_cli_writes_manifests_and_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The CLI writes train/valid manifests (1 % default fraction) and prints the summary; errors exit 1."""
    root = tmp_path / "corpus"
    for i in range(3):
        _write_noise(root / f"{i}.flac", 300, seed=i)
    (root / "broken.flac").write_bytes(b"xx")
    rc = main([str(root), "--out", str(tmp_path / "t.tsv"), "--valid-out", str(tmp_path / "v.tsv"), "--ext", "flac"])
    assert rc == 0
    assert len(read_manifest(tmp_path / "t.tsv")[1]) == 2 and len(read_manifest(tmp_path / "v.tsv")[1]) == 1
    assert "2 train + 1 valid written" in capsys.readouterr().out

    assert main([str(tmp_path / "absent"), "--out", str(tmp_path / "t2.tsv")]) == 1
    assert "absent" in capsys.readouterr().err


def test_verify_decodes_to_catch_truncated_and_nan_audio(tmp_path: Path) -> None:
    """A truncated FLAC (its header promises all samples) and a NaN file pass the header probe; --verify decodes
    every file and reports both with their reason instead of listing them."""
    root = tmp_path / "corpus"
    _write_noise(root / "good.flac", 16_000)
    _write_noise(root / "cut.flac", 48_000, seed=1)
    data = (root / "cut.flac").read_bytes()
    (root / "cut.flac").write_bytes(data[: len(data) // 2])
    nan = np.zeros(1_000, dtype=np.float32)
    nan[5] = np.nan
    sf.write(str(root / "nan.wav"), nan, 16_000, subtype="FLOAT")

    quick = write_manifest(root, tmp_path / "quick.tsv")
    assert quick.num_train == 3 and quick.num_skipped == 0
    assert main([str(root), "--out", str(tmp_path / "checked.tsv"), "--verify"]) == 0
    assert read_manifest(tmp_path / "checked.tsv")[1] == [("good.flac", 16_000)]
    reasons = dict(write_manifest(root, tmp_path / "checked2.tsv", verify=True).skipped)
    assert reasons["cut.flac"].startswith("undecodable") or reasons["cut.flac"].startswith("truncated")
    assert reasons["nan.wav"] == "non-finite: NaN or infinite samples"


def test_unlistable_folder_is_reported_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that cannot be listed (permission denied) is reported as skipped; the rest is written."""
    root = tmp_path / "corpus"
    _write_noise(root / "ok" / "a.flac", 500)
    _write_noise(root / "locked" / "b.flac", 500)
    real_scandir = os.scandir

    def scandir(path):  # root can read any folder, so deny one by hand
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    summary = write_manifest(root, tmp_path / "train.tsv")
    assert read_manifest(tmp_path / "train.tsv")[1] == [("ok/a.flac", 500)]
    assert summary.skipped == [("locked", "unreadable folder: Permission denied")]
