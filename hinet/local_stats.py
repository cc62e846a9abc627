"""Test-time local statistics (TLC: Chu et al., "Improving Image Restoration by Revisiting Global
Information Aggregation", arXiv 2112.04491).

Why: our models are trained on 64 x 64 crops, so during training every instance/layer/group norm
computes its mean and variance over a 64 x 64 map (less at deeper levels). At test time the same layer
sees a 768 x 512 image and averages over a region dozens of times larger: the statistics drift away
from anything seen in training. TLC's remedy needs no retraining: each norm uses the mean and variance
of a sliding window around every pixel, the window being `factor` (1.5) times the size the layer's map
had in training, so each pixel is normalized by statistics of a region like the ones seen in training.

Read top to bottom:

* `box_mean`: the mean over a kh x kw window around every pixel from cumulative sums (an integral
  image), O(1) per pixel whatever the window, with the two border rules `EDGES`:
  "replicate" (TLC's `auto_pad`: only windows fully inside the map are computed and a border pixel uses
  the nearest full window) and "shrink" (the window is clipped at the border and gets smaller there).
* `LocalRule`: which window a block gets. A block whose map is h x w in a model fed H x W had a map of
  train_patch * h / H during training, so its window is factor * train_patch * h / H (1.5 * 64 / 2**l
  at U-Net level l, for encoder and decoder blocks of both stages alike). Where that window covers the
  whole map the global statistics are used unchanged.
* `local_norm`: what an `nn.InstanceNorm2d` or `nn.GroupNorm` computes, with windowed statistics.
* `LocalStatsNorm`: wraps an `nn.InstanceNorm2d` (instance, half_instance) or `nn.GroupNorm` (layer,
  group) and calls `local_norm` with its window, reusing the layer's own weight, bias and eps.
* `local_statistics(model, train_patch)`: a context manager that swaps the norms of
  `model.normalized_blocks()` for wrappers and puts the originals back on exit, even after an error.
  BatchNorm (and any norm with running statistics) is left alone: it uses statistics from training.

The swap mutates the model for the duration of the `with` block: a second thread running the same model
object meanwhile would also see local statistics.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeGuard

import torch
from torch import nn

from hinet.errors import ConfigError
from hinet.model import HINet

EDGES = ("replicate", "shrink")
DEFAULT_FACTOR = 1.5  # TLC's window: 1.5 x the training map
# float64 working memory per slice of groups in `local_norm`. On a CPU, buffers under a few MiB stay in
# cache and in malloc's reused heap; larger ones are fresh mmaps whose page faults cost more than the
# arithmetic (a 32 MiB float64 copy took 20 ms, an 8 MiB one 1 ms; 4 MiB slices were fastest).
CHUNK_BYTES = 4 * 2**20

# ----------------------------------------------------------------------------------------------------
# Windowed means from integral images


def _valid_window_sums(cum: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Sums of the windows of `k` that lie fully inside the axis `dim` (length - k + 1 of them, the first
    starting at 0), from the cumulative sums `cum` along it: window [s, s + k) is C[s + k - 1] - C[s - 1]."""
    length = cum.shape[dim]
    shape = list(cum.shape)
    shape[dim] = length - k + 1
    out = torch.empty(shape, dtype=cum.dtype, device=cum.device)
    out.narrow(dim, 0, 1).copy_(cum.narrow(dim, k - 1, 1))
    torch.sub(cum.narrow(dim, k, length - k), cum.narrow(dim, 0, length - k), out=out.narrow(dim, 1, length - k))
    return out


def _clipped_window_sums(cum: torch.Tensor, k: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over the window of `k` around every position along `dim`, each window clipped to the axis
    ("shrink"), from the cumulative sums `cum`; and the window sizes along the axis."""
    length = cum.shape[dim]
    before = (k - 1) // 2
    start = torch.arange(length, device=cum.device) - before
    lo, hi = start.clamp(min=0), (start + k).clamp(max=length)
    if k > length:  # a window longer than the axis: clipped on one side or both (rare, small)
        padded = torch.cat([torch.zeros_like(cum.narrow(dim, 0, 1)), cum], dim)
        return padded.index_select(dim, hi) - padded.index_select(dim, lo), (hi - lo).to(cum.dtype)
    after = k - 1 - before
    head = cum.narrow(dim, k - 1 - before, before)  # windows [0, p - before + k) for p < before
    tail = cum.narrow(dim, length - 1, 1) - cum.narrow(dim, length - k, after)  # windows [p - before, length)
    sums = torch.cat([head, _valid_window_sums(cum, k, dim), tail], dim)
    return sums, (hi - lo).to(cum.dtype)


def _box_mean(x: torch.Tensor, kh: int, kw: int, edge: str) -> torch.Tensor:
    """float64 means over the kh x kw window around every pixel of a (..., H, W) tensor.

    The window of pixel p starts (k - 1) // 2 before it (TLC's centring: the padding of its valid output
    is split floor/ceil). Separable: cumulative sums and window sums along W, then along H, using
    slices only (a gather along the last dimension costs ~20x more than the cumulative sum on a CPU).
    "replicate": only windows fully inside the map are computed, then padded to the map by replicating
    the border ones (a window larger than the map is the whole map). "shrink": windows clipped at the
    border, each divided by its own size.

    Everything is accumulated and kept in float64: the norms compute a variance as E[x^2] - E[x]^2, and
    where a window is flat (variance 1e-6) but its mean is far from the map's (offset 2), that difference
    cancels 7 digits; with float32 window sums it came out 10% wrong on a 512 x 512 test map.
    """
    h, w = x.shape[-2:]
    cum = torch.cumsum(x, dim=-1, dtype=torch.float64)
    if edge == "replicate":
        kh, kw = min(kh, h), min(kw, w)
        sums = _valid_window_sums(_valid_window_sums(cum, kw, -1).cumsum_(dim=-2), kh, -2)
        sums = sums.mul_(1.0 / (kh * kw)).reshape(-1, h - kh + 1, w - kw + 1)
        top, left = (kh - 1) // 2, (kw - 1) // 2
        padding = (left, kw - 1 - left, top, kh - 1 - top)
        return nn.functional.pad(sums, padding, mode="replicate").reshape(x.shape)
    along_w, cols = _clipped_window_sums(cum, kw, -1)
    sums, rows = _clipped_window_sums(along_w.cumsum_(dim=-2), kh, -2)
    return sums.div_(rows[:, None] * cols[None, :])


def box_mean(x: torch.Tensor, kh: int, kw: int, edge: str = "replicate") -> torch.Tensor:
    """Mean of `x` (..., H, W) over a kh x kw window around every pixel; same shape and dtype as `x`.

    A "replicate" window larger than the map is clipped to it (a window covering the map gives the global
    mean everywhere). The sums are accumulated in float64 after subtracting each map's global mean, so
    large maps and large offsets lose no precision. `edge`: see `EDGES` and `_box_mean`.
    Inference only: no gradient flows through it.
    """
    if edge not in EDGES:
        raise ConfigError(f"edge must be one of {', '.join(EDGES)}; got {edge!r}")
    for name, k in (("kh", kh), ("kw", kw)):
        if not _is_int(k) or k < 1:
            raise ConfigError(f"{name} must be a positive integer number of pixels; got {k!r}")
    if x.ndim < 2 or x.shape[-1] < 1 or x.shape[-2] < 1:
        raise ConfigError(f"box_mean needs a (..., H, W) tensor with H, W >= 1; got shape {tuple(x.shape)}")
    x64 = x.detach().to(torch.float64)
    centre = x64.mean(dim=(-2, -1), keepdim=True)
    return (_box_mean(x64 - centre, int(kh), int(kw), edge) + centre).to(x.dtype)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# ----------------------------------------------------------------------------------------------------
# Which window a block gets


def validate_train_patch(train_patch: int) -> int:
    """The training patch side as an int, or ConfigError (shared with `hinet.inference.restore`)."""
    if not _is_int(train_patch) or train_patch < 1:
        raise ConfigError(f"the training patch size must be a positive integer number of pixels; got {train_patch!r}")
    return int(train_patch)


@dataclass(frozen=True)
class LocalRule:
    """TLC's window rule and the variants we measure.

    `factor`: window = factor x the block's training map (TLC: 1.5). A window under 1 pixel becomes 1
    pixel: an instance norm then sees zero variance and outputs its bias (every value equals its own
    mean); a group/layer norm still has the variance across the group's channels at that pixel.
    `edge`: "replicate" (TLC) or "shrink", see `box_mean`. `min_ratio`: windows only at blocks whose map
    is larger than min_ratio x its training map in some dimension, global statistics elsewhere; with the
    default 1.0 and factor >= 1 that changes nothing (a window that does not cover its map implies a map
    larger than the training map), so it only matters for min_ratio > 1 or factor < 1.
    """

    train_patch: int
    factor: float = DEFAULT_FACTOR
    edge: str = "replicate"
    min_ratio: float = 1.0

    def __post_init__(self) -> None:
        validate_train_patch(self.train_patch)
        if not _is_real(self.factor) or not self.factor > 0:
            raise ConfigError(f"the local window factor must be a positive number; got {self.factor!r}")
        if self.edge not in EDGES:
            raise ConfigError(f"the local window edge must be one of {', '.join(EDGES)}; got {self.edge!r}")
        if not _is_real(self.min_ratio) or not self.min_ratio >= 0:
            raise ConfigError(f"min_ratio must be a number >= 0; got {self.min_ratio!r}")

    def window(self, map_size: tuple[int, int], input_size: tuple[int, int]) -> tuple[int, int] | None:
        """(kh, kw) for a block whose map is `map_size` when the model is fed `input_size`; None = global."""
        (h, w), (input_h, input_w) = map_size, input_size
        train_h, train_w = self.train_patch * h / input_h, self.train_patch * w / input_w
        if not (h > self.min_ratio * train_h or w > self.min_ratio * train_w):
            return None
        # floor as TLC does (its kernel is map * base_size // train_size); the epsilon absorbs float
        # round-off in products that are whole numbers (1.5 * 64 / 4 = 24 exactly).
        kh = max(1, math.floor(self.factor * train_h + 1e-9))
        kw = max(1, math.floor(self.factor * train_w + 1e-9))
        if kh >= h and kw >= w:
            return None
        return kh, kw

    def full_resolution_window(self) -> int:
        """The window side at full resolution (level 0); it halves with each U-Net level."""
        return max(1, math.floor(self.factor * self.train_patch + 1e-9))

    def describe(self) -> str:
        """E.g. "window 1.5 x the training map (96 px at full resolution, halved per level), replicate edges"."""
        text = (
            f"window {self.factor:g} x the training map ({self.full_resolution_window()} px at full "
            f"resolution, halved per level), {self.edge} edges"
        )
        if self.min_ratio != 1.0:
            text += f", only at maps over {self.min_ratio:g} x their training size"
        return text


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------------------------------
# The wrapper module


class _ModelInput:
    """The H x W of the current model input, recorded by a forward pre-hook for every wrapper to read."""

    def __init__(self) -> None:
        self.size: tuple[int, int] | None = None

    def record(self, module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].ndim >= 2:
            height, width = args[0].shape[-2:]
            self.size = (int(height), int(width))


def has_input_statistics(norm: nn.Module | None) -> TypeGuard[nn.InstanceNorm2d | nn.GroupNorm]:
    """True for the norms TLC applies to: those computing statistics from their input at inference."""
    if isinstance(norm, nn.InstanceNorm2d):
        return not norm.track_running_stats  # with running stats it behaves like BatchNorm in eval mode
    return isinstance(norm, nn.GroupNorm)


def uses_input_statistics(model: HINet) -> bool:
    """Whether any norm of `model` computes statistics from its input, i.e. whether local statistics
    change anything (False for BatchNorm and norm-free models)."""
    return any(has_input_statistics(block.norm) for block in model.normalized_blocks().values())


def _check_inference(x: torch.Tensor) -> None:
    if torch.is_grad_enabled() and x.requires_grad:
        raise ConfigError(
            "local statistics are for inference only: run the model under torch.no_grad() or "
            "torch.inference_mode() (hinet.inference.restore does)"
        )


def _normalize_groups(x: torch.Tensor, out: torch.Tensor, kh: int, kw: int, edge: str, eps: float) -> None:
    """Write (x - local mean) / sqrt(local variance + eps) of groups x (G, channels, H, W) into `out`.

    Each group is first centred on its global mean so that the window sums add small numbers and the
    variance E[x^2] - E[x]^2 cancels little; float64 from there on (see `_box_mean`). moments[0]/[1]:
    the per-pixel mean over the group's channels of the centred values and of their squares. A group of
    several channels is handled one channel at a time, so no float64 copy of the group is made.
    """
    groups, channels, h, w = x.shape
    centre = x.mean(dim=(1, 2, 3), dtype=torch.float64)[:, None, None]
    moments = torch.empty((2, groups, h, w), dtype=torch.float64, device=x.device)
    if channels == 1:  # instance norm: a group is one channel
        torch.sub(x[:, 0], centre, out=moments[0])
        torch.square(moments[0], out=moments[1])
    else:
        moments.zero_()
        centred = torch.empty((groups, h, w), dtype=torch.float64, device=x.device)
        for channel in range(channels):
            torch.sub(x[:, channel], centre, out=centred)
            moments[0].add_(centred)
            moments[1].addcmul_(centred, centred)
        moments.div_(channels)
    if kh == 1 and kw == 1:  # each pixel is its own window: no integral image, and an exact variance
        mean = moments[0]
        if channels == 1:
            variance = torch.zeros_like(mean)
        else:
            variance = torch.zeros_like(mean)
            for channel in range(channels):
                variance.add_(((x[:, channel] - centre) - mean).square_())
            variance.div_(channels)
    else:
        mean, mean_square = _box_mean(moments, kh, kw, edge)
        variance = mean_square.addcmul_(mean, mean, value=-1)
    rstd = variance.clamp_(min=0).add_(eps).rsqrt_()
    mean = mean + centre  # the local mean of x itself
    for channel in range(channels):
        torch.mul(x[:, channel] - mean, rstd, out=out[:, channel])


def local_norm(x: torch.Tensor, norm: nn.Module, window: tuple[int, int], edge: str = "replicate") -> torch.Tensor:
    """What `norm` (InstanceNorm2d or GroupNorm) computes for x (N, C, H, W), with the mean and biased
    variance of each group taken over a window of `window` = (kh, kw) pixels around every pixel instead
    of the whole map (see `LocalStatsNorm`). Uses norm's weight, bias and eps; output in x's dtype.
    Inference only (it computes in place): no gradient flows to x.
    """
    _check_inference(x)
    if not has_input_statistics(norm):
        raise ConfigError(
            f"local statistics apply to InstanceNorm2d and GroupNorm layers without running "
            f"statistics; got {type(norm).__name__}"
        )
    if edge not in EDGES:
        raise ConfigError(f"edge must be one of {', '.join(EDGES)}; got {edge!r}")
    kh, kw = window
    if not (_is_int(kh) and _is_int(kw) and kh >= 1 and kw >= 1):
        raise ConfigError(f"the window must be two positive integers (kh, kw); got {window!r}")
    n, c, h, w = x.shape
    groups = norm.num_groups if isinstance(norm, nn.GroupNorm) else c
    x32 = x.float().reshape(n * groups, c // groups, h, w)
    out = torch.empty(x32.shape, dtype=torch.float32, device=x.device)
    step = max(1, CHUNK_BYTES // (2 * 8 * h * w))  # groups at a time: two float64 maps each
    for start in range(0, n * groups, step):
        chunk = slice(start, start + step)
        _normalize_groups(x32[chunk], out[chunk], int(kh), int(kw), edge, norm.eps)
    out = out.reshape(n, c, h, w)
    if norm.weight is not None:
        out = torch.addcmul(norm.bias.float()[:, None, None], out, norm.weight.float()[:, None, None])
    return out.to(x.dtype)


class LocalStatsNorm(nn.Module):
    """`norm` (InstanceNorm2d or GroupNorm) with mean and variance over a sliding window.

    Reuses the wrapped layer's weight and bias (the same Parameter objects, under the same state-dict
    names) and eps. Statistics are per sample and group (a group = one channel for instance norm, all
    channels for layer norm): the group's channels are averaged first, then windowed. The variance is
    the biased one, E[x^2] - E[x]^2 over the window, from the values minus the group's global mean (so
    little cancels), with the window sums accumulated as `_box_mean` describes; output in x's dtype.
    Where `rule` gives no window the wrapped layer runs unchanged, so a covering window gives exactly
    the global result. Inference only: ConfigError when autograd records a gradient for the input.
    """

    original: nn.InstanceNorm2d | nn.GroupNorm

    def __init__(self, norm: nn.Module, rule: LocalRule, model_input: _ModelInput) -> None:
        super().__init__()
        if not has_input_statistics(norm):
            raise ConfigError(
                f"local statistics apply to InstanceNorm2d and GroupNorm layers without running "
                f"statistics; got {type(norm).__name__}"
            )
        self.__dict__["original"] = norm  # not a submodule: its parameters are registered below instead
        self.weight = norm.weight
        self.bias = norm.bias
        self.eps = norm.eps
        self.rule = rule
        self._model_input = model_input
        self.last_window: tuple[int, int] | None = None  # the window of the latest call (None = global)

    def extra_repr(self) -> str:
        return f"{type(self.original).__name__}, {self.rule.describe()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_inference(x)
        if self._model_input.size is None:
            raise ConfigError("LocalStatsNorm needs the model's input size: run the model inside local_statistics")
        h, w = x.shape[-2:]
        window = self.rule.window((h, w), self._model_input.size)
        self.last_window = window
        if window is None and h * w > 1:
            return self.original(x)
        # A 1 x 1 map has nothing to window; the clipped window then gives the (zero-variance) global
        # statistics, where InstanceNorm2d itself refuses a single pixel.
        return local_norm(x, self.original, window or (h, w), self.rule.edge)


# ----------------------------------------------------------------------------------------------------
# Swapping the norms of a model


@contextmanager
def local_statistics(
    model: nn.Module, train_patch: int, factor: float = DEFAULT_FACTOR, edge: str = "replicate", min_ratio: float = 1.0
) -> Iterator[dict[str, LocalStatsNorm]]:
    """Within the block, every norm of `model.normalized_blocks()` that computes statistics from its
    input uses TLC's local windows (see `LocalRule`); yields the wrappers by block name (empty for a
    model with only BatchNorm or no norm). The original layers are back on exit, also after an error;
    no weight is modified.
    """
    if not isinstance(model, HINet):
        raise ConfigError(f"local_statistics needs a hinet.model.HINet; got {type(model).__name__}")
    rule = LocalRule(validate_train_patch(train_patch), factor, edge, min_ratio)
    blocks = model.normalized_blocks()
    if any(isinstance(block.norm, LocalStatsNorm) for block in blocks.values()):
        raise ConfigError("local statistics are already active on this model (nested local_statistics)")
    model_input = _ModelInput()
    originals: dict[str, nn.Module] = {}
    wrappers: dict[str, LocalStatsNorm] = {}
    hook = model.register_forward_pre_hook(model_input.record)
    try:
        for name, block in blocks.items():
            if has_input_statistics(block.norm):
                wrappers[name] = LocalStatsNorm(block.norm, rule, model_input)
                originals[name] = block.norm
                block.norm = wrappers[name]
        yield wrappers
    finally:
        hook.remove()
        for name, norm in originals.items():
            blocks[name].norm = norm


__all__ = [
    "EDGES",
    "DEFAULT_FACTOR",
    "box_mean",
    "local_norm",
    "LocalRule",
    "LocalStatsNorm",
    "local_statistics",
    "has_input_statistics",
    "uses_input_statistics",
    "validate_train_patch",
]
