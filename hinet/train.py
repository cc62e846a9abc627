"""Train a HINet variant: `python -m hinet.train --config configs/X.yaml --set key=value ...`.

The run folder `<out_dir>/<run_name>/` holds everything a run needs to be inspected or resumed:

    config.yaml              the resolved TrainConfig
    model.safetensors        latest weights (hinet.checkpoint format; metadata: task, strength, steps, ...)
    best.safetensors         the weights with the best validation PSNR so far
    train_state.safetensors  Adam's moment tensors and the torch RNG state (no pickle anywhere)
    train_state.json         step, train_seconds, Adam hyper-parameters, scheduler, validation scores
    log.jsonl                one JSON line per logged step: step, loss, lr, grad_norm (before clipping),
                             val_psnr, val_ssim, wall
    data_sources.json        exactly which images trained and validated the run (photo hashes included)

Resuming is automatic when the run folder holds a state. Batch k is drawn from a numpy generator seeded
by (seed, k, rank), so there is no numpy state to keep: a resumed run sees exactly the batches an unbroken
run would have seen and, on the CPU with deterministic algorithms, ends with bit-identical weights.
A checkpoint's three files are written completely before any of them replaces its predecessor, so a
failed write (full disk) leaves the previous checkpoint whole. A NaN/inf loss or gradient stops the run
before the optimizer step, naming the step and the last good checkpoint; non-finite weights are never saved.
`should_stop()` (the app's cancel button, Ctrl-C / SIGTERM on the command line) saves and returns cleanly.

Under `torchrun` (RANK / WORLD_SIZE set) the model is wrapped in DistributedDataParallel (gloo on the CPU,
nccl on CUDA), every rank draws its own batches (`data.batch` is per process), and only rank 0
validates, logs and writes checkpoints, between barriers.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from hinet.errors import CheckpointError, ConfigError, HINetError
from hinet.inference import cpu_has_native_bf16
from hinet.io import atomic_write_bytes
from hinet.model import HINet, HINetConfig

# ----------------------------------------------------------------------------------------------------
# Config

PHOTO_MODES = ("none", "optional", "required")
DEFAULT_WARMUP_FRACTION = 0.05


@dataclass
class ModelSection:
    variant: str | None = "small_hin"  # a registry name; None = HINetConfig defaults
    config: dict = field(default_factory=dict)  # HINetConfig overrides applied on top of the variant


@dataclass
class DataSection:
    skimage: bool = True  # every usable skimage.data image
    pywt: bool = True  # pywt.data images
    dead_leaves: int = 1000  # procedural dead-leaves images (0 = none)
    dead_leaves_size: int = 192
    folder: str | None = None  # extra clean images from a folder
    paired_lq: str | None = None  # paired degraded / clean folders (real data instead of synthesis)
    paired_gt: str | None = None
    # Natural photographs from Debian packages (hinet.photos): "required" (stop and name the packages when
    # missing), "optional" (use them when installed, else say so and fall back), or "none". When used,
    # validation is the fixed crops of the held-out photos (val_size x val_size) instead of val_images.
    photos: str = "none"
    scales: list[float] = field(default_factory=lambda: [1.0, 0.75, 0.5])  # multi-scale crops
    patch: int = 64
    batch: int = 8
    val_images: int = 4  # natural pool images held out for validation when photos are not used
    val_size: int = 128  # validation crop side


@dataclass
class OptimizerSection:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0


@dataclass
class SchedulerSection:
    name: str = "cosine"  # cosine annealing to eta_min over `steps` ("constant" keeps lr fixed)
    eta_min: float = 1e-6
    warmup_steps: int | None = None  # linear warm-up from 0 before the cosine; None = 5% of the steps


@dataclass
class LossSection:
    name: str = "l1"  # psnr, l1 or charbonnier (hinet.losses)
    weight: float = 1.0


@dataclass
class TrainConfig:
    run_name: str = "run"
    out_dir: str = "runs"
    seed: int = 0
    device: str = "cpu"  # cpu, cuda or auto
    threads: int = 0  # torch CPU threads; 0 = torch's default
    task: str = "denoise"
    strength: dict = field(default_factory=dict)  # degradation kwargs; empty = data.DEFAULT_LEVELS[task]
    blind: bool = False  # sample a strength per patch (data.sample_strength) instead of a fixed one
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    steps: int = 2000
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    loss: LossSection = field(default_factory=LossSection)
    bf16: bool = False  # autocast the forward pass to bfloat16; the loss is computed in float32
    channels_last: bool = False
    val_every: int = 500  # 0 = validate only at the end
    checkpoint_every: int = 500  # 0 = checkpoint only at the end (and on cancel)
    log_every: int = 10
    progress: bool = True  # tqdm bar (only shown on a terminal)

    def validate(self) -> "TrainConfig":
        def require(ok: bool, message: str):
            if not ok:
                raise ConfigError(message)

        require(self.device in ("cpu", "cuda", "auto"), f"device must be cpu, cuda or auto; got {self.device!r}")
        require(self.run_name != "" and "/" not in self.run_name and self.run_name not in (".", ".."),
                f"run_name must be a plain folder name; got {self.run_name!r}")
        for key in ("steps", "data.patch", "data.batch"):
            require(_get_path(self, key) >= 1, f"{key} must be at least 1; got {_get_path(self, key)}")
        for key in ("threads", "val_every", "checkpoint_every", "log_every", "data.dead_leaves",
                    "data.val_images"):
            require(_get_path(self, key) >= 0, f"{key} must not be negative; got {_get_path(self, key)}")
        require(self.scheduler.warmup_steps is None or self.scheduler.warmup_steps >= 0,
                f"scheduler.warmup_steps must not be negative (null = 5% of the steps); got {self.scheduler.warmup_steps}")
        require(self.data.photos in PHOTO_MODES,
                f"data.photos must be one of {', '.join(PHOTO_MODES)}; got {self.data.photos!r}")
        require(self.optimizer.lr > 0, f"optimizer.lr must be positive; got {self.optimizer.lr}")
        require(len(self.optimizer.betas) == 2 and all(0 <= b < 1 for b in self.optimizer.betas),
                f"optimizer.betas must be two numbers in [0, 1); got {self.optimizer.betas}")
        require(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off); got {self.grad_clip}")
        require(self.scheduler.name in ("cosine", "constant"),
                f"scheduler.name must be cosine or constant; got {self.scheduler.name!r}")
        require(self.loss.name in ("psnr", "l1", "charbonnier"),
                f"loss.name must be psnr, l1 or charbonnier; got {self.loss.name!r}")
        require(len(self.data.scales) >= 1 and all(0 < s <= 1 for s in self.data.scales),
                f"data.scales must be numbers in (0, 1]; got {self.data.scales}")
        require((self.data.paired_lq is None) == (self.data.paired_gt is None),
                "data.paired_lq and data.paired_gt must be given together")
        self.model_config()  # raises ConfigError for an unknown variant or a bad override
        from hinet.data import validate_strength

        validate_strength(self.task, **self.strength)  # unknown task, strength name or out-of-range value
        return self

    def model_config(self) -> HINetConfig:
        from hinet.registry import get_config

        hints = typing.get_type_hints(HINetConfig)
        unknown = sorted(set(self.model.config) - set(hints))
        if unknown:
            raise ConfigError(f"model.config has unknown keys: {', '.join(unknown)}; known: {', '.join(sorted(hints))}")
        overrides = {k: _coerce(hints[k], v, f"model.config.{k}") for k, v in self.model.config.items()}
        if self.model.variant is None:
            return HINetConfig(**overrides)
        return get_config(self.model.variant, **overrides)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.run_name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        return _build(cls, values, "").validate()


def _type_name(annotation) -> str:
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


def _coerce(annotation, value, key: str):
    """Check `value` against a dataclass field's type; ints are accepted where floats are expected."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    wrong = ConfigError(f"{key} must be {_type_name(annotation)}; got {value!r} ({type(value).__name__})")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, key)
            except ConfigError:
                pass
        raise wrong
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise wrong
        return _build(annotation, value, key + ".")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise wrong
        return [_coerce(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    if annotation is dict:
        if not isinstance(value, dict):
            raise wrong
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if annotation is float:
        if isinstance(value, str):  # PyYAML reads exponents without a dot ("1e-3") as strings
            try:
                return float(value)
            except ValueError:
                raise wrong from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise wrong
        return value
    raise TypeError(f"unsupported config annotation {annotation!r} for {key}")


def _build(cls, values: dict, prefix: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'the config'} must be a mapping; got {values!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in values if k not in known)
    if unknown:
        raise ConfigError(
            f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(prefix + k for k in unknown)}; "
            f"known keys{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(known)}"
        )
    return cls(**{name: _coerce(hints[name], value, prefix + name) for name, value in values.items()})


def _get_path(cfg, dotted: str):
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


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
            raise ConfigError(f"--set {dotted}: cannot parse {raw!r} as a YAML value ({error})") from None
        parts = dotted.strip().split(".")
        node = values
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return values


def read_yaml_mapping(path: str | os.PathLike, what: str, contents: str) -> dict:
    """The mapping in a YAML file (empty file = {}); a missing file, bad YAML or a non-mapping is a
    ConfigError. `what` names the file ("config file"), `contents` what the mapping holds."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of {contents}")
    return values


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML TrainConfig (or the defaults when `path` is None) and apply `--set` overrides."""
    values = {} if path is None else read_yaml_mapping(path, "config file", "config keys")
    return TrainConfig.from_dict(apply_overrides(values, list(overrides)))


# ----------------------------------------------------------------------------------------------------
# Devices, distributed setup, learning-rate schedule


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device is cuda but no CUDA GPU is available; use device: cpu or auto")
    return torch.device(name)


def describe_device(device: torch.device | str = "cpu") -> str:
    """A short human label such as "cpu: 2 vCPU AMD EPYC 7R13 Processor" or "cuda: NVIDIA H100"."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model_name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if not model_name:
        import platform

        model_name = platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu: {cores} vCPU {model_name}".strip()


@dataclass
class _Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.enabled:
            torch.distributed.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any rank (keeps ranks in step on stop/cancel)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0])
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item() > 0)


def _init_distributed(device: torch.device) -> _Distributed:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Distributed()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Distributed(rank, world_size, local_rank)


def warmup_steps(cfg: TrainConfig) -> int:
    """Linear warm-up length: scheduler.warmup_steps, or 5% of the steps when it is null. Warm-up lets
    every normalization start from the same learning rate without an early blow-up (no-norm and batch-norm
    variants differ most there), so the ablation does not favour the variant the rate was tuned on."""
    if cfg.scheduler.warmup_steps is not None:
        return cfg.scheduler.warmup_steps
    return max(1, round(DEFAULT_WARMUP_FRACTION * cfg.steps))


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """The learning rate at `step` (0-based) divided by optimizer.lr: linear warm-up, then cosine
    annealing to scheduler.eta_min at cfg.steps. Closed form, so resuming needs no schedule history."""
    warmup = warmup_steps(cfg)
    if warmup and step < warmup:
        return (step + 1) / warmup
    if cfg.scheduler.name == "constant":
        return 1.0
    floor = min(cfg.scheduler.eta_min / cfg.optimizer.lr, 1.0)
    progress = min(max(step - warmup, 0) / max(cfg.steps - warmup, 1), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------------------
# Data


@dataclass
class _TrainingData:
    """Where batches come from: synthetic pairs from clean images, or real pairs from two folders."""

    task: str
    strength: dict | None  # None = blind
    clean: list | None = None  # clean training images (synthetic degradations)
    paired: object | None = None  # data.PairedFolder
    paired_train: list[int] = field(default_factory=list)  # indices of the pairs used for training
    val_pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (lq, gt) crops
    sources: dict = field(default_factory=dict)  # what the run saw, written to the run folder (DATA_FILE)
    area: np.ndarray | None = None  # data.cumulative_area(clean): images are drawn proportionally to area

    def batch(self, cfg: TrainConfig, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` of this rank. It depends only on (seed, step, rank), which is what makes a
        resumed run identical to an unbroken one and gives each DDP rank its own samples."""
        from hinet import data

        rng = np.random.default_rng([cfg.seed, step, rank])
        if self.clean is not None:
            return data.make_batch(self.clean, self.task, cfg.data.batch, cfg.data.patch, rng,
                                   blind=self.strength is None, strength=self.strength, area=self.area)
        lqs, gts = [], []
        for _ in range(cfg.data.batch):
            _, lq, gt = self.paired[self.paired_train[int(rng.integers(len(self.paired_train)))]]
            lq, gt = data.random_crop([lq, gt], cfg.data.patch, rng)
            k = int(rng.integers(8))
            lqs.append(data.dihedral(lq, k))
            gts.append(data.dihedral(gt, k))
        as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
        return as_tensor(lqs), as_tensor(gts)


def _center_crop(image: np.ndarray, size: int, multiple: int) -> np.ndarray:
    h, w = image.shape[:2]
    ch = min(size, h) // multiple * multiple
    cw = min(size, w) // multiple * multiple
    if ch < multiple or cw < multiple:
        raise ConfigError(f"a validation image of {w}x{h} is smaller than the model's size multiple {multiple}")
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(image[y:y + ch, x:x + cw])


_VALIDATION_SEED = 0x7A1  # the validation degradations are the same for every run and seed


@functools.lru_cache(maxsize=1)  # a sweep trains many runs on the same pool; rescaling it takes seconds
def _clean_split(dead_leaves: int, dead_leaves_size: int, scales: tuple, use_skimage: bool, use_pywt: bool,
                 folder: str | None, val_images: int, photos: bool = False):
    """(training images, validation images) of the clean sources; validation holds out whole natural
    images (none when `photos`: the held-out photos validate then)."""
    from hinet import data

    pool = data.training_pool(seed=0, n_dead_leaves=dead_leaves, dead_leaves_size=dead_leaves_size, scales=scales,
                              photos=photos)
    keep = [i for i, name in enumerate(pool.names)
            if (use_skimage or not name.startswith("skimage/")) and (use_pywt or not name.startswith("pywt/"))]
    pool = data.ImagePool([pool[i] for i in keep], [pool.names[i] for i in keep])
    if folder is not None:
        for name, image in data.folder_images(folder).items():
            pool.append(image)
            pool.names.append(f"folder/{name}@1")
    return data.split_validation(pool, 0 if photos else val_images, seed=0)


def _use_photos(mode: str, warn: bool = True) -> bool:
    """Whether this run trains and validates on the Debian photos (`data.photos`)."""
    from hinet import photos

    if mode == "none":
        return False
    if mode == "required":
        photos.require_available()
        return True
    if photos.available():
        return True
    if warn:
        print(f"data.photos=optional: the photo package(s) {', '.join(photos.missing_packages())} are not installed, "
              f"so this run trains without natural photos and validates on held-out pool images; install them "
              f"with `{photos.install_command()}` for the recorded setup", file=sys.stderr)
    return False


def _pool_sources(names: list[str]) -> dict:
    """The training images of a pool by source, as the run folder records them."""
    from hinet import photos

    by_source: dict[str, list[str]] = {}
    for name in names:
        source, rest = name.split("/", 1)
        by_source.setdefault(source, []).append(rest)
    recorded = {source: sorted(set(items)) for source, items in by_source.items() if source != "dead_leaves"}
    if "photos" in by_source:
        used = {item.rsplit("@", 1)[0] for item in by_source["photos"]}
        recorded["photos"] = [p.record() for p in photos.manifest("train") if p.name in used]
    if "dead_leaves" in by_source:
        recorded["dead_leaves"] = {"images": len({i.rsplit("@", 1)[0] for i in by_source["dead_leaves"]})}
    return recorded


def _prepare_data(cfg: TrainConfig, multiple: int) -> _TrainingData:
    from hinet import data

    strength = None if cfg.blind else data.validate_strength(cfg.task, **cfg.strength)
    val_strength = data.validate_strength(cfg.task, **cfg.strength)
    if cfg.data.paired_lq is not None:
        pairs = data.PairedFolder(cfg.data.paired_lq, cfg.data.paired_gt)
        n_val = cfg.data.val_images
        if n_val >= len(pairs):
            raise ConfigError(f"data.val_images={n_val} leaves no training pair out of {len(pairs)}; lower it")
        result = _TrainingData(cfg.task, strength, paired=pairs, paired_train=list(range(len(pairs) - n_val)))
        for index in range(len(pairs) - n_val, len(pairs)):
            _, lq, gt = pairs[index]
            result.val_pairs.append((_center_crop(lq, cfg.data.val_size, multiple),
                                     _center_crop(gt, cfg.data.val_size, multiple)))
        return result

    use_photos = _use_photos(cfg.data.photos)
    train_images, val_images = _clean_split(cfg.data.dead_leaves, cfg.data.dead_leaves_size, tuple(cfg.data.scales),
                                            cfg.data.skimage, cfg.data.pywt, cfg.data.folder, cfg.data.val_images,
                                            use_photos)
    if not len(train_images):
        raise ConfigError("no clean training images: enable data.skimage / data.pywt, set data.dead_leaves "
                          "or give data.folder")
    clean = list(train_images)
    result = _TrainingData(cfg.task, strength, clean=clean, area=data.cumulative_area(clean))
    if use_photos:
        from hinet.photos import validation_crops

        labelled = validation_crops(cfg.data.val_size)
    else:
        labelled = list(zip(val_images.names, val_images))
    for i, (_, image) in enumerate(labelled):
        gt = _center_crop(image, cfg.data.val_size, multiple)
        lq = data.degrade(gt, cfg.task, np.random.default_rng([_VALIDATION_SEED, i]), **val_strength)
        result.val_pairs.append((lq, gt))
    total_area = int(result.area[-1])
    shares: dict[str, int] = {}
    for name, image in zip(train_images.names, clean):
        source = name.split("/", 1)[0]
        shares[source] = shares.get(source, 0) + int(image.shape[0]) * int(image.shape[1])
    result.sources = {
        "training": _pool_sources(train_images.names),
        "area_share": {source: round(area / total_area, 4) for source, area in sorted(shares.items())},
        "sampling": "images drawn with probability proportional to area (hinet.data.pick_by_area)",
        "scales": list(cfg.data.scales),
        "validation": {"source": "photos" if use_photos else "pool", "crop": cfg.data.val_size,
                       "images": [label for label, _ in labelled]},
    }
    return result


def _validate(model: HINet, val_pairs, device: torch.device, protocol) -> dict:
    """Mean PSNR/SSIM of the model's final output over the validation pairs (project protocol)."""
    from hinet.image import image_to_tensor, tensor_to_image
    from hinet.inference import PLAIN_PATH, eval_mode, run_model
    from hinet.metrics import evaluate_pair

    scores = []
    with eval_mode(model):
        for lq, gt in val_pairs:
            output = run_model(model, image_to_tensor(lq).to(device), PLAIN_PATH)
            scores.append(evaluate_pair(tensor_to_image(output.cpu()), gt, protocol))
    return {key: float(np.mean([s[key] for s in scores])) for key in ("psnr", "ssim")}


def _input_scores(val_pairs, protocol) -> dict:
    from hinet.metrics import evaluate_pair

    scores = [evaluate_pair(np.clip(lq, 0, 1), gt, protocol) for lq, gt in val_pairs]
    return {key: float(np.mean([s[key] for s in scores])) for key in ("psnr", "ssim")}


# ----------------------------------------------------------------------------------------------------
# Run state: weights, optimizer, scheduler, RNG (safetensors + JSON; no pickle)

MODEL_FILE = "model.safetensors"
BEST_FILE = "best.safetensors"
STATE_TENSORS_FILE = "train_state.safetensors"
STATE_JSON_FILE = "train_state.json"
LOG_FILE = "log.jsonl"
CONFIG_FILE = "config.yaml"
DATA_FILE = "data_sources.json"  # the training images by source (photo hashes), area shares, validation crops
_STAGING_DIR = ".staging"


def _optimizer_to_state(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param_id, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param_id}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_state(optimizer: torch.optim.Optimizer, tensors: dict, saved: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, param_id, key = name.split(".", 2)
            state.setdefault(int(param_id), {})[key] = value
    for name, value in saved["scalars"].items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def _weights_are_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.state_dict().values() if p.is_floating_point())


def _save_run_state(run_dir: Path, model: HINet, optimizer, scheduler, state: dict, metadata: dict) -> None:
    """Write weights + optimizer/scheduler/RNG state as one unit.

    All three files are first written completely into `.staging/`; only then are they renamed into the
    run folder, `train_state.json` last. A failure while writing (full disk) leaves the previous
    checkpoint untouched; `train_state.json` names the step its companions belong to, checked on resume.
    """
    import safetensors.torch

    from hinet.checkpoint import save_checkpoint

    if not _weights_are_finite(model):
        raise HINetError(f"refusing to save non-finite weights at step {state['step']} over the last good "
                         f"checkpoint in {run_dir}")
    staging = run_dir / _STAGING_DIR
    staging.mkdir(parents=True, exist_ok=True)
    try:
        save_checkpoint(staging / MODEL_FILE, model, metadata=metadata)
        tensors, optimizer_json = _optimizer_to_state(optimizer)
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        atomic_write_bytes(staging / STATE_TENSORS_FILE, safetensors.torch.save(tensors))
        payload = dict(state, optimizer=optimizer_json, scheduler=scheduler.state_dict())
        atomic_write_bytes(staging / STATE_JSON_FILE, json.dumps(payload, indent=1).encode())
        for name in (MODEL_FILE, STATE_TENSORS_FILE, STATE_JSON_FILE):
            os.replace(staging / name, run_dir / name)
    finally:
        for leftover in staging.glob("*") if staging.exists() else ():
            leftover.unlink(missing_ok=True)
        if staging.exists():
            staging.rmdir()


def _load_run_state(run_dir: Path, model: HINet, optimizer, scheduler) -> dict:
    import safetensors.torch

    from hinet.checkpoint import load_checkpoint, load_state_dict_checked

    saved = _read_state_json(run_dir / STATE_JSON_FILE, _STATE_KEYS + ("optimizer", "scheduler"))
    try:
        tensors = safetensors.torch.load_file(str(run_dir / STATE_TENSORS_FILE))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot resume {run_dir}: its training state is damaged ({error}); delete "
                              f"{STATE_JSON_FILE} and {STATE_TENSORS_FILE} to start over from scratch") from None
    loaded, metadata = load_checkpoint(run_dir / MODEL_FILE)
    if int(metadata.get("steps", -1)) != int(saved["step"]):
        raise CheckpointError(f"cannot resume {run_dir}: {MODEL_FILE} is from step {metadata.get('steps')} but "
                              f"{STATE_JSON_FILE} from step {saved['step']} (interrupted while saving); delete the "
                              "run folder to start over")
    load_state_dict_checked(model, loaded.state_dict())
    try:
        _optimizer_from_state(optimizer, tensors, saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"cannot resume {run_dir}: the optimizer or scheduler state in {STATE_JSON_FILE} / "
                              f"{STATE_TENSORS_FILE} is damaged or from another model ({type(error).__name__}: "
                              f"{error}); delete both files to start over from scratch") from None
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return saved


def has_state(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / STATE_JSON_FILE).is_file()


_STATE_KEYS = ("step", "train_seconds")  # what every reader of train_state.json relies on


def _read_state_json(path: Path, required: tuple[str, ...] = _STATE_KEYS) -> dict:
    """`train_state.json` as a dict; a damaged file raises CheckpointError naming it."""
    advice = f"delete it and {STATE_TENSORS_FILE} (or the whole run folder) to start the run over"
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{path} is damaged (not readable JSON: {error}); {advice}") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} is damaged (holds a {type(saved).__name__}, not a JSON object); {advice}")
    missing = [key for key in required if key not in saved]
    if missing:
        raise CheckpointError(f"{path} is damaged (missing {', '.join(missing)}); {advice}")
    try:
        int(saved["step"]), float(saved["train_seconds"])
    except (TypeError, ValueError):
        raise CheckpointError(f"{path} is damaged (step or train_seconds is not a number); {advice}") from None
    return saved


def read_state(run_dir: str | os.PathLike) -> dict | None:
    """The scalar training state of a run folder (step, train_seconds, best validation), or None.

    A damaged `train_state.json` raises CheckpointError naming the file."""
    path = Path(run_dir) / STATE_JSON_FILE
    if not path.is_file():
        return None
    saved = _read_state_json(path)
    return {k: v for k, v in saved.items() if k not in ("optimizer", "scheduler")}


# Settings that may change between a run and its resumption; everything else must match.
_RESUMABLE_CHANGES = {"steps", "out_dir", "run_name", "device", "threads", "val_every", "checkpoint_every",
                      "log_every", "progress"}


def _check_resumable(run_dir: Path, cfg: TrainConfig) -> None:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return
    previous = yaml.safe_load(path.read_text()) or {}
    current = cfg.to_dict()
    changed = sorted(k for k in set(previous) | set(current)
                     if k not in _RESUMABLE_CHANGES and previous.get(k) != current.get(k))
    if changed:
        raise ConfigError(f"{run_dir} holds a run with different settings ({', '.join(changed)}); use another "
                          "run_name, or delete the folder to start over")


def _trim_log(path: Path, last_step: int) -> None:
    """Drop log lines past the resumed step (they will be logged again) and any torn last line."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("step", 0) <= last_step:
            kept.append(line)
    atomic_write_bytes(path, ("\n".join(kept) + "\n" if kept else "").encode())


# ----------------------------------------------------------------------------------------------------
# Training


class TrainingDiverged(HINetError):
    """The loss or the gradient became NaN or infinite."""


class _Deterministic:
    """Turn on deterministic algorithms for the duration of a run and restore the previous setting."""

    def __enter__(self):
        self.previous = (torch.are_deterministic_algorithms_enabled(),
                         torch.is_deterministic_algorithms_warn_only_enabled())
        torch.use_deterministic_algorithms(True, warn_only=True)

    def __exit__(self, *exc):
        torch.use_deterministic_algorithms(self.previous[0], warn_only=self.previous[1])


def train(cfg: TrainConfig, on_event=None, should_stop=None) -> dict:
    """Train (or resume) the run described by `cfg`; returns a summary dict.

    `on_event(dict)` receives `{"kind": "step"|"val"|"done", "step", "loss", "lr", "val_psnr",
    "val_ssim", "wall"}` (rank 0 only). `should_stop()` is polled every step; when it returns true a
    checkpoint is saved and the summary (with `"stopped": True`) is returned.

    Process-wide torch settings change for the duration of the call: `torch.set_num_threads(cfg.threads)`
    (when set) and `torch.use_deterministic_algorithms(True, warn_only=True)`. Both are restored when it
    returns or raises, but while it runs they also apply to every other thread of the process, e.g. an
    app's inference requests running beside an in-process training run.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    dist = _init_distributed(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        with _Deterministic():
            return _train(cfg, device, dist, on_event, should_stop)
    finally:
        torch.set_num_threads(previous_threads)
        if dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _use_bf16(requested: bool, device: torch.device, warn: bool = True) -> bool:
    """bf16 autocast as asked, except on a CPU that would emulate it (about 16x slower, see
    `hinet.inference.cpu_has_native_bf16`): there the run trains in fp32 and says so."""
    if not requested or device.type != "cpu" or cpu_has_native_bf16():
        return requested
    if warn:
        print("bf16=true ignored: this CPU has no native bf16 (AVX512-BF16 or AMX) and emulated bf16 is "
              "many times slower than fp32; training in fp32", file=sys.stderr)
    return False


def _train(cfg: TrainConfig, device: torch.device, dist: _Distributed, on_event, should_stop) -> dict:
    from tqdm import tqdm

    from hinet.checkpoint import save_checkpoint
    from hinet.losses import create_loss
    from hinet.metrics import default_protocol

    emit = on_event if (on_event is not None and dist.is_main) else (lambda event: None)
    model_config = cfg.model_config()
    multiple = model_config.size_multiple
    if cfg.data.patch % multiple:
        raise ConfigError(f"data.patch={cfg.data.patch} must be a multiple of {multiple} "
                          f"(2**(depth-1) for depth {model_config.depth})")
    run_dir = cfg.run_dir

    torch.manual_seed(cfg.seed)
    model = HINet(model_config).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr, betas=tuple(cfg.optimizer.betas),
                                 weight_decay=cfg.optimizer.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))
    loss_fn = create_loss(cfg.loss.name, cfg.loss.weight)

    step, train_seconds = 0, 0.0
    best = {"psnr": None, "ssim": None, "step": None}
    last_val = input_scores = None
    if has_state(run_dir):
        _check_resumable(run_dir, cfg)
        saved = _load_run_state(run_dir, model, optimizer, scheduler)
        step, train_seconds = int(saved["step"]), float(saved["train_seconds"])
        best, last_val, input_scores = saved.get("best", best), saved.get("last_val"), saved.get("input_val")
    last_saved_step = step if has_state(run_dir) else None
    # A finished run needs no data: re-running it only reports what it has.
    data_source = _prepare_data(cfg, multiple) if step < cfg.steps else _TrainingData(cfg.task, None)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
        if data_source.sources:
            atomic_write_bytes(run_dir / DATA_FILE, json.dumps(data_source.sources, indent=1).encode())
        _trim_log(run_dir / LOG_FILE, step)
    dist.barrier()

    train_model = model
    if dist.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if data_source.val_pairs and dist.is_main and input_scores is None:
        input_scores = _input_scores(data_source.val_pairs, default_protocol(cfg.task))
    strength = None if cfg.blind else _resolved_strength(cfg)
    use_bf16 = _use_bf16(cfg.bf16, device, warn=dist.is_main)
    # train_patch tells test-time tiling and local statistics (hinet.inference) the size the norms saw.
    metadata_base = {"task": cfg.task, "strength": strength, "blind": cfg.blind, "seed": cfg.seed,
                     "device": describe_device(device), "trained": "true", "run": cfg.run_name,
                     "precision": "bf16 autocast" if use_bf16 else "fp32", "train_patch": cfg.data.patch,
                     "lr": cfg.optimizer.lr, "photos": cfg.data.photos}

    def metadata(extra: dict) -> dict:
        return dict(metadata_base, steps=step, train_seconds=round(train_seconds, 3), **extra)

    def checkpoint(last_val: dict | None):
        """Rank 0 writes; the other ranks wait so nobody reads a half-written run folder."""
        dist.barrier()
        if dist.is_main:
            state = {"step": step, "train_seconds": train_seconds, "best": best, "last_val": last_val,
                     "input_val": input_scores, "seed": cfg.seed, "world_size": dist.world_size,
                     "data_rng": "numpy default_rng([seed, step, rank]) per batch, nothing to restore"}
            extra = {"val_psnr": last_val["psnr"]} if last_val else {}
            try:
                _save_run_state(run_dir, model, optimizer, scheduler, state, metadata(extra))
            except OSError as error:
                raise _save_failed("the checkpoint", step, run_dir, error) from None
        dist.barrier()

    log_handle = open(run_dir / LOG_FILE, "a") if dist.is_main else None  # noqa: SIM115 - closed in finally
    progress = tqdm(total=cfg.steps, initial=step, disable=not (cfg.progress and dist.is_main and sys.stderr.isatty()),
                    desc=cfg.run_name, dynamic_ncols=True)

    def log(record: dict):
        if log_handle is not None:
            log_handle.write(json.dumps(record) + "\n")
            log_handle.flush()

    stopped = False
    try:
        train_model.train()
        while step < cfg.steps:
            if dist.any(bool(should_stop is not None and should_stop())):
                stopped = True
                break
            started = time.perf_counter()
            lq, gt = data_source.batch(cfg, step, dist.rank)
            lq, gt = lq.to(device, non_blocking=True), gt.to(device, non_blocking=True)
            if cfg.channels_last:
                lq = lq.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                outputs = train_model(lq)
            loss = loss_fn([output.float() for output in outputs], gt)  # summed over both stages
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            loss_value = float(loss.detach())
            # The gradient is all-reduced, so every rank sees the same non-finite norm and stops together.
            if not (math.isfinite(loss_value) and bool(torch.isfinite(grad_norm))):
                where = (f"the last good checkpoint is {run_dir / MODEL_FILE} (step {last_saved_step})"
                         if last_saved_step is not None else "no checkpoint was saved yet")
                raise TrainingDiverged(
                    f"training diverged at step {step + 1}: the loss is {loss_value} and the gradient norm "
                    f"{float(grad_norm)}; {where}. Lower optimizer.lr or set grad_clip")
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            step += 1
            train_seconds += time.perf_counter() - started

            # grad_norm is measured before clipping, so a log shows how often and how hard the clip acts.
            record = {"step": step, "loss": loss_value, "lr": lr, "grad_norm": float(grad_norm), "val_psnr": None,
                      "val_ssim": None, "wall": round(train_seconds, 3)}
            validate_now = data_source.val_pairs and (
                step == cfg.steps or (cfg.val_every and step % cfg.val_every == 0))
            if validate_now and dist.is_main:
                val_started = time.perf_counter()
                last_val = _validate(model, data_source.val_pairs, device, default_protocol(cfg.task))
                train_seconds += time.perf_counter() - val_started
                record.update(val_psnr=last_val["psnr"], val_ssim=last_val["ssim"], wall=round(train_seconds, 3))
            if dist.is_main and (validate_now or step % max(cfg.log_every, 1) == 0 or step == cfg.steps):
                log(record)
            emit(dict(record, kind="step"))
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4g}", refresh=False)
            if validate_now and dist.is_main and cfg.progress:
                progress.write(f"step {step}: val PSNR {last_val['psnr']:.2f} dB, SSIM {last_val['ssim']:.4f}")
            if validate_now and dist.is_main:
                emit(dict(record, kind="val"))
                if best["psnr"] is None or last_val["psnr"] > best["psnr"]:
                    best = {"psnr": last_val["psnr"], "ssim": last_val["ssim"], "step": step}
                    try:
                        save_checkpoint(run_dir / BEST_FILE, model, metadata=metadata({"val_psnr": best["psnr"]}))
                    except OSError as error:
                        raise _save_failed(BEST_FILE, step, run_dir, error) from None
            if step < cfg.steps and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                checkpoint(last_val)
                last_saved_step = step
        if last_saved_step != step and step > 0:  # a run cancelled before its first step has nothing to save
            checkpoint(last_val)
            last_saved_step = step
    finally:
        progress.close()
        if log_handle is not None:
            log_handle.close()

    result = {
        "run_dir": str(run_dir),
        "step": step,
        "steps": cfg.steps,
        "stopped": stopped,
        "train_seconds": train_seconds,
        "wall": train_seconds,
        "val_psnr": last_val["psnr"] if last_val else None,
        "val_ssim": last_val["ssim"] if last_val else None,
        "best_val_psnr": best["psnr"],
        "best_val_ssim": best["ssim"],
        "best_step": best["step"],
        "input_val_psnr": input_scores["psnr"] if input_scores else None,
        "input_val_ssim": input_scores["ssim"] if input_scores else None,
        "model_path": str(run_dir / MODEL_FILE) if last_saved_step is not None else None,
        "best_path": str(run_dir / BEST_FILE) if best["psnr"] is not None else None,
        "log_path": str(run_dir / LOG_FILE),
    }
    emit({"kind": "done", "step": step, "loss": None, "lr": None, "val_psnr": result["val_psnr"],
          "val_ssim": result["val_ssim"], "wall": train_seconds, "result": result})
    return result


def _save_failed(what: str, step: int, run_dir: Path, error: OSError) -> HINetError:
    return HINetError(f"could not save {what} at step {step} in {run_dir}: {error}. The previous checkpoint "
                      "is intact; free disk space and run again to resume")


def _resolved_strength(cfg: TrainConfig) -> dict:
    from hinet.data import validate_strength

    return validate_strength(cfg.task, **cfg.strength)


# ----------------------------------------------------------------------------------------------------
# Command line


def _stop_on_signals():
    """A should_stop callable that turns Ctrl-C / SIGTERM into a clean stop with a checkpoint."""
    import signal

    received = []

    def handler(signum, frame):
        if received:  # a second signal: stop right away
            raise KeyboardInterrupt
        received.append(signum)
        print("stopping after this step and saving a checkpoint (signal again to abort)", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return lambda: bool(received)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hinet.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML TrainConfig (configs/*.yaml); defaults when omitted")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optimizer.lr=5e-4 --set model.config.wf=8")
    parser.add_argument("--resume", action="store_true",
                        help="require an existing training state in the run folder (resuming is automatic anyway)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        if args.no_progress:
            cfg.progress = False
        if args.resume and not has_state(cfg.run_dir):
            raise ConfigError(f"--resume: {cfg.run_dir} holds no training state to resume")
        result = train(cfg, should_stop=_stop_on_signals())
    except HINetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
