"""HINet model: every variant trains, the official state-dict layout, parameter counts, an independent
functional reference of the forward pass, the HIN block maths and config validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hinet.errors import ConfigError
from hinet.model import MAX_DEPTH, MAX_WF, HINet, HINetConfig, count_parameters
from hinet.registry import VARIANTS, create_model, get_config

DATA = Path(__file__).resolve().parent / "data"
SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
MANIFESTS = {
    "official-hinet-state-dict.json": "hinet_gopro",
    "official-hinet-sidd-0.5x-state-dict.json": "hinet_sidd_0.5x",
}

# The paper's wf=64 models are too slow to train in a unit test; they are checked on the meta device.
TRAINABLE_VARIANTS = [name for name in VARIANTS if VARIANTS[name].get("wf") != 64]


def build_on_meta(config: HINetConfig) -> HINet:
    with torch.device("meta"):
        return HINet(config)


# ----------------------------------------------------------------------------------------------------
# Every registered variant builds, runs forward and backward


@pytest.mark.parametrize("name", TRAINABLE_VARIANTS)
def test_variant_forward_backward(name):
    torch.manual_seed(0)
    config = get_config(name, wf=8)  # same structure as the variant, 8 channels at level 0 for speed
    model = HINet(config).train()
    image = torch.rand(2, 3, 32, 32)
    out_1, out_2 = model(image)
    assert out_1.shape == out_2.shape == image.shape
    (out_1.square().mean() + out_2.square().mean()).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: {param_name} received no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: {param_name} has a non-finite gradient"

    normalized_encoder = [
        level
        for level in range(config.depth)
        if config.norm != "none" and config.hin_position_left <= level <= config.hin_position_right
    ]
    expected_blocks = 2 * len(normalized_encoder) * (2 if config.norm_in_decoder else 1)
    if config.norm_in_decoder:  # the deepest level has no decoder block
        expected_blocks -= 2 * (config.depth - 1 in normalized_encoder)
    assert len(model.normalized_blocks()) == expected_blocks


def test_trainable_variants_cover_every_non_paper_variant():
    assert set(VARIANTS) - set(TRAINABLE_VARIANTS) == {"hinet_gopro", "hinet_sidd", "hinet_rain13k"}
    assert len(TRAINABLE_VARIANTS) >= 19


# ----------------------------------------------------------------------------------------------------
# Official state-dict manifests (keys, shapes and order) and parameter counts


@pytest.mark.parametrize("manifest_name", sorted(MANIFESTS))
def test_state_dict_matches_official_manifest(manifest_name):
    manifest = json.loads((DATA / manifest_name).read_text())
    config = HINetConfig(**manifest["config"])
    assert config == get_config(MANIFESTS[manifest_name])
    model = build_on_meta(config)
    ours = [(key, list(tensor.shape)) for key, tensor in model.state_dict().items()]
    official = [(key, shape) for key, shape in manifest["keys"].items()]
    assert ours == official  # same names, same shapes, same order


@pytest.mark.parametrize("manifest_name", sorted(MANIFESTS))
def test_manifest_copies_equal_shared_reference(manifest_name):
    shared = SHARED_REFERENCE / manifest_name
    if not shared.exists():
        pytest.skip(f"{shared} is absent (a clone without shared/); tests/data holds the copy used above")
    assert json.loads((DATA / manifest_name).read_text()) == json.loads(shared.read_text())


@pytest.mark.parametrize(
    "name, expected",
    [("hinet_gopro", 88_668_806), ("hinet_sidd_0.5x", 22_176_518), ("small_hin", 1_383_558)],
)
def test_parameter_counts(name, expected):
    assert count_parameters(build_on_meta(get_config(name))) == expected


# ----------------------------------------------------------------------------------------------------
# An independent functional reference of the whole forward pass (from the state dict and HINET.md only)


def _reference_norm(t, sd, prefix, config: HINetConfig):
    eps = 1e-5
    weight, bias = sd.get(prefix + "weight"), sd.get(prefix + "bias")
    n, c, h, w = t.shape
    if config.norm == "batch":  # eval mode: the running statistics
        mean = sd[prefix + "running_mean"].view(1, c, 1, 1)
        var = sd[prefix + "running_var"].view(1, c, 1, 1)
        out = (t - mean) / torch.sqrt(var + eps)
    else:
        if config.norm in ("instance", "half_instance"):
            groups = c
        elif config.norm == "layer":
            groups = 1
        else:  # group: the largest divisor of c that is at most norm_groups
            groups = max(d for d in range(1, min(c, config.norm_groups) + 1) if c % d == 0)
        grouped = t.reshape(n, groups, -1)
        mean = grouped.mean(dim=2, keepdim=True)
        var = grouped.var(dim=2, unbiased=False, keepdim=True)
        out = ((grouped - mean) / torch.sqrt(var + eps)).reshape(n, c, h, w)
    if weight is not None:
        out = out * weight.view(1, c, 1, 1) + bias.view(1, c, 1, 1)
    return out


def _reference_block(sd, prefix, x, config, level, normalized, enc=None, dec=None):
    slope = config.relu_slope
    t = F.conv2d(x, sd[prefix + "conv_1.weight"], sd[prefix + "conv_1.bias"], padding=1)
    if normalized:
        n = int(round(config.wf * 2**level * config.ratio))
        t = torch.cat([_reference_norm(t[:, :n], sd, prefix + "norm.", config), t[:, n:]], dim=1)
    t = F.leaky_relu(t, slope)
    t = F.leaky_relu(F.conv2d(t, sd[prefix + "conv_2.weight"], sd[prefix + "conv_2.bias"], padding=1), slope)
    t = t + F.conv2d(x, sd[prefix + "identity.weight"], sd[prefix + "identity.bias"])
    if enc is not None:
        t = t + F.conv2d(enc, sd[prefix + "csff_enc.weight"], sd[prefix + "csff_enc.bias"], padding=1)
        t = t + F.conv2d(dec, sd[prefix + "csff_dec.weight"], sd[prefix + "csff_dec.bias"], padding=1)
    if prefix + "downsample.weight" in sd:
        return F.conv2d(t, sd[prefix + "downsample.weight"], stride=2, padding=1), t
    return t


def _reference_forward(sd, config: HINetConfig, image):
    depth = config.depth

    def encoder_normalized(level):
        return config.norm != "none" and config.hin_position_left <= level <= config.hin_position_right

    def conv3(name, x):
        return F.conv2d(x, sd[name + ".weight"], sd[name + ".bias"], padding=1)

    def decode(stage, x, encoder_outputs):
        outputs = []
        for j in range(depth - 1):
            level = depth - 2 - j
            bridge = conv3(f"skip_conv_{stage}.{j}", encoder_outputs[level])
            up = F.conv_transpose2d(
                x, sd[f"up_path_{stage}.{j}.up.weight"], sd[f"up_path_{stage}.{j}.up.bias"], stride=2
            )
            normalized = config.norm_in_decoder and encoder_normalized(level)
            x = _reference_block(
                sd, f"up_path_{stage}.{j}.conv_block.", torch.cat([up, bridge], 1), config, level, normalized
            )
            outputs.append(x)
        return x, outputs

    x = conv3("conv_01", image)
    encoder_1 = []
    for level in range(depth):
        result = _reference_block(sd, f"down_path_1.{level}.", x, config, level, encoder_normalized(level))
        if level < depth - 1:
            x, skip = result
            encoder_1.append(skip)
        else:
            x = result
    x, decoder_1 = decode(1, x, encoder_1)
    x1 = conv3("sam12.conv1", x)
    out_1 = conv3("sam12.conv2", x) + image
    features = x1 * torch.sigmoid(conv3("sam12.conv3", out_1)) + x

    y = F.conv2d(torch.cat([conv3("conv_02", image), features], 1), sd["cat12.weight"], sd["cat12.bias"])
    encoder_2 = []
    for level in range(depth):
        if level < depth - 1:
            decoder_same_resolution = decoder_1[depth - 2 - level]
            y, skip = _reference_block(
                sd,
                f"down_path_2.{level}.",
                y,
                config,
                level,
                encoder_normalized(level),
                encoder_1[level],
                decoder_same_resolution,
            )
            encoder_2.append(skip)
        else:
            y = _reference_block(sd, f"down_path_2.{level}.", y, config, level, encoder_normalized(level))
    y, _ = decode(2, y, encoder_2)
    return [out_1, conv3("last", y) + image]


@pytest.mark.parametrize(
    "name, overrides",
    [(name, {}) for name in VARIANTS if name.startswith("tiny_")]
    + [
        ("tiny_half_instance", {"norm_in_decoder": True}),
        ("tiny_half_instance", {"norm_ratio": 0.25}),
        ("tiny_half_instance", {"hin_position_left": 1, "norm_affine": False}),
        ("tiny_half_instance", {"depth": 4}),
    ],
)
def test_forward_equals_functional_reference(name, overrides):
    torch.manual_seed(1)
    config = get_config(name, **overrides)
    model = HINet(config).double().eval()
    # Random values everywhere (norm gamma/beta and running statistics too), so no term hides; conv
    # weights scaled by 1/sqrt(fan-in) keep activations near 1, where atol=1e-5 is a strict test.
    state = {}
    for key, tensor in model.state_dict().items():
        if key.endswith("running_var"):
            state[key] = torch.rand_like(tensor) + 0.5
        elif tensor.is_floating_point() and tensor.ndim > 1:
            state[key] = torch.randn_like(tensor) * (tensor[0].numel() ** -0.5)
        elif tensor.is_floating_point():
            state[key] = torch.randn_like(tensor) * 0.2 + (1.0 if key.endswith("norm.weight") else 0.0)
        else:
            state[key] = tensor
    model.load_state_dict(state)
    image = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        ours = model(image)
        reference = _reference_forward(state, config, image)
    for got, want in zip(ours, reference):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# HIN block maths


def _block_outputs(model, block_name, image):
    block = model.conv_blocks()[block_name]
    captured = {}
    handles = [
        block.conv_1.register_forward_hook(lambda m, i, o: captured.__setitem__("conv_1", o)),
        block.relu_1.register_forward_hook(lambda m, i, o: captured.__setitem__("normalized_input", i[0])),
    ]
    with torch.no_grad():
        model(image)
    for handle in handles:
        handle.remove()
    return block, captured["conv_1"], captured["normalized_input"]


def test_hin_normalized_half_has_beta_mean_and_gamma_std_and_identity_half_is_untouched():
    torch.manual_seed(2)
    model = create_model("tiny_half_instance").eval()
    block = model.conv_blocks()["down_path_1.1"]
    with torch.no_grad():
        block.norm.weight.copy_(torch.rand_like(block.norm.weight) + 0.5)
        block.norm.bias.copy_(torch.randn_like(block.norm.bias))
    block, conv_out, after_norm = _block_outputs(model, "down_path_1.1", torch.rand(2, 3, 32, 32))
    n = block.normalized_channels
    assert n == conv_out.shape[1] // 2 == 8
    normalized = after_norm[:, :n]
    mean = normalized.mean(dim=(2, 3))
    std = normalized.std(dim=(2, 3), unbiased=False)
    torch.testing.assert_close(mean, block.norm.bias.expand_as(mean), atol=1e-5, rtol=0)
    # eps=1e-5 in the denominator shrinks the std a little below gamma
    torch.testing.assert_close(std, block.norm.weight.expand_as(std), atol=1e-3, rtol=1e-3)
    assert torch.equal(after_norm[:, n:], conv_out[:, n:])


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_ratio_sets_the_number_of_normalized_channels(ratio):
    config = get_config("small_hin", norm_ratio=ratio)
    model = build_on_meta(config)
    for level in range(config.depth):
        channels = config.wf * 2**level
        block = model.down_path_1[level]
        assert block.normalized_channels == round(channels * ratio)
        assert block.norm.num_features == round(channels * ratio)


def test_ratio_one_normalizes_all_channels_like_instance_norm():
    torch.manual_seed(3)
    model = create_model("tiny_half_instance", norm_ratio=1.0).eval()
    block, conv_out, after_norm = _block_outputs(model, "down_path_1.0", torch.rand(1, 3, 16, 16))
    assert block.normalized_channels == conv_out.shape[1]
    expected = F.instance_norm(conv_out, weight=block.norm.weight, bias=block.norm.bias, eps=1e-5)
    torch.testing.assert_close(after_norm, expected, atol=1e-5, rtol=0)


def test_norm_in_decoder_adds_norms_to_decoder_blocks():
    plain = build_on_meta(get_config("small_hin"))
    with_decoder = build_on_meta(get_config("small_hin_encdec"))
    assert not any(name.startswith("up_path") for name in plain.normalized_blocks())
    decoder_blocks = sorted(name for name in with_decoder.normalized_blocks() if name.startswith("up_path"))
    # depth 4: decoder levels 2, 1, 0 in both stages
    assert decoder_blocks == [f"up_path_{s}.{j}.conv_block" for s in (1, 2) for j in range(3)]


def test_encoder_norm_placement_follows_hin_positions():
    model = build_on_meta(get_config("small_hin_deep"))
    assert sorted(model.normalized_blocks()) == ["down_path_1.2", "down_path_1.3", "down_path_2.2", "down_path_2.3"]
    assert build_on_meta(get_config("small_none")).normalized_blocks() == {}


# ----------------------------------------------------------------------------------------------------
# Config validation


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(norm="weight"), "norm must be one of"),
        (dict(norm_ratio=0.0), "norm_ratio must be in (0, 1]"),
        (dict(norm_ratio=1.5), "norm_ratio must be in (0, 1]"),
        (dict(depth=1), "depth must be at least 2"),
        (dict(wf=0), "must be positive"),
        (dict(wf=2, norm_ratio=0.1), "normalizes no channel"),
        (dict(wf=100000, depth=40), "wf must be at most 256"),
        (dict(wf=257), "wf must be at most 256"),
        (dict(depth=9), "depth must be at most 8"),
    ],
)
def test_config_validation_errors(fields, words):
    with pytest.raises(ConfigError, match=None) as caught:
        HINetConfig(**fields)
    assert words in str(caught.value)


def test_size_bounds_keep_the_official_configs_valid():
    assert HINetConfig().wf == 64 and HINetConfig().depth == 5  # the paper's model
    HINetConfig(wf=MAX_WF, depth=MAX_DEPTH)  # the bounds themselves are allowed
    for name in ("hinet_gopro", "hinet_sidd", "hinet_sidd_0.5x", "hinet_rain13k"):
        get_config(name)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_parameter_count_from_the_config_equals_the_built_model(name):
    config = get_config(name)
    assert config.parameter_count() == count_parameters(build_on_meta(config))


@pytest.mark.parametrize("norm", ["none", "batch", "layer", "instance", "group", "half_instance"])
@pytest.mark.parametrize("affine, decoder", [(True, False), (False, True), (True, True)])
def test_parameter_count_covers_every_norm_and_placement(norm, affine, decoder):
    config = HINetConfig(
        in_chn=1,
        wf=8,
        depth=3,
        norm=norm,
        norm_affine=affine,
        norm_in_decoder=decoder,
        hin_position_left=1,
        hin_position_right=2,
        norm_ratio=0.375 if norm != "none" else None,
    )
    assert config.parameter_count() == count_parameters(HINet(config))


def test_parameter_count_of_a_huge_config_allocates_nothing():
    assert HINetConfig(wf=MAX_WF, depth=MAX_DEPTH).parameter_count() > 9 * 10**10  # instant, no memory


def test_from_dict_rejects_unknown_keys_and_round_trips():
    config = get_config("small_hin_r0.25")
    assert HINetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown HINet config keys: use_hin"):
        HINetConfig.from_dict({**config.to_dict(), "use_hin": True})


def test_unknown_variant_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown variant"):
        get_config("hinet_imaginary")


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            dict(wf=16, depth=4, hin_position_left=0, hin_position_right=3),
            "norm half_instance r0.50, levels 0-3, wf16 d4",
        ),
        (dict(norm="none", wf=8, depth=3), "no norm, wf8 d3"),
        (
            dict(
                norm="instance",
                hin_position_left=2,
                hin_position_right=2,
                norm_in_decoder=True,
                norm_affine=False,
                wf=8,
                depth=3,
            ),
            "norm instance r1.00, level 2, decoder norm, no affine, wf8 d3",
        ),
        (
            dict(norm_ratio=0.125, wf=16, depth=3, hin_position_right=2),
            "norm half_instance r0.125, levels 0-2, wf16 d3",
        ),
    ],
)
def test_config_describe(overrides, expected):
    assert HINetConfig(**overrides).describe() == expected
