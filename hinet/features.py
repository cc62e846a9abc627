"""Look inside every conv block of a HINet: what the norm saw, what it produced, what passed untouched.

`capture_features` runs one forward pass with forward hooks (the model is not modified, and the hooks
are removed afterwards even when the forward fails) and returns, per `UNetConvBlock`:

    conv_1 output (pre_norm, C channels)
      ├── first n channels ──► norm ──► normalized      (n = block.normalized_channels)
      └── last C-n channels ────────► identity          (bit-identical to pre_norm[n:])
    ... LeakyReLU, conv_2, shortcut ... ──► output      (full-resolution output for downsampling blocks)

Maps are stored as the model computed them on the padded input (so the statistics are exactly those
the norm used); `BlockFeatures.valid_hw` says which top-left region corresponds to the image.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hinet.errors import ConfigError, ImageError
from hinet.image import image_to_tensor, pad_to_multiple
from hinet.inference import eval_mode, min_input_size, model_device, model_lock
from hinet.model import HINet, UNetConvBlock

# The forward hooks `capture_features` registers: after a module (its inputs and output), before one (its inputs).
_OutputHook = Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor | tuple[torch.Tensor, ...]], None]
_InputHook = Callable[[nn.Module, tuple[torch.Tensor, ...]], None]


@dataclass
class BlockFeatures:
    name: str  # module name, e.g. "down_path_1.3" or "up_path_2.0.conv_block"
    stage: int  # 1 or 2
    level: int  # U-Net level: channels = wf * 2**level, resolution = input / 2**level
    side: str  # "encoder" or "decoder"
    norm: str  # config norm name, or "none" for blocks without a norm layer
    normalized_channels: int  # n: the first n channels of conv_1's output go through the norm
    pre_norm: torch.Tensor  # (C, H, W) conv_1 output
    normalized: torch.Tensor | None  # (n, H, W) norm output, None when the block has no norm
    identity: torch.Tensor  # (C - n, H, W) channels that bypass the norm
    output: torch.Tensor  # (C, H, W) block output (full resolution for downsampling blocks)
    mean_before: torch.Tensor  # (C,) per-channel spatial mean of pre_norm
    std_before: torch.Tensor  # (C,) per-channel spatial std (population, as instance norm uses)
    mean_after: torch.Tensor  # (C,) after the norm for the first n channels, unchanged for the rest
    std_after: torch.Tensor  # (C,)
    gamma: torch.Tensor | None  # (n,) norm weight, None without a norm or without affine
    beta: torch.Tensor | None  # (n,) norm bias
    valid_hw: tuple[int, int] = (0, 0)  # top-left region of the maps that covers the image (rest is padding)


class CapturedFeatures(dict[str, BlockFeatures]):
    """`dict[str, BlockFeatures]` plus what was done to the input before the forward pass."""

    def __init__(
        self, *args: Mapping[str, BlockFeatures] | Iterable[tuple[str, BlockFeatures]], **kwargs: BlockFeatures
    ) -> None:
        super().__init__(*args, **kwargs)
        self.source_hw: tuple[int, int] = (0, 0)  # size of the image handed in
        self.crop_box: tuple[int, int, int, int] | None = None  # (y0, x0, y1, x1) applied first, if any
        self.scale: float = 1.0  # downscale factor applied after cropping (1.0 = none)
        self.input_hw: tuple[int, int] = (0, 0)  # size fed to the model before padding
        self.padded_hw: tuple[int, int] = (0, 0)  # size the model actually ran on

    @property
    def notes(self) -> list[str]:
        """Plain-language description of any crop/downscale, for display next to the maps."""
        notes = []
        if self.crop_box is not None:
            y0, x0, y1, x1 = self.crop_box
            notes.append(f"cropped to rows {y0}-{y1}, columns {x0}-{x1}")
        if self.scale != 1.0:
            notes.append(f"downscaled by {self.scale:.3g} to {self.input_hw[0]} x {self.input_hw[1]}")
        if self.padded_hw != self.input_hw:
            notes.append(f"padded to {self.padded_hw[0]} x {self.padded_hw[1]} (reflect)")
        return notes


def block_position(name: str, depth: int) -> tuple[int, int, str]:
    """(stage, level, side) of a conv block from its module name."""
    parts = name.split(".")
    path, index = parts[0], int(parts[1])
    stage = 1 if path.endswith("_1") else 2
    if path.startswith("down_path"):
        return stage, index, "encoder"
    if path.startswith("up_path"):
        return stage, depth - 2 - index, "decoder"
    raise ConfigError(f"not a HINet conv block name: {name!r}")


def _prepare_input(
    image: np.ndarray | torch.Tensor, crop_box: tuple[int, int, int, int] | None, max_side: int | None
) -> tuple[torch.Tensor, CapturedFeatures]:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.size == 0:
            raise ImageError(f"expected a non-empty H x W x C image array; got shape {image.shape}")
        image = image_to_tensor(image)
    if not isinstance(image, torch.Tensor):
        raise ImageError(f"expected a numpy array or a torch tensor; got {type(image).__name__}")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != 1:
        raise ImageError(f"expected one image of shape (1, C, H, W); got shape {tuple(image.shape)}")
    if min(image.shape[-2:]) < 1:
        raise ImageError(f"the image is empty (shape {tuple(image.shape)})")
    if not torch.isfinite(image).all():
        raise ImageError("the image contains NaN or infinite values")

    result = CapturedFeatures()
    result.source_hw = (image.shape[-2], image.shape[-1])
    x = image.float()
    if crop_box is not None:
        y0, x0, y1, x1 = (int(v) for v in crop_box)
        h, w = result.source_hw
        y0, x0, y1, x1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
        if y1 <= y0 or x1 <= x0:
            raise ImageError(f"the crop box {tuple(crop_box)} does not overlap the {h} x {w} image")
        x = x[:, :, y0:y1, x0:x1]
        result.crop_box = (y0, x0, y1, x1)
    if max_side is not None:
        if max_side < 1:
            raise ConfigError(f"max_side must be positive; got {max_side}")
        longest = max(x.shape[-2:])
        if longest > max_side:
            result.scale = max_side / longest
            size = [max(1, round(s * result.scale)) for s in x.shape[-2:]]
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    result.input_hw = (x.shape[-2], x.shape[-1])
    return x, result


def _channel_stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = t.double().flatten(1)
    return flat.mean(dim=1).float(), flat.std(dim=1, correction=0).float()


def capture_features(
    model: HINet,
    image_tensor: np.ndarray | torch.Tensor,
    blocks: list[str] | None = None,
    max_side: int | None = None,
    crop_box: tuple[int, int, int, int] | None = None,
) -> CapturedFeatures:
    """Features of every conv block (or only `blocks`) for one image, as `BlockFeatures` by block name.

    `image_tensor`: (1, C, H, W) or (C, H, W) tensor, or an H x W x C numpy array, values in [0, 1].
    `crop_box` (y0, x0, y1, x1) is applied first, then the image is downscaled (antialiased) so its
    longest side is at most `max_side`; the returned dict's attributes record what was done.
    """
    if not isinstance(model, HINet):
        raise ConfigError(f"capture_features needs a hinet.model.HINet; got {type(model).__name__}")
    all_blocks = model.conv_blocks()
    names = list(all_blocks) if blocks is None else list(blocks)
    unknown = [n for n in names if n not in all_blocks]
    if unknown:
        raise ConfigError(f"unknown block name(s) {', '.join(unknown)}; known: {', '.join(all_blocks)}")
    if image_tensor is not None and getattr(image_tensor, "ndim", 0) >= 3:
        channels = image_tensor.shape[-1] if isinstance(image_tensor, np.ndarray) else image_tensor.shape[-3]
        if channels != model.config.in_chn:
            raise ImageError(f"the model expects {model.config.in_chn} channel(s) but the image has {channels}")

    x, result = _prepare_input(image_tensor, crop_box, max_side)
    padded, _ = pad_to_multiple(x, model.config.size_multiple, min_size=min_input_size(model))
    result.padded_hw = (padded.shape[-2], padded.shape[-1])

    captured: dict[str, dict[str, torch.Tensor]] = {name: {} for name in names}
    handles = []
    # Models are shared between threads (the app's model store); record only this call's forward pass.
    capturing_thread = threading.get_ident()

    def keep(name: str, key: str, pick_second: bool = False) -> _OutputHook:
        def hook(
            module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor | tuple[torch.Tensor, ...]
        ) -> None:
            if threading.get_ident() != capturing_thread:
                return
            captured[name][key] = (output[1] if pick_second else output)[0].detach().float().cpu()

        return hook

    def keep_bypassed(name: str, n: int) -> _InputHook:
        # relu_1's input is what the block really carried on after normalizing: its channels n: are
        # the ones that bypassed the norm (taken from the model, not copied from conv_1's output).
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            if threading.get_ident() != capturing_thread:
                return
            captured[name]["identity"] = inputs[0][0, n:].detach().float().cpu().clone()

        return hook

    # Local statistics swap a model's norm layers during a restore: hooks and the pass must see the
    # model's own layers, so capture takes the same per-model lock as `hinet.inference.restore`.
    lock = model_lock(model)
    lock.acquire()
    try:
        for name in names:
            block: UNetConvBlock = all_blocks[name]
            handles.append(block.conv_1.register_forward_hook(keep(name, "pre_norm")))
            if block.norm is not None:
                handles.append(block.norm.register_forward_hook(keep(name, "normalized")))
            handles.append(block.relu_1.register_forward_pre_hook(keep_bypassed(name, block.normalized_channels)))
            handles.append(block.register_forward_hook(keep(name, "output", pick_second=block.downsample_enabled)))
        device = model_device(model)
        with eval_mode(model), torch.inference_mode():
            model(padded.to(device))
    finally:
        for handle in handles:
            handle.remove()
        lock.release()

    h, w = result.input_hw
    for name in names:
        block = all_blocks[name]
        stage, level, side = block_position(name, model.config.depth)
        maps = captured[name]
        pre_norm = maps["pre_norm"]
        n = block.normalized_channels
        normalized = maps.get("normalized")
        identity = maps["identity"]
        mean_before, std_before = _channel_stats(pre_norm)
        if normalized is not None:
            mean_norm, std_norm = _channel_stats(normalized)
            mean_after = torch.cat([mean_norm, mean_before[n:]])
            std_after = torch.cat([std_norm, std_before[n:]])
        else:
            mean_after, std_after = mean_before.clone(), std_before.clone()
        norm_layer = block.norm
        weight = getattr(norm_layer, "weight", None)
        bias = getattr(norm_layer, "bias", None)
        factor = 2**level
        result[name] = BlockFeatures(
            name=name,
            stage=stage,
            level=level,
            side=side,
            norm=model.config.norm if norm_layer is not None else "none",
            normalized_channels=n,
            pre_norm=pre_norm,
            normalized=normalized,
            identity=identity,
            output=maps["output"],
            mean_before=mean_before,
            std_before=std_before,
            mean_after=mean_after,
            std_after=std_after,
            gamma=weight.detach().float().cpu().clone() if isinstance(weight, torch.Tensor) else None,
            beta=bias.detach().float().cpu().clone() if isinstance(bias, torch.Tensor) else None,
            valid_hw=(math.ceil(h / factor), math.ceil(w / factor)),
        )
    return result


__all__ = ["BlockFeatures", "CapturedFeatures", "capture_features", "block_position"]
