"""The learn tab's guided lesson, without any Gradio: read from a YAML file and checked step by step.

The lesson is data (`app/lessons/normalization.yaml`): a title, an intro and 5-8 steps, each with a short
text, a question to think about, the tab's controls as a share string (`app.learn_views.parse_share`) and
the tab that shows the idea on a trained model (one of the app's tab ids, `app.context.TAB_IDS`, which the
caller passes in: this module imports no Gradio). `load_lesson` refuses a file whose step names an unknown
control, holds a value a control cannot take, or links to no tab, with a message naming the file and step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl

import yaml

from app.learn_views import LearnState, parse_share
from hinet.errors import ConfigError

LESSON_FILE = Path(__file__).parent / "lessons" / "normalization.yaml"
MIN_STEPS, MAX_STEPS = 5, 8
STEP_KEYS = ("title", "text", "question", "view", "tab", "there")


@dataclass(frozen=True)
class LessonStep:
    title: str
    text: str
    question: str
    view: str  # the learn tab's share string this step sets, e.g. "norm=bn&exp=batch&bs=2"
    tab: str  # the tab that shows it on a trained model (an id of app.context.TAB_IDS)
    there: str  # what to look at on that tab

    @property
    def state(self) -> LearnState:
        return parse_share(self.view)


@dataclass(frozen=True)
class Lesson:
    title: str
    intro: str
    steps: tuple[LessonStep, ...]


def _text(value, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key!r} must be a non-empty text")
    return value.strip()


def _step(raw, where: str, tab_ids: tuple[str, ...]) -> LessonStep:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with {', '.join(STEP_KEYS)}")
    unknown = sorted(set(raw) - set(STEP_KEYS))
    missing = [key for key in STEP_KEYS if key not in raw]
    if unknown or missing:
        said = [f"unknown key(s) {', '.join(unknown)}"] if unknown else []
        said += [f"missing {', '.join(missing)}"] if missing else []
        raise ConfigError(f"{where}: {'; '.join(said)} (a step has {', '.join(STEP_KEYS)})")
    fields = {key: _text(raw[key], where, key) for key in STEP_KEYS}
    try:
        parse_share(fields["view"])
    except ConfigError as error:
        raise ConfigError(
            f"{where}: its view {fields['view']!r} does not set the learn tab's controls: {error}"
        ) from None
    if not parse_qsl(fields["view"]):
        raise ConfigError(f"{where}: its view sets no control")
    if fields["tab"] not in tab_ids:
        raise ConfigError(f"{where}: tab {fields['tab']!r} is not a tab of the app; use one of {', '.join(tab_ids)}")
    return LessonStep(**fields)


def parse_lesson(raw, tab_ids: tuple[str, ...], source: str = "the lesson") -> Lesson:
    """A `Lesson` from the YAML's data whose steps link to `tab_ids`; `ConfigError` naming `source` and the
    step when anything is wrong."""
    if not isinstance(raw, dict) or not isinstance(raw.get("steps"), list):
        raise ConfigError(f"{source} must be a mapping with a title, an intro and a list of steps")
    steps = tuple(_step(step, f"{source}, step {index}", tab_ids) for index, step in enumerate(raw["steps"], start=1))
    if not MIN_STEPS <= len(steps) <= MAX_STEPS:
        raise ConfigError(f"{source} has {len(steps)} steps; a lesson has {MIN_STEPS} to {MAX_STEPS}")
    for index, (before, after) in enumerate(zip(steps, steps[1:]), start=2):
        if before.state == after.state:
            raise ConfigError(f"{source}, step {index}: its view sets the same controls as step {index - 1}")
    title, intro = _text(raw.get("title"), source, "title"), _text(raw.get("intro"), source, "intro")
    return Lesson(title=title, intro=intro, steps=steps)


@lru_cache(maxsize=4)
def load_lesson(tab_ids: tuple[str, ...], path: Path = LESSON_FILE) -> Lesson:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read the lesson {path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"the lesson {path.name} is not valid YAML: {error}") from None
    return parse_lesson(raw, tuple(tab_ids), path.name)


def step_markdown(lesson: Lesson, index: int, tab_titles: dict[str, str]) -> tuple[str, str]:
    """(step indicator, body) of step `index` as Markdown; index 0 is the intro, 1..N the steps."""
    total = len(lesson.steps)
    if index == 0:
        return f"**{lesson.title}** · {total} steps", lesson.intro
    step = lesson.steps[index - 1]
    body = f"{step.text}\n\n> **Think about it:** {step.question}\n\n*On {tab_titles[step.tab]}:* {step.there}"
    return f"**Step {index} of {total}: {step.title}**", body


__all__ = ["LESSON_FILE", "Lesson", "LessonStep", "parse_lesson", "load_lesson", "step_markdown"]
