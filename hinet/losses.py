"""Training losses. Each takes `(prediction, target)` N x C x H x W tensors, or a list/tuple of
predictions (HINet's two stage outputs) whose losses are summed, as the official recipe does."""

from __future__ import annotations

import math

import torch
from torch import nn

from hinet.errors import ConfigError, ImageError


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ImageError(f"loss: prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    if pred.dim() != 4:
        raise ImageError(f"loss: expected N x C x H x W tensors, got shape {tuple(pred.shape)}")


class _PixelLoss(nn.Module):
    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)

    def single(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, pred: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...], target: torch.Tensor
    ) -> torch.Tensor:
        preds = pred if isinstance(pred, (list, tuple)) else [pred]
        total = None
        for p in preds:
            _check(p, target)
            value = self.single(p, target)
            total = value if total is None else total + value
        assert total is not None  # `preds` is never empty
        return total


class PSNRLoss(_PixelLoss):
    """The official HINet PSNR loss: per-sample MSE over C, H, W, then
    ``weight * 10 / ln(10) * mean_over_batch(ln(mse + 1e-8))``, i.e. ``-weight`` times the average
    per-sample PSNR for data range 1. Negative by design (lower is better)."""

    def __init__(self, weight: float = 0.5) -> None:
        super().__init__(weight)
        self.scale = 10.0 / math.log(10.0)

    def single(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = ((pred - target) ** 2).mean(dim=(1, 2, 3))
        return self.weight * self.scale * torch.log(mse + 1e-8).mean()


class L1Loss(_PixelLoss):
    """``weight * mean |pred - target|``."""

    def single(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * (pred - target).abs().mean()


class CharbonnierLoss(_PixelLoss):
    """``weight * mean sqrt((pred - target)^2 + eps^2)``, a smooth L1."""

    def __init__(self, weight: float = 1.0, eps: float = 1e-3) -> None:
        super().__init__(weight)
        self.eps = float(eps)

    def single(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * torch.sqrt((pred - target) ** 2 + self.eps**2).mean()


LOSSES = {"psnr": PSNRLoss, "l1": L1Loss, "charbonnier": CharbonnierLoss}


def create_loss(name: str, weight: float | None = None) -> nn.Module:
    """A loss by name (`LOSSES`); `weight=None` keeps the class default (0.5 for psnr, 1 otherwise)."""
    key = str(name).lower()
    if key not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    if weight is None:
        return LOSSES[key]()
    weight = float(weight)
    if not math.isfinite(weight) or weight <= 0:
        raise ConfigError(f"loss weight must be a positive number, got {weight}")
    return LOSSES[key](weight)
