"""Run folders: where runs and shipped models live, the files of a run, and its saved training state.

    <out_dir>/<run_name>/
        config.yaml              the resolved TrainConfig
        model.safetensors        latest weights (hinet.checkpoint format; metadata: task, strength, steps, ...)
        best.safetensors         the weights with the best validation PSNR so far
        train_state.safetensors  Adam's moment tensors and the torch RNG state (no pickle anywhere)
        train_state.json         step, train_seconds, Adam hyper-parameters, scheduler, validation scores
        log.jsonl                one JSON line per logged step: step, loss, lr, grad_norm (before clipping),
                                 val_psnr, val_ssim, wall
        data_sources.json        exactly which images trained and validated the run (photo hashes included)
        eval.csv, sweep.json     test-set scores and costs (sweep runs, hinet.sweep); failed.txt: why it failed

The results folder `results/` holds the shipped models (`models/<task>.safetensors`), the sweep's runs
(`runs/<run>/`) and the tables built from them (`ablation.csv`).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import safetensors.torch
import torch
import yaml

from hinet.checkpoint import load_checkpoint, load_state_dict_checked, read_metadata, save_checkpoint
from hinet.config import TrainConfig, load_config
from hinet.errors import CheckpointError, ConfigError, HINetError
from hinet.io import atomic_write_bytes
from hinet.model import HINet

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "results"  # the results that ship with the project
CONFIGS_DIR = PROJECT_ROOT / "configs"
DEFAULTS_DIR = "defaults"  # under a results folder: the task defaults' runs (results/defaults/<task>) and pilots
# results/defaults/<task>_lr_check/lr<rate>/: runs that scripts/early_lr_check.sh stops early on purpose
LR_CHECK_SUFFIX = "_lr_check"
VALIDATION_BASELINES_FILE = "validation_baselines.csv"  # in DEFAULTS_DIR: classical methods on the validation pairs
ABLATION_FILE = "ablation.csv"  # in a results folder: one row per sweep run x stats protocol x test image

MODEL_FILE = "model.safetensors"
BEST_FILE = "best.safetensors"
STATE_TENSORS_FILE = "train_state.safetensors"
STATE_JSON_FILE = "train_state.json"
LOG_FILE = "log.jsonl"
CONFIG_FILE = "config.yaml"
DATA_FILE = "data_sources.json"  # the training images by source (photo hashes), area shares, validation crops
EVAL_FILE = "eval.csv"  # a sweep run's test-set scores (hinet.evaluate.write_csv)
RUN_INFO_FILE = "sweep.json"  # a sweep run's costs: parameters, MACs, latency
FAILED_FILE = "failed.txt"  # a sweep run that raised (e.g. diverged): its message; the run counts as finished
STAGING_DIR = ".staging"
# A sweep run's final weights in fp16 (grids' `ship_seeds`): the one run file git keeps, which the app opens
# on a fresh clone where the fp32 training checkpoint (git-ignored) is absent.
SHIPPED_WEIGHTS_FILE = "weights_fp16.safetensors"


def results_runs_dir(results_dir: str | os.PathLike = RESULTS_DIR) -> Path:
    """A results folder's run folders: `<results>/runs/<run>/` (the sweep's)."""
    return Path(results_dir) / "runs"


def validation_baselines_csv(results_dir: str | os.PathLike = RESULTS_DIR) -> Path:
    """The classical methods' validation PSNR on the defaults' validation pairs (scripts/validation_baselines.py)."""
    return Path(results_dir) / DEFAULTS_DIR / VALIDATION_BASELINES_FILE


def task_default_config(task: str, configs_dir: str | os.PathLike = CONFIGS_DIR) -> Path:
    """The config of a task's long default run (results/defaults/<task>): `configs/default_<task>.yaml`."""
    return Path(configs_dir) / f"default_{task}.yaml"


def planned_steps(
    run_dir: Path, saved_config: dict, defaults_dir: Path, configs_dir: str | os.PathLike = CONFIGS_DIR
) -> int:
    """The steps a run is to reach: its saved config's, or more when it is a task default (a folder of
    `defaults_dir`) whose `configs/default_<task>.yaml` now plans more (trained on after a missed bar)."""
    saved = int(saved_config.get("steps", 0))
    source = task_default_config(run_dir.name, configs_dir)
    if run_dir.parent.resolve() != Path(defaults_dir).resolve() or not source.is_file():
        return saved
    return max(saved, load_config(source).steps)


def shipped_models_dir(results_dir: str | os.PathLike = RESULTS_DIR) -> Path:
    """A results folder's models: `<results>/models/<task>.safetensors`, each task's default model."""
    return Path(results_dir) / "models"


SHIPPED_MODELS_DIR = shipped_models_dir()


def recorded_run_path(run_dir: str | os.PathLike) -> str:
    """How a shipped model names its `source_run`: relative to the project root when the run lies inside it
    (so the name means the same from any working directory and on any clone), else absolute."""
    resolved = Path(run_dir).resolve()
    try:
        return resolved.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return resolved.as_posix()


def shipped_source_runs(results_dir: str | os.PathLike = RESULTS_DIR) -> set[Path]:
    """The run folders (resolved) that the shipped models of a results folder name as their `source_run`
    (a path relative to the project root, as scripts/ship_model.py records it, or absolute)."""
    sources = set()
    for path in sorted(shipped_models_dir(results_dir).glob("*.safetensors")):
        source = read_metadata(path).get("source_run")
        if source:
            sources.add((PROJECT_ROOT / source).resolve())
    return sources


def run_folders(parent: str | os.PathLike, holding: str = LOG_FILE, pattern: str = "*") -> list[Path]:
    """The run folders under `parent` (names matching `pattern`) that hold the file `holding`, by name."""
    return sorted(path.parent for path in Path(parent).glob(f"{pattern}/{holding}"))


# ----------------------------------------------------------------------------------------------------
# Training state: weights, optimizer, scheduler, RNG (safetensors + JSON; no pickle)


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


def weights_are_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.state_dict().values() if p.is_floating_point())


def save_run_state(
    run_dir: Path,
    model: HINet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict,
    metadata: dict,
) -> None:
    """Write weights + optimizer/scheduler/RNG state as one unit.

    All three files are first written completely into `.staging/`; only then are they renamed into the
    run folder, `train_state.json` last. A failure while writing (full disk) leaves the previous
    checkpoint untouched; `train_state.json` names the step its companions belong to, checked on resume.
    """
    if not weights_are_finite(model):
        raise HINetError(
            f"refusing to save non-finite weights at step {state['step']} over the last good checkpoint in {run_dir}"
        )
    staging = run_dir / STAGING_DIR
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


def load_run_state(
    run_dir: Path, model: HINet, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler
) -> dict:
    """Load what `save_run_state` wrote into the model, optimizer, scheduler and torch RNG; returns the
    scalar state (step, train_seconds, best, ...). A damaged or mismatched state is a CheckpointError."""
    saved = _read_state_json(run_dir / STATE_JSON_FILE, _STATE_KEYS + ("optimizer", "scheduler"))
    try:
        tensors = safetensors.torch.load_file(str(run_dir / STATE_TENSORS_FILE))
    except (OSError, ValueError) as error:
        raise CheckpointError(
            f"cannot resume {run_dir}: its training state is damaged ({error}); delete "
            f"{STATE_JSON_FILE} and {STATE_TENSORS_FILE} to start over from scratch"
        ) from None
    loaded, metadata = load_checkpoint(run_dir / MODEL_FILE)
    if int(metadata.get("steps", -1)) != int(saved["step"]):
        raise CheckpointError(
            f"cannot resume {run_dir}: {MODEL_FILE} is from step {metadata.get('steps')} but "
            f"{STATE_JSON_FILE} from step {saved['step']} (interrupted while saving); delete the "
            "run folder to start over"
        )
    load_state_dict_checked(model, loaded.state_dict())
    try:
        _optimizer_from_state(optimizer, tensors, saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(
            f"cannot resume {run_dir}: the optimizer or scheduler state in {STATE_JSON_FILE} / "
            f"{STATE_TENSORS_FILE} is damaged or from another model ({type(error).__name__}: "
            f"{error}); delete both files to start over from scratch"
        ) from None
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


# ----------------------------------------------------------------------------------------------------
# The rest of a run folder: config, data sources, log


# Settings that may change between a run and its resumption; everything else must match.
RESUMABLE_CHANGES = {
    "steps",
    "out_dir",
    "run_name",
    "device",
    "threads",
    "val_every",
    "checkpoint_every",
    "log_every",
    "progress",
}


def read_run_config(run_dir: Path) -> dict | None:
    """The config a run folder was trained with, as the mapping in its config.yaml (None when absent)."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(
            f"{path} is damaged ({type(error).__name__}); delete the run folder to start over, or use another run_name"
        ) from None


def check_resumable(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse to resume a run folder whose config differs from `cfg` in a setting that shapes training."""
    previous = read_run_config(run_dir)
    if previous is None:
        return
    current = cfg.to_dict()
    changed = sorted(
        k for k in set(previous) | set(current) if k not in RESUMABLE_CHANGES and previous.get(k) != current.get(k)
    )
    if changed:
        raise ConfigError(
            f"{run_dir} holds a run with different settings ({', '.join(changed)}); use another "
            "run_name, or delete the folder to start over"
        )


def write_run_files(run_dir: Path, cfg: TrainConfig, sources: dict, resumed_step: int) -> None:
    """Create the run folder and write its config and data sources; trim its log to `resumed_step`.
    A folder that cannot be written is one HINetError naming it."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
        if sources:
            atomic_write_bytes(run_dir / DATA_FILE, json.dumps(sources, indent=1).encode())
        _trim_log(run_dir / LOG_FILE, resumed_step)
    except OSError as error:
        raise unwritable(run_dir, error) from None


def check_writable(run_dir: Path) -> None:
    """Fail before any work is done when the run folder can neither be written nor created, with the
    same message a failed write gives (`unwritable`)."""
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise unwritable(run_dir, NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing)))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise unwritable(run_dir, PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(existing)))


def unwritable(run_dir: Path, error: OSError) -> HINetError:
    """The one message for a run folder that cannot be written, whichever write failed."""
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename and Path(error.filename) != run_dir else ""
    return HINetError(
        f"cannot write the run folder {run_dir}: {reason}{where}; set out_dir to a folder you can write to"
    )


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


def save_failed(what: str, step: int, run_dir: Path, error: OSError) -> HINetError:
    return HINetError(
        f"could not save {what} at step {step} in {run_dir}: {error}. The previous checkpoint "
        "is intact; free disk space and run again to resume"
    )
