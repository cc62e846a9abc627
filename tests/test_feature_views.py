"""Logic tests of the feature-maps tab's builders (app/feature_views.py, app/architecture.py)."""

import numpy as np
import pytest
import torch

from app import feature_views as views
from app.architecture import architecture_figure, block_choices, block_layout, default_block
from hinet.errors import ConfigError
from hinet.features import capture_features
from hinet.registry import create_model, get_config

NORMS = ("half_instance", "instance", "batch", "layer", "group")


def tiny_model(norm: str, seed: int = 0):
    """A tiny variant whose norm layers have non-trivial gamma/beta (and BN running statistics)."""
    torch.manual_seed(seed)
    model = create_model(f"tiny_{norm}")
    with torch.no_grad():
        for block in model.normalized_blocks().values():
            if getattr(block.norm, "weight", None) is not None:
                block.norm.weight.uniform_(0.5, 2.0)
                block.norm.bias.normal_()
            if isinstance(block.norm, torch.nn.BatchNorm2d):
                block.norm.running_mean.normal_()
                block.norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).random((40, 56, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def hin_features(image):
    model = tiny_model("half_instance")
    return model, capture_features(model, image)


# ---------------------------------------------------------------------------- architecture strip


def test_block_layout_matches_model_blocks():
    for norm in NORMS + ("none",):
        config = get_config(f"tiny_{norm}")
        model = create_model(f"tiny_{norm}")
        layout = {b.name: b for b in block_layout(config)}
        assert set(layout) == set(model.conv_blocks())
        for name, block in model.conv_blocks().items():
            assert layout[name].normalized_channels == block.normalized_channels
            assert layout[name].channels == block.conv_1.out_channels


def test_architecture_figure_legend_and_highlight():
    config = get_config("small_hin")
    fig = architecture_figure(config, "down_path_2.1")
    names = [t.name for t in fig.data]
    assert "Half InstanceNorm" in names and "no norm" in names
    selected = [t for t in fig.data if t.name == "selected block"]
    assert len(selected) == 1 and len(selected[0].x) == 1
    blocks = sum(len(t.x) for t in fig.data if t.name != "selected block")
    assert blocks == len(block_layout(config)) == 2 * (2 * config.depth - 1)
    texts = [a.text for a in fig.layout.annotations]
    assert texts.count("CSFF") == config.depth - 2 and "SAM + CSFF" in texts
    sam = next(a for a in fig.layout.annotations if a.text == "SAM + CSFF")
    level0_decoder = next(t for t in fig.data if t.name == "no norm")
    start = dict(zip(level0_decoder.customdata, zip(level0_decoder.x, level0_decoder.y)))["up_path_1.2.conv_block"]
    assert (sam.ax, sam.ay) == start  # SAM leaves stage 1's last decoder block (level 0)
    assert default_block(config) == "down_path_1.0"
    assert ("stage 1 encoder level 0 (Half InstanceNorm, 8/16 ch normalized)", "down_path_1.0") in block_choices(config)


def test_architecture_figure_without_norm_has_one_legend_entry():
    fig = architecture_figure(get_config("tiny_none"), None)
    assert [t.name for t in fig.data] == ["no norm"]
    assert default_block(get_config("tiny_none")) == "down_path_1.0"


# ---------------------------------------------------------------------------- views of large images


def test_view_arguments_bound_the_capture():
    assert views.view_arguments(views.VIEW_CROP, 600, 1000) == {"crop_box": (172, 372, 428, 628)}
    assert views.view_arguments(views.VIEW_CROP, 100, 120) == {}
    assert views.view_arguments(views.VIEW_DOWNSCALE, 600, 1000) == {"max_side": 256}
    with pytest.raises(ConfigError, match="view must be one of"):
        views.view_arguments("zoom", 10, 10)


def test_large_image_capture_is_bounded_and_captioned():
    model = tiny_model("half_instance")
    big = np.random.default_rng(1).random((700, 900, 3), dtype=np.float32)
    for mode, words in ((views.VIEW_CROP, "cropped to rows 222-478"), (views.VIEW_DOWNSCALE, "downscaled")):
        captured = capture_features(model, big, blocks=["down_path_1.0"], **views.view_arguments(mode, 700, 900))
        assert max(captured["down_path_1.0"].pre_norm.shape[-2:]) <= 256
        caption = views.view_caption(captured)
        assert words in caption and "700 x 900" in caption


def test_image_key_depends_on_content():
    a = np.zeros((4, 4, 3), np.float32)
    b = a.copy()
    b[0, 0, 0] = 1
    assert views.image_key(a) == views.image_key(a.copy()) != views.image_key(b)


# ---------------------------------------------------------------------------- channel panels


def test_top_channels_by_variance():
    maps = np.zeros((5, 4, 4), np.float32)
    maps[3] = np.arange(16).reshape(4, 4)
    maps[1] = np.arange(16).reshape(4, 4) * 0.5
    assert views.top_channels(maps, 2) == [3, 1]
    assert views.top_channels(None, 3) == []


def test_block_panels_share_colour_scale_per_pair(hin_features):
    _, captured = hin_features
    features = captured["down_path_1.0"]
    panels = views.block_panels(features, 3)
    for key in ("before", "normalized", "identity", "output"):
        assert panels[key].dtype == np.uint8 and panels[key].shape[2] == 3
    # before/normalized panels hold the same 3 channels: equal layout, different pixels
    assert panels["before"].shape == panels["normalized"].shape
    assert not np.array_equal(panels["before"], panels["normalized"])
    overview = views.block_overview(features, 3)
    assert overview.shape[1] == sum(p.shape[1] for p in panels.values()) + 3 * 8


def test_colour_scale_is_shared_within_a_pair():
    # a pair whose "after" is the "before" shifted up must use the higher colours for the same pixels
    before = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    lo, hi = views._range(before, before + 1)
    tile_before = views._colourize(before, lo, hi)
    tile_after = views._colourize(before + 1, lo, hi)
    assert np.array_equal(tile_before[0, 0], views._colourize(np.zeros((1, 1)), 0, 1)[0, 0])
    assert np.array_equal(tile_after[-1, -1], views._colourize(np.ones((1, 1)), 0, 1)[0, 0])


def test_panels_of_a_block_without_norm():
    model = create_model("tiny_none")
    captured = capture_features(model, np.random.default_rng(0).random((16, 16, 3), dtype=np.float32))
    panels = views.block_panels(captured["down_path_1.0"], 2)
    assert panels["before"].shape[0] < panels["identity"].shape[0]  # "(no channels here)" only


# ---------------------------------------------------------------------------- statistics


def test_normalized_half_mean_equals_beta(hin_features):
    _, captured = hin_features
    features = captured["down_path_1.0"]
    n = features.normalized_channels
    assert n == 4
    fig = views.statistics_figure(features, 1)
    after_mean = np.asarray(fig.data[1].y)
    after_std = np.asarray(fig.data[3].y)
    np.testing.assert_allclose(after_mean[:n], features.beta.numpy(), atol=1e-4)
    np.testing.assert_allclose(after_std[:n], features.gamma.abs().numpy(), rtol=1e-2)
    np.testing.assert_allclose(after_mean[n:], features.mean_before.numpy()[n:])  # identity half unchanged
    assert len(after_mean) == 8


def test_histogram_counts_every_pixel(hin_features):
    _, captured = hin_features
    features = captured["down_path_1.1"]
    fig = views.histogram_figure(features, 2)
    pixels = features.pre_norm[2].numel()
    assert [int(np.sum(t.y)) for t in fig.data] == [pixels, pixels]
    assert "normalized" in fig.layout.title.text
    assert "unchanged" in views.histogram_figure(features, 15).layout.title.text
    with pytest.raises(ConfigError, match="channel must be between 0 and 15"):
        views.histogram_figure(features, 16)


@pytest.mark.parametrize("norm", NORMS)
def test_formula_table_reproduces_the_layer(norm, image):
    model = tiny_model(norm)
    captured = capture_features(model, image, blocks=["down_path_1.1"])
    features = captured["down_path_1.1"]
    layer = model.conv_blocks()["down_path_1.1"].norm
    for channel in (0, features.normalized_channels - 1):
        table = views.formula_table(features, channel, layer)
        values = dict(zip(table["quantity"], table["value"]))
        formula = float(values["(x − μ)/σ · γ + β"].rsplit("=", 1)[1])
        layer_output = float(values["the layer's output there"])
        assert formula == pytest.approx(layer_output, rel=2e-3, abs=2e-3)
        assert f"{layer.eps:g}" in values["σ = √(var + ε)"]


def test_formula_table_of_identity_channel(hin_features):
    model, captured = hin_features
    features = captured["down_path_1.0"]
    table = views.formula_table(features, 6, model.conv_blocks()["down_path_1.0"].norm)
    assert "identity half" in table["value"][0]


def test_compare_figure_two_variants(image):
    a = capture_features(tiny_model("half_instance"), image, blocks=["down_path_1.0"])["down_path_1.0"]
    b = capture_features(tiny_model("instance"), image, blocks=["down_path_1.0"])["down_path_1.0"]
    fig = views.compare_figure(a, b, "A", "B")
    assert len(fig.data) == 2 and "4 normalized" in fig.data[0].name and "8 normalized" in fig.data[1].name


def test_fast_figures_are_valid_plotly(hin_features):
    """The figures are built without plotly's validation for speed; validate them here, once."""
    import plotly.graph_objects as go

    _, captured = hin_features
    features = captured["down_path_1.0"]
    for fig in (
        views.statistics_figure(features, 2),
        views.histogram_figure(features, 2),
        architecture_figure(get_config("small_hin"), "up_path_2.0.conv_block", title="t"),
    ):
        go.Figure(fig.to_dict())  # raises ValueError on any invalid property


def _capture_with_a_foreign_forward_during_it(model, image):
    """Capture once while another thread runs the same model: the foreign forward is started from a hook on
    the whole model, so it runs after this capture's own blocks have been recorded but before its hooks are
    removed. Without a per-thread check its features would overwrite this capture's."""
    import threading

    capturing_thread = threading.get_ident()
    start_foreign, foreign_done = threading.Event(), threading.Event()

    def foreign_forward():
        start_foreign.wait(timeout=30)
        with torch.no_grad():  # another image of the same size: only the values can tell the captures apart
            model(torch.from_numpy(np.ascontiguousarray(image[::-1, ::-1])).permute(2, 0, 1)[None])
        foreign_done.set()

    def after_forward(module, inputs, output):
        if threading.get_ident() == capturing_thread and not start_foreign.is_set():
            start_foreign.set()
            assert foreign_done.wait(timeout=30), "the other thread's forward did not finish"

    thread = threading.Thread(target=foreign_forward)
    thread.start()
    handle = model.register_forward_hook(after_forward)
    try:
        return capture_features(model, image, blocks=["down_path_1.0"])["down_path_1.0"]
    finally:
        handle.remove()
        start_foreign.set()
        thread.join()


def test_capture_is_not_disturbed_by_other_threads_using_the_same_model(image):
    """The model store shares one model between requests; a capture must record only its own forward."""
    model = tiny_model("half_instance")
    quiet = capture_features(model, image, blocks=["down_path_1.0"])["down_path_1.0"]
    busy = _capture_with_a_foreign_forward_during_it(model, image)
    for name in ("pre_norm", "normalized", "identity", "output"):
        torch.testing.assert_close(getattr(busy, name), getattr(quiet, name))


def test_the_thread_test_fails_without_the_thread_check(image, monkeypatch):
    """Proof that the test above can fail: with every thread looking like the capturing one (the check
    disabled), the foreign forward's features replace the capture's."""
    import types

    import hinet.features

    model = tiny_model("half_instance")
    quiet = capture_features(model, image, blocks=["down_path_1.0"])["down_path_1.0"]
    monkeypatch.setattr(hinet.features, "threading", types.SimpleNamespace(get_ident=lambda: 0))
    busy = _capture_with_a_foreign_forward_during_it(model, image)
    assert not torch.allclose(busy.pre_norm, quiet.pre_norm)
