"""The train tab's config checks: values from API callers (None, text, fractions) give one plain ConfigError."""

from __future__ import annotations

import pytest

from app.train_logic import make_config
from hinet.errors import ConfigError

# task, norm, ratio, first level, last level, decoder norm, affine, wf, depth, steps, seed
GOOD = ["denoise", "half_instance", 0.5, 0, 2, False, True, 8, 3, 10, 0]
ARGUMENT = {"ratio": 2, "left": 3, "wf": 7, "depth": 8, "steps": 9, "seed": 10}


def test_valid_choices_make_a_config(tmp_path):
    cfg = make_config(*GOOD, runs_dir=tmp_path, name="run")
    assert cfg.steps == 10 and cfg.model_config().wf == 8 and cfg.model_config().ratio == 0.5


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("steps", None, "steps must be a number; got None"),
        ("steps", "ten", "steps must be a number; got 'ten'"),
        ("steps", 2.5, "steps must be a whole number; got 2.5"),
        ("seed", "nan", "seed must be a finite number"),
        ("wf", [8], "wf must be a number"),
        ("depth", None, "depth must be a number; got None"),
        ("left", "", "first normalized level must be a number"),
        ("ratio", "half", "normalized fraction must be a number; got 'half'"),
        ("steps", 0, "steps must be between 1 and"),
    ],
)
def test_bad_values_raise_a_plain_config_error(tmp_path, name, value, message):
    arguments = list(GOOD)
    arguments[ARGUMENT[name]] = value
    with pytest.raises(ConfigError) as info:
        make_config(*arguments, runs_dir=tmp_path, name="run")
    assert str(info.value).startswith(message)
    assert not (tmp_path / "run").exists()


def test_text_numbers_from_api_callers_are_accepted(tmp_path):
    arguments = list(GOOD)
    arguments[ARGUMENT["steps"]], arguments[ARGUMENT["wf"]] = "12", "8"
    assert make_config(*arguments, runs_dir=tmp_path, name="run").steps == 12
