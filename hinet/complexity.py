"""Parameter and multiply-accumulate (MAC) counts of a model at a given input size.

Two MAC conventions are reported, because published figures mix them:
- `flop_counter_macs`: `torch.utils.flop_counter.FlopCounterMode` total / 2. It counts a transposed
  convolution per *input* pixel (the work actually done).
- `thop_style_macs`: one count per module, as the `thop` package does: convolutions as output elements x
  (in_channels / groups) x kernel area, ConvTranspose2d per *output* pixel (4x its real work for the
  2x2-stride-2 upsampling of HINet), linear layers as output elements x in_features. Norms, activations
  and additions are not counted. This convention produces the often-quoted ~170 G for HINet-GoPro.

For a `HINet`, counting runs on the meta device (no memory, no arithmetic), so even the 88 M-parameter
paper model at large sizes costs a fraction of a second.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hinet.errors import ConfigError
from hinet.inference import model_device
from hinet.model import HINet, count_parameters


def _thop_style_module_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, nn.ConvTranspose2d):
        # Per output pixel: every output element gathers in_channels/groups x kernel area products.
        kernel_area = math.prod(module.kernel_size)
        return output.numel() * (module.in_channels // module.groups) * kernel_area
    if isinstance(module, nn.Conv2d):
        kernel_area = math.prod(module.kernel_size)
        return output.numel() * (module.in_channels // module.groups) * kernel_area
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def _counting_copy(model: nn.Module) -> tuple[nn.Module, torch.device]:
    """A meta-device twin of a HINet (same config, no storage); other modules are counted as they are."""
    if isinstance(model, HINet):
        with torch.device("meta"):
            twin = HINet(model.config)
        return twin.eval(), torch.device("meta")
    device = model_device(model)
    return model, device


def count_macs(model: nn.Module, height: int = 256, width: int = 256, in_channels: int | None = None) -> dict:
    """MACs of one forward pass on a 1 x C x height x width input: both conventions and the parameter count."""
    if height < 1 or width < 1:
        raise ConfigError(f"height and width must be positive; got {height} x {width}")
    if isinstance(model, HINet):
        multiple = model.config.size_multiple
        if height % multiple or width % multiple:
            raise ConfigError(
                f"height and width must be multiples of {multiple} for this model; got {height} x {width}"
            )
        in_channels = model.config.in_chn
    elif in_channels is None:
        raise ConfigError("in_channels is required for models that are not a HINet")

    counted, device = _counting_copy(model)
    thop_total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal thop_total
        thop_total += _thop_style_module_macs(module, inputs, output)

    handles = [
        m.register_forward_hook(hook)
        for m in counted.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    was_training = counted.training
    counted.eval()
    try:
        flop_counter = FlopCounterMode(display=False)
        with torch.no_grad(), flop_counter:
            counted(torch.zeros(1, in_channels, height, width, device=device))
    finally:
        for handle in handles:
            handle.remove()
        counted.train(was_training)

    return {
        "flop_counter_macs": flop_counter.get_total_flops() // 2,
        "thop_style_macs": thop_total,
        "params": count_parameters(model),
    }


__all__ = ["count_parameters", "count_macs"]
