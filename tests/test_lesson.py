"""app.lesson and the shipped lesson file: every step parses, sets existing controls of the learn tab, links to
a tab of the app, and changes the controls; a broken lesson file is refused with a message naming the step."""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import yaml

from app.context import TAB_IDS
from app.learn_views import EXPERIMENTS, NORM_KEYS, LearnState, parse_share
from app.lesson import LESSON_FILE, MAX_STEPS, MIN_STEPS, load_lesson, parse_lesson, step_markdown
from hinet.errors import ConfigError

CONTROLS = {field.name for field in dataclasses.fields(LearnState)}  # the share string's keys, one per control
TITLES = {tab_id: tab_id.title() for tab_id in TAB_IDS}


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(LESSON_FILE.read_text(encoding="utf-8"))


def test_the_shipped_lessons_steps_parse_and_set_existing_controls(raw):
    lesson = load_lesson(TAB_IDS)
    assert MIN_STEPS <= len(lesson.steps) <= MAX_STEPS
    assert len(lesson.steps) == len(raw["steps"])
    previous = None
    for index, step in enumerate(lesson.steps, start=1):
        keys = [key for key, _ in parse_qsl(step.view)]
        assert keys and set(keys) <= CONTROLS, (index, keys)
        state = parse_share(step.view)
        assert state.norm in NORM_KEYS and state.exp in EXPERIMENTS
        assert step.tab in TAB_IDS, index
        assert state != previous, f"step {index} leaves the controls as they were"
        previous = state
        indicator, body = step_markdown(lesson, index, TITLES)
        assert indicator.startswith(f"**Step {index} of {len(lesson.steps)}: ")
        assert step.question in body and TITLES[step.tab] in body
    assert step_markdown(lesson, 0, TITLES)[1] == lesson.intro


def test_the_last_step_points_to_the_budget_ladder_and_types_no_results():
    last = load_lesson(TAB_IDS).steps[-1]
    assert last.tab == "ablation" and "budget ladder" in last.text and "results/ablation.csv" in last.text
    assert not any(char.isdigit() for char in last.text.replace("ablation.csv", ""))  # no numbers, no dB


def _refusal(raw, edit) -> str:
    broken = copy.deepcopy(raw)
    edit(broken)
    with pytest.raises(ConfigError) as caught:
        parse_lesson(broken, TAB_IDS, "lesson.yaml")
    return str(caught.value)


def test_a_broken_lesson_is_refused_naming_the_step(raw):
    def set_step(index, **values):
        return lambda lesson: lesson["steps"][index].update(values)

    assert "step 2: its view 'norm=bn&speed=3'" in _refusal(raw, set_step(1, view="norm=bn&speed=3"))
    assert "unknown setting 'speed'" in _refusal(raw, set_step(1, view="norm=bn&speed=3"))
    assert "step 1: its view" in _refusal(raw, set_step(0, view="norm=bn&bs=99"))
    assert "step 3: tab 'settings' is not a tab" in _refusal(raw, set_step(2, tab="settings"))
    assert "step 1: 'question' must be a non-empty text" in _refusal(raw, set_step(0, question=""))
    assert "missing there" in _refusal(raw, lambda lesson: lesson["steps"][0].pop("there"))
    assert "unknown key(s) colour" in _refusal(raw, set_step(0, colour="red"))
    same = raw["steps"][0]["view"]
    assert "step 2: its view sets the same controls as step 1" in _refusal(raw, set_step(1, view=same))
    assert f"has 2 steps; a lesson has {MIN_STEPS}" in _refusal(
        raw, lambda lesson: lesson.update(steps=lesson["steps"][:2])
    )


def test_a_lesson_file_that_is_not_yaml_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("steps: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_lesson(TAB_IDS, path)


def test_the_lesson_file_is_package_data():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["app"]
    relative = LESSON_FILE.relative_to(Path(__file__).parents[1] / "app")
    assert any(relative.match(pattern) for pattern in patterns)
