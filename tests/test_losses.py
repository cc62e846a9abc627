import numpy as np
import pytest
import torch

from hinet.errors import ConfigError, ImageError
from hinet.losses import CharbonnierLoss, L1Loss, PSNRLoss, create_loss
from hinet.metrics import Protocol, psnr


def pair(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, 16, 16, generator=g)
    pred = target + 0.05 * torch.randn(n, 3, 16, 16, generator=g) * torch.arange(1, n + 1).view(n, 1, 1, 1)
    return pred, target


def test_psnr_loss_is_minus_weight_times_mean_psnr():
    pred, target = pair()
    float_protocol = Protocol(round_to_uint8=False)
    per_sample = [
        psnr(pred[i].permute(1, 2, 0).numpy(), target[i].permute(1, 2, 0).numpy(), float_protocol)
        for i in range(len(pred))
    ]
    loss = PSNRLoss(weight=0.5)(pred, target)
    assert loss.item() == pytest.approx(-0.5 * np.mean(per_sample), rel=1e-4)
    assert loss.item() < 0


def test_psnr_loss_sums_stage_outputs_and_backpropagates():
    pred, target = pair()
    pred = pred.clone().requires_grad_(True)
    loss_fn = PSNRLoss(1.0)
    total = loss_fn([pred, pred * 0.9], target)
    assert total.item() == pytest.approx(loss_fn(pred, target).item() + loss_fn(pred * 0.9, target).item(), rel=1e-5)
    total.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


def test_l1_and_charbonnier():
    pred, target = pair()
    assert L1Loss(2.0)(pred, target).item() == pytest.approx(2 * (pred - target).abs().mean().item(), rel=1e-6)
    charbonnier = CharbonnierLoss(eps=1e-3)
    assert charbonnier(target, target).item() == pytest.approx(1e-3, rel=1e-4)
    expected = torch.sqrt((pred - target) ** 2 + 1e-6).mean().item()
    assert charbonnier(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_create_loss():
    assert isinstance(create_loss("psnr"), PSNRLoss) and create_loss("psnr").weight == 0.5
    assert create_loss("L1", 2).weight == 2.0
    assert isinstance(create_loss("charbonnier"), CharbonnierLoss)
    with pytest.raises(ConfigError, match="unknown loss"):
        create_loss("ssim")
    with pytest.raises(ConfigError):
        create_loss("l1", -1)
    with pytest.raises(ImageError):
        L1Loss()(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
