import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hinet.complexity import count_macs, count_parameters
from hinet.errors import ConfigError
from hinet.model import HINet
from hinet.registry import create_model, get_config


def test_paper_config_counts():
    with torch.device("meta"):  # no 88 M-parameter allocation just to count
        model = HINet(get_config("hinet_gopro"))
    counts = count_macs(model, 256, 256)
    assert counts["params"] == count_parameters(model) == 88_668_806
    assert counts["flop_counter_macs"] == pytest.approx(157.6e9, rel=0.005)
    assert counts["thop_style_macs"] == pytest.approx(170.5e9, rel=0.005)


def test_meta_count_equals_a_real_forward_count():
    model = create_model("tiny_half_instance")
    counts = count_macs(model, 32, 48)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.rand(1, 3, 32, 48))
    assert counts["flop_counter_macs"] == counter.get_total_flops() // 2
    assert counts["params"] == sum(p.numel() for p in model.parameters())


def test_thop_style_counts_transposed_convs_per_output_pixel():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ConvTranspose2d(8, 4, 2, stride=2))
    counts = count_macs(model, 10, 10, in_channels=3)
    conv = 10 * 10 * 8 * 3 * 9
    assert counts["thop_style_macs"] == conv + (20 * 20 * 4) * 8 * 4
    assert counts["flop_counter_macs"] == conv + (10 * 10 * 8) * 4 * 4  # per input pixel


def test_macs_scale_with_pixels_and_reject_bad_sizes():
    model = create_model("tiny_none")
    small = count_macs(model, 16, 16)["flop_counter_macs"]
    assert count_macs(model, 32, 32)["flop_counter_macs"] == 4 * small
    with pytest.raises(ConfigError):
        count_macs(model, 30, 32)
    with pytest.raises(ConfigError):
        count_macs(nn.Conv2d(3, 3, 3), 8, 8)
