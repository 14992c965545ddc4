"""Config loading: every shipped YAML resolves; unknown keys, wrong types and impossible values name the key."""

import re
from pathlib import Path

import pytest
import yaml

from pretrain.config import SECTIONS, PretrainConfig, config_from_dict, load_config
from trainkit.config import apply_overrides as apply_section_overrides
from trainkit.config import save_config


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    return apply_section_overrides(values, overrides, SECTIONS)


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "name", ["ehmam.yaml", "tiny.yaml", "random_mask.yaml", "mel.yaml", "tiny_mel.yaml", "cpu_recipe.yaml"]
)
def test_shipped_configs_load(name):
    """Each shipped config resolves to a valid PretrainConfig."""
    config = load_config(ROOT / "pretrain" / name)
    assert config.model.num_layers >= config.loss.top_k_layers


def test_base_config_has_paper_values():
    """ehmam.yaml carries the Base values of docs/design.md "Configuration"."""
    c = load_config(ROOT / "pretrain" / "ehmam.yaml")
    assert (c.model.embed_dim, c.model.num_layers, c.model.num_heads, c.model.ffn_dim) == (768, 12, 12, 3072)
    assert (c.mask.mask_prob, c.mask.span_length, c.loss.top_k_layers) == (0.5, 5, 8)
    assert (c.teacher.ema_decay_start, c.teacher.ema_decay_end, c.teacher.ema_anneal_updates) == (0.999, 0.99999, 75000)
    assert (c.optim.lr, c.optim.betas, c.optim.eps, c.optim.weight_decay) == (7.5e-4, [0.9, 0.98], 1e-6, 0.01)
    assert c.loss.aux_weight == 1.0 and c.curriculum.mode == "progress"


def test_random_mask_baseline_switches_off_the_method():
    """random_mask.yaml: alpha fixed at 0 and no auxiliary loss, so no loss predictor is built."""
    c = load_config(ROOT / "pretrain" / "random_mask.yaml")
    assert c.curriculum.mode == "none" and c.loss.aux_weight == 0.0
    assert not c.uses_loss_predictor


@pytest.mark.parametrize(
    "values, key",
    [
        ({"optim": {"max_stepz": 3}}, "optim.max_stepz"),
        ({"optim": {"max_steps": "many"}}, "optim.max_steps"),
        ({"mask": {"mask_prob": 1.5}}, "mask.mask_prob"),
        ({"data": {"min_samples": 64000, "max_samples": 32000}}, "data.min_samples"),
        ({"model": {"embed_dim": 100, "num_heads": 12}}, "model.num_heads"),
        ({"curriculum": {"mode": "hard"}}, "curriculum.mode"),
        ({"loss": {"top_k_layers": 13}}, "loss.top_k_layers"),
        ({"optimizer": {}}, "optimizer"),
        ({"run": {"precision": "fp16"}}, "run.precision"),
        ({"optim": {"max_steps": 10, "warmup_steps": 10}}, "optim.warmup_steps"),
        ({"mask": {"mask_prob": 0.0}}, "mask.mask_prob"),
        ({"curriculum": {"plateau": 1.2}}, "curriculum.plateau"),
        ({"curriculum": {"threshold": -0.1}}, "curriculum.threshold"),
        ({"model": {"embed_dim": 128, "num_heads": 3}}, "model.num_heads"),
        ({"heads": {"decoder_dim": 64, "groups": 5}}, "heads.groups"),
        ({"model": {"embed_dim": 120, "num_heads": 4, "pos_conv_groups": 8}}, "heads.groups"),
        ({"model": {"layerdrop": 1.0}}, "model.layerdrop"),
        ({"data": {"bad_audio": "ignore"}}, "data.bad_audio"),
        ({"data": {"bad_audio": 1}}, "data.bad_audio"),
        ({"run": {"max_nonfinite_skips": 0}}, "run.max_nonfinite_skips"),
        ({"run": {"save_every": True}}, "run.save_every"),
        ({"optim": {"eps": 0.0}}, "optim.eps"),
        ({"optim": {"weight_decay": -0.01}}, "optim.weight_decay"),
        ({"data": {"min_samples": 4000, "max_samples": 32000}}, "data.min_samples"),
        ({"release": {"span_sampler": True}, "data": {"min_samples": 1700, "max_samples": 32000}}, "data.min_samples"),
        ({"release": {"aux_norm": "mean"}}, "release.aux_norm"),
        ({"release": {"epoch_curriculum": -1}}, "release.epoch_curriculum"),
        ({"release": {"epoch_curriculum": 150}, "curriculum": {"mode": "none"}}, "release.epoch_curriculum"),
    ],
)
def test_bad_config_names_the_key(values, key):
    """Bad values raise a ValueError whose message names the offending key."""
    with pytest.raises(ValueError, match=re.escape(key)):
        config_from_dict(values)


@pytest.mark.parametrize(
    "values, new_place",
    [
        ({"mask": {"mode": "release"}}, "release.span_sampler"),
        ({"curriculum": {"mode": "epoch"}}, "release.epoch_curriculum"),
        ({"curriculum": {"e_ref": 150}}, "release.epoch_curriculum"),
        ({"loss": {"aux_norm": "sum"}}, "release.aux_norm"),
    ],
)
def test_moved_release_keys_name_their_new_place(values, new_place):
    """A key that moved into the release section is refused with its new name, not as an unknown key."""
    with pytest.raises(ValueError, match=re.escape(new_place)):
        config_from_dict(values)


def test_release_section_reaches_the_crop_check():
    """The release sampler needs T - L start positions, not grid cells: a crop the grid refuses may fit it."""
    crops = {"data": {"min_samples": 3200, "max_samples": 32000}}
    with pytest.raises(ValueError, match="data.min_samples"):
        config_from_dict(crops)
    assert config_from_dict({**crops, "release": {"span_sampler": True}}).release.span_sampler


def test_overrides_are_type_checked_and_applied():
    """--set section.key=value parses YAML values and goes through the same checks."""
    values = apply_overrides(
        {}, ["optim.max_steps=12", "optim.warmup_steps=2", "release.span_sampler=true", "optim.betas=[0.9, 0.95]"]
    )
    c = config_from_dict(values)
    assert c.optim.max_steps == 12 and c.release.span_sampler and c.optim.betas == [0.9, 0.95]
    with pytest.raises(ValueError, match="optim.max_steps"):
        config_from_dict(apply_overrides({}, ["optim.max_steps=1.5"]))
    with pytest.raises(ValueError, match="section.key"):
        apply_overrides({}, ["max_steps=3"])


def test_saved_config_round_trips(tmp_path):
    """The resolved config written beside checkpoints reloads to the same values."""
    c = load_config(ROOT / "pretrain" / "tiny.yaml", ["optim.max_steps=7", "optim.warmup_steps=2"])
    save_config(c, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.to_dict() == c.to_dict()
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["optim"]["max_steps"] == 7
    assert isinstance(again, PretrainConfig)


def test_float_keys_accept_every_spelling_of_a_number():
    """YAML 1.1 reads 5e-4 as a string; a float key still takes it (and 1E-3, ".5"), in --set and in files."""
    c = config_from_dict(apply_overrides({}, ["optim.lr=5e-4", "optim.eps=1E-8", "loss.aux_weight=.5"]))
    assert (c.optim.lr, c.optim.eps, c.loss.aux_weight) == (5e-4, 1e-8, 0.5)
    assert isinstance(c.optim.lr, float)
    with pytest.raises(ValueError, match=r"optim\.lr"):
        config_from_dict(apply_overrides({}, ["optim.lr=fast"]))
    with pytest.raises(ValueError, match=r"optim\.max_steps"):
        config_from_dict(apply_overrides({}, ["optim.max_steps=1e3"]))  # an int key stays strict


def test_base_files_underlie_a_config(tmp_path):
    """`base:` reads the named file first; the child's sections replace only the keys they name."""
    (tmp_path / "parent.yaml").write_text("optim: {lr: 0.002, max_steps: 50, warmup_steps: 5}\nrun: {seed: 4}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\noptim: {max_steps: 70}\n")
    config = load_config(tmp_path / "child.yaml")
    assert (config.optim.lr, config.optim.max_steps, config.run.seed) == (0.002, 70, 4)


def test_a_base_cycle_or_a_missing_base_is_refused_by_name(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ValueError, match="cycle: a.yaml -> b.yaml -> a.yaml"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match="c.yaml: base config file not found"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize("folder", ["pretrain", "finetune"])
def test_shipped_presets_state_only_what_differs_from_their_base(folder):
    """Every key a preset with a `base:` sets has another value than its base gives it."""
    from trainkit.config import read_config_file, read_yaml_mapping

    for path in sorted((ROOT / folder).glob("*.yaml")):
        own = read_yaml_mapping(path)
        base = own.pop("base", None)
        if base is None:
            continue
        inherited = read_config_file(path.parent / base)
        repeated = [
            f"{section}.{key}"
            for section, keys in own.items()
            for key, value in keys.items()
            if (inherited.get(section) or {}).get(key) == value
        ]
        assert not repeated, f"{path.name} repeats its base's {repeated}"
