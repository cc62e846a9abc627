"""Client tests of the feature-maps and learn tabs: every named endpoint, through gradio_client."""

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402  after the skip: gradio is an optional extra

from app import features_tab, learn_logic, learn_tab  # noqa: E402  (imports gradio)
from app.context import AppContext  # noqa: E402  (imports gradio)
from app.models import ModelStore  # noqa: E402  (imports gradio)

pytestmark = pytest.mark.app

VARIANT = "registry/small_hin"


RESTORE_INPUT = np.random.default_rng(3).normal(0.5, 0.3, (48, 64, 3)).astype(np.float32)  # beyond [0, 1] too


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A model store without checkpoints, so every model is the registry's untrained one whatever results/
    or runs/ hold on this machine."""
    empty = tmp_path_factory.mktemp("no_checkpoints")
    return ModelStore(results_dir=empty, runs_dir=empty)


@pytest.fixture(scope="module")
def client(store):
    """A demo made of the two tabs alone, with a stand-in for the restore tab's model input."""
    with gr.Blocks() as demo:
        with gr.Tabs() as tabs:
            ctx = AppContext(tabs=tabs, blocks=demo, store=store, restore_input=gr.State(RESTORE_INPUT))
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
    assert {
        "/features_view",
        "/features_upload",
        "/features_example",
        "/features_compare",
        "/features_restore_image",
        "/learn_view",
        "/learn_load",
    } <= names


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
    client.predict(api_name="/features_restore_image")  # the session's restore input: nothing to send
    caption = view(client, block="up_path_1.0.conv_block")[2]
    assert "the restore tab's current input" in caption and "48 x 64" in caption and "decoder" in caption


def test_the_restore_input_source_keeps_every_float():
    from app.feature_logic import restore_input_source
    from hinet.errors import ImageError

    source = restore_input_source(RESTORE_INPUT)
    assert source["pixels"] is RESTORE_INPUT and "48x64" in source["key"]
    with pytest.raises(ImageError, match="no model input yet"):
        restore_input_source(None)


def test_compare_two_variants(client, image_file):
    client.predict(handle_file(str(image_file)), api_name="/features_upload")
    caption, a, b, figure = client.predict(
        VARIANT, "registry/small_batch", "centre crop 256", "down_path_1.0", 2, api_name="/features_compare"
    )
    assert "small_hin" in caption and "small_batch" in caption
    assert np.asarray(Image.open(a)).shape[2] == 3 and np.asarray(Image.open(b)).shape[2] == 3
    assert figure["type"] == "plotly"


def test_bad_upload_is_a_plain_error(client, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(Exception, match="notes.png is not an image file, or is in a format that cannot be read"):
        client.predict(handle_file(str(bad)), api_name="/features_upload")


def test_truncated_and_oversized_uploads_are_plain_errors_and_the_tab_keeps_serving(client, tmp_path, image_file):
    import io
    import struct
    import zlib

    from gradio_client.exceptions import AppError

    data = image_file.read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    # A valid 1 x 1 PNG whose header claims 20000 x 10000 pixels: refused before any decoding.
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    header_bytes = bytearray(buffer.getvalue())
    header = struct.pack(">II", 20000, 10000) + bytes(header_bytes[24:29])
    header_bytes[16:29] = header
    header_bytes[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    oversized = tmp_path / "oversized.png"
    oversized.write_bytes(bytes(header_bytes))
    for path, message in ((truncated, "truncated.png is damaged or truncated"), (oversized, "too large")):
        with pytest.raises(AppError, match=message) as info:
            client.predict(handle_file(str(path)), api_name="/features_upload")
        assert "upstream Gradio app has raised an exception" not in str(info.value)
        client.predict(handle_file(str(image_file)), api_name="/features_upload")
        assert "wide.png" in view(client)[2]


@pytest.mark.parametrize("experiment", ["batch", "mode", "tile", "affine", "ratio"])
def test_learn_view_each_experiment(client, store, experiment):
    cube, cube_caption, figure, picture, caption, share = client.predict(
        "hin", 2, experiment, 4, 96, True, 0.5, api_name="/learn_view"
    )
    assert cube["type"] == "plotly" and "Half InstanceNorm" in cube_caption
    assert "channel 2" in value(cube)["plot"]
    assert share == f"norm=hin&ch=2&exp={experiment}&bs=4&tile=96&affine=1&ratio=0.5"
    # With no checkpoint in the store, the experiments run the registry's untrained HIN variant.
    assert learn_logic.entry_for(store, "half_instance") == "registry/small_hin"
    assert caption.endswith(
        "Model: small_hin with untrained (random, seed 0) weights."
        + (
            " Its γ/β are still 1/0, so illustrative γ/β are drawn at random (seed 0)."
            if experiment == "affine"
            else ""
        )
    )
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
