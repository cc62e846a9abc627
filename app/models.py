"""The app's model store: every model a user can pick, and a thread-safe cache of loaded models.

`build_demo()` creates one `ModelStore` and hands it to every tab on `AppContext.store`; tests make their
own (a results folder, a runs folder, which registry variants are listed) instead of patching globals.

Sources, in the order the pickers list them:
- "results": models we trained and ship (`results/models/<task>.safetensors`) and ablation runs
  (`results/runs/<run>/model.safetensors`);
- "runs": runs the user trained in the app (`$HINET_RUNS_DIR/<run>/model.safetensors`, default `./runs`);
- "registry": the `small_*` registry variants with random weights, always labelled "untrained";
- "uploaded": checkpoints one browser session uploaded (`app.uploads`), listed and resolved only through
  that session's view of the store (`ModelStore.for_session(uploads)` -> `SessionModels`), never for others.

A checkpoint that cannot be read is skipped and reported in the scan's warnings, never raised.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from hinet.checkpoint import OFFICIAL_SUFFIXES, load_any_checkpoint, read_metadata
from hinet.errors import ConfigError, HINetError
from hinet.inference import training_patch
from hinet.model import HINet, HINetConfig
from hinet.registry import get_config, list_variants
from hinet.runs import (
    ABLATION_FILE,
    MODEL_FILE,
    RESULTS_DIR,
    SHIPPED_WEIGHTS_FILE,
    results_runs_dir,
    shipped_models_dir,
)
from hinet.stats_choice import recorded_stats

log = logging.getLogger(__name__)

REGISTRY_PREFIX = "small_"
SELECTABLE_PREFIX = "small_"  # every small variant can be asked for by id, whatever the listing prefix
TEST_PREFIX = "tiny_"  # the tiny test variants too (cheap); the paper-size variants cannot
DEFAULT_UNTRAINED = "small_hin"
UNTRAINED_SEED = 0  # untrained weights are drawn from this seed, so every restore is reproducible
CACHE_SIZE = 8  # loaded models kept in memory (a small model is ~6 MB)


# What an entry id starts with, per source (checkpoint ids continue with a file or run name).
UPLOAD_PREFIX = "uploads/"  # "uploads/<name>": resolved only by the session that uploaded it
ID_PREFIXES = ("registry/", "results/models/", "results/runs/", "runs/", UPLOAD_PREFIX)


def runs_dir() -> Path:
    """Where the user's runs live by default: `$HINET_RUNS_DIR`, else `./runs`."""
    return Path(os.environ.get("HINET_RUNS_DIR", "runs"))


@dataclass(frozen=True)
class ModelEntry:
    id: str  # unique: "registry/small_hin", "results/models/denoise", "results/runs/<run>", "runs/<run>";
    # "uploads/<name>" is unique within the session that uploaded it
    label: str
    config: HINetConfig
    source: str  # "registry" | "results" | "runs" | "uploaded"
    path: Path | None
    trained: bool
    task: str | None  # the task it was trained for; None for untrained registry variants
    test_psnr: float | None
    params: int
    train_patch: int | None = None  # side of the training crops (metadata); None = not recorded / untrained
    # Its default test-time statistics and why (hinet.stats_choice: chosen on validation when it shipped).
    default_stats: tuple[str, str] = ("whole", "no default recorded in the checkpoint: whole image")


@lru_cache(maxsize=64)
def _param_count(config: HINetConfig) -> int:
    return config.parameter_count()  # counted from the config: listing a checkpoint allocates no model


def entry_label(
    name: str, config: HINetConfig, params: int, trained: bool, task: str | None, test_psnr: float | None, source: str
) -> str:
    parts = [name, config.describe(), f"{params / 1e6:.2f}M params"]
    if not trained:
        parts.append("untrained (random weights)")
    else:
        trained_for = f"trained for {task}" if task else "trained"
        psnr = f", test {test_psnr:.2f} dB" if test_psnr is not None else ""
        parts.append(f"{trained_for}{psnr} [{source}]")
    return " · ".join(parts)


def _decode_value(value):
    # read_metadata decodes JSON values already; tolerate string numbers from hand-written metadata.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


@lru_cache(maxsize=4)
def _ablation_means(table_path: str, mtime_ns: int) -> dict[str, float]:
    import pandas as pd

    try:
        table = pd.read_csv(table_path)
        if "protocol" in table.columns:  # the label quotes the one-pass score, not a mean over protocols
            table = table[table["protocol"] == "whole"]
        table = table[["run", "psnr"]]
    except (OSError, ValueError, KeyError) as error:
        log.warning("cannot read %s: %s", table_path, error)
        return {}
    return {str(run): float(psnr) for run, psnr in table.groupby("run")["psnr"].mean().items()}


@lru_cache(maxsize=16)
def _official_metadata(path: str, mtime_ns: int) -> dict:
    # An official .pth has no metadata: its config is inferred from the weights, so listing it loads it.
    return load_any_checkpoint(path)[1]


def _metadata(path: Path) -> dict:
    if path.suffix.lower() in OFFICIAL_SUFFIXES:
        return _official_metadata(str(path), path.stat().st_mtime_ns)
    return read_metadata(path)


def _checkpoint_entry(
    path: Path,
    entry_id: str,
    name: str,
    source: str,
    ablation_psnr: Callable[[str], float | None],
    metadata: dict | None = None,
) -> ModelEntry:
    metadata = _metadata(path) if metadata is None else metadata
    config_value = metadata.get("config")
    if config_value is None:
        raise ConfigError(f"{path} has no model config in its metadata")
    config = HINetConfig.from_dict(config_value)
    task = metadata.get("task")
    test_psnr = _decode_value(metadata.get("test_psnr"))
    test_psnr = float(test_psnr) if isinstance(test_psnr, (int, float)) else None
    if test_psnr is None and source == "results" and path.name in (MODEL_FILE, SHIPPED_WEIGHTS_FILE):
        test_psnr = ablation_psnr(path.parent.name)
    # Only a checkpoint that says so is labelled trained: a file without the key may hold initial weights.
    trained = _as_bool(metadata.get("trained", False))
    params = _param_count(config)
    patch = _decode_value(metadata.get("train_patch"))
    return ModelEntry(
        id=entry_id,
        label=entry_label(name, config, params, trained, task, test_psnr, source),
        config=config,
        source=source,
        path=path,
        trained=trained,
        task=str(task) if task else None,
        test_psnr=test_psnr,
        params=params,
        train_patch=int(patch) if isinstance(patch, (int, float)) and patch >= 1 else None,
        default_stats=recorded_stats(metadata),
    )


def _registry_entry(name: str) -> ModelEntry:
    config = get_config(name)
    params = _param_count(config)
    return ModelEntry(
        id=f"registry/{name}",
        label=entry_label(name, config, params, False, None, None, "registry"),
        config=config,
        source="registry",
        path=None,
        trained=False,
        task=None,
        test_psnr=None,
        params=params,
    )


def _weight_files(folder: Path, official_only: bool = False) -> list[Path]:
    """Checkpoint files directly in `folder`: ours (.safetensors) and official HINet weights (.pth, .pt)."""
    suffixes = OFFICIAL_SUFFIXES if official_only else (".safetensors", *OFFICIAL_SUFFIXES)
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in suffixes and p.is_file())


def checkpoint_entry(path: Path, entry_id: str, name: str, source: str, metadata: dict) -> ModelEntry:
    """The entry of a checkpoint whose metadata is already read (an upload reads it while loading)."""
    return _checkpoint_entry(path, entry_id, name, source, lambda _: None, metadata)


def _load(entry: ModelEntry) -> HINet:
    if entry.path is None:
        # Untrained weights from a fixed seed, without disturbing the caller's random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(UNTRAINED_SEED)
            model = HINet(entry.config)
    else:
        model, _ = load_any_checkpoint(entry.path)
    return model.eval()


def _version(entry: ModelEntry) -> int:
    try:
        return entry.path.stat().st_mtime_ns if entry.path else 0
    except OSError as error:
        raise ConfigError(f"model {entry.id!r} cannot be read any more ({error}); refresh the model list") from None


# ----------------------------------------------------------------------------------------------------
# The store


@dataclass(eq=False)  # compared and hashed by identity: caches of things computed from models key on it
class ModelStore:
    """Every model the app offers, read from two folders and the registry, and the models loaded so far."""

    results_dir: Path = RESULTS_DIR  # shipped models (models/) and ablation runs (runs/, ablation.csv)
    runs_dir: Path = field(default_factory=runs_dir)  # the user's runs (the train tab writes here)
    registry_prefix: str = REGISTRY_PREFIX  # which untrained registry variants are listed
    default_untrained: str = DEFAULT_UNTRAINED  # the default when no trained model fits
    cache_size: int = CACHE_SIZE
    _cache: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    # Checkpoint ids this store has listed: a missing one was deleted, any other was never a model.
    _listed: set = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self.results_dir, self.runs_dir = Path(self.results_dir), Path(self.runs_dir)

    # Listing

    def ablation_test_psnr(self, run: str) -> float | None:
        """Mean test PSNR of an ablation run over its rows of results/ablation.csv (None if not there)."""
        table_path = self.results_dir / ABLATION_FILE
        try:
            means = _ablation_means(str(table_path), table_path.stat().st_mtime_ns)
        except OSError:
            return None
        return means.get(run)

    def _checkpoint_paths(self) -> list[tuple[Path, str, str, str]]:
        """(path, entry id, display name, source) of every checkpoint file on disk."""
        found = []
        for path in _weight_files(shipped_models_dir(self.results_dir)):
            found.append((path, f"results/models/{path.stem}", path.stem, "results"))
        for run_dir in sorted(p for p in results_runs_dir(self.results_dir).glob("*") if p.is_dir()):
            # the local fp32 training checkpoint where it exists, else the fp16 copy git keeps for a fresh clone
            path = next(
                (run_dir / name for name in (MODEL_FILE, SHIPPED_WEIGHTS_FILE) if (run_dir / name).is_file()), None
            )
            if path is not None:
                found.append((path, f"results/runs/{run_dir.name}", run_dir.name, "results"))
        for path in sorted(self.runs_dir.glob(f"*/{MODEL_FILE}")):
            found.append((path, f"runs/{path.parent.name}", f"my run {path.parent.name}", "runs"))
        for path in _weight_files(self.runs_dir, official_only=True):
            found.append((path, f"runs/{path.name}", f"my file {path.name}", "runs"))
        self._listed.update(entry_id for _, entry_id, _, _ in found)
        return found

    def scan(self, task: str | None = None) -> tuple[list[ModelEntry], list[str]]:
        """(entries, warnings): trained models for `task` (all tasks if None), then the untrained variants."""
        entries, warnings = [], []
        for path, entry_id, name, source in self._checkpoint_paths():
            try:
                entry = _checkpoint_entry(path, entry_id, name, source, self.ablation_test_psnr)
            except (HINetError, OSError, ValueError, TypeError, KeyError) as error:
                message = f"skipped {path}: {error}"
                log.warning(message)
                warnings.append(message)
                continue
            if task is None or entry.task is None or entry.task == task:
                entries.append(entry)
        entries.extend(_registry_entry(name) for name in list_variants(self.registry_prefix))
        return entries, warnings

    def list_entries(self, task: str | None = None) -> list[ModelEntry]:
        return self.scan(task)[0]

    def default_entry(self, entries: list[ModelEntry], task: str | None) -> ModelEntry:
        """The trained model for the task (shipped first, the task's default file `results/models/<task>`
        before its comparison variants, then best test PSNR), else the default untrained variant."""
        trained = [e for e in entries if e.trained and (task is None or e.task == task)]
        if trained:
            rank = {"results": 0, "runs": 1}
            return min(
                trained,
                key=lambda e: (
                    rank.get(e.source, 2),
                    not e.id.startswith("results/models/"),
                    e.id != f"results/models/{e.task}",
                    -(e.test_psnr or float("-inf")),
                ),
            )
        for entry in entries:
            if entry.id == f"registry/{self.default_untrained}":
                return entry
        if not entries:
            raise ConfigError("no model is available")
        return entries[0]

    def find_entry(self, entry_id: str) -> ModelEntry:
        if entry_id.startswith(UPLOAD_PREFIX):
            raise ConfigError(
                f"unknown model {entry_id!r}: an uploaded model belongs to the browser session that uploaded it "
                "(and only while that session lasts); upload the checkpoint again here"
            )
        if entry_id.startswith("registry/"):
            name = entry_id.split("/", 1)[1]
            selectable = (self.registry_prefix, SELECTABLE_PREFIX, TEST_PREFIX)
            if not (name in list_variants() and name.startswith(selectable)):
                raise ConfigError(f"unknown model {entry_id!r}")
            return _registry_entry(name)
        for path, found_id, name, source in self._checkpoint_paths():
            if found_id == entry_id:
                return _checkpoint_entry(path, found_id, name, source, self.ablation_test_psnr)
        if entry_id in self._listed:
            raise ConfigError(f"model {entry_id!r} is not available any more; refresh the model list")
        raise ConfigError(
            f"unknown model {entry_id!r}; pick one from the model list (ids start with {', '.join(ID_PREFIXES)})"
        )

    def train_patch_of(self, entry_id: str) -> tuple[int, str | None]:
        """(training patch, note) for test-time tiling and local statistics: the recorded patch, or the
        project's assumption with a note saying it was assumed (`hinet.inference.training_patch`)."""
        return training_patch_of(self.find_entry(entry_id))

    def default_stats_of(self, entry_id: str) -> tuple[str, str]:
        """(test-time statistics, why) the model's checkpoint names as its default (else whole)."""
        return self.find_entry(entry_id).default_stats

    # Loading

    def weights_version(self, entry_id: str) -> int:
        """The entry's checkpoint modification time (0 for untrained weights): part of every cache key of
        things computed from a model, because a retrained run or a replaced file rewrites the checkpoint."""
        return _version(self.find_entry(entry_id))

    def get_model(self, entry_id: str) -> HINet:
        """The entry's model in eval mode, loaded once and shared (read-only) by every request."""
        return self.model_of(self.find_entry(entry_id))

    def model_of(self, entry: ModelEntry, loaded: HINet | None = None) -> HINet:
        """`get_model` for an entry already found; `loaded` is the entry's model the caller has just read
        from its file (an upload is loaded to be checked), kept instead of reading the file again."""
        # The path is part of the key: "uploads/<name>" of two sessions are two files.
        key = (entry.id, entry.path, _version(entry))
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            model = loaded.eval() if loaded is not None else _load(entry)
            self._cache[key] = model
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return model

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def for_session(self, uploads: SessionUploads | None) -> SessionModels:
        """The store as one browser session sees it: its models and the session's uploads."""
        return SessionModels(self, uploads or SessionUploads())


def training_patch_of(entry: ModelEntry) -> tuple[int, str | None]:
    return training_patch({"train_patch": entry.train_patch} if entry.train_patch else {})


# ----------------------------------------------------------------------------------------------------
# One session's view: the store plus the session's uploads


@dataclass(frozen=True)
class SessionUploads:
    """The checkpoints one browser session uploaded, in upload order; kept in that session's `gr.State`
    (never on the shared store), so no other session can list or resolve them. `folder` holds their files."""

    folder: str | None = None
    entries: tuple[ModelEntry, ...] = ()

    def get(self, entry_id: str) -> ModelEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)


@dataclass(frozen=True)
class SessionModels:
    """What a tab's handler reads models through: the same questions as `ModelStore`, answered with the
    session's uploads first; everything else (listing, loading, the model cache) is the shared store's."""

    store: ModelStore
    uploads: SessionUploads

    def scan(self, task: str | None = None) -> tuple[list[ModelEntry], list[str]]:
        entries, warnings = self.store.scan(task)
        uploaded = [e for e in self.uploads.entries if task is None or e.task is None or e.task == task]
        return uploaded + entries, warnings

    def list_entries(self, task: str | None = None) -> list[ModelEntry]:
        return self.scan(task)[0]

    def default_entry(self, entries: list[ModelEntry], task: str | None) -> ModelEntry:
        return self.store.default_entry(entries, task)

    def find_entry(self, entry_id: str) -> ModelEntry:
        return self.uploads.get(entry_id) or self.store.find_entry(entry_id)

    def train_patch_of(self, entry_id: str) -> tuple[int, str | None]:
        return training_patch_of(self.find_entry(entry_id))

    def default_stats_of(self, entry_id: str) -> tuple[str, str]:
        """(test-time statistics, why) the model's checkpoint names as its default (else whole)."""
        return self.find_entry(entry_id).default_stats

    def weights_version(self, entry_id: str) -> int:
        return _version(self.find_entry(entry_id))

    def get_model(self, entry_id: str) -> HINet:
        return self.store.model_of(self.find_entry(entry_id))


__all__ = [
    "ModelStore",
    "ModelEntry",
    "SessionModels",
    "SessionUploads",
    "checkpoint_entry",
    "entry_label",
    "runs_dir",
    "RESULTS_DIR",
    "ID_PREFIXES",
    "UPLOAD_PREFIX",
]
