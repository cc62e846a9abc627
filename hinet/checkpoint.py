"""Saving and loading HINet weights.

Our own format is safetensors (no code runs on load) with the model's `HINetConfig` as JSON in the file's
metadata under "config", so `load_checkpoint` rebuilds the model from the file alone. Other metadata
values are JSON-encoded, one key each (safetensors metadata is str -> str).

Official HINet releases are PyTorch pickles (`{"params": state_dict}`); `load_official_checkpoint` reads
them with `torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.
`infer_config_from_state_dict` reads the config back from key names and shapes, and
`load_state_dict_checked` uses it to say which option is wrong when a state dict does not fit a model.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hinet.errors import CheckpointError, ConfigError
from hinet.io import atomic_write
from hinet.model import HINet, HINetConfig

CONFIG_KEY = "config"
# The largest model a checkpoint may ask for: ~5.6x the paper's 88.7 M, 2 GB of float32. Checked from the
# config before anything is allocated, so a damaged or hostile config is refused instead of exhausting memory.
MAX_PARAMETERS = 500_000_000
_LISTED_KEYS = 8  # how many keys of each kind a mismatch message lists before "... and N more"


# ----------------------------------------------------------------------------------------------------
# Our format: safetensors + config metadata


def save_checkpoint(
    path: str | os.PathLike[str], model: HINet, metadata: dict | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write `model` to `path` atomically (temp file in the same folder, then rename).

    `dtype` (e.g. torch.float16) casts floating-point weights to halve the file; they load back as
    float32. Metadata values may be anything JSON can encode.
    """
    path = Path(path)
    config = getattr(model, "config", None)
    if not isinstance(config, HINetConfig):
        raise CheckpointError(f"save_checkpoint needs a HINet model; got {type(model).__name__}")
    header = {CONFIG_KEY: json.dumps(config.to_dict())}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str):
            raise CheckpointError(f"metadata keys must be strings; got {key!r}")
        if key == CONFIG_KEY:
            raise CheckpointError(f"metadata key {CONFIG_KEY!r} is reserved for the model config")
        try:
            header[key] = json.dumps(value)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"metadata value of {key!r} cannot be stored as JSON: {error}") from error

    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous().clone()  # clone: safetensors refuses tensors sharing storage
    _check_finite(tensors, f"the model to save as {path.name}")

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temp: save_file(tensors, str(temp), metadata=header))
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict:
    """The file's metadata with values JSON-decoded; "config" is a dict of HINetConfig fields."""
    path = _existing_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except Exception as error:  # the safetensors parser's own error type is not public API
        raise CheckpointError(
            f"{path.name} is not a readable safetensors checkpoint (damaged or truncated): {error}"
        ) from error
    metadata = {}
    for key, text in raw.items():
        try:
            metadata[key] = json.loads(text)
        except json.JSONDecodeError:
            if key == CONFIG_KEY:
                raise CheckpointError(f"{path.name} has a damaged model config in its metadata (not JSON)") from None
            metadata[key] = text  # written by another tool: keep the string
    if CONFIG_KEY in metadata and not isinstance(metadata[CONFIG_KEY], dict):
        raise CheckpointError(f"{path.name} has a damaged model config in its metadata (not a JSON object)")
    return metadata


def load_checkpoint(path: str | os.PathLike[str], infer_config: bool = False) -> tuple[HINet, dict]:
    """Rebuild the model from the file alone; returns (model in eval mode, float32; metadata).

    A file without a config in its metadata (a bare state dict saved by another tool) is refused, or with
    `infer_config` rebuilt from the config its weights imply (`infer_config_from_state_dict`); the returned
    metadata then holds that config and says so under "source".
    """
    path = _existing_file(path)
    metadata = read_metadata(path)
    if CONFIG_KEY not in metadata and not infer_config:
        raise CheckpointError(
            f"{path.name} has no model config in its metadata, so the model cannot be rebuilt; if it is a bare "
            "state dict, build the model yourself and call load_state_dict_checked"
        )
    config = None
    if CONFIG_KEY in metadata:
        try:
            config = HINetConfig.from_dict(metadata[CONFIG_KEY])
        except (ConfigError, TypeError) as error:
            raise CheckpointError(f"{path.name} has an invalid model config in its metadata: {error}") from error
        check_model_size(config, path.name)
    try:
        with safe_open(str(path), framework="pt") as handle:
            state_dict = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118  a safe_open handle is not a dict: keys() is its API
    except Exception as error:
        raise CheckpointError(f"{path.name} is damaged or truncated: its tensors cannot be read ({error})") from error
    if config is None:
        config = infer_config_from_state_dict(state_dict)
        check_model_size(config, path.name)
        metadata = {**metadata, CONFIG_KEY: config.to_dict(), "source": "config inferred from the weights"}
    model = HINet(config)
    load_state_dict_checked(model, state_dict, source=path.name)
    return model.eval(), metadata


OFFICIAL_SUFFIXES = (".pth", ".pt")


OFFICIAL_TRAIN_PATCH = 256  # the paper's training crops (arXiv 2105.06086, Sec. 4.1)


def load_any_checkpoint(path: str | os.PathLike[str], infer_config: bool = False) -> tuple[HINet, dict]:
    """Our safetensors checkpoint or an official `.pth`/`.pt` file; returns (model in eval mode, metadata).

    An official file carries no metadata, so its config is inferred from the weights and the metadata
    says so: {"config": dict, "task": None, "trained": "true", "source": "official .pth", "train_patch": 256}
    (every released HINet was trained on 256x256 crops, which test-time tiling and local statistics need).
    `infer_config` lets a safetensors file without a config in its metadata load too (`load_checkpoint`).
    """
    if Path(path).suffix.lower() in OFFICIAL_SUFFIXES:
        model = load_official_checkpoint(path)
        metadata = {
            CONFIG_KEY: model.config.to_dict(),
            "task": None,
            "trained": "true",
            "source": "official .pth",
            "train_patch": OFFICIAL_TRAIN_PATCH,
        }
        return model, metadata
    return load_checkpoint(path, infer_config=infer_config)


def check_model_size(config: HINetConfig, source: str = "the checkpoint") -> int:
    """The parameter count of `config` (computed, not allocated); `CheckpointError` above `MAX_PARAMETERS`."""
    parameters = config.parameter_count()
    if parameters > MAX_PARAMETERS:
        raise CheckpointError(
            f"{source} asks for a model with {parameters:,} parameters ({config.describe()}), more than the "
            f"limit of {MAX_PARAMETERS:,}; the file is damaged or is not a HINet checkpoint"
        )
    return parameters


def _existing_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path.name} is empty (0 bytes)")
    return path


# ----------------------------------------------------------------------------------------------------
# Official checkpoints (PyTorch pickles, read with weights_only=True)


def load_official_checkpoint(path: str | os.PathLike[str], config: HINetConfig | None = None) -> HINet:
    """Load an official HINet `.pth` ({"params": sd}, {"params_ema": sd}, {"state_dict": sd} or a bare
    state dict; a "module." prefix is removed). Without `config` it is inferred from the weights."""
    path = _existing_file(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refused to load {path.name}: it contains Python objects other than tensors, which could run code "
            "when loaded; only plain weight files are accepted"
        ) from error
    except Exception as error:
        raise CheckpointError(
            f"{path.name} is not a readable PyTorch checkpoint (damaged or truncated): {error}"
        ) from error
    state_dict = _unwrap_state_dict(loaded, path.name)
    if config is None:
        config = infer_config_from_state_dict(state_dict)
    check_model_size(config, path.name)
    model = HINet(config)
    load_state_dict_checked(model, state_dict, source=path.name)
    return model.eval()


def _unwrap_state_dict(loaded: Any, name: str) -> dict[str, torch.Tensor]:
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{name} holds a {type(loaded).__name__}, not a state dict")
    for wrapper in ("params", "params_ema", "state_dict"):
        if isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
            break
    state_dict = {}
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{name} is not a state dict: entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        state_dict[key.removeprefix("module.")] = value
    return state_dict


# ----------------------------------------------------------------------------------------------------
# Reading the config back from a state dict


def _encoder_norm_levels(keys: Iterable[str], path: str = "down_path_1") -> list[int]:
    prefix = f"{path}."
    levels = set()
    for key in keys:
        parts = key.split(".")
        if key.startswith(prefix) and len(parts) > 3 and parts[2] == "norm":
            levels.add(int(parts[1]))
    return sorted(levels)


def _decoder_norm_indices(keys: Iterable[str]) -> list[int]:
    """Indices j of up_path_1.j blocks that have a norm (j serves level depth-2-j)."""
    indices = set()
    for key in keys:
        parts = key.split(".")
        if key.startswith("up_path_1.") and len(parts) > 4 and parts[2] == "conv_block" and parts[3] == "norm":
            indices.add(int(parts[1]))
    return sorted(indices)


def _encoder_depth(keys: Iterable[str]) -> int:
    indices = {int(key.split(".")[1]) for key in keys if key.startswith("down_path_1.") and key.split(".")[1].isdigit()}
    return max(indices) + 1 if indices else 0


def infer_config_from_state_dict(state_dict: dict) -> HINetConfig:
    """The `HINetConfig` a state dict was trained with, read from key names and shapes.

    Known from the weights: in_chn, wf, depth, normalized encoder levels (taken as the range
    hin_position_left..right), decoder norms, norm_ratio (norm.weight size / channels) and batch vs
    other norms (running statistics). Not recoverable, so left at their defaults: relu_slope,
    norm_groups, and instance vs layer vs group norm (the same shapes; "instance"/"half_instance" is
    assumed). Norm layers without affine parameters leave no keys, so they read as no norm.
    """
    keys = list(state_dict)
    first_conv = state_dict.get("conv_01.weight")
    if first_conv is None or first_conv.ndim != 4:
        raise CheckpointError("this is not a HINet state dict: it has no conv_01.weight (the first 3x3 conv)")
    wf, in_chn = int(first_conv.shape[0]), int(first_conv.shape[1])
    depth = _encoder_depth(keys)
    levels = _encoder_norm_levels(keys)
    fields: dict = dict(in_chn=in_chn, wf=wf, depth=max(depth, 2))
    if not levels:
        fields["norm"] = "none"
        return _config_or_error(fields)
    fields["hin_position_left"], fields["hin_position_right"] = levels[0], levels[-1]
    fields["norm_in_decoder"] = bool(_decoder_norm_indices(keys))
    has_running_stats = any(key.endswith(".running_mean") for key in keys)
    level = levels[0]
    weight = state_dict.get(f"down_path_1.{level}.norm.weight")
    if weight is None:
        weight = state_dict.get(f"down_path_1.{level}.norm.running_mean")
    if weight is None:
        fields["norm"] = "batch" if has_running_stats else "half_instance"
        return _config_or_error(fields)
    ratio = int(weight.shape[0]) / (wf * 2**level)
    if has_running_stats:
        fields["norm"] = "batch"
        if ratio != 1.0:
            fields["norm_ratio"] = ratio
    elif ratio == 0.5:
        fields["norm"] = "half_instance"
    elif ratio == 1.0:
        fields["norm"] = "instance"
    else:
        fields["norm"] = "half_instance"
        fields["norm_ratio"] = ratio
    fields["norm_affine"] = f"down_path_1.{level}.norm.weight" in state_dict
    return _config_or_error(fields)


def _config_or_error(fields: dict) -> HINetConfig:
    try:
        return HINetConfig(**fields)
    except ConfigError as error:
        raise CheckpointError(f"the state dict implies an impossible HINet config ({fields}): {error}") from error


# ----------------------------------------------------------------------------------------------------
# Checked loading with a diagnosis


def load_state_dict_checked(model: HINet, state_dict: dict, source: str = "the checkpoint") -> None:
    """`model.load_state_dict(state_dict, strict=True)`, but a mismatch raises one `CheckpointError` that
    lists missing / unexpected / mis-shaped keys and names the config option that is probably wrong."""
    _check_finite(state_dict, source)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    misshaped = [
        f"{key}: {source} has {list(state_dict[key].shape)}, the model has {list(expected[key].shape)}"
        for key in expected
        if key in state_dict and tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or misshaped:
        parts = [f"{source} does not fit this model ({model.config.describe()})."]
        parts += _diagnose(model, state_dict)
        parts += _listing("missing from " + source, missing)
        parts += _listing("unexpected in " + source, unexpected)
        parts += _listing("with a different shape", misshaped)
        raise CheckpointError("\n".join(parts))
    # float16 files load into the model's float32 parameters
    converted = {
        key: value.to(expected[key].dtype) if value.is_floating_point() else value for key, value in state_dict.items()
    }
    model.load_state_dict(converted, strict=True)


def _check_finite(state_dict: dict, source: str) -> None:
    bad = [
        key
        for key, value in state_dict.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()
    ]
    if bad:
        shown = ", ".join(bad[:_LISTED_KEYS])
        if len(bad) > _LISTED_KEYS:
            shown += f" and {len(bad) - _LISTED_KEYS} more"
        raise CheckpointError(
            f"{source} has NaN or infinite weights in {len(bad)} tensor(s) ({shown}); the training run that wrote "
            "it diverged or the file is damaged"
        )


def _listing(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    shown = items[:_LISTED_KEYS]
    lines = [f"{len(items)} key(s) {title}:"] + [f"  {item}" for item in shown]
    if len(items) > _LISTED_KEYS:
        lines.append(f"  ... and {len(items) - _LISTED_KEYS} more")
    return lines


def _describe_levels(levels: list[int]) -> str:
    if not levels:
        return "no level"
    if len(levels) == 1:
        return f"level {levels[0]}"
    if levels == list(range(levels[0], levels[-1] + 1)):
        return f"levels {levels[0]}-{levels[-1]}"
    return "levels " + ", ".join(map(str, levels))


def _diagnose(model: HINet, state_dict: dict) -> list[str]:
    """Sentences naming the options that most likely differ between the checkpoint and the model."""
    config = model.config
    try:
        found = infer_config_from_state_dict(state_dict)
    except CheckpointError as error:
        return [f"Likely cause: {error}."]
    reasons = []
    if found.in_chn != config.in_chn:
        reasons.append(
            f"conv_01 takes {found.in_chn} image channels in the checkpoint: it was trained with "
            f"in_chn={found.in_chn} (the model has in_chn={config.in_chn})."
        )
    if found.wf != config.wf:
        reasons.append(
            f"conv_01 has {found.wf} output channels in the checkpoint: it was trained with wf={found.wf} "
            f"(the model has wf={config.wf})."
        )
    if found.depth != config.depth:
        if found.depth < config.depth:
            detail = f"down_path_1.{found.depth} is missing"
        else:
            detail = f"down_path_1.{config.depth} is present"
        reasons.append(
            f"{detail} in the checkpoint: it was trained with depth={found.depth} (the model has depth={config.depth})."
        )

    model_keys = list(model.state_dict())
    ckpt_keys = list(state_dict)
    model_levels = _encoder_norm_levels(model_keys)
    ckpt_levels = _encoder_norm_levels(ckpt_keys)
    if model_levels != ckpt_levels:
        extra = [level for level in ckpt_levels if level not in model_levels]
        absent = [level for level in model_levels if level not in ckpt_levels]
        said = []
        if extra:
            said.append(f"norm keys at {_describe_levels(extra)} are unexpected")
        if absent:
            said.append(f"norm keys at {_describe_levels(absent)} are missing")
        if ckpt_levels:
            trained = (
                f"this checkpoint was trained with {found.norm} norm at encoder {_describe_levels(ckpt_levels)} "
                f"(hin_position_left={ckpt_levels[0]}, hin_position_right={ckpt_levels[-1]})"
            )
        else:
            trained = "this checkpoint has no norm layers (norm='none', or a norm without affine parameters)"
        if model_levels:
            has = (
                f"the model normalizes {_describe_levels(model_levels)} (hin_position_left="
                f"{config.hin_position_left}, hin_position_right={config.hin_position_right})"
            )
        else:
            has = f"the model has no norm layers (norm={config.norm!r})"
        reasons.append(f"{' and '.join(said)}: {trained}; {has}.")

    ckpt_batch = any(key.endswith(".running_mean") for key in ckpt_keys)
    model_batch = any(key.endswith(".running_mean") for key in model_keys)
    if ckpt_batch and not model_batch:
        reasons.append(
            "The checkpoint has running_mean/running_var keys: it was trained with norm='batch' "
            f"(the model has norm={config.norm!r})."
        )
    elif model_batch and not ckpt_batch and ckpt_levels:
        reasons.append(
            f"The model uses batch norm but the checkpoint has no running statistics: it was trained with "
            f"norm={found.norm!r} (instance, layer and group norms have the same keys)."
        )

    shared_levels = [level for level in ckpt_levels if level in model_levels]
    if shared_levels and found.ratio != config.ratio:
        level = shared_levels[0]
        weight = state_dict.get(f"down_path_1.{level}.norm.weight")
        if weight is not None and found.wf == config.wf:
            reasons.append(
                f"down_path_1.{level}.norm.weight normalizes {weight.shape[0]} of {config.channels(level)} channels "
                f"in the checkpoint: it was trained with norm_ratio={found.ratio:g} (the model has {config.ratio:g})."
            )
    if found.norm_affine != config.norm_affine and shared_levels:
        reasons.append(
            f"The checkpoint was trained with norm_affine={found.norm_affine} (the model has {config.norm_affine})."
        )

    ckpt_decoder = bool(_decoder_norm_indices(ckpt_keys))
    model_decoder = bool(_decoder_norm_indices(model_keys))
    if ckpt_decoder != model_decoder:
        where = "unexpected" if ckpt_decoder else "missing"
        reasons.append(
            f"Decoder norm keys (up_path_*.conv_block.norm) are {where}: the checkpoint was trained with "
            f"norm_in_decoder={ckpt_decoder} (the model has norm_in_decoder={model_decoder})."
        )
    if not reasons:
        reasons.append("No single config option explains the difference; the file may come from another architecture.")
    suggestion = (
        f"The weights fit HINetConfig({', '.join(f'{k}={v!r}' for k, v in _changed_fields(found).items())}); "
        "load_official_checkpoint(path) without a config uses that automatically."
    )
    return ["Likely cause:"] + [f"  - {reason}" for reason in reasons] + [suggestion]


def _changed_fields(config: HINetConfig) -> dict:
    defaults = HINetConfig().to_dict()
    return {key: value for key, value in config.to_dict().items() if defaults[key] != value}


__all__ = [
    "MAX_PARAMETERS",
    "check_model_size",
    "save_checkpoint",
    "load_checkpoint",
    "load_any_checkpoint",
    "read_metadata",
    "load_official_checkpoint",
    "load_state_dict_checked",
    "infer_config_from_state_dict",
]
