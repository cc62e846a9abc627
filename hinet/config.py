"""Training configuration: the typed `TrainConfig`, its validation, and the one YAML reader of config files.

A config is a nested mapping (a YAML file plus `--set key=value` overrides) turned into dataclasses by
`from_mapping`, which checks every value against its field's type hint and every field against the bounds
in its metadata; cross-field rules live in `TrainConfig.validate`. The sweep's grid files go through the
same reader and the same builder (`hinet.sweep`).

A YAML file may start from another with `extends: other.yaml` (relative to the file): the file's keys are
merged over the other's, section by section, so the `configs/*_small.yaml` share `configs/small_base.yaml`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import yaml

from hinet.data import validate_strength
from hinet.errors import ConfigError
from hinet.model import HINetConfig
from hinet.registry import get_config

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_T = TypeVar("_T")
_Dataclass = TypeVar("_Dataclass", bound="DataclassInstance")

PHOTO_MODES = ("none", "optional", "required")
DEVICES = ("cpu", "cuda", "auto")
SCHEDULERS = ("cosine", "constant")
LOSSES = ("psnr", "l1", "charbonnier")
EXTENDS_KEY = "extends"  # a YAML file's key naming the file it starts from

# ----------------------------------------------------------------------------------------------------
# Field bounds: kept next to each field in its metadata and checked by `check_bounds`


@overload
def bounded(
    default: _T,
    *,
    minimum: float | None = None,
    positive: bool = False,
    choices: tuple = (),
    note: str = "",
    expects: str | None = None,
) -> _T: ...


@overload
def bounded(
    *,
    minimum: float | None = None,
    positive: bool = False,
    choices: tuple = (),
    note: str = "",
    expects: str | None = None,
) -> Any: ...  # no default: a required field, Any as `dataclasses.field()` without a default returns


def bounded(
    default: object = dataclasses.MISSING,
    *,
    minimum: float | None = None,
    positive: bool = False,
    choices: tuple = (),
    note: str = "",
    expects: str | None = None,
) -> Any:
    """A dataclass field (required without a default) and the checks its value must pass.

    `minimum` 0 reads "must not be negative", any other "must be at least N"; `positive` "must be
    positive"; `choices` "must be one of ..."; `note` is appended to the bound ("(0 = off)"); `expects`
    replaces the type name in a wrong-type message ("a list of integers")."""
    metadata = {"minimum": minimum, "positive": positive, "choices": choices, "note": note, "expects": expects}
    return field(default=default, metadata=metadata)


def check_bounds(instance: DataclassInstance, prefix: str = "") -> None:
    """Raise ConfigError for the first field of `instance` (and its nested dataclasses) out of its bounds."""
    for spec in dataclasses.fields(instance):
        value, key, bounds = getattr(instance, spec.name), prefix + spec.name, spec.metadata
        if dataclasses.is_dataclass(value):
            check_bounds(typing.cast("DataclassInstance", value), key + ".")  # a field holds an instance
        if value is None or not bounds:
            continue
        note = bounds["note"]
        if bounds["choices"] and value not in bounds["choices"]:
            raise ConfigError(f"{key} must be one of {', '.join(bounds['choices'])}{note}; got {value!r}")
        if bounds["positive"] and not value > 0:
            raise ConfigError(f"{key} must be positive{note}; got {value}")
        minimum = bounds["minimum"]
        if minimum is not None and not value >= minimum:
            bound = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
            raise ConfigError(f"{key} {bound}{note}; got {value}")


# ----------------------------------------------------------------------------------------------------
# The schema


@dataclass
class ModelSection:
    variant: str | None = "small_hin"  # a registry name; None = HINetConfig defaults
    config: dict = field(default_factory=dict)  # HINetConfig overrides applied on top of the variant


@dataclass
class DataSection:
    skimage: bool = True  # every usable skimage.data image
    pywt: bool = True  # pywt.data images
    dead_leaves: int = bounded(1000, minimum=0)  # procedural dead-leaves images (0 = none)
    dead_leaves_size: int = 192
    folder: str | None = None  # extra clean images from a folder
    paired_lq: str | None = None  # paired degraded / clean folders (real data instead of synthesis)
    paired_gt: str | None = None
    # Natural photographs from Debian packages (hinet.photos): "required" (stop and name the packages when
    # missing), "optional" (use them when installed, else say so and fall back), or "none". When used,
    # validation is the fixed crops of the held-out photos (val_size x val_size) instead of val_images.
    photos: str = bounded("none", choices=PHOTO_MODES)
    scales: list[float] = field(default_factory=lambda: [1.0, 0.75, 0.5])  # multi-scale crops
    patch: int = bounded(64, minimum=1)
    batch: int = bounded(8, minimum=1)
    val_images: int = bounded(4, minimum=0)  # natural pool images held out for validation when photos are not used
    val_size: int = 128  # validation crop side


@dataclass
class OptimizerSection:
    lr: float = bounded(1e-3, positive=True)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0


@dataclass
class SchedulerSection:
    # cosine annealing to eta_min over `steps` ("constant" keeps lr fixed)
    name: str = bounded("cosine", choices=SCHEDULERS)
    eta_min: float = 1e-6
    # linear warm-up from 0 before the cosine; None = 5% of the steps
    warmup_steps: int | None = bounded(None, minimum=0, note=" (null = 5% of the steps)")


@dataclass
class LossSection:
    name: str = bounded("l1", choices=LOSSES)  # psnr, l1 or charbonnier (hinet.losses)
    weight: float = 1.0


@dataclass
class TrainConfig:
    run_name: str = "run"
    out_dir: str = "runs"
    seed: int = 0
    device: str = bounded("cpu", choices=DEVICES)  # cpu, cuda or auto
    threads: int = bounded(0, minimum=0)  # torch CPU threads; 0 = torch's default
    task: str = "denoise"
    strength: dict = field(default_factory=dict)  # degradation kwargs; empty = data.DEFAULT_LEVELS[task]
    blind: bool = False  # sample a strength per patch (data.sample_strength) instead of a fixed one
    model: ModelSection = field(default_factory=ModelSection)
    # Start from this checkpoint's weights (same architecture) instead of a random init; optimizer, schedule
    # and step count start fresh. null = random init. Recorded in the weights' metadata with its steps.
    init_weights: str | None = None
    data: DataSection = field(default_factory=DataSection)
    steps: int = bounded(2000, minimum=1)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    grad_clip: float = bounded(0.0, minimum=0, note=" (0 = off)")  # max gradient norm
    loss: LossSection = field(default_factory=LossSection)
    bf16: bool = False  # autocast the forward pass to bfloat16; the loss is computed in float32
    channels_last: bool = False
    val_every: int = bounded(500, minimum=0)  # 0 = validate only at the end
    checkpoint_every: int = bounded(500, minimum=0)  # 0 = checkpoint only at the end (and on cancel)
    log_every: int = bounded(10, minimum=0)
    progress: bool = True  # tqdm bar (only shown on a terminal)

    def validate(self) -> TrainConfig:
        if self.run_name == "" or "/" in self.run_name or self.run_name in (".", ".."):
            raise ConfigError(f"run_name must be a plain folder name; got {self.run_name!r}")
        check_bounds(self)
        if not (len(self.optimizer.betas) == 2 and all(0 <= b < 1 for b in self.optimizer.betas)):
            raise ConfigError(f"optimizer.betas must be two numbers in [0, 1); got {self.optimizer.betas}")
        if not (len(self.data.scales) >= 1 and all(0 < s <= 1 for s in self.data.scales)):
            raise ConfigError(f"data.scales must be numbers in (0, 1]; got {self.data.scales}")
        if (self.data.paired_lq is None) != (self.data.paired_gt is None):
            raise ConfigError("data.paired_lq and data.paired_gt must be given together")
        self.model_config()  # raises ConfigError for an unknown variant or a bad override
        self.resolved_strength()  # unknown task, strength name or out-of-range value
        return self

    def model_config(self) -> HINetConfig:
        hints = typing.get_type_hints(HINetConfig)
        unknown = sorted(set(self.model.config) - set(hints))
        if unknown:
            raise ConfigError(f"model.config has unknown keys: {', '.join(unknown)}; known: {', '.join(sorted(hints))}")
        overrides = {k: coerce(hints[k], v, f"model.config.{k}") for k, v in self.model.config.items()}
        if self.model.variant is None:
            return HINetConfig(**overrides)
        return get_config(self.model.variant, **overrides)

    def resolved_strength(self) -> dict:
        """The fixed degradation strength with defaults filled in (what validation and metadata use)."""
        return validate_strength(self.task, **self.strength)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.run_name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return from_mapping(cls, values).validate()


# ----------------------------------------------------------------------------------------------------
# Mapping -> dataclass, checked against the type hints


def _type_name(annotation: object) -> str:
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return "mapping" if annotation is dict else annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    return str(annotation)


def _as_float(value: object) -> float:
    if isinstance(value, str):  # PyYAML reads exponents without a dot ("1e-3") as strings
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    return float(value)


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError
    return value


def _exactly(kind: type) -> Callable[[object], object]:
    def check(value: object) -> object:
        if not isinstance(value, kind):
            raise TypeError
        return value.copy() if isinstance(value, (dict, list)) else value

    return check


_SCALARS = {
    float: _as_float,
    int: _as_int,
    bool: _exactly(bool),
    str: _exactly(str),
    dict: _exactly(dict),
    list: _exactly(list),
}


def coerce(annotation: object, value: object, key: str, kind: str = "config") -> Any:
    """`value` checked against a dataclass field's type (ints are accepted where floats are expected);
    nested dataclasses are built with `from_mapping`. A mismatch is a ConfigError naming `key`."""
    wrong = ConfigError(f"{key} must be {_type_name(annotation)}; got {value!r} ({type(value).__name__})")
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        sections = [a for a in args if dataclasses.is_dataclass(a)]
        if sections and isinstance(value, dict):  # a section's own errors name its keys
            return coerce(sections[0], value, key, kind)
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(option, value, key, kind)
            except ConfigError:
                pass
        raise wrong
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise wrong
        return from_mapping(typing.cast("type[DataclassInstance]", annotation), value, key + ".", kind)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise wrong
        return [coerce(args[0], item, f"{key}[{i}]", kind) for i, item in enumerate(value)]
    if annotation not in _SCALARS:
        raise TypeError(f"unsupported config annotation {annotation!r} for {key}")
    try:
        return _SCALARS[annotation](value)
    except (TypeError, ValueError):
        raise wrong from None


def _builds_dataclass(annotation: object) -> bool:
    return any(dataclasses.is_dataclass(a) for a in (annotation, *typing.get_args(annotation)))


def from_mapping(cls: type[_Dataclass], values: dict, prefix: str = "", kind: str = "config") -> _Dataclass:
    """The dataclass `cls` built from a mapping: unknown keys, missing required keys and values of the
    wrong type are ConfigErrors naming the dotted key (`kind` names the file: "config", "grid")."""
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'the ' + kind} must be a mapping; got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in values if k not in fields)
    if unknown:
        raise ConfigError(
            f"unknown {kind} key{'s' if len(unknown) > 1 else ''} {', '.join(prefix + k for k in unknown)}; "
            f"known keys{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(fields)}"
        )
    required = dataclasses.MISSING
    for name, spec in fields.items():
        if name not in values and spec.default is required and spec.default_factory is required:
            raise ConfigError(f"{prefix.rstrip('.') or 'the ' + kind} has no {name!r}")
    built = {}
    for name, value in values.items():
        try:
            built[name] = coerce(hints[name], value, prefix + name, kind)
        except ConfigError:
            expects = fields[name].metadata.get("expects")
            if expects is None or (isinstance(value, dict) and _builds_dataclass(hints[name])):
                raise  # a nested section names its own key
            raise ConfigError(f"{prefix + name} must be {expects}; got {value!r}") from None
    return cls(**built)


# ----------------------------------------------------------------------------------------------------
# YAML files and --set overrides


def yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's multi-line report as one line: "line L, column C: problem (context)"."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and context_mark is not None and context_mark is not mark:
        context += f" started at line {context_mark.line + 1}, column {context_mark.column + 1}"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}" + (f" ({context})" if context else "")


def _merge(base: dict, override: dict) -> dict:
    """`override` over `base`: mappings merge key by key, everything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def read_yaml_mapping(path: str | os.PathLike, what: str, contents: str) -> dict:
    """The mapping in a YAML file (empty file = {}), merged over the file its `extends` key names; a
    missing file, bad YAML, a non-mapping or an `extends` cycle is a ConfigError naming the file.
    `what` names the file ("config file"), `contents` what the mapping holds."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    return _read_extended(path, contents, ())


def _read_extended(path: Path, contents: str, children: tuple[Path, ...]) -> dict:
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {yaml_problem(error)}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of {contents}")
    if EXTENDS_KEY not in values:
        return values
    parent = values.pop(EXTENDS_KEY)
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{path}: {EXTENDS_KEY} must name a YAML file (relative to {path.parent}); got {parent!r}")
    parent_path = path.parent / parent
    children += (path.resolve(),)
    if not parent_path.is_file():
        raise ConfigError(f"{path}: {EXTENDS_KEY}: {parent_path} does not exist")
    if parent_path.resolve() in children:
        raise ConfigError(f"{path}: {EXTENDS_KEY}: {parent_path} extends, directly or not, {path} itself")
    return _merge(_read_extended(parent_path, contents, children), values)


def apply_overrides(values: dict, assignments: list[str]) -> dict:
    """Apply `a.b=value` assignments (values parsed as YAML scalars) to a nested config dict."""
    values = json.loads(json.dumps(values))  # deep copy
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"--set expects key=value; got {assignment!r}")
        dotted, raw = assignment.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {dotted}: cannot parse {raw!r} as a YAML value ({yaml_problem(error)})") from None
        parts = dotted.strip().split(".")
        node = values
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return values


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML TrainConfig (or the defaults when `path` is None) and apply `--set` overrides."""
    values = {} if path is None else read_yaml_mapping(path, "config file", "config keys")
    return TrainConfig.from_dict(apply_overrides(values, list(overrides)))


# ----------------------------------------------------------------------------------------------------
# Command-line logging


class _PlainFormatter(logging.Formatter):
    """Info lines as they are; other levels prefixed like the CLIs' errors ("warning: ...")."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname.lower()}: {message}"


def configure_logging(verbosity: int = 0) -> None:
    """Show `hinet`'s log records on stderr: -q (verbosity < 0) warnings only, default info, -v debug.

    A process that already configured logging (the app, pytest) keeps its handlers; only the level of
    the `hinet` loggers is set."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PlainFormatter("%(message)s"))
    logging.basicConfig(handlers=[handler])  # a no-op when the root logger has handlers
    logging.getLogger("hinet").setLevel(
        logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    )
