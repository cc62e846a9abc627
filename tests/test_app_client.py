"""The app served in-process and called through gradio_client's /restore endpoint (tiny untrained models)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app_harness import serve_tiny_app

pytestmark = pytest.mark.app

TINY = "registry/tiny_half_instance"
TINY_BN = "registry/tiny_batch"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from gradio_client import Client

    with serve_tiny_app(tmp_path_factory.mktemp("runs")) as url:
        yield Client(url, verbose=False)


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
    }


def _restore(client, image=None, **kwargs):
    from gradio_client import handle_file

    args = dict(image=handle_file(str(image)) if image else None, example=None, ground_truth=None, variants=[TINY],
                task="denoise", degrade_first=False)
    args.update(kwargs)
    return client.predict(**args, api_name="/restore")


def _metrics(output) -> dict:
    table = output[3]
    return {"headers": table["headers"], "rows": table["data"]}


def test_restore_upload_without_gt_has_timing_but_no_metrics(client, images):
    slider, overview, grid, metrics, downloads, summary, current = _restore(client, images["noisy"])
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
        (dict(image=images["noisy"], variants=[TINY, TINY_BN, "registry/tiny_none", "registry/tiny_layer",
                                               "registry/tiny_group"]), "at most 4"),
        (dict(image=None), "Upload an image"),
    ]
    for kwargs, message in cases:
        with pytest.raises(AppError) as info:
            _restore(client, **kwargs)
        assert message.lower() in str(info.value).lower()
        assert "Traceback" not in str(info.value)
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
