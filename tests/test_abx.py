"""Phone ABX: DTW, triples against a brute-force oracle, features with known answers, item building from
alignments and .item files, and `python -m results.abx` end to end on mini-SUPERB ci."""

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from measure.abx import scoring
from measure.abx.items import (
    AudioFile,
    FrameGeometry,
    ItemTable,
    items_from_alignments,
    items_from_item_file,
    sample_items,
)
from measure.abx.scoring import (
    build_task,
    dtw_normalised,
    pair_distances,
    plan_pairs,
    score,
    unit_frames,
)
from results.abx import __main__ as abx_cli
from upstream_ehmam.checkpoint import export_encoder
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.model import EHMAMEncoder

GEOMETRY = FrameGeometry(320, 400)


# --- oracles: the definition written as plain loops -------------------------------------------------------


def dtw_oracle(cost: np.ndarray) -> float:
    """Textbook DTW with backtracking: summed cost of the best path divided by the path's length."""
    n, m = cost.shape
    acc = np.full((n, m), np.inf)
    for i in range(n):
        for j in range(m):
            if i == 0 and j == 0:
                acc[i, j] = cost[0, 0]
                continue
            best = min(
                acc[i - 1, j - 1] if i and j else np.inf, acc[i, j - 1] if j else np.inf, acc[i - 1, j] if i else np.inf
            )
            acc[i, j] = cost[i, j] + best
    i, j, steps = n - 1, m - 1, 1
    while i > 0 or j > 0:
        options = [(acc[i - 1, j - 1], i - 1, j - 1)] if i and j else []
        options += [(acc[i, j - 1], i, j - 1)] if j else []
        options += [(acc[i - 1, j], i - 1, j)] if i else []
        _, i, j = min(options, key=lambda o: o[0])  # first minimum: diagonal, left, up
        steps += 1
    return acc[-1, -1] / steps


def item_distance(x: np.ndarray, y: np.ndarray) -> float:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    return dtw_oracle(np.arccos(np.clip(xn @ yn.T, -1, 1)) / math.pi)


def abx_oracle(feats: list[np.ndarray], phone, context, speaker, condition: str) -> float:
    """The ABX error by explicit loops over every (A, B, X) triple, cells, then the three means."""
    n = len(feats)
    d = {(i, j): item_distance(feats[i], feats[j]) for i in range(n) for j in range(n)}
    cells: dict[tuple, list[float]] = {}
    for a, b, x in itertools.product(range(n), repeat=3):
        if len({a, b, x}) < 3 and x == a:
            continue
        if condition == "within":
            ok = (
                context[a] == context[b] == context[x]
                and speaker[a] == speaker[b] == speaker[x]
                and phone[a] == phone[x] != phone[b]
            )
            key = (context[a], speaker[a], phone[a], phone[b])
        else:  # across
            ok = (
                context[a] == context[b] == context[x]
                and speaker[a] == speaker[b] != speaker[x]
                and phone[a] == phone[x] != phone[b]
            )
            key = (context[a], (speaker[a], speaker[x]), phone[a], phone[b])
        if ok and x != a:
            err = 1.0 if d[a, x] > d[b, x] else 0.5 if d[a, x] == d[b, x] else 0.0
            cells.setdefault(key, []).append(err)
    by_speaker: dict[tuple, list[float]] = {}
    for (c, s, pa, pb), errs in cells.items():
        by_speaker.setdefault((s, pa, pb), []).append(np.mean(errs))
    by_pair: dict[tuple, list[float]] = {}
    for (s, pa, pb), errs in by_speaker.items():
        by_pair.setdefault((pa, pb), []).append(np.mean(errs))
    return 100.0 * np.mean([np.mean(v) for v in by_pair.values()])


# --- synthetic item sets ------------------------------------------------------------------------------------


def synthetic_items(phone, prev, nxt, speaker, frames_per_item) -> tuple[ItemTable, np.ndarray, np.ndarray]:
    """One file per item, each exactly `frames_per_item[k]` model frames long; returns (table, first, length)."""
    n = len(phone)
    samples = [(k - 1) * GEOMETRY.rate + GEOMETRY.field for k in frames_per_item]
    files = [AudioFile(f"u{i}", Path(f"u{i}.flac"), str(speaker[i]), samples[i]) for i in range(n)]
    labels = sorted({*phone, *prev, *nxt})
    table = ItemTable(
        files,
        np.arange(n),
        np.zeros(n),
        np.asarray(samples, dtype=float),
        np.asarray([labels.index(p) for p in phone]),
        np.asarray([labels.index(p) for p in prev]),
        np.asarray([labels.index(p) for p in nxt]),
        np.asarray(speaker),
        labels,
        [str(s) for s in sorted(set(speaker))],
    )
    counts = [GEOMETRY.frames_for(s) for s in samples]
    first, length = table.frame_spans(GEOMETRY, counts)
    offsets = np.r_[0, np.cumsum(counts)][:-1]
    return table, offsets + first, length


def random_design(n_items: int, seed: int, phones=4, contexts=2, speakers=4):
    rng = np.random.default_rng(seed)
    phone = [f"p{v}" for v in rng.integers(0, phones, n_items)]
    ctx = rng.integers(0, contexts, n_items)
    prev = [f"c{v}" for v in ctx]
    nxt = ["x"] * n_items
    speaker = rng.integers(0, speakers, n_items).tolist()
    lengths = rng.integers(3, 8, n_items).tolist()
    return phone, prev, nxt, speaker, lengths


# --- DTW ----------------------------------------------------------------------------------------------------


def test_dtw_matches_the_textbook_recursion_on_random_costs():
    rng = np.random.default_rng(0)
    for _ in range(20):
        la, lb = rng.integers(1, 9, 2)
        cost = rng.random((la, lb))
        padded = torch.full((1, 9, 9), 7.0, dtype=torch.float64)  # padding must not matter
        padded[0, :la, :lb] = torch.from_numpy(cost)
        got = dtw_normalised(padded, torch.tensor([la]), torch.tensor([lb]))
        assert got.item() == pytest.approx(dtw_oracle(cost), abs=1e-12)


def test_dtw_of_a_time_stretched_copy_is_zero():
    rng = np.random.default_rng(1)
    x = unit_frames(torch.from_numpy(rng.normal(size=(6, 16))))
    stretched = x.repeat_interleave(torch.tensor([1, 3, 1, 2, 1, 4]), dim=0)  # 12 frames
    cost = torch.arccos((x @ stretched.T).clamp(-1, 1)) / math.pi
    assert dtw_normalised(cost[None], torch.tensor([6]), torch.tensor([12])).item() == pytest.approx(0.0, abs=1e-6)
    other = unit_frames(torch.from_numpy(rng.normal(size=(12, 16))))
    cost = torch.arccos((x @ other.T).clamp(-1, 1)) / math.pi
    assert dtw_normalised(cost[None], torch.tensor([6]), torch.tensor([12])).item() > 0.3


@pytest.mark.parametrize("chunk_cells", [1 << 24, 12000, 100])  # one block chunk; several; every group direct
def test_pair_distances_equal_one_by_one_in_every_layout(monkeypatch, chunk_cells):
    monkeypatch.setattr(scoring, "_CHUNK_CELLS", chunk_cells)
    monkeypatch.setattr(scoring, "_BATCH_CELLS", 500)  # many small DTW batches
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, 12, 40)
    first = np.r_[0, np.cumsum(lengths)][:-1]
    group = rng.integers(0, 4, 40)
    frames = unit_frames(torch.randn(int(lengths.sum()), 8))
    pairs = np.array([[i, j] for i in range(40) for j in range(i + 1, 40) if group[i] == group[j]])
    chunks = plan_pairs(pairs, group, first, lengths)
    kinds = {type(c).__name__ for c in chunks}
    if chunk_cells == 100:
        assert kinds == {"_DirectChunk"}
    else:
        assert "_BlockChunk" in kinds and (len(chunks) == 1 if chunk_cells > 12000 else len(chunks) > 1)
    got = pair_distances(frames, chunks, len(pairs))
    for (i, j), d in zip(pairs.tolist(), got.tolist()):
        x = frames[first[i] : first[i] + lengths[i]].double().numpy()
        y = frames[first[j] : first[j] + lengths[j]].double().numpy()
        assert d == pytest.approx(item_distance(x, y), abs=1e-5)
    with pytest.raises(ValueError, match="one context group"):
        plan_pairs(np.array([[0, 1]]), np.array([0, 1]), first, lengths)


# --- triples and collapse -----------------------------------------------------------------------------------


@pytest.mark.parametrize("condition", ["within", "across"])
def test_vectorised_abx_equals_the_brute_force_loop(condition):
    """A small design with several contexts, speakers and unequal groups: every cell, mean and pair agrees."""
    phone, prev, nxt, speaker, lengths = random_design(26, seed=3, phones=3, contexts=2, speakers=3)
    table, first, length = synthetic_items(phone, prev, nxt, speaker, lengths)
    rng = np.random.default_rng(4)
    feats = [rng.normal(size=(n, 5)) for n in lengths]
    frames = torch.from_numpy(np.concatenate(feats)).float()
    task = build_task(table, [condition], max_x_speakers=10)
    got = score(task, frames, task.plan(first, length))[condition]
    assert got == pytest.approx(abx_oracle(feats, phone, prev, speaker, condition), abs=1e-3)


def test_random_features_sit_at_chance_and_phone_identity_is_near_zero():
    phone, prev, nxt, speaker, lengths = random_design(600, seed=5, phones=6, contexts=3, speakers=4)
    table, first, length = synthetic_items(phone, prev, nxt, speaker, lengths)
    task = build_task(table, ["within", "across"])
    rng = np.random.default_rng(6)
    n_frames = int(sum(lengths))
    noise = rng.normal(size=(n_frames, 32))
    random_errors = score(task, torch.from_numpy(noise).float(), task.plan(first, length))
    assert abs(random_errors["within"] - 50) < 3 and abs(random_errors["across"] - 50) < 3, random_errors
    one_hot = np.zeros((n_frames, 32))
    frame_phone = np.repeat([table.phones.index(p) for p in phone], lengths)
    one_hot[np.arange(n_frames), frame_phone] = 1.0
    clean = score(task, torch.from_numpy(one_hot + 0.1 * noise).float(), task.plan(first, length))
    assert clean["within"] < 2 and clean["across"] < 2, clean


def test_a_speaker_offset_hurts_across_far_more_than_within():
    phone, prev, nxt, speaker, lengths = random_design(600, seed=7, phones=6, contexts=3, speakers=4)
    table, first, length = synthetic_items(phone, prev, nxt, speaker, lengths)
    task = build_task(table, ["within", "across", "speaker"])
    rng = np.random.default_rng(8)
    n_frames = int(sum(lengths))
    base = np.zeros((n_frames, 32))
    base[np.arange(n_frames), np.repeat([table.phones.index(p) for p in phone], lengths)] = 1.0
    base += 0.3 * rng.normal(size=base.shape)
    offsets = 1.5 * rng.normal(size=(4, 32))
    shifted = base + offsets[np.repeat(speaker, lengths)]
    plain = score(task, torch.from_numpy(base).float(), task.plan(first, length))
    biased = score(task, torch.from_numpy(shifted).float(), task.plan(first, length))
    assert biased["across"] - plain["across"] > 3 * max(0.5, biased["within"] - plain["within"]), (plain, biased)
    assert biased["speaker"] < 10 < plain["speaker"], (plain, biased)  # the offset carries the speaker


def test_x_is_never_a_and_across_caps_x_speakers():
    phone, prev, nxt, speaker, lengths = random_design(300, seed=9, phones=3, contexts=1, speakers=8)
    table, _, _ = synthetic_items(phone, prev, nxt, speaker, lengths)
    task = build_task(table, ["within", "across"], max_x_speakers=2)
    within = task.conditions["within"]
    assert (task.pairs[within.ax, 0] != task.pairs[within.ax, 1]).all()
    across = task.conditions["across"]
    n_speakers = len(table.speakers)
    groups: dict[tuple, set] = {}
    for ctx, speakers_key, labels in zip(across.cell_context, across.cell_speakers, across.cell_labels):
        groups.setdefault((ctx, speakers_key // n_speakers, labels), set()).add(speakers_key % n_speakers)
    assert max(len(v) for v in groups.values()) == 2
    assert all(speakers_key // n_speakers != speakers_key % n_speakers for speakers_key in across.cell_speakers)


# --- items --------------------------------------------------------------------------------------------------


def _write_alignment(root: Path, records: list[dict], split: str = "dev-clean") -> Path:
    libri = root / "LibriSpeech"
    (libri / "alignments").mkdir(parents=True)
    (libri / "alignments" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return libri


def test_items_from_alignments_are_triphones_without_silent_centres(tmp_path):
    record = {
        "id": "11-22-0000",
        "phones": ["SIL", "HH", "AH0", "SIL", "L", "OW1", "SIL"],
        "starts": [0, 1000, 2000, 3000, 4000, 5000, 6000],
        "num_samples": 7000,
    }
    table = items_from_alignments(_write_alignment(tmp_path, [record]), ["dev-clean"])
    got = [
        (table.phones[p], table.phones[a], table.phones[b], on, off)
        for p, a, b, on, off in zip(table.phone, table.prev, table.next, table.onset, table.offset)
    ]
    assert got == [
        ("HH", "SIL", "AH", 0, 3000),
        ("AH", "HH", "SIL", 1000, 4000),
        ("L", "SIL", "OW", 3000, 6000),
        ("OW", "L", "SIL", 4000, 7000),
    ]
    assert table.speakers == ["11"] and table.files[0].path.name == "11-22-0000.flac"


def test_frame_spans_use_the_model_frame_centres_and_drop_items_under_a_frame():
    """Frame t reads samples [320t, 320t + 400), so its centre is 320t + 200."""
    files = [AudioFile("u", Path("u.flac"), "s", 16000)]
    onset = np.array([200.0, 201.0, 0.0, 700.0])
    offset = np.array([520.0, 840.0, 199.0, 800.0])
    table = ItemTable(
        files,
        np.zeros(4, dtype=np.int64),
        onset,
        offset,
        np.zeros(4, dtype=np.int64),
        np.zeros(4, dtype=np.int64),
        np.zeros(4, dtype=np.int64),
        np.zeros(4, dtype=np.int64),
        ["a"],
        ["s"],
    )
    first, length = table.frame_spans(GEOMETRY, [GEOMETRY.frames_for(16000)])
    assert first.tolist()[:2] == [0, 1] and length.tolist() == [2, 2, 0, 0]
    kept = sample_items(table, [length], max_per_group=10, seed=0)
    assert kept.onset.tolist() == [200.0, 201.0]


def test_sample_items_caps_each_group_reproducibly():
    phone, prev, nxt, speaker, lengths = random_design(400, seed=10, phones=2, contexts=1, speakers=2)
    table, _, length = synthetic_items(phone, prev, nxt, speaker, lengths)
    a = sample_items(table, [length], max_per_group=10, seed=1)
    b = sample_items(table, [length], max_per_group=10, seed=1)
    assert len(a) == 2 * 2 * 10 and a.onset.tolist() == b.onset.tolist()
    assert [f.id for f in a.files] == [f.id for f in b.files]
    assert [f.id for f in sample_items(table, [length], 10, seed=2).files] != [f.id for f in a.files]


def test_item_files_are_read_and_their_errors_name_the_line(tmp_path):
    audio = tmp_path / "audio" / "nested"
    audio.mkdir(parents=True)
    soundfile.write(audio / "utt1.flac", np.zeros(8000, dtype=np.float32), 16000)
    item = tmp_path / "dev.item"
    item.write_text(
        "#file onset offset #phone prev-phone next-phone speaker\n"
        "utt1 0.0100 0.2000 AH B C spk1\nutt1 0.2 0.3 SIL AH C spk1\n"
    )
    table = items_from_item_file(item, tmp_path / "audio")
    assert len(table) == 1 and table.onset[0] == pytest.approx(160.0) and table.files[0].path == audio / "utt1.flac"
    item.write_text("#file onset offset #phone prev-phone next-phone speaker\nutt2 0.0 0.2 AH B C spk1\n")
    with pytest.raises(FileNotFoundError, match=r"dev\.item:2: no audio file utt2"):
        items_from_item_file(item, tmp_path / "audio")
    item.write_text("#file onset offset #phone prev-phone next-phone speaker\nutt1 0.3 0.2 AH B C spk1\n")
    with pytest.raises(ValueError, match=r"dev\.item:2: need 0 <= onset < offset"):
        items_from_item_file(item, tmp_path / "audio")
    item.write_text("file onset offset\n")
    with pytest.raises(ValueError, match=r"dev\.item:1: expected the header"):
        items_from_item_file(item, tmp_path / "audio")


# --- end to end -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_encoder_file(tmp_path_factory) -> Path:
    conv = [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2
    cfg = EncoderConfig(conv_layers=conv, embed_dim=32, num_layers=2, num_heads=4, ffn_dim=64, pos_conv_depth=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = EHMAMEncoder(cfg)
    path = tmp_path_factory.mktemp("abx") / "tiny.pt"
    export_encoder(encoder, path)
    return path


@pytest.mark.slow
def test_results_abx_end_to_end(minisuperb_ci, tiny_encoder_file, tmp_path, capsys):
    out = tmp_path / "abx"
    code = abx_cli.main(
        [
            "--ckpt",
            str(tiny_encoder_file),
            "--data",
            str(minisuperb_ci),
            "--out",
            str(out),
            "--splits",
            "dev-clean,test-clean",
        ]
    )
    assert code == 0
    with (out / "abx.csv").open() as f:
        rows = list(csv.DictReader(f))
    by_rep: dict[str, set] = {}
    for r in rows:
        by_rep.setdefault(r["representation"], set()).add((int(r["layer"]), r["condition"]))
        assert 0 <= float(r["error"]) <= 100 and int(r["items"]) > 100
    expected = {(layer, c) for layer in range(3) for c in ("within", "across", "speaker")}
    assert by_rep["tiny.pt (student)"] == expected and by_rep["tiny.pt: random init"] == expected
    for ref in ("log-mel", "log-mel, normalised", "MFCC + deltas, normalised"):
        assert by_rep[ref] == {(0, c) for c in ("within", "across", "speaker")}
    logmel = {r["condition"]: float(r["error"]) for r in rows if r["representation"] == "log-mel, normalised"}
    assert logmel["within"] < 20  # a representation that knows phones
    assert (out / "abx.png").stat().st_size > 10_000 and "| log-mel |" in (out / "abx.md").read_text()
    assert "best layer" in capsys.readouterr().out


def test_results_abx_cli_errors(tmp_path, capsys):
    assert abx_cli.main(["--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "LibriSpeech folder missing" in capsys.readouterr().err
    assert abx_cli.main(["--item", str(tmp_path / "x.item"), "--out", str(tmp_path / "o")]) == 2
    assert "--item needs --audio" in capsys.readouterr().err
    assert abx_cli.main(["--data", str(tmp_path), "--max-utterances", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--max-utterances must be >= 1" in capsys.readouterr().err
