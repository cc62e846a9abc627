"""The task registry: every record is consistent, and the rest of the project reads it."""

import numpy as np
import pytest
import torch

from hinet import data
from hinet.errors import ConfigError
from hinet.evaluate import BASELINES
from hinet.metrics import Protocol, default_protocol
from hinet.tasks import TASK_NAMES, TASKS, Strength, Task, get_task

RECORDS = list(TASKS.values())


def clean_image(h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / 8.0
    image = np.stack([0.5 + 0.3 * np.sin(x + p) * np.cos(y - p) for p in (0.0, 1.0, 2.0)], axis=2)
    return (image + 0.05 * rng.random((h, w, 3))).astype(np.float32)


def test_names_and_lookup():
    assert tuple(TASKS) == TASK_NAMES and data.TASKS == TASK_NAMES
    assert TASK_NAMES[0] == "denoise"  # every menu's default
    assert get_task("derain") is TASKS["derain"]
    with pytest.raises(ConfigError, match="unknown task 'dehaze'; choose one of: denoise, deblur, jpeg, derain"):
        get_task("dehaze")
    with pytest.raises(ConfigError, match="unknown task"):
        get_task(None)


@pytest.mark.parametrize("task", RECORDS, ids=TASK_NAMES)
def test_record_spec_and_defaults_are_consistent(task: Task):
    assert TASKS[task.name] is task and task.label
    assert task.primary in task.strength_names
    assert task.context is None or task.context in task.strength_names
    for spec in task.strengths:
        assert spec.low <= spec.default <= spec.high and spec.step > 0 and spec.label
        assert spec.low <= spec.blind[0] <= spec.blind[1] <= spec.high
        assert (spec.high - spec.low) / spec.step <= 1000  # a usable slider
    assert data.validate_strength(task.name) == task.defaults
    assert data.sample_strength(task.name, 0) == task.defaults
    # A bare number sets the primary strength; the CSV text reads back to the same level.
    primary = next(s for s in task.strengths if s.name == task.primary)
    assert data.parse_level(task.name, f"{primary.default:g}") == task.defaults
    assert data.parse_level(task.name, data.format_level(task.defaults)) == task.defaults
    with pytest.raises(ConfigError, match="out of range"):
        task.validate({primary.name: primary.high + 1})
    with pytest.raises(ConfigError, match="no strength parameter"):
        task.validate({"no_such_strength": 1})


@pytest.mark.parametrize("task", RECORDS, ids=TASK_NAMES)
def test_blind_samples_stay_in_their_ranges(task: Task):
    rng = np.random.default_rng(1)
    draws = [data.sample_strength(task.name, rng, blind=True) for _ in range(30)]
    for spec in task.strengths:
        values = [draw[spec.name] for draw in draws]
        assert spec.blind[0] <= min(values) and max(values) <= spec.blind[1]
        if spec.integer:
            assert all(value == int(value) for value in values)


@pytest.mark.parametrize("task", RECORDS, ids=TASK_NAMES)
def test_degradation_is_deterministic_and_changes_the_image(task: Task):
    clean = clean_image()
    corners = [
        task.defaults,
        {s.name: s.blind[0] for s in task.strengths},
        {s.name: s.blind[1] for s in task.strengths},
    ]
    for level in corners:
        degraded = data.degrade(clean, task.name, 3, **level)
        assert degraded.shape == clean.shape and degraded.dtype == np.float32 and np.isfinite(degraded).all()
        assert np.array_equal(degraded, data.degrade(clean, task.name, 3, **level))
    assert not np.allclose(data.degrade(clean, task.name, 3), clean, atol=1e-3)
    assert clean.tolist() == clean_image().tolist()  # the input is not modified
    margin = data.blur_margin(task.name, task.defaults)
    assert margin == 0 if task.context is None else margin >= task.defaults[task.context] / 2
    kernel = np.ones((3, 3))
    if task.takes_kernel:
        assert data.degrade(clean, task.name, 0, kernel=kernel).shape == clean.shape
    else:
        with pytest.raises(ConfigError, match="blur kernel"):
            data.degrade(clean, task.name, 0, kernel=kernel)


@pytest.mark.parametrize("task", RECORDS, ids=TASK_NAMES)
def test_protocol_and_baselines(task: Task):
    assert isinstance(task.protocol, Protocol)
    assert default_protocol(task.name) == task.protocol  # the metrics module reads the record
    assert set(task.baselines) <= set(BASELINES)


def test_every_baseline_serves_a_task():
    used = {name for task in RECORDS for name in task.baselines}
    assert used == set(BASELINES)


def test_derain_is_scored_on_y_as_rain13k_is_the_rest_on_rgb():
    assert get_task("derain").protocol == Protocol(channel="y")
    assert {task.protocol for task in RECORDS if task.name != "derain"} == {Protocol()}


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(default=200), "default 200 is outside"),
        (dict(blind=(-5, 10)), "blind range"),
        (dict(step=0), "step must be positive"),
        (dict(integer=True, default=2.5), "whole number"),
    ],
)
def test_inconsistent_strengths_are_refused(changes, words):
    fields = dict(name="x", low=0, high=100, default=10, step=1, label="X", blind=(0, 50))
    with pytest.raises(ConfigError, match=words):
        Strength(**{**fields, **changes})


def test_inconsistent_tasks_are_refused():
    strength = Strength("x", 0, 1, 0.5, 0.1, "X", blind=(0, 1))
    fields = dict(
        name="t",
        label="t",
        strengths=(strength,),
        primary="x",
        degrade=lambda clean, level, rng, kernel=None: clean,
        protocol=Protocol(),
        baselines=(),
    )
    with pytest.raises(ConfigError, match="primary strength 'y'"):
        Task(**{**fields, "primary": "y"})
    with pytest.raises(ConfigError, match="context strength"):
        Task(**{**fields, "context": "length"})
    with pytest.raises(ConfigError, match="unique"):
        Task(**{**fields, "strengths": (strength, strength)})


def test_a_strength_may_be_any_single_number_and_nothing_else():
    task = get_task("denoise")
    for value in (25, 25.0, "25", np.float32(25), np.array(25.0), torch.tensor(25.0)):
        assert task.validate({"sigma": value}) == {"sigma": 25.0}
    for value in ([25], np.array([25.0]), None, "x", {"sigma": 25}):
        with pytest.raises(ConfigError, match="must be a number"):
            task.validate({"sigma": value})
