"""Client tests of the feature-maps and learn tabs: every named endpoint, through gradio_client."""

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from app import features_tab, learn_tab  # noqa: E402
from app.context import AppContext  # noqa: E402

pytestmark = pytest.mark.app

VARIANT = "registry/small_hin"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A demo made of the two tabs alone, with a stand-in for the restore tab's image component.

    The model store is emptied of checkpoints, so every model is the registry's untrained one whatever
    results/ or runs/ hold on this machine.
    """
    from app import models

    empty = tmp_path_factory.mktemp("no_checkpoints")
    patch = pytest.MonkeyPatch()
    patch.setattr(models, "RESULTS_DIR", empty)
    patch.setenv("HINET_RUNS_DIR", str(empty))
    restore_pixels = (np.random.default_rng(3).random((48, 64, 3)) * 255).astype(np.uint8)
    with gr.Blocks() as demo:
        with gr.Tabs() as tabs:
            with gr.Tab("restore", id="restore"):
                restore_image = gr.Image(restore_pixels, type="numpy", label="restore input")
            ctx = AppContext(tabs=tabs, blocks=demo, restore_image=restore_image)
            with gr.Tab("features", id="features"):
                features_tab.build_tab(ctx)
            with gr.Tab("learn", id="learn"):
                learn_tab.build_tab(ctx)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
    try:
        yield Client(url, verbose=False)
    finally:
        demo.close()
        patch.undo()


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "wide.png"
    pixels = (np.random.default_rng(0).random((72, 300, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def value(output):
    """An output's value, whether it came back as a value or as a component update."""
    return output.get("value") if isinstance(output, dict) and output.get("__type__") == "update" else output


def view(client, block="down_path_1.1", channel=3, mode="centre crop 256", k=2):
    return client.predict(VARIANT, mode, block, k, channel, api_name="/features_view")


def test_endpoints_are_named(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/features_view", "/features_upload", "/features_example", "/features_compare",
            "/features_restore_image", "/learn_view", "/learn_load"} <= names


def test_upload_then_view_crop_and_downscale(client, image_file):
    client.predict(handle_file(str(image_file)), api_name="/features_upload")
    result = view(client)
    _, overview, caption, stats, histogram, table, block, channel = result
    assert "stage 1 encoder level 1" in caption and "wide.png" in caption
    assert "cropped to rows 0-72, columns 22-278" in caption
    assert value(block) == "down_path_1.1" and value(channel) == 3
    picture = np.asarray(Image.open(overview))
    assert picture.ndim == 3 and picture.shape[0] > 100
    quantities = [row[0] for row in table["data"]]
    assert "(x − μ)/σ · γ + β" in quantities
    assert stats["type"] == "plotly" and histogram["type"] == "plotly"
    caption = view(client, mode="downscale to max side 256")[2]
    assert "downscaled by" in caption


def test_channel_is_clamped_to_the_block(client, image_file):
    client.predict(handle_file(str(image_file)), api_name="/features_upload")
    assert value(view(client, block="down_path_1.1", channel=20)[-1]) == 20
    assert value(view(client, block="down_path_2.0", channel=20)[-1]) == 15  # level 0 has 16 channels


def test_example_and_restore_image_sources(client):
    client.predict("chelsea", api_name="/features_example")
    assert "example 'chelsea'" in view(client)[2]
    client.predict(handle_file(_restore_png()), api_name="/features_restore_image")
    caption = view(client, block="up_path_1.0.conv_block")[2]
    assert "the restore tab's current input" in caption and "48 x 64" in caption and "decoder" in caption


def _restore_png():
    import tempfile

    path = tempfile.NamedTemporaryFile(suffix=".png", delete=False).name
    Image.fromarray((np.random.default_rng(3).random((48, 64, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_compare_two_variants(client, image_file):
    client.predict(handle_file(str(image_file)), api_name="/features_upload")
    caption, a, b, figure = client.predict(VARIANT, "registry/small_batch", "centre crop 256", "down_path_1.0", 2,
                                           api_name="/features_compare")
    assert "small_hin" in caption and "small_batch" in caption
    assert np.asarray(Image.open(a)).shape[2] == 3 and np.asarray(Image.open(b)).shape[2] == 3
    assert figure["type"] == "plotly"


def test_bad_upload_is_a_plain_error(client, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(Exception, match="notes.png is not an image file, or is in a format that cannot be read"):
        client.predict(handle_file(str(bad)), api_name="/features_upload")


@pytest.mark.parametrize("experiment", ["batch", "mode", "tile", "affine", "ratio"])
def test_learn_view_each_experiment(client, experiment):
    cube, cube_caption, figure, picture, caption, share = client.predict(
        "hin", 2, experiment, 4, 96, True, 0.5, api_name="/learn_view")
    assert cube["type"] == "plotly" and "Half InstanceNorm" in cube_caption
    assert "channel 2" in value(cube)["plot"]
    assert share == f"norm=hin&ch=2&exp={experiment}&bs=4&tile=96&affine=1&ratio=0.5"
    # With no checkpoint in the store, the experiments run the registry's untrained HIN variant.
    assert learn_tab.entry_for("half_instance") == "registry/small_hin"
    assert caption.endswith("Model: small_hin with untrained (random, seed 0) weights." + (
        " Its γ/β are still 1/0, so illustrative γ/β are drawn at random (seed 0)." if experiment == "affine" else ""))
    figure, picture = value(figure), value(picture)
    if experiment == "tile":
        assert np.asarray(Image.open(picture)).shape == (192, 5 * 192 + 24, 3) and figure is None
    else:
        assert figure["type"] == "plotly" and picture is None


def test_learn_load_share_string(client):
    result = client.predict("norm=bn&exp=ratio&ratio=0.75", api_name="/learn_load")
    assert result[:7] == ("bn", 0, "ratio", 4, 64, True, 0.75)
    assert result[-1] == "norm=bn&ch=0&exp=ratio&bs=4&tile=64&affine=1&ratio=0.75"
    assert "BatchNorm" in result[8]
    with pytest.raises(Exception, match="unknown setting"):
        client.predict("colour=red", api_name="/learn_load")
