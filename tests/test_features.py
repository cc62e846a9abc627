import numpy as np
import pytest
import torch

from hinet.errors import ConfigError, ImageError
from hinet.features import capture_features
from hinet.registry import create_model, list_variants


def tiny(name: str):
    torch.manual_seed(0)
    return create_model(name).eval()


def image(h: int = 32, w: int = 40) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(3))


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_half_instance_normalized_part_has_beta_mean_and_gamma_std():
    model = tiny("tiny_half_instance")
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for block in model.normalized_blocks().values():
            block.norm.weight.copy_(0.5 + torch.rand(block.norm.weight.shape, generator=generator))
            block.norm.bias.copy_(torch.randn(block.norm.bias.shape, generator=generator))
    features = capture_features(model, image())
    assert set(features) == set(model.conv_blocks())
    normalized = [f for f in features.values() if f.normalized is not None]
    assert len(normalized) == len(model.normalized_blocks()) == 6
    for f in normalized:
        n = f.normalized_channels
        assert n == f.pre_norm.shape[0] // 2 and f.normalized.shape[0] == n
        torch.testing.assert_close(f.mean_after[:n], f.beta, atol=1e-4, rtol=0)
        # std = gamma * sqrt(var / (var + eps)): gamma up to the eps term, which small variances expose.
        var = f.std_before[:n].double() ** 2
        eps = model.get_submodule(f.name).norm.eps
        expected = f.gamma.double() * torch.sqrt(var / (var + eps))
        torch.testing.assert_close(f.std_after[:n].double(), expected, atol=0, rtol=1e-4)
        torch.testing.assert_close(f.std_after[:n], f.gamma, atol=0, rtol=0.02)
        assert torch.equal(f.identity, f.pre_norm[n:])
        assert torch.equal(f.mean_after[n:], f.mean_before[n:])
        assert f.norm == "half_instance"
        assert f.output.shape[0] == f.pre_norm.shape[0]
    assert hook_count(model) == 0


def test_positions_and_resolutions():
    model = tiny("tiny_half_instance")  # depth 3: levels 0-2 in encoders, 1-0 in decoders
    features = capture_features(model, image(32, 40))
    f = features["down_path_2.1"]
    assert (f.stage, f.level, f.side) == (2, 1, "encoder")
    assert f.output.shape[-2:] == (16, 20)  # full resolution output of a downsampling block
    f = features["up_path_1.0.conv_block"]
    assert (f.stage, f.level, f.side) == (1, 1, "decoder")
    assert f.normalized is None and f.gamma is None
    f = features["up_path_2.1.conv_block"]
    assert (f.stage, f.level) == (2, 0) and f.pre_norm.shape == (8, 32, 40)


@pytest.mark.parametrize("name", list_variants("tiny_"))
def test_every_norm_type(name):
    model = tiny(name)
    features = capture_features(model, image(21, 27))  # odd size: padded to 24 x 28
    assert features.padded_hw == (24, 28) and features.input_hw == (21, 27)
    for f in features.values():
        c = f.pre_norm.shape[0]
        assert f.identity.shape[0] == c - f.normalized_channels
        assert f.mean_before.shape == f.std_after.shape == (c,)
        assert f.valid_hw == (-(-21 // 2**f.level), -(-27 // 2**f.level))
        if name == "tiny_none":
            assert f.normalized is None and f.normalized_channels == 0
            assert torch.equal(f.identity, f.pre_norm)
    assert hook_count(model) == 0


def test_block_filter_crop_and_downscale():
    model = tiny("tiny_instance")
    big = torch.rand(1, 3, 100, 60)
    features = capture_features(model, big, blocks=["down_path_1.0"], max_side=32, crop_box=(10, 0, 90, 40))
    assert list(features) == ["down_path_1.0"]
    assert features.crop_box == (10, 0, 90, 40)
    assert features.scale == pytest.approx(32 / 80)
    assert features.input_hw == (32, 16)
    assert features["down_path_1.0"].pre_norm.shape[-2:] == (32, 16)
    assert any("downscaled" in note for note in features.notes)
    numpy_input = capture_features(model, big[0].permute(1, 2, 0).numpy(), blocks=["down_path_1.0"])
    assert numpy_input.scale == 1.0 and numpy_input.crop_box is None


def test_hooks_are_removed_when_the_forward_fails():
    model = tiny("tiny_half_instance")

    def explode(module, inputs, output):
        raise RuntimeError("boom")

    handle = model.last.register_forward_hook(explode)
    with pytest.raises(RuntimeError):
        capture_features(model, image())
    handle.remove()
    assert hook_count(model) == 0


def test_bad_inputs():
    model = tiny("tiny_none")
    with pytest.raises(ConfigError):
        capture_features(model, image(), blocks=["nope"])
    with pytest.raises(ImageError):
        capture_features(model, torch.rand(1, 1, 16, 16))
    with pytest.raises(ImageError):
        capture_features(model, torch.rand(2, 3, 16, 16))
    with pytest.raises(ImageError):
        capture_features(model, image(), crop_box=(50, 50, 60, 60))
    with pytest.raises(ImageError):
        capture_features(model, np.full((8, 8, 3), np.nan, dtype=np.float32))
