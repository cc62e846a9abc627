"""The app served in-process and called through gradio_client's /restore endpoint (tiny untrained models),
and the restore tab's model input as the feature tab receives it."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app_harness import serve_tiny_app, tiny_store

pytestmark = pytest.mark.app

TINY = "registry/tiny_half_instance"
TINY_BN = "registry/tiny_batch"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(store, url, client) of one app served for the module."""
    from gradio_client import Client

    store = tiny_store(tmp_path_factory.mktemp("runs"))
    with serve_tiny_app(store) as url:
        yield store, url, Client(url, verbose=False)


@pytest.fixture(scope="module")
def client(served):
    return served[2]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from hinet.image import save_image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    clean = rng.random((80, 96, 3)).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    # A valid 1 x 1 PNG whose header claims 20000 x 10000 pixels: refused before any decoding.
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    header = struct.pack(">II", 20000, 10000) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    huge = folder / "huge.png"
    huge.write_bytes(bytes(data))
    cmyk = folder / "cmyk.jpg"
    Image.fromarray((clean * 255).astype(np.uint8)).convert("CMYK").save(cmyk, quality=95)
    return {
        "huge": huge,
        "cmyk": cmyk,
        "clean": save_image(folder / "clean.png", clean),
        "noisy": save_image(folder / "noisy.png", noisy),
        "corrupt": corrupt,
        "empty": empty,
        "small_gt": save_image(folder / "small_gt.png", clean[:40]),
        "under_ssim": save_image(folder / "under_ssim.png", clean[:8, :10]),
    }


def _restore(client, image=None, **kwargs):
    from gradio_client import handle_file

    args = dict(
        image=handle_file(str(image)) if image else None,
        example=None,
        ground_truth=None,
        variants=[TINY],
        task="denoise",
        degrade_first=False,
    )
    args.update(kwargs)
    return client.predict(**args, api_name="/restore")


def _metrics(output) -> dict:
    table = output[3]
    return {"headers": table["headers"], "rows": table["data"]}


def test_restore_upload_without_gt_has_timing_but_no_metrics(client, images):
    slider, overview, grid, metrics, downloads, summary = _restore(client, images["noisy"])
    assert len(slider) == 2 and all(str(p).endswith(".png") for p in slider)
    table = _metrics((slider, overview, grid, metrics))
    assert table["headers"] == ["variant", "seconds"] and len(table["rows"]) == 1
    assert len(grid) == 2  # input and one variant, no GT panel
    assert len(downloads) == 1 and str(downloads[0]).endswith(".png")
    assert "No ground truth" in summary


def test_compare_two_variants_with_gt_has_metrics(client, images):
    from gradio_client import handle_file

    output = _restore(client, images["noisy"], variants=[TINY, TINY_BN], ground_truth=handle_file(str(images["clean"])))
    table = _metrics(output)
    assert table["headers"] == ["variant", "PSNR (dB)", "SSIM", "seconds"]
    assert len(table["rows"]) == 3  # the input baseline and two variants
    psnrs = [row[1] for row in table["rows"]]
    assert all(isinstance(p, (int, float)) and 0 < p < 100 for p in psnrs)
    assert len(output[2]) == 4  # input, two variants, GT


def test_example_degraded_with_seed_is_reproducible(client):
    first = _metrics(_restore(client, example="chelsea", degrade_first=True, seed=7, denoise_sigma=30))
    second = _metrics(_restore(client, example="chelsea", degrade_first=True, seed=7, denoise_sigma=30))
    assert first["rows"][0][1] == second["rows"][0][1]  # same degraded input
    assert first["rows"][0][1] < 25  # sigma 30 noise


def test_bad_inputs_give_plain_errors_and_the_app_keeps_serving(client, images):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    cases = [
        (dict(image=images["corrupt"]), "not an image"),
        (dict(image=images["empty"]), "empty"),
        (dict(image=images["huge"]), "too large"),
        (dict(image=images["noisy"], tiling="tiles", tile_size=100), "multiple of 32"),
        (dict(image=images["noisy"], ground_truth=handle_file(str(images["small_gt"]))), "ground truth"),
        (dict(image=images["noisy"], variants=[]), "at least one"),
        (
            dict(
                image=images["noisy"],
                variants=[TINY, TINY_BN, "registry/tiny_none", "registry/tiny_layer", "registry/tiny_group"],
            ),
            "at most 4",
        ),
        (dict(image=None), "Upload an image"),
        (dict(image=images["noisy"], variants=["no_such_model"]), "unknown model 'no_such_model'"),
        (dict(image=images["noisy"], variants=["runs/never_trained"]), "unknown model 'runs/never_trained'"),
        (dict(image=images["noisy"], degrade_first=True, seed=-1), "less than minimum value 0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(AppError) as info:
            _restore(client, **kwargs)
        assert message.lower() in str(info.value).lower()
        assert "Traceback" not in str(info.value) and "Internal error" not in str(info.value)
        assert "not available any more" not in str(info.value)
        # The very next call still works.
        assert _metrics(_restore(client, images["noisy"]))["headers"] == ["variant", "seconds"]


def test_other_modes_are_read_not_refused(client, images):
    output = _restore(client, images["cmyk"])
    assert "96 x 80 px" in output[5]


def test_tiled_restore_reports_its_tiles(client, images):
    output = _restore(client, images["noisy"], tiling="tiles", tile_size=64, overlap=16, show_seams=True)
    assert "Tiled: 4 tiles of up to 64 px, zero overlap, no blending" in output[5]


def test_statistics_protocols_are_offered_and_say_what_they_did(client, images):
    from app.restore_tab import LOCAL, TRAIN_TILES

    tiled = _restore(client, images["noisy"], tiling=TRAIN_TILES)
    assert "Test-time statistics per model" in tiled[5] and "tiled: statistics per tile (64 px tiles" in tiled[5]
    assert "assuming 64 px" in tiled[5]  # an untrained registry model records no training patch
    local = _restore(client, images["noisy"], tiling=LOCAL)
    assert "local: statistics over a sliding" in local[5]


def test_an_image_too_small_for_ssim_is_restored_and_says_why_ssim_is_missing(client, images):
    slider, overview, grid, metrics, downloads, summary = _restore(client, images["under_ssim"], degrade_first=True)
    assert len(slider) == 2 and len(downloads) == 2  # the degraded input and the restoration
    table = _metrics((slider, overview, grid, metrics))
    assert table["headers"] == ["variant", "PSNR (dB)", "SSIM", "seconds"]
    assert all(isinstance(row[1], (int, float)) and row[2] is None for row in table["rows"])
    assert "No SSIM: its 11 x 11 window does not fit a 10 x 8 px image" in summary


def test_the_feature_tab_receives_the_restore_tabs_float_input_unrounded(client, monkeypatch):
    """The restore tab's model input reaches the feature tab server-side: the same float32 values, neither
    rounded to 8 bits nor clipped to [0, 1] (sigma 50 noise goes well outside it)."""
    from app import feature_logic
    from app.restore_logic import example_path
    from hinet.data import degrade
    from hinet.image import load_image

    received = []
    capture = feature_logic.capture_features

    def spy(model, pixels, **kwargs):
        received.append(pixels)
        return capture(model, pixels, **kwargs)

    monkeypatch.setattr(feature_logic, "capture_features", spy)
    _restore(client, example="chelsea", degrade_first=True, seed=7, denoise_sigma=50)
    client.predict(api_name="/features_restore_image")
    caption = client.predict(TINY, "centre crop 256", "down_path_1.0", 2, 0, api_name="/features_view")[2]
    assert "the restore tab's current input" in caption
    expected = degrade(load_image(example_path("chelsea")).pixels, "denoise", rng=np.random.default_rng(7), sigma=50)
    pixels = received[-1]
    assert pixels.dtype == np.float32 and np.array_equal(pixels, expected)
    assert pixels.min() < 0 and pixels.max() > 1  # not clipped
    assert not np.allclose(pixels * 255, np.rint(pixels * 255))  # not on the 8-bit grid


def test_the_feature_tabs_restore_image_endpoint_takes_no_image(client, tmp_path_factory):
    """/features_restore_image reads the session's restore input: there is no image for a caller to send (own
    images go to /features_upload, read by the project's image loader), and before any restore it says so."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/features_restore_image"]
    assert endpoint["parameters"] == []
    fresh = Client(client.src, verbose=False)
    with pytest.raises(AppError, match="the restore tab has no model input yet") as info:
        fresh.predict(api_name="/features_restore_image")
    assert "upstream Gradio app has raised an exception" not in str(info.value)


def test_the_restore_endpoint_keeps_its_inputs_and_outputs(client):
    from hinet.tasks import TASKS

    endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/restore"]
    names = [parameter["parameter_name"] for parameter in endpoint["parameters"]]
    strengths = [f"{task.name}_{spec.name}" for task in TASKS.values() for spec in task.strengths]
    assert names == [
        "image",
        "example",
        "degrade_first",
        "seed",
        "ground_truth",
        "task",
        "variants",
        "slider_variant",
        "tiling",
        "tile_size",
        "overlap",
        "show_seams",
        "center_x",
        "center_y",
        "zoom",
        "show_difference",
        *strengths,
    ]
    assert len(endpoint["returns"]) == 6  # slider, overview, zoom grid, metrics, downloads, summary


def test_the_first_views_api_call_computes_the_same_numbers(served):
    """The call shown under the metrics ("how to compute them again"), run as it is against the app."""
    from app import restore_tab

    store, url, _ = served
    state = restore_tab.first_view(store)[3]
    try:
        code = restore_tab.api_call(state).replace("URL_OF_THIS_APP", repr(url))
        scope: dict = {}
        exec(code, scope)  # the app's own generated snippet
        table = scope["metrics"]
        shown = restore_tab.metrics_table(state["result"])
        assert table["headers"] == list(shown.columns)
        assert [row[:3] for row in table["data"]] == [
            [row[0], row[1], row[2]] for row in shown.itertuples(index=False)
        ]  # same variants, PSNR and SSIM: only the timings differ
    finally:
        restore_tab.delete_download_dir(state)
