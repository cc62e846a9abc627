"""Logic tests of the learn tab's builders (app/learn_views.py)."""

import numpy as np
import pytest
import torch

from app import learn_views as views
from hinet.errors import ConfigError
from hinet.registry import create_model

N, C, HW = views.CUBE_N, views.CUBE_C, views.CUBE_HW


# ---------------------------------------------------------------------------- the cube


def test_cube_highlight_counts():
    shared, normalized = views.cube_masks("bn", channel=3)
    assert shared.sum() == N * HW and shared[:, 3].all()  # one channel, every sample and pixel
    shared, _ = views.cube_masks("ln", sample=2)
    assert shared.sum() == C * HW and shared[2].all()
    shared, _ = views.cube_masks("in", sample=1, channel=5)
    assert shared.sum() == HW and shared[1, 5].all()
    shared, _ = views.cube_masks("gn", sample=0, channel=5)
    assert shared.sum() == (C // views.CUBE_GROUPS) * HW and shared[0, C // 2 :].all()
    for key in ("bn", "ln", "in", "gn"):
        assert views.cube_masks(key)[1].all()


def test_hin_covers_only_the_first_half_of_channels():
    shared, normalized = views.cube_masks("hin", sample=1, channel=2)
    assert normalized.sum() == N * (C // 2) * HW
    assert normalized[:, : C // 2].all() and not normalized[:, C // 2 :].any()
    assert shared.sum() == HW and shared[1, 2].all()
    shared, _ = views.cube_masks("hin", channel=C - 1)  # a channel that skips the norm shares nothing
    assert shared.sum() == 0


def test_cube_masks_reject_bad_input():
    with pytest.raises(ConfigError, match="norm must be one of"):
        views.cube_masks("xn")
    with pytest.raises(ConfigError, match="outside"):
        views.cube_masks("bn", channel=C)


def test_cube_figure_has_one_cube_per_cell():
    fig = views.cube_figure("hin")
    vertices = sum(len(t.x) for t in fig.data)
    triangles = sum(len(t.i) for t in fig.data)
    assert vertices == 8 * N * C * HW and triangles == 12 * N * C * HW
    assert [t.name for t in fig.data][-1] == "not normalized (passes unchanged)"
    assert len(views.cube_figure("bn").data) == 2  # shared + other normalized, nothing unnormalized


# ---------------------------------------------------------------------------- experiments


@pytest.fixture(scope="module")
def features():
    torch.manual_seed(0)
    return torch.randn(8, 6, 8, 8) * torch.linspace(0.5, 3, 8).view(8, 1, 1, 1) + torch.arange(8.0).view(8, 1, 1, 1)


def test_partial_norm_normalizes_the_first_channels(features):
    block = views.partial_norm("instance", 6, 0.5)
    out = block.normalize(features)
    assert block.normalized_channels == 3
    flat = out.flatten(2)
    np.testing.assert_allclose(flat[:, :3].mean(2), 0, atol=1e-5)
    torch.testing.assert_close(out[:, 3:], features[:, 3:])
    assert views.partial_norm("instance", 6, 0.0).norm is None


def test_batch_dependence_only_for_batch_norm(features):
    result = views.batch_dependence(features, [1, 2, 4, 8], draws=3)
    bn = result.mean_change["BatchNorm (batch statistics)"]
    assert bn[-1] == pytest.approx(0, abs=1e-6)  # the whole set: the reference itself
    assert bn[0] > 0.1 and bn[0] > bn[-2]
    for label in ("InstanceNorm", "Half InstanceNorm"):
        assert max(result.max_change[label]) == 0.0
    assert len(views.batch_figure(result, 4).data) == 3
    with pytest.raises(ConfigError, match="batch sizes"):
        views.batch_dependence(features, [9])


def test_train_vs_eval(features):
    result = views.train_vs_eval(features[:1], features[1:])
    np.testing.assert_allclose(result.mean_train, 0, atol=1e-5)
    calibration_mean = features[1:].mean(dim=(0, 2, 3))
    expected_eval_mean = features[0].mean(dim=(1, 2)) - calibration_mean
    assert np.all(np.sign(result.mean_eval) == np.sign(expected_eval_mean.numpy()))
    assert result.mean_abs_difference > 0.1
    assert len(views.mode_figure(result).data) == 4


def test_affine_effect_mean_beta_std_gamma(features):
    gamma, beta = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([1.0, -2.0, 0.0])
    result = views.affine_effect(features[0, :3], "instance", gamma, beta)
    np.testing.assert_allclose(result.mean_plain, 0, atol=1e-5)
    np.testing.assert_allclose(result.std_plain, 1, atol=1e-3)
    np.testing.assert_allclose(result.mean_affine, beta.numpy(), atol=1e-4)
    np.testing.assert_allclose(result.std_affine, gamma.abs().numpy(), atol=2e-3)
    assert len(views.affine_figure(result, True).data) == 4 and len(views.affine_figure(result, False).data) == 2


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
def test_scale_kept_by_ratio(features, ratio):
    kept = views.scale_kept(features[0], features[0] * 0.5 + 0.3, ratio)
    n = int(round(6 * ratio))
    np.testing.assert_allclose(kept[:n], 1.0, atol=1e-3)
    np.testing.assert_allclose(kept[n:], 0.5, atol=1e-4)
    colours = views.ratio_figure(kept, n).data[0].marker.color
    assert list(colours).count("#2ca02c") == n


def test_tile_seams_follow_tile_borders():
    torch.manual_seed(0)
    model = create_model("tiny_half_instance").eval()
    pixels = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    result = views.tile_seams(model, pixels, 16)
    assert result.max_difference > 0 and result.difference.shape == (32, 32)
    covering = views.tile_seams(model, pixels, 32)
    assert covering.max_difference == pytest.approx(0, abs=1e-6)
    # a 48-px window (1.5 x 32) covers the 32-px image at every level: local equals whole
    assert covering.local_max_difference == pytest.approx(0, abs=1e-5)
    # with a 16-px "training patch" the 24-px window is smaller than the image: local differs, smoothly
    assert result.local_max_difference > 0 and result.local_difference.shape == (32, 32)
    picture = views.tile_picture(result)
    assert picture.shape == (32, 5 * 32 + 24, 3) and picture.dtype == np.uint8


def test_block_input_features_and_grid():
    torch.manual_seed(0)
    model = create_model("tiny_half_instance").eval()
    pixels = np.random.default_rng(0).random((40, 48, 3), dtype=np.float32)
    boxes = views.grid_boxes(40, 48, 2, 2)
    assert boxes == [(0, 4, 20, 24), (0, 24, 20, 44), (20, 4, 40, 24), (20, 24, 40, 44)]
    maps = views.block_input_features(model, pixels, boxes, 16)
    assert maps.shape == (4, 8, 16, 16)


# ---------------------------------------------------------------------------- share string


def test_share_string_round_trip():
    state = views.LearnState(norm="bn", ch=5, exp="tile", bs=7, tile=48, affine=False, ratio=0.25)
    text = views.format_share(state)
    assert text == "norm=bn&ch=5&exp=tile&bs=7&tile=48&affine=0&ratio=0.25"
    assert views.parse_share(text) == state
    assert views.parse_share("?view=" + "norm%3Dgn%26exp%3Dratio") == views.LearnState(norm="gn", exp="ratio")
    assert views.parse_share("") == views.LearnState()


@pytest.mark.parametrize(
    "text, message",
    [
        ("norm=xx", "norm must be one of"),
        ("bs=99", "bs must be between"),
        ("bs=four", "not a valid int"),
        ("colour=red", "unknown setting"),
        ("exp=nope", "exp must be one of"),
        ("ch=8", "ch must be between"),
    ],
)
def test_share_string_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        views.parse_share(text)
