"""The restoration tasks: one record per task, the project's one owner of the task vocabulary.

A `Task` says everything the rest of the project needs to know about a task: its strength parameters
(range, default, UI step and label, and the range a blind model is trained on), the strength a bare
number means (`--level 25`), the degradation that makes its inputs, the metric protocol its results are
reported with, and the classical baselines `hinet.evaluate` runs for it. Data (`hinet.data.degrade`,
`validate_strength`, ...), metrics, evaluation, training, the sweep and every tab of the app read
these records; none keeps a list of tasks of its own.

Adding a task: write its degradation in `hinet.degradations`, add one `Task` to `TASKS` below (and its
baselines, if any, to `hinet.evaluate.BASELINES`); `tests/test_tasks.py` checks every record.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import SupportsFloat

import numpy as np

from hinet.degradations import add_noise, add_rain, jpeg_compress, motion_blur
from hinet.errors import ConfigError
from hinet.metrics import Protocol

# (clean image, validated strength, generator, user blur kernel or None) -> degraded image
Degradation = Callable[[np.ndarray, Mapping[str, float], np.random.Generator, "np.ndarray | None"], np.ndarray]


@dataclass(frozen=True)
class Strength:
    """One strength parameter of a task: the accepted range [low, high] (also the UI slider's), its
    default, the slider step and label, and the range a blind model draws it from."""

    name: str
    low: float
    high: float
    default: float
    step: float
    label: str
    blind: tuple[float, float]
    integer: bool = False  # rounded to a whole number when validated (JPEG quality)

    def __post_init__(self) -> None:
        if not self.low <= self.default <= self.high:
            raise ConfigError(
                f"strength {self.name}: default {self.default:g} is outside [{self.low:g}, {self.high:g}]"
            )
        low, high = self.blind
        if not self.low <= low <= high <= self.high:
            raise ConfigError(
                f"strength {self.name}: blind range [{low:g}, {high:g}] is outside [{self.low:g}, {self.high:g}]"
            )
        if not self.step > 0:
            raise ConfigError(f"strength {self.name}: the slider step must be positive, got {self.step:g}")
        if self.integer and self.default != int(self.default):
            raise ConfigError(f"strength {self.name} is a whole number, but its default is {self.default:g}")


@dataclass(frozen=True)
class Task:
    name: str
    label: str  # what the task is, in a few words for people
    strengths: tuple[Strength, ...]
    primary: str  # the strength a bare number sets (`--level 25`)
    degrade: Degradation
    protocol: Protocol  # how results/ (and the app) score it
    baselines: tuple[str, ...]  # classical methods of hinet.evaluate.BASELINES run for it (may be empty)
    # The strength (in pixels) whose half a degradation reads around each pixel: the blur and rain
    # kernels reach that far, so training crops take this margin (`margin`). None: no context needed.
    context: str | None = None
    takes_kernel: bool = False  # accepts a user blur kernel instead of its own
    # The levels a task's default model is judged at (`python -m hinet.evaluate ... --task-levels`), each
    # a name for people and the strengths it sets (the others keep their defaults).
    eval_levels: tuple[tuple[str, Mapping[str, float]], ...] = ()

    def __post_init__(self) -> None:
        names = [s.name for s in self.strengths]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"task {self.name}: strength names must be present and unique, got {names}")
        for _, level in self.eval_levels:
            self.validate(level)  # a level outside the ranges fails at import, not in an evaluation
        for what, name in (("primary", self.primary), ("context", self.context)):
            if name is not None and name not in names:
                raise ConfigError(f"task {self.name}: its {what} strength {name!r} is not one of {', '.join(names)}")

    @property
    def strength_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.strengths)

    @property
    def defaults(self) -> dict[str, float]:
        return {s.name: s.default for s in self.strengths}

    @property
    def blind_ranges(self) -> dict[str, tuple[float, float]]:
        return {s.name: s.blind for s in self.strengths}

    def validate(self, strength: Mapping[str, object]) -> dict[str, float]:
        """The full strength dict (defaults filled in); `ConfigError` for an unknown name or a value
        outside its range."""
        unknown = sorted(set(strength) - set(self.strength_names))
        if unknown:
            raise ConfigError(
                f"{self.name} has no strength parameter {', '.join(unknown)}; "
                f"it takes: {', '.join(self.strength_names)}"
            )
        resolved: dict[str, float] = {}
        for spec in self.strengths:
            raw = strength.get(spec.name, spec.default)
            try:
                # numbers, numeric strings, and 0-d arrays or tensors (anything with __float__ and no shape)
                if not (isinstance(raw, (numbers.Real, str, SupportsFloat)) and getattr(raw, "ndim", 0) == 0):
                    raise TypeError
                value = float(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{self.name} {spec.name} must be a number, got {raw!r}") from None
            if not math.isfinite(value) or not spec.low <= value <= spec.high:
                raise ConfigError(
                    f"{self.name} {spec.name} = {value:g} is out of range; {spec.label} must be in "
                    f"[{spec.low:g}, {spec.high:g}]"
                )
            resolved[spec.name] = int(round(value)) if spec.integer else value
        return resolved

    @property
    def evaluation_levels(self) -> tuple[tuple[str, dict[str, float]], ...]:
        """(name, full validated strength) of each evaluation level; the defaults alone when none are set."""
        if not self.eval_levels:
            return (("default", self.validate({})),)
        return tuple((name, self.validate(level)) for name, level in self.eval_levels)

    def parse_level(self, text: str) -> dict[str, float]:
        """A command-line level: a bare number sets `primary`, `key=value,key=value` sets any (e.g.
        ``length=15,angle=30``). Returns the validated full dict."""
        text = str(text).strip()
        strength: dict[str, str] = {}
        if "=" not in text:
            strength[self.primary] = text
        else:
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, sep, value = part.partition("=")
                if not sep:
                    raise ConfigError(f"level {text!r}: expected key=value pairs separated by commas, got {part!r}")
                strength[key.strip()] = value.strip()
        return self.validate(strength)

    def sample(self, rng: np.random.Generator, blind: bool = False) -> dict[str, float]:
        """One training sample's strength: the defaults, or (blind) uniform in each blind range."""
        if not blind:
            return self.defaults
        return self.validate({s.name: float(rng.uniform(*s.blind)) for s in self.strengths})

    def margin(self, strength: Mapping[str, float]) -> int:
        """Pixels of context the degradation reads around a patch (0 without a `context` strength)."""
        if self.context is None:
            return 0
        return int(math.ceil(float(strength.get(self.context, self.defaults[self.context])) / 2 + 0.5))


# ----------------------------------------------------------------------------------------------------
# The degradations, as each task calls them


def _noise(
    clean: np.ndarray, level: Mapping[str, float], rng: np.random.Generator, kernel: np.ndarray | None = None
) -> np.ndarray:
    return add_noise(clean, level["sigma"], rng)


def _motion_blur(
    clean: np.ndarray, level: Mapping[str, float], rng: np.random.Generator, kernel: np.ndarray | None = None
) -> np.ndarray:
    # A non-negative normalized kernel keeps values in [0, 1]; the clip only removes FFT round-off.
    return np.clip(motion_blur(clean, level["length"], level["angle"], kernel=kernel), 0.0, 1.0)


def _jpeg(
    clean: np.ndarray, level: Mapping[str, float], rng: np.random.Generator, kernel: np.ndarray | None = None
) -> np.ndarray:
    return jpeg_compress(clean, int(level["quality"]))  # validated: a whole number already


def _rain(
    clean: np.ndarray, level: Mapping[str, float], rng: np.random.Generator, kernel: np.ndarray | None = None
) -> np.ndarray:
    return add_rain(clean, level["density"], level["length"], level["angle"], rng)


# ----------------------------------------------------------------------------------------------------
# The tasks, in menu order (the first is every menu's default)

DENOISE = Task(
    name="denoise",
    label="denoising (additive white Gaussian noise)",
    strengths=(Strength("sigma", 0, 100, 25, 1, "Noise sigma (0-255 scale)", blind=(0, 50)),),
    primary="sigma",
    degrade=_noise,
    protocol=Protocol(),
    baselines=("bm3d", "nl_means"),
    eval_levels=(("sigma 15", {"sigma": 15}), ("sigma 25", {"sigma": 25}), ("sigma 50", {"sigma": 50})),
)

DEBLUR = Task(
    name="deblur",
    label="motion deblurring (linear motion blur)",
    strengths=(
        Strength("length", 1, 51, 15, 1, "Motion length (pixels)", blind=(5, 25)),
        Strength("angle", -180, 180, 30, 1, "Motion angle (degrees, 0 = horizontal)", blind=(-180, 180)),
    ),
    primary="length",
    degrade=_motion_blur,
    protocol=Protocol(),
    baselines=("richardson_lucy",),  # given the true kernel: an upper reference for a blind model
    context="length",
    eval_levels=(("length 9", {"length": 9, "angle": 30}), ("length 15", {"length": 15, "angle": 30})),
    takes_kernel=True,
)

JPEG = Task(
    name="jpeg",
    label="JPEG artifact removal",
    strengths=(
        Strength("quality", 1, 95, 10, 1, "JPEG quality (lower = stronger artifacts)", blind=(10, 60), integer=True),
    ),
    primary="quality",
    degrade=_jpeg,
    protocol=Protocol(),
    baselines=(),
    eval_levels=(("quality 10", {"quality": 10}), ("quality 30", {"quality": 30})),
)

DERAIN = Task(
    name="derain",
    label="deraining (synthetic rain streaks)",
    strengths=(
        Strength("density", 0.0, 1.0, 0.5, 0.05, "Rain density", blind=(0.2, 0.8)),
        Strength("length", 3, 60, 20, 1, "Streak length (pixels)", blind=(10, 30)),
        Strength("angle", -45, 45, -15, 1, "Streak tilt from vertical (degrees)", blind=(-30, 30)),
    ),
    primary="density",
    degrade=_rain,
    protocol=Protocol(channel="y"),  # as the official Rain13k results are reported
    baselines=("median5",),
    context="length",
    # light and heavy rain either side of the default density 0.5, streaks at their default length and tilt
    eval_levels=(("light", {"density": 0.3}), ("heavy", {"density": 0.7})),
)

TASKS: Mapping[str, Task] = MappingProxyType({task.name: task for task in (DENOISE, DEBLUR, JPEG, DERAIN)})
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def get_task(name: str) -> Task:
    """The record of task `name`; `ConfigError` naming the known tasks for any other name."""
    task = TASKS.get(name) if isinstance(name, str) else None
    if task is None:
        raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(TASK_NAMES)}")
    return task


__all__ = ["Strength", "Task", "TASKS", "TASK_NAMES", "get_task"]
