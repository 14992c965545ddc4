"""run_downstream.py: the command-line rewrite (pure), generated-file caches, upstream
registration, and one real s3prl runner smoke run (PR with `-u fbank`, train then evaluate)."""

from __future__ import annotations

import argparse
import os
import sys
import types
from pathlib import Path

import pytest
from superb_trees import make_iemocap, make_librispeech, run_downstream_script

from superb import tasks
from superb.registry import CONFIG_DIR, EXPERT, TASKS
from superb.tasks import parse_overrides, plan_argv

REPO = Path(__file__).resolve().parent.parent
S3PRL_NAMES = {
    "pr": "ctc",
    "asr": "asr",
    "ks": "speech_commands",
    "ic": "fluent_commands",
    "sid": "voxceleb1",
    "er": "emotion",
    "sf": "ctc",
}


def plan(argv, environ=None, cuda=False, cpu_count=2, **kwargs):
    return plan_argv(argv, environ or {}, cuda_available=cuda, cpu_count=cpu_count, **kwargs)


def flag(argv, name):
    return argv[argv.index(name) + 1] if name in argv else None


def overrides(argv) -> dict[str, str]:
    return dict(parse_overrides([flag(argv, "-o")]))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_alias_maps_to_s3prl_downstream_config_and_data(name, data_root):
    """-d <task> becomes s3prl's downstream with our config, data-root paths and worker count."""
    argv = plan(["-m", "train", "-u", "fbank", "-d", name, "--data-root", str(data_root)]).argv
    assert flag(argv, "-d") == S3PRL_NAMES[name]
    assert flag(argv, "-c") == str(CONFIG_DIR / f"{name}.yaml") and Path(flag(argv, "-c")).is_file()
    entries = overrides(argv)
    expected_paths = tasks.data_paths(TASKS[name], data_root)
    for key, path in expected_paths.items():
        assert entries[f"{EXPERT}.{key}"] == tasks.format_override_value(path)
    assert entries[TASKS[name].workers_key] == str(min(TASKS[name].official_workers, 2))


def test_overrides_evaluate_to_paths_in_s3prls_own_parser(data_root):
    """The -o string we emit, run through s3prl's override(), sets absolute path strings and lists."""
    from s3prl.utility.helper import override

    argv = plan(["-m", "train", "-u", "fbank", "-d", "pr", "--data-root", str(data_root)]).argv
    config: dict = {}
    override(flag(argv, "-o"), argparse.Namespace(), config)
    corpus = config["downstream_expert"]["corpus"]
    assert corpus["path"] == str(data_root / "LibriSpeech")
    assert corpus["lexicon"] == [str(data_root / "LibriSpeech" / "librispeech-lexicon.txt")]
    assert config["downstream_expert"]["text"]["vocab_file"] == str(CONFIG_DIR / "vocab" / "phoneme.txt")
    assert corpus["num_workers"] == 2


def test_user_overrides_win_and_other_flags_pass_through_untouched(data_root):
    """A user's -o for the same key replaces ours and comes last; unrelated flags keep their order."""
    user_path = "config.downstream_expert.corpus.path='/elsewhere'"
    argv = plan(
        [
            "-m",
            "train",
            "-u",
            "fbank",
            "-k",
            "/ckpt.pt",
            "-f",
            "-s",
            "last_hidden_state",
            "-l",
            "3",
            "--seed",
            "7",
            "-a",
            "-d",
            "pr",
            "--data-root",
            str(data_root),
            "-o",
            user_path + ",,config.optimizer.lr=1.0e-3",
        ]
    ).argv
    assert argv[:10] == ["-k", "/ckpt.pt", "-f", "-s", "last_hidden_state", "-l", "3", "--seed", "7", "-a"]
    assert "-n" not in argv or argv.index("-n") > 9
    entries = parse_overrides([flag(argv, "-o")])
    assert entries[-2:] == [(f"{EXPERT}.corpus.path", "'/elsewhere'"), ("config.optimizer.lr", "1.0e-3")]
    assert [key for key, _ in entries].count(f"{EXPERT}.corpus.path") == 1


def test_data_root_from_environment_and_missing_corpus_errors(data_root):
    """$SUPERB_DATA stands in for --data-root; a missing corpus folder or lexicon fails early and
    says which folder and how to make a synthetic one; no data root at all is an error too."""
    argv = plan(["-m", "train", "-u", "fbank", "-d", "ic"], environ={"SUPERB_DATA": str(data_root)}).argv
    assert overrides(argv)[f"{EXPERT}.datarc.file_path"] == repr(str(data_root / "fluent_speech_commands_dataset"))
    (data_root / "SNIPS" / "slots.txt").unlink()
    with pytest.raises(FileNotFoundError, match="slots.txt"):
        plan(["-m", "train", "-u", "fbank", "-d", "sf", "--data-root", str(data_root)])
    (data_root / "VoxCeleb1" / "iden_split.txt").unlink()
    os.rmdir(data_root / "VoxCeleb1")
    with pytest.raises(FileNotFoundError, match=r"VoxCeleb1/ is missing .*python -m minisuperb --out"):
        plan(["-m", "train", "-u", "fbank", "-d", "sid", "--data-root", str(data_root)])
    (data_root / "LibriSpeech" / "librispeech-lexicon.txt").unlink()
    with pytest.raises(FileNotFoundError, match="openslr.org/11"):
        plan(["-m", "train", "-u", "fbank", "-d", "pr", "--data-root", str(data_root)])
    lexicon_given = plan(
        [
            "-m",
            "train",
            "-u",
            "fbank",
            "-d",
            "pr",
            "--data-root",
            str(data_root),
            "-o",
            f"{EXPERT}.corpus.lexicon=['/my/lexicon.txt']",
        ]
    ).argv
    assert overrides(lexicon_given)[f"{EXPERT}.corpus.lexicon"] == "['/my/lexicon.txt']"
    with pytest.raises(ValueError, match="--data-root DIR or set \\$SUPERB_DATA"):
        plan(["-m", "train", "-u", "fbank", "-d", "ks"])


def test_device_expname_and_asr_split_defaults(data_root):
    """--device cpu only without CUDA and without --device; -n <upstream>_<task> only without -n/-p;
    ASR evaluation gets -t test-clean."""
    base = ["-m", "train", "-u", "fbank", "-d", "ks", "--data-root", str(data_root)]
    assert flag(plan(base).argv, "--device") == "cpu"
    assert "--device" not in plan(base, cuda=True).argv
    assert flag(plan(base + ["--device", "cuda:1"]).argv, "--device") == "cuda:1"
    assert flag(plan(base).argv, "-n") == "fbank_ks"
    assert "-n" not in plan(base + ["-p", "/x"]).argv and flag(plan(base + ["-n", "mine"]).argv, "-n") == "mine"
    asr = plan(["-m", "evaluate", "-u", "fbank", "-d", "asr", "--data-root", str(data_root)]).argv
    assert flag(asr, "-t") == "test-clean"
    assert (
        flag(
            plan(
                ["-m", "evaluate", "-u", "fbank", "-d", "asr", "-t", "test-other", "--data-root", str(data_root)]
            ).argv,
            "-t",
        )
        == "test-other"
    )


def test_default_expdir_with_old_checkpoints_is_refused(data_root, tmp_path, monkeypatch):
    """Training under the default name refuses an expdir holding an earlier run's checkpoints,
    unless -a resumes it; evaluation is unaffected."""
    monkeypatch.chdir(tmp_path)
    base = ["-u", "fbank", "-d", "ic", "--data-root", str(data_root)]
    assert flag(plan(["-m", "train"] + base).argv, "-n") == "fbank_ic"
    (tmp_path / "result" / "downstream" / "fbank_ic").mkdir(parents=True)
    (tmp_path / "result" / "downstream" / "fbank_ic" / "dev-best.ckpt").write_bytes(b"")
    with pytest.raises(FileExistsError, match="fbank_ic already holds checkpoints"):
        plan(["-m", "train"] + base)
    assert "-a" in plan(["-m", "train", "-a"] + base).argv
    assert flag(plan(["-m", "evaluate"] + base).argv, "-n") == "fbank_ic"


def test_er_fold_shorthand_override_and_variant(data_root):
    """--fold K, -o ...test_fold='foldK' and -v foldK all select the fold and name the expdir."""
    base = ["-m", "train", "-u", "fbank", "-d", "er", "--data-root", str(data_root)]
    by_flag = plan(base + ["--fold", "3"]).argv
    assert overrides(by_flag)[f"{EXPERT}.datarc.test_fold"] == "'fold3'" and flag(by_flag, "-n") == "fbank_er_fold3"
    by_override = plan(base + ["-o", f"{EXPERT}.datarc.test_fold='fold2'"]).argv
    assert (
        overrides(by_override)[f"{EXPERT}.datarc.test_fold"] == "'fold2'"
        and flag(by_override, "-n") == "fbank_er_fold2"
    )
    assert overrides(plan(base + ["-v", "fold5"]).argv)[f"{EXPERT}.datarc.test_fold"] == "'fold5'"
    assert flag(plan(base).argv, "-n") == "fbank_er_fold1"
    with pytest.raises(ValueError, match="contradicts"):
        plan(base + ["--fold", "1", "-o", f"{EXPERT}.datarc.test_fold='fold2'"])
    with pytest.raises(ValueError, match="ER only"):
        plan(["-m", "train", "-u", "fbank", "-d", "ks", "--fold", "2", "--data-root", str(data_root)])
    with pytest.raises(SystemExit):
        plan(base + ["--fold", "6"])


def test_workers_option_and_evaluate_from_checkpoint(data_root):
    """--workers N sets every loader's num_workers; with -e the task comes from the checkpoint,
    no config or expname is added, and data paths still follow the data root."""
    assert (
        overrides(
            plan(["-m", "train", "-u", "fbank", "-d", "sf", "--workers", "0", "--data-root", str(data_root)]).argv
        )[f"{EXPERT}.corpus.num_workers"]
        == "0"
    )
    argv = plan(
        ["-m", "evaluate", "-e", "/exp/dev-best.ckpt", "--data-root", str(data_root)],
        checkpoint_task=lambda path: TASKS["sf"],
    ).argv
    assert "-c" not in argv and "-n" not in argv and flag(argv, "-e") == "/exp/dev-best.ckpt"
    entries = overrides(argv)
    assert (
        entries[f"{EXPERT}.corpus.path"] == repr(str(data_root / "SNIPS"))
        and f"{EXPERT}.text.vocab_file" not in entries
    )


def test_task_is_read_from_an_s3prl_checkpoint(tmp_path):
    """-e FILE or -e DIR (latest states-<step>.ckpt, by step number) gives the trained task."""
    import torch

    from superb.entry import task_from_checkpoint

    def save(name, downstream, corpus=None):
        config = {"downstream_expert": {"corpus": {"name": corpus}}} if corpus else {"downstream_expert": {}}
        torch.save({"Args": argparse.Namespace(downstream=downstream), "Config": config}, tmp_path / name)

    save("states-3.ckpt", "ctc", "libriphone")
    save("states-12.ckpt", "ctc", "snips")
    save("dev-best.ckpt", "emotion")
    assert task_from_checkpoint(str(tmp_path)) == TASKS["sf"]
    assert task_from_checkpoint(str(tmp_path / "states-3.ckpt")) == TASKS["pr"]
    assert task_from_checkpoint(str(tmp_path / "dev-best.ckpt")) == TASKS["er"]
    with pytest.raises(FileNotFoundError, match="missing"):
        task_from_checkpoint(str(tmp_path / "nope.ckpt"))


def test_other_downstreams_and_bad_input():
    """An s3prl downstream we do not map passes through unchanged (plus --device); -d ctc without
    -c and values s3prl's -o cannot carry are errors."""
    argv = plan(["-m", "train", "-u", "fbank", "-d", "example", "-c", "my.yaml", "-n", "x"]).argv
    assert argv == ["-m", "train", "-c", "my.yaml", "-d", "example", "-u", "fbank", "-n", "x", "--device", "cpu"]
    with pytest.raises(ValueError, match="-d pr or -d sf"):
        plan(["-m", "train", "-u", "fbank", "-d", "ctc"])
    with pytest.raises(ValueError, match="'='"):
        tasks.format_override_value(Path("/data/a=b"))
    with pytest.raises(ValueError, match="exactly one '='"):
        parse_overrides(["config.a=1,,config.b"])


def test_generated_asr_buckets_and_er_meta_are_cached_per_dataset(tmp_path, monkeypatch):
    """Without len_for_bucket/ or meta_data/ in the corpus, they are generated once into
    $XDG_CACHE_HOME/ehmam-superb/<hash>/, reused, and regenerated when the corpus changes."""
    from superb.derived import ensure_derived_paths

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    files = make_librispeech(tmp_path / "LibriSpeech", {"dev-clean": 2, "test-clean": 2})
    make_iemocap(tmp_path / "IEMOCAP_full_release", sessions=2)
    asr_paths = tasks.data_paths(TASKS["asr"], tmp_path)
    paths, notes = ensure_derived_paths(TASKS["asr"], asr_paths)
    bucket_dir = paths["datarc.bucket_file"]
    assert bucket_dir.is_relative_to(tmp_path / "cache" / "ehmam-superb") and "generated" in notes[0]
    assert sorted(p.name for p in bucket_dir.glob("*.csv")) == ["dev-clean.csv", "test-clean.csv"]
    assert "cached" in ensure_derived_paths(TASKS["asr"], asr_paths)[1][0]
    files["dev-clean"][0].unlink()
    assert "generated" in ensure_derived_paths(TASKS["asr"], asr_paths)[1][0]
    assert "0000" not in (bucket_dir / "dev-clean.csv").read_text().split("\n", 2)[1]
    er_paths, er_notes = ensure_derived_paths(TASKS["er"], tasks.data_paths(TASKS["er"], tmp_path))
    assert (er_paths["datarc.meta_data"] / "Session2" / "test_meta_data.json").is_file() and "ER meta" in er_notes[0]
    (tmp_path / "LibriSpeech" / "len_for_bucket").mkdir()
    assert ensure_derived_paths(TASKS["asr"], asr_paths) == (asr_paths, [])


def test_sid_cache_moves_out_of_site_packages(tmp_path, monkeypatch):
    """s3prl's SID dataset writes its file-list cache under our per-dataset cache, and a changed
    split file empties it (a stale list from another dataset is never reused)."""
    from superb_trees import write_noise

    from superb import compat, runner_fixes

    compat.import_torchaudio()
    import s3prl.downstream.voxceleb1.dataset as sid

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(sid.SpeakerClassifiDataset, "__init__", sid.SpeakerClassifiDataset.__init__)
    monkeypatch.setattr(sid, "CACHE_PATH", sid.CACHE_PATH)
    site_cache = Path(sid.CACHE_PATH)
    before = sorted(site_cache.glob("*.pkl")) if site_cache.is_dir() else []
    root = tmp_path / "VoxCeleb1"
    lines = []
    for k, speaker in enumerate(("id10001", "id10002")):
        write_noise(root / "dev" / "wav" / speaker / "yt1" / "00001.wav", 1600, seed=k)
        lines.append(f"1 {speaker}/yt1/00001.wav")
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    runner_fixes.relocate_sid_cache()
    dataset = sid.SpeakerClassifiDataset("train", root, str(root / "iden_split.txt"), 16000)
    assert dataset.label == [0, 1]
    cache = runner_fixes.sid_cache_dir(root, root / "iden_split.txt")
    assert (cache / "train.pkl").is_file() and cache.is_relative_to(tmp_path / "cache")
    assert (sorted(site_cache.glob("*.pkl")) if site_cache.is_dir() else []) == before
    (root / "iden_split.txt").write_text(lines[0] + "\n")
    assert not (runner_fixes.sid_cache_dir(root, root / "iden_split.txt") / "train.pkl").exists()


def test_empty_train_loader_raises_instead_of_hanging():
    """A train loader with zero batches raises a ValueError naming the sizes; other splits, loaders
    with batches, and the runner's 'epoch' TypeError probe pass through unchanged."""
    from torch.utils.data import DataLoader

    from superb.entry import PACKAGE_DIR, raised_in
    from superb.runner_fixes import refuse_empty_train_loader

    def get_dataloader(split, batch_size=4):
        return DataLoader(list(range(3)), batch_size=batch_size, drop_last=True)

    checked = refuse_empty_train_loader(get_dataloader, "train")
    with pytest.raises(
        ValueError, match=r"'train' dataloader has no batches \(3 items, batch_size 4, drop_last True\)"
    ) as caught:
        checked("train")
    assert raised_in(caught.value, PACKAGE_DIR)  # run_downstream.py prints it without a traceback
    assert len(checked("dev")) == 0 and len(checked("train", batch_size=2)) == 1
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        checked("train", epoch=0)


def test_run_s3prl_main_restores_globals_and_shortens_our_errors(tmp_path):
    """s3prl's main sees our argv; its isinstance hack and sys.argv are undone afterwards (so main can
    run again in one process); a ValueError raised in our package exits with its message, others propagate."""
    import builtins

    from torch.utils.data import DataLoader

    from superb.entry import run_s3prl_main
    from superb.runner_fixes import refuse_empty_train_loader

    plain, argv_before, seen = builtins.isinstance, list(sys.argv), []

    def fake_main():
        seen.append(list(sys.argv[1:]))
        wrapped = builtins.isinstance
        builtins.isinstance = lambda obj, cls: wrapped(obj, cls)
        refuse_empty_train_loader(lambda split: DataLoader([], batch_size=1), "train")("train")

    with pytest.raises(SystemExit, match="run_downstream.py: error: the 'train' dataloader has no batches"):
        run_s3prl_main(fake_main, ["-m", "train"])
    assert seen == [["-m", "train"]] and builtins.isinstance is plain and sys.argv == argv_before

    def broken_main():
        raise ValueError("deep inside s3prl")

    with pytest.raises(ValueError, match="deep inside s3prl"):
        run_s3prl_main(broken_main, [])


def test_register_upstreams_sets_hubconf_functions_on_s3prl_hub(tmp_path, monkeypatch):
    """Every public function a hubconf defines becomes an s3prl.hub attribute; imported helpers and
    private names do not; a missing package registers nothing, a broken one raises."""
    import s3prl

    from superb import hub

    fake_hub = types.ModuleType("s3prl.hub")
    monkeypatch.setitem(sys.modules, "s3prl.hub", fake_hub)
    monkeypatch.setattr(s3prl, "hub", fake_hub, raising=False)
    package = tmp_path / "fake_upstream_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hubconf.py").write_text(
        "from os.path import join\n\ndef mine(ckpt=None, **kw):\n    return 'mine'\n\n"
        "def mine_teacher(ckpt=None, **kw):\n    return 'teacher'\n\ndef _private():\n    pass\n"
    )
    (package / "broken.py").write_text("import not_a_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert hub.register_upstreams("fake_upstream_pkg.hubconf") == ["mine", "mine_teacher"]
    assert fake_hub.mine() == "mine" and not hasattr(fake_hub, "join") and not hasattr(fake_hub, "_private")
    assert hub.register_upstreams("no_such_upstream_pkg.hubconf") == []
    with pytest.raises(ModuleNotFoundError, match="not_a_module_anywhere"):
        hub.register_upstreams("fake_upstream_pkg.broken")


SMOKE = (
    "config.runner.total_steps=4,,config.runner.eval_step=2,,config.runner.save_step=2,,"
    "config.runner.log_step=2,,config.runner.gradient_accumulate_steps=1,,config.downstream_expert.corpus.batch_size=2"
)


@pytest.mark.slow
def test_real_runner_pr_smoke_train_then_evaluate(tmp_path):
    """`python run_downstream.py -u fbank -d pr` trains 4 steps through s3prl's runner (our compat
    layer, grafted libriphone loader, config and vocabulary), saves dev-best.ckpt, and evaluating it
    prints `test per:` and writes one hyp/ref line per test utterance."""
    data = tmp_path / "data"
    files = make_librispeech(data / "LibriSpeech", {"train-clean-100": 6, "dev-clean": 2, "test-clean": 3})
    expdir = tmp_path / "exp"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "SUPERB_DATA": str(data)}
    env.pop("CUDA_VISIBLE_DEVICES", None)

    def run(*args: str) -> str:
        return run_downstream_script(tmp_path, env, *args)

    train = run("-m", "train", "-u", "fbank", "-d", "pr", "--workers", "0", "-p", str(expdir), "-o", SMOKE)
    assert "s3prl argv:" in train and "dev per:" in train
    assert (expdir / "dev-best.ckpt").is_file() and (expdir / "states-4.ckpt").is_file()
    evaluate = run("-m", "evaluate", "-e", str(expdir / "dev-best.ckpt"), "--workers", "0")
    per_lines = [line for line in evaluate.splitlines() if line.startswith("test per: ")]
    assert len(per_lines) == 1 and float(per_lines[0].split()[-1]) >= 0
    test_ids = sorted(p.stem for p in files["test-clean"])
    for ark in ("test-hyp.ark", "test-ref.ark"):
        assert sorted(line.split()[0] for line in (expdir / ark).read_text().splitlines()) == test_ids
    reference = dict(line.split(" ", 1) for line in (expdir / "test-ref.ark").read_text().splitlines())
    assert reference[test_ids[0]] == "DH AH0 K AE1 T S AE1 T"  # SENTENCES[0] through the lexicon
