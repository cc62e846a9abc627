import math

import numpy as np
import pytest
import torch
from torch import nn

from hinet.errors import ConfigError
from hinet.inference import STATS_PROTOCOLS, describe_stats, restore, training_patch
from hinet.local_stats import LocalRule, LocalStatsNorm, box_mean, local_norm, local_statistics
from hinet.registry import create_model

STATS_NORMS = ["tiny_instance", "tiny_half_instance", "tiny_layer", "tiny_group"]


def tiny(name: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, **overrides).eval()


def smooth_image(h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.3 + 0.4 * yy, 0.5 + 0.3 * torch.sin(7 * xx), 0.2 + 0.5 * xx * yy])[None]


def window_slice(p: int, k: int, length: int, edge: str) -> slice:
    """The rows (or columns) of position p's window, written out the slow way."""
    if edge == "replicate":
        k = min(k, length)
        start = min(max(p - (k - 1) // 2, 0), length - k)
        return slice(start, start + k)
    start = p - (k - 1) // 2
    return slice(max(start, 0), min(start + k, length))


def direct_stats(x: torch.Tensor, groups: int, kh: int, kw: int, edge: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean and biased variance over (group channels x window), explicit loops, float64."""
    n, c, h, w = x.shape
    grouped = x.double().reshape(n, groups, c // groups, h, w)
    mean = torch.empty(n, groups, h, w, dtype=torch.float64)
    var = torch.empty_like(mean)
    for i in range(h):
        for j in range(w):
            region = grouped[:, :, :, window_slice(i, kh, h, edge), window_slice(j, kw, w, edge)]
            mean[:, :, i, j] = region.mean(dim=(2, 3, 4))
            var[:, :, i, j] = region.var(dim=(2, 3, 4), unbiased=False)
    return mean, var


# ----------------------------------------------------------------------------------------------------
# Windowed means and norms against explicit per-window loops


@pytest.mark.parametrize("edge", ["replicate", "shrink"])
@pytest.mark.parametrize("kh, kw", [(4, 3), (1, 1), (2, 7), (9, 7), (12, 10), (5, 1)])
def test_box_mean_equals_explicit_windows(edge, kh, kw):
    x = torch.randn(1, 3, 9, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 50
    expected = torch.empty_like(x)
    for i in range(9):
        for j in range(7):
            expected[..., i, j] = x[..., window_slice(i, kh, 9, edge), window_slice(j, kw, 7, edge)].mean((-2, -1))
    assert torch.allclose(box_mean(x, kh, kw, edge), expected, rtol=0, atol=1e-12)
    assert torch.allclose(box_mean(x.float(), kh, kw, edge).double(), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("edge", ["replicate", "shrink"])
@pytest.mark.parametrize(
    "norm",
    [nn.InstanceNorm2d(4, affine=True), nn.GroupNorm(2, 4), nn.GroupNorm(1, 4)],
    ids=["instance", "group", "layer"],
)
def test_local_norm_equals_direct_window_statistics(norm, edge):
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(4, generator=generator) + 0.5)
        norm.bias.copy_(torch.randn(4, generator=generator))
    x = torch.randn(2, 4, 9, 7, generator=generator) * 3 + 20
    groups = norm.num_groups if isinstance(norm, nn.GroupNorm) else 4
    mean, var = direct_stats(x, groups, 4, 3, edge)
    normalized = (x.double().reshape(2, groups, -1, 9, 7) - mean[:, :, None]) / (var[:, :, None] + norm.eps).sqrt()
    expected = normalized.reshape(2, 4, 9, 7) * norm.weight.double()[:, None, None] + norm.bias.double()[:, None, None]
    with torch.no_grad():
        got = local_norm(x, norm, (4, 3), edge)
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), expected, rtol=0, atol=2e-4)


@pytest.mark.parametrize(
    "norm",
    [nn.InstanceNorm2d(6, affine=True), nn.GroupNorm(3, 6), nn.GroupNorm(1, 6)],
    ids=["instance", "group", "layer"],
)
def test_covering_window_computes_the_global_statistics(norm):
    # The windowed path itself (not the delegation to the layer), on features far from zero mean.
    x = torch.randn(1, 6, 40, 24, generator=torch.Generator().manual_seed(3)) * 0.5 + 30
    with torch.no_grad():
        expected = norm(x)
        for edge in ("replicate", "shrink"):
            got = local_norm(x, norm, (40, 24), edge) if edge == "replicate" else local_norm(x, norm, (79, 47), edge)
            assert torch.allclose(got, expected, atol=1e-4), edge


# ----------------------------------------------------------------------------------------------------
# Through the model


@pytest.mark.parametrize("name", STATS_NORMS)
def test_local_with_a_covering_window_equals_whole(name):
    model = tiny(name)
    image = smooth_image(40, 56)
    for fast in (False, True):
        whole = restore(model, image, fast=fast)
        local = restore(model, image, fast=fast, stats="local", train_patch=64)  # window 96 covers 40 x 56
        assert torch.allclose(local, whole, atol=1e-6)
    # with a smaller training patch the windows no longer cover the maps: the output changes
    local = restore(model, image, fast=False, stats="local", train_patch=16)
    assert (local - restore(model, image, fast=False)).abs().max() > 1e-4


@pytest.mark.parametrize("name", ["tiny_batch", "tiny_none"])
def test_batch_norm_and_no_norm_models_are_untouched(name):
    model = tiny(name)
    image = smooth_image(40, 56)
    with local_statistics(model, 16) as wrappers:
        assert wrappers == {}
    assert torch.equal(restore(model, image, stats="local", train_patch=8), restore(model, image))


def test_windows_follow_each_level_in_encoder_and_decoder_of_both_stages():
    model = tiny("tiny_half_instance", norm_in_decoder=True)  # depth 3: levels 0-2, decoder at 1 and 0
    image = smooth_image(64, 128)
    with local_statistics(model, 16) as wrappers, torch.no_grad():
        model(image)
    assert len(wrappers) == 2 * (3 + 2)
    for name, wrapper in wrappers.items():
        parts = name.split(".")
        level = int(parts[1]) if parts[0].startswith("down") else 3 - 2 - int(parts[1])
        side = math.floor(1.5 * 16 / 2**level)  # 1.5 x the training map at this level
        assert wrapper.last_window == (side, side), name


def test_modules_and_weights_are_restored_also_after_an_error():
    model = tiny("tiny_half_instance")
    norms = {name: block.norm for name, block in model.normalized_blocks().items()}
    state = {key: value.clone() for key, value in model.state_dict().items()}
    with local_statistics(model, 16) as wrappers:
        assert set(wrappers) == set(norms)
        assert all(isinstance(block.norm, LocalStatsNorm) for block in model.normalized_blocks().values())
        assert list(model.state_dict()) == list(state)  # same parameter names while swapped
        with torch.no_grad():
            model(smooth_image(32, 32))
    with pytest.raises(RuntimeError, match="boom"):
        with local_statistics(model, 16):
            raise RuntimeError("boom")
    with pytest.raises(ConfigError, match="inference only"):
        with local_statistics(model, 8):
            model(smooth_image(32, 32))  # autograd recording
    assert {name: block.norm for name, block in model.normalized_blocks().items()} == norms
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())
    assert len(model._forward_pre_hooks) == 0


def test_nested_local_statistics_are_refused():
    model = tiny("tiny_instance")
    with local_statistics(model, 16):
        with pytest.raises(ConfigError, match="already active"):
            with local_statistics(model, 16):
                pass
    assert not any(isinstance(b.norm, LocalStatsNorm) for b in model.normalized_blocks().values())


def test_window_of_one_pixel():
    # instance norm: every value is its own mean, zero variance, so the layer outputs its bias
    norm = nn.InstanceNorm2d(3, affine=True)
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        out = local_norm(torch.randn(1, 3, 5, 6), norm, (1, 1))
    assert torch.equal(out, norm.bias[None, :, None, None].expand(1, 3, 5, 6))
    # group norm: the statistics of the group's channels at each pixel
    group = nn.GroupNorm(2, 4)
    x = torch.randn(1, 4, 5, 6)
    mean, var = direct_stats(x, 2, 1, 1, "replicate")
    expected = (x.double().reshape(1, 2, 2, 5, 6) - mean[:, :, None]) / (var[:, :, None] + group.eps).sqrt()
    with torch.no_grad():
        assert torch.allclose(local_norm(x, group, (1, 1)).double(), expected.reshape(1, 4, 5, 6), atol=1e-5)
    # a factor that asks for less than a pixel gets one pixel: finite output through the whole model
    assert LocalRule(16, factor=0.01).window((64, 64), (64, 64)) == (1, 1)
    out = restore(tiny("tiny_instance"), smooth_image(40, 40), stats="local", train_patch=16, local_factor=0.01)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", STATS_NORMS + ["tiny_batch"])
def test_one_pixel_images_and_maps(name):
    model = tiny(name)
    pixel = np.full((1, 1, 3), 0.4, dtype=np.float32)
    out = restore(model, pixel, stats="local", train_patch=1)
    assert out.shape == (1, 1, 3) and np.isfinite(out).all()
    norm = nn.InstanceNorm2d(2, affine=True)
    with torch.no_grad():
        assert torch.equal(local_norm(torch.randn(1, 2, 1, 1), norm, (3, 3)), torch.zeros(1, 2, 1, 1))


def test_edges_and_min_ratio_variants():
    model = tiny("tiny_instance")
    image = smooth_image(48, 64)
    replicate = restore(model, image, stats="local", train_patch=16)
    shrink = restore(model, image, stats="local", train_patch=16, local_edge="shrink")
    assert (replicate - shrink).abs().max() > 1e-5
    # min_ratio above the image/patch ratio (48 / 16 = 3 in H, 4 in W) means global everywhere
    assert torch.equal(restore(model, image, stats="local", train_patch=16, local_min_ratio=4), restore(model, image))
    rule = LocalRule(64)
    assert [rule.window((512 // 2**level,) * 2, (512, 512)) for level in range(4)] == [
        (96, 96),
        (48, 48),
        (24, 24),
        (12, 12),
    ]
    assert rule.window((64, 64), (64, 64)) is None  # the training size itself: the window covers it
    assert rule.window((32, 128), (64, 256)) == (48, 48)
    assert LocalRule(64, min_ratio=2).window((100, 100), (100, 100)) is None


def test_tiled_stats_equal_explicit_tiles():
    model = tiny("tiny_half_instance")
    image = smooth_image(40, 56)
    tiled = restore(model, image, stats="tiled", train_patch=16)
    assert torch.equal(tiled, restore(model, image, tile=16, overlap=4))
    assert not torch.equal(tiled, restore(model, image))
    assert torch.equal(
        restore(model, image, stats="tiled", train_patch=16, tile=32, overlap=8),
        restore(model, image, tile=32, overlap=8),
    )  # an explicit tile wins
    assert "16 px tiles, overlap 4 px" in describe_stats("tiled", 16)
    assert "96 px at full resolution" in describe_stats("local", 64)


def test_training_patch_from_metadata():
    assert training_patch({"train_patch": "48"}) == (48, None)
    assert training_patch({"train_patch": 32}) == (32, None)
    patch, message = training_patch({"task": "denoise"})
    assert patch == 64 and "does not record its training patch size; assuming 64 px" in message
    with pytest.raises(ConfigError, match="train_patch"):
        training_patch({"train_patch": "big"})
    assert STATS_PROTOCOLS == ("whole", "tiled", "local")


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(stats="global"), "stats must be one of"),
        (dict(stats="local"), "training patch size"),
        (dict(stats="tiled"), "training patch size"),
        (dict(stats="local", train_patch=0), "training patch size"),
        (dict(stats="local", train_patch=64.0), "training patch size"),
        (dict(stats="tiled", train_patch="64"), "training patch size"),
        (dict(stats="local", train_patch=True), "training patch size"),
        (dict(stats="local", train_patch=64, local_factor=0), "factor"),
        (dict(stats="local", train_patch=64, local_factor=float("nan")), "factor"),
        (dict(stats="local", train_patch=64, local_edge="wrap"), "edge"),
        (dict(stats="local", train_patch=64, local_min_ratio=-1), "min_ratio"),
    ],
)
def test_bad_arguments_give_config_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        restore(tiny("tiny_instance"), smooth_image(8, 8), **options)


def test_bad_arguments_of_the_building_blocks():
    with pytest.raises(ConfigError, match="HINet"):
        with local_statistics(nn.Conv2d(1, 1, 1), 64):
            pass
    with pytest.raises(ConfigError, match="kh"):
        box_mean(torch.zeros(1, 1, 4, 4), 0, 2)
    with pytest.raises(ConfigError, match="edge"):
        box_mean(torch.zeros(1, 1, 4, 4), 2, 2, edge="reflect")
    with pytest.raises(ConfigError, match="InstanceNorm2d and GroupNorm"):
        local_norm(torch.zeros(1, 2, 4, 4), nn.BatchNorm2d(2), (2, 2))
    with pytest.raises(ConfigError, match="window"):
        local_norm(torch.zeros(1, 2, 4, 4), nn.GroupNorm(1, 2), (0, 2))


def test_restore_holds_a_per_model_lock_so_threads_take_turns():
    import threading

    from hinet.inference import model_lock, restore
    from hinet.registry import create_model

    model = create_model("tiny_half_instance").eval()
    pixels = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    done = threading.Event()
    with model_lock(model):
        worker = threading.Thread(target=lambda: (restore(model, pixels, stats="local", train_patch=16), done.set()))
        worker.start()
        worker.join(timeout=0.5)
        assert not done.is_set()  # waiting for the lock: the model is not changed under another pass
    worker.join(timeout=30)
    assert done.is_set()
    assert model_lock(model) is model_lock(model) and model_lock(model) is not model_lock(
        create_model("tiny_half_instance")
    )
