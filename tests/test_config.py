"""Config files: the shared base of the small configs, `extends`, and one-line messages for broken YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from hinet.config import TrainConfig, apply_overrides, load_config, read_yaml_mapping
from hinet.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

# What configs/<task>_small.yaml held before they shared configs/small_base.yaml, key for key: the shipped
# models were trained with these, so the resolved files must not drift.
SMALL_COMMON = {
    "out_dir": "runs",
    "seed": 0,
    "device": "cpu",
    "threads": 0,
    "model": {"variant": "small_hin"},
    "data": {
        "dead_leaves": 600,
        "dead_leaves_size": 192,
        "scales": [1.0, 0.75, 0.5],
        "patch": 64,
        "batch": 8,
        "val_images": 3,
        "val_size": 128,
    },
    "steps": 3000,
    "optimizer": {"lr": 0.001, "betas": [0.9, 0.99], "weight_decay": 0.0},
    "scheduler": {"name": "cosine", "eta_min": 1e-06, "warmup_steps": 0},
    "grad_clip": 0.01,
    "loss": {"name": "l1", "weight": 1.0},
    "bf16": True,
    "channels_last": False,
    "val_every": 250,
    "checkpoint_every": 250,
    "log_every": 10,
}
SMALL_STRENGTHS = {
    "denoise": {"sigma": 25},
    "deblur": {"length": 15, "angle": 30},
    "derain": {"density": 0.5, "length": 20, "angle": -15},
    "jpeg": {"quality": 10},
}


@pytest.mark.parametrize("task", sorted(SMALL_STRENGTHS))
def test_small_configs_resolve_to_the_values_they_had_before_the_shared_base(task):
    path = REPO / "configs" / f"{task}_small.yaml"
    expected = dict(SMALL_COMMON, run_name=f"{task}_small", task=task, strength=SMALL_STRENGTHS[task])
    assert "extends" in path.read_text()
    assert read_yaml_mapping(path, "config file", "config keys") == expected
    assert load_config(path) == TrainConfig.from_dict(expected)


def test_extends_merges_sections_over_a_file_relative_to_the_extending_one(tmp_path):
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases" / "root.yaml").write_text("steps: 5\ndata: {patch: 32, batch: 2}\nstrength: {sigma: 10}\n")
    (tmp_path / "bases" / "mid.yaml").write_text("extends: root.yaml\nsteps: 6\ndata: {batch: 4}\n")
    (tmp_path / "run.yaml").write_text("extends: bases/mid.yaml\nrun_name: child\ndata: {val_size: 64}\n")
    values = read_yaml_mapping(tmp_path / "run.yaml", "config file", "config keys")
    assert values == {
        "steps": 6,
        "data": {"patch": 32, "batch": 4, "val_size": 64},
        "strength": {"sigma": 10},
        "run_name": "child",
    }
    cfg = load_config(tmp_path / "run.yaml", ["data.patch=16"])
    assert (cfg.steps, cfg.data.patch, cfg.data.batch, cfg.strength) == (6, 16, 4, {"sigma": 10})


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a.yaml": "extends: a.yaml\n"}, r"a\.yaml: extends: .*a\.yaml extends, directly or not, .*a\.yaml itself"),
        ({"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"}, "extends, directly or not"),
        ({"a.yaml": "extends: missing.yaml\n"}, r"a\.yaml: extends: .*missing\.yaml does not exist"),
        ({"a.yaml": "extends: [b.yaml]\n"}, "extends must name a YAML file"),
        ({"a.yaml": "extends: b.yaml\n", "b.yaml": "steps: [1\n"}, r"b\.yaml is not valid YAML: line 2"),
    ],
)
def test_bad_extends_is_a_config_error_naming_the_file(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "text, where",
    [
        ("run_name: x\nsteps: [1, 2\ndata:\n  patch: 3\n", "line 3, column 5"),
        ("run_name: x\n  steps: 3\n", "line 2, column 8: mapping values are not allowed here"),
        ("a: b\n\tc: d\n", "line 2, column 1"),
    ],
)
def test_broken_yaml_is_one_line_naming_the_file_and_the_place(tmp_path, text, where):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path} is not valid YAML: {where}")
    assert "\n" not in message and "<unicode string>" not in message


def test_unparsable_set_value_is_one_line():
    with pytest.raises(ConfigError) as info:
        apply_overrides({}, ["steps=[1"])
    assert str(info.value).startswith("--set steps: cannot parse '[1' as a YAML value (line 1, column 3")
    assert "\n" not in str(info.value)
