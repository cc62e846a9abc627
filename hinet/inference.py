"""Run a HINet on an image of any size, whole or in overlapping tiles.

The model itself needs H and W to be multiples of `config.size_multiple`; `restore` pads (with
`hinet.image.pad_to_multiple`, the project's only padding) and crops back. Tiled mode bounds memory by
the tile size: only one tile (times the batch) is on the model at a time, and the full-size image is
only held as the input and the blended output accumulators.

Instance statistics are computed per tile, so tiles of a model with instance/half-instance norm see
different statistics than the whole image would; overlapping tiles blended with a smooth window hide
the resulting seams (`blend=False, overlap=0` shows them, which the app uses to teach this).

Test-time statistics (`STATS_PROTOCOLS`): a model trained on small crops normalizes, at test time, with
statistics of a much larger region. `restore(stats=...)` chooses how that is handled: "whole" (one pass,
the norms' usual global statistics), "tiled" (tiles of the training patch, overlap a quarter of it,
blended) or "local" (one pass, norms use statistics over a sliding window of 1.5 x the training map, TLC;
see `hinet.local_stats`). Both need the training patch size: `training_patch(metadata)` reads it from a
checkpoint's metadata.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TypeVar, cast

import numpy as np
import torch

from hinet.errors import ConfigError, ImageError
from hinet.image import crop_to, image_to_tensor, pad_to_multiple, tensor_to_image
from hinet.local_stats import DEFAULT_FACTOR, LocalRule, local_statistics, validate_train_patch
from hinet.model import HINet

_Image = TypeVar("_Image", np.ndarray, torch.Tensor)  # restore returns the type it was given

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end-exclusive


@dataclass(frozen=True)
class ForwardPath:
    """How the forward pass is executed. `python -m hinet.bench` measures these against each other."""

    name: str
    inference_mode: bool = True  # torch.inference_mode instead of torch.no_grad
    channels_last: bool = False  # feed NHWC tensors (oneDNN convolutions avoid layout reorders)
    bf16_autocast: bool = False  # torch.autocast("cpu", bfloat16) around the forward (CPU only)


PLAIN_PATH = ForwardPath("fp32 eager", inference_mode=False)
FAST_PATH_FP32 = ForwardPath("inference_mode + channels_last", channels_last=True)
FAST_PATH_BF16 = ForwardPath("bf16 autocast + channels_last", channels_last=True, bf16_autocast=True)


def cpu_has_native_bf16() -> bool:
    # Without AVX512-BF16 or AMX, oneDNN emulates bf16 in software: on an AVX2-only EPYC a small_hin
    # training step went from 0.36 s (fp32) to 5.93 s (bf16 autocast) in `python -m hinet.bench --train`,
    # so such CPUs stay in fp32.
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


# The default fast path, chosen with `python -m hinet.bench` (interleaved runs, same process). bf16
# autocast was 1.4-3.1x faster than fp32 eager on an AVX512-BF16 CPU at 1 thread (hinet_gopro 256x256:
# 1.81x) and moved PSNR by at most 0.015 dB on the shipped denoiser. channels_last pays at the app's 2
# threads: shipped denoiser at 512x512 on an AVX512-BF16 EPYC, 0.851 s fp32 eager, 0.623 s with
# channels_last, 0.488 s bf16, 0.297 s bf16 + channels_last (`python -m hinet.bench --variants small_hin
# --sizes 512 --repeats 5 --checkpoint results/models/denoise.safetensors`); on an AVX2-only EPYC
# channels_last gave 1.22-1.33x in fp32 (an earlier 1-thread run saw 0.76-1.11x). Outputs equal fp32's
# to 5e-7. On CPUs without native bf16 the fast path stays in fp32.
FAST_PATH = FAST_PATH_BF16 if cpu_has_native_bf16() else FAST_PATH_FP32


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put the model in eval mode for the duration, then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def run_model(model: HINet, x: torch.Tensor, path: ForwardPath = FAST_PATH) -> torch.Tensor:
    """out_2 of `model` for an input whose H and W are already valid for it; float32, contiguous.

    The caller is responsible for eval mode (see `eval_mode`).
    """
    grad_context = torch.inference_mode() if path.inference_mode else torch.no_grad()
    use_bf16 = path.bf16_autocast and x.device.type == "cpu"
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if use_bf16 else nullcontext()
    with grad_context, autocast:
        if path.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x)[1]
    return out.float().contiguous()


def min_input_size(model: HINet) -> int:
    """Smallest H/W the model accepts: instance statistics at the deepest level need more than 1 pixel."""
    config = model.config
    deepest = config.depth - 1
    normalized = config.encoder_level_is_normalized(deepest) or config.decoder_level_is_normalized(deepest)
    return 2 * config.size_multiple if normalized else config.size_multiple


def _forward_padded(model: HINet, x: torch.Tensor, path: ForwardPath) -> torch.Tensor:
    padded, size = pad_to_multiple(x, model.config.size_multiple, min_size=min_input_size(model))
    return crop_to(run_model(model, padded, path), size)


def tile_boxes(h: int, w: int, tile: int, overlap: int) -> list[Box]:
    """Tiles of at most `tile` x `tile` covering an h x w image, neighbours overlapping >= `overlap`.

    Uses the fewest tiles per axis that keep every overlap >= `overlap`, spread evenly from the image's
    start to its end, so every tile has the full tile size (or the image size when that is smaller).
    """
    if h < 1 or w < 1:
        raise ImageError(f"cannot tile an empty image ({h} x {w})")
    if tile < 1:
        raise ConfigError(f"tile must be a positive number of pixels; got {tile}")
    if not 0 <= overlap < tile:
        raise ConfigError(f"overlap must be at least 0 and smaller than the tile ({tile}); got {overlap}")

    def starts(length: int) -> list[int]:
        size = min(tile, length)
        if size == length:
            return [0]
        count = math.ceil((length - overlap) / (tile - overlap))
        return [round(i * (length - size) / (count - 1)) for i in range(count)]

    th, tw = min(tile, h), min(tile, w)
    return [(y, x, y + th, x + tw) for y in starts(h) for x in starts(w)]


def _ramp(length: int, rise: int, fall: int) -> torch.Tensor:
    """1-D blend weights: raised-cosine rise over the first `rise` pixels, fall over the last `fall`.

    `rise`/`fall` are the overlaps with the neighbouring tiles (0 at the image border), so a single tile
    covering the image has weight 1 everywhere and then equals whole-image inference exactly.
    """
    weights = torch.ones(length, dtype=torch.float64)
    for ramp, at_start in ((min(rise, length), True), (min(fall, length), False)):
        if ramp < 1:
            continue
        # (i + 0.5) keeps every weight strictly positive, so normalizing never divides by zero.
        up = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(ramp, dtype=torch.float64) + 0.5) / ramp)
        if at_start:
            weights[:ramp] = torch.minimum(weights[:ramp], up)
        else:
            weights[-ramp:] = torch.minimum(weights[-ramp:], up.flip(0))
    return weights


def _overlaps(starts: list[int], size: int) -> dict[int, tuple[int, int]]:
    """For each tile start along one axis: (overlap with the previous tile, overlap with the next)."""
    result = {}
    for i, start in enumerate(starts):
        before = starts[i - 1] + size - start if i > 0 else 0
        after = start + size - starts[i + 1] if i + 1 < len(starts) else 0
        result[start] = (before, after)
    return result


def _tile_weights(boxes: list[Box], blend: bool) -> dict[Box, torch.Tensor]:
    y0, x0, y1, x1 = boxes[0]
    th, tw = y1 - y0, x1 - x0
    if not blend:
        flat = torch.ones(th, tw, dtype=torch.float32)
        return {box: flat for box in boxes}
    rows = _overlaps(sorted({b[0] for b in boxes}), th)
    cols = _overlaps(sorted({b[1] for b in boxes}), tw)
    return {box: (_ramp(th, *rows[box[0]])[:, None] * _ramp(tw, *cols[box[1]])[None, :]).float() for box in boxes}


def _validate_tensor(x: torch.Tensor, in_chn: int) -> None:
    if x.ndim != 4:
        raise ImageError(f"expected an image tensor of shape (N, C, H, W); got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if n < 1 or h < 1 or w < 1:
        raise ImageError(f"the image is empty (shape {tuple(x.shape)})")
    if c != in_chn:
        raise ImageError(f"the model expects {in_chn} channel(s) but the image has {c}")
    if not x.is_floating_point():
        raise ImageError(f"expected a floating-point image in [0, 1]; got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise ImageError("the image contains NaN or infinite values")


def _to_model_tensor(image: np.ndarray | torch.Tensor, in_chn: int) -> tuple[torch.Tensor, bool]:
    """(N, C, H, W) float32 tensor and whether the input was a numpy array."""
    if isinstance(image, torch.Tensor):
        _validate_tensor(image, in_chn)
        return image, False
    if isinstance(image, np.ndarray):
        if image.ndim == 2 and in_chn == 1:
            image = image[:, :, None]
        if image.ndim != 3:
            raise ImageError(f"expected an H x W x {in_chn} image array; got shape {image.shape}")
        if image.size == 0:
            raise ImageError(f"the image is empty (shape {image.shape})")
        if image.shape[2] != in_chn:
            raise ImageError(f"the model expects {in_chn} channel(s) but the image has {image.shape[2]}")
        if not np.issubdtype(image.dtype, np.floating):
            raise ImageError(f"expected a float image in [0, 1]; got dtype {image.dtype} (use hinet.image.load_image)")
        tensor = image_to_tensor(image)
        _validate_tensor(tensor, in_chn)
        return tensor, True
    raise ImageError(f"expected a numpy array or a torch tensor; got {type(image).__name__}")


# ----------------------------------------------------------------------------------------------------
# Test-time statistics protocols


STATS_PROTOCOLS = ("whole", "tiled", "local")  # the one place these names are defined
DEFAULT_OVERLAP = 32  # pixels shared by neighbouring tiles when a tile size is given explicitly
TILE_BATCH_PIXELS = 512 * 512  # tiles run together up to this many pixels (a 512 px tile or larger runs alone)
ASSUMED_TRAIN_PATCH = 64
ASSUMED_PATCH_MESSAGE = (
    f"this checkpoint does not record its training patch size; assuming {ASSUMED_TRAIN_PATCH} px, the patch of "
    "the shipped models and ablation runs trained before the size was recorded (configs/*_small.yaml); "
    "give the real size with --train-patch if it was trained on other crops"
)


def training_patch(metadata: dict) -> tuple[int, str | None]:
    """(training patch side, None) from checkpoint metadata ("train_patch", an int or a digit string as
    hinet.train writes it), or (64, message saying so) when the checkpoint does not record it."""
    value = (metadata or {}).get("train_patch")
    if value is None or value == "":
        return ASSUMED_TRAIN_PATCH, ASSUMED_PATCH_MESSAGE
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"the checkpoint's train_patch metadata must be a positive number of pixels; got {value!r}")
    return value, None


def tiled_stats_options(train_patch: int) -> tuple[int, int]:
    """(tile, overlap) of stats="tiled": the training patch, overlapping by a quarter of it."""
    train_patch = validate_train_patch(train_patch)
    return train_patch, train_patch // 4


def describe_stats(
    stats: str,
    train_patch: int | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    local_factor: float = DEFAULT_FACTOR,
    local_edge: str = "replicate",
    local_min_ratio: float = 1.0,
) -> str:
    """One line saying how `restore` with these arguments computes the norms' statistics."""
    _check_stats(stats, train_patch)
    if stats == "tiled" and tile is None:
        assert train_patch is not None  # _check_stats
        tile, overlap = tiled_stats_options(train_patch)
    tiling = "" if tile is None else f"{tile} px tiles, overlap {DEFAULT_OVERLAP if overlap is None else overlap} px"
    if stats == "whole":
        return "whole: global statistics" + (f" per tile ({tiling})" if tiling else " over the whole image, one pass")
    if stats == "tiled":
        return f"tiled: statistics per tile ({tiling}; training patch {train_patch} px)"
    assert train_patch is not None  # _check_stats
    rule = LocalRule(train_patch, local_factor, local_edge, local_min_ratio)
    return f"local: statistics over a sliding {rule.describe()}; training patch {train_patch} px" + (
        f"; in {tiling}" if tiling else ", one pass"
    )


def _check_stats(stats: str, train_patch: int | None) -> None:
    if stats not in STATS_PROTOCOLS:
        raise ConfigError(f"stats must be one of {', '.join(STATS_PROTOCOLS)}; got {stats!r}")
    if stats != "whole":
        if train_patch is None:
            raise ConfigError(
                f"stats={stats!r} needs the training patch size, the side of the crops the model was "
                "trained on (train_patch=...; hinet.inference.training_patch reads it from a "
                "checkpoint's metadata)"
            )
        validate_train_patch(train_patch)


# ----------------------------------------------------------------------------------------------------
# Restoring an image


_model_locks: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_model_locks_guard = threading.Lock()


def model_lock(model: torch.nn.Module) -> threading.RLock:
    """The lock `restore` holds on a model for a whole pass: eval mode and local statistics change the
    model object for the duration, so two threads sharing one cached model (an app) must take turns."""
    with _model_locks_guard:
        lock = _model_locks.get(model)
        if lock is None:
            lock = _model_locks[model] = threading.RLock()
        return lock


def restore(
    model: HINet,
    image: _Image,
    tile: int | None = None,
    overlap: int | None = None,
    fast: bool = True,
    blend: bool = True,
    progress: Callable[[int, int], None] | None = None,
    stats: str = "whole",
    train_patch: int | None = None,
    local_factor: float = DEFAULT_FACTOR,
    local_edge: str = "replicate",
    local_min_ratio: float = 1.0,
) -> _Image:
    """Restore `image` with `model` and return out_2 with the input's type and size.

    `image`: numpy H x W x C float array in [0, 1] (result clamped to [0, 1]) or a (N, C, H, W) tensor
    (result not clamped, on the input's device). `tile`: tile side in pixels (rounded up to the model's
    size multiple), None = whole image at once. `overlap`: minimum pixels shared by neighbouring tiles
    (None: `DEFAULT_OVERLAP`, or a quarter of the training patch for stats="tiled").
    `blend`: raised-cosine weights across each overlap; False averages overlaps uniformly (with
    overlap=0 and a size the tiles divide evenly: hard seams).
    `fast`: `FAST_PATH` instead of plain fp32 eager. `progress(done, total)` is called after each tile.
    `stats`: one of `STATS_PROTOCOLS` (see the module docstring); "tiled" and "local" need `train_patch`.
    "tiled" tiles at `train_patch` unless `tile` is given; "local" runs `local_statistics(model,
    train_patch, local_factor, local_edge, local_min_ratio)` around the pass (around each tile's pass if
    `tile` is given: the windows then depend on the tile, not on the image).
    """
    if not isinstance(model, HINet):
        raise ConfigError(f"restore needs a hinet.model.HINet; got {type(model).__name__}")
    _check_stats(stats, train_patch)
    if stats == "tiled" and tile is None:
        assert train_patch is not None  # _check_stats
        tile, default_overlap = tiled_stats_options(train_patch)
        overlap = default_overlap if overlap is None else overlap
    overlap = DEFAULT_OVERLAP if overlap is None else overlap
    x, from_numpy = _to_model_tensor(image, model.config.in_chn)
    input_device, input_dtype = x.device, x.dtype
    device = model_device(model)
    path = FAST_PATH if fast else PLAIN_PATH
    norms: AbstractContextManager[object] = nullcontext()
    if stats == "local":
        assert train_patch is not None  # _check_stats
        norms = local_statistics(model, train_patch, local_factor, local_edge, local_min_ratio)

    with model_lock(model), eval_mode(model), norms:
        if tile is None:
            out = _forward_padded(model, x.to(device, torch.float32), path)
            if progress is not None:
                progress(1, 1)
        else:
            out = _restore_tiled(model, x, tile, overlap, blend, path, device, progress)

    restored = tensor_to_image(out.cpu()) if from_numpy else out.to(input_device, input_dtype)
    return cast(_Image, restored)  # the input's type: an array for an array, a tensor for a tensor


def _restore_tiled(
    model: HINet,
    x: torch.Tensor,
    tile: int,
    overlap: int,
    blend: bool,
    path: ForwardPath,
    device: torch.device,
    progress: Callable[[int, int], None] | None,
) -> torch.Tensor:
    if not isinstance(tile, int) or isinstance(tile, bool) or tile < 1:
        raise ConfigError(f"tile must be a positive integer number of pixels; got {tile!r}")
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        raise ConfigError(f"overlap must be a non-negative integer number of pixels; got {overlap!r}")
    multiple = model.config.size_multiple
    tile = max(math.ceil(tile / multiple) * multiple, min_input_size(model))
    n, c, h, w = x.shape
    boxes = tile_boxes(h, w, tile, overlap)
    weights = _tile_weights(boxes, blend)
    # Accumulators live on the CPU: the device only holds one batch of tiles. Every tile has the same size
    # (tile_boxes), so small tiles run as one batch of up to TILE_BATCH_PIXELS: per-sample norms (instance,
    # layer, local windows) and eval-mode batch norm give each tile the output it has alone, and one pass
    # over 16 tiles of 128 px is far faster on a CPU than 16 passes (25 tiles of a 512x512 image: 2x).
    total = torch.zeros(n, c, h, w, dtype=torch.float32)
    weight_sum = torch.zeros(h, w, dtype=torch.float32)
    y0, x0, y1, x1 = boxes[0]
    per_batch = max(1, TILE_BATCH_PIXELS // ((y1 - y0) * (x1 - x0) * n))
    for first in range(0, len(boxes), per_batch):
        batch = boxes[first : first + per_batch]
        patches = torch.cat([x[:, :, y0:y1, x0:x1] for y0, x0, y1, x1 in batch]).to(device, torch.float32)
        outs = _forward_padded(model, patches, path).cpu().split(n)
        for box, out in zip(batch, outs, strict=True):
            y0, x0, y1, x1 = box
            weight = weights[box]
            total[:, :, y0:y1, x0:x1] += out * weight
            weight_sum[y0:y1, x0:x1] += weight
        if progress is not None:
            progress(first + len(batch), len(boxes))
    return total.div_(weight_sum)


__all__ = [
    "restore",
    "tile_boxes",
    "run_model",
    "min_input_size",
    "eval_mode",
    "model_device",
    "ForwardPath",
    "PLAIN_PATH",
    "FAST_PATH",
    "FAST_PATH_FP32",
    "FAST_PATH_BF16",
    "STATS_PROTOCOLS",
    "training_patch",
    "describe_stats",
    "tiled_stats_options",
    "DEFAULT_OVERLAP",
]
