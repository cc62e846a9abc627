import numpy as np
import pytest
import torch

from hinet import inference
from hinet.errors import ConfigError, ImageError
from hinet.inference import FAST_PATH, PLAIN_PATH, restore, run_model, tile_boxes
from hinet.registry import create_model, list_variants

TINY = list_variants("tiny_")


def smooth_image(h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.3 + 0.4 * yy, 0.5 + 0.3 * torch.sin(3 * xx), 0.2 + 0.5 * xx * yy])[None]


def tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name).eval()


def seam_ratio(out: torch.Tensor, column: int) -> float:
    """Mean horizontal step across `column` relative to the median step over all columns."""
    steps = (out[..., 1:] - out[..., :-1]).abs().mean(dim=(0, 1, 2))
    return (steps[column - 1] / steps.median()).item()


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("name", ["tiny_half_instance", "tiny_batch", "tiny_none"])
def test_single_tile_equals_whole_image(name, fast):
    model = tiny(name)
    image = smooth_image(40, 56)
    whole = restore(model, image, fast=fast)
    for tile in (64, 200):
        assert torch.equal(restore(model, image, tile=tile, overlap=16, fast=fast), whole)


def test_tile_boxes_cover_with_requested_overlap():
    for h, w, tile, overlap in [(96, 128, 64, 16), (100, 65, 64, 0), (3000, 4000, 512, 32), (30, 20, 64, 8)]:
        boxes = tile_boxes(h, w, tile, overlap)
        covered = np.zeros((h, w), dtype=int)
        for y0, x0, y1, x1 in boxes:
            assert (y1 - y0, x1 - x0) == (min(tile, h), min(tile, w))
            covered[y0:y1, x0:x1] += 1
        assert covered.min() >= 1
        for axis in (0, 1):
            starts = sorted({b[axis] for b in boxes})
            size = min(tile, (h, w)[axis])
            gaps = [b + size - a for a, b in zip(starts[1:], starts[:-1])]
            assert all(g >= overlap for g in gaps)
    assert tile_boxes(10, 10, 64, 32) == [(0, 0, 10, 10)]


@pytest.mark.parametrize("stats", ["whole", "local"])
@pytest.mark.parametrize("name", ["tiny_half_instance", "tiny_batch", "tiny_layer", "tiny_none"])
def test_tiles_run_in_batches_give_what_each_tile_gives_alone(name, stats, monkeypatch):
    model = tiny(name)
    image = torch.cat([smooth_image(72, 88), smooth_image(72, 88).flip(-1)])  # two images: N > 1 as well
    options = dict(tile=32, overlap=8, fast=False, stats=stats, train_patch=16 if stats == "local" else None)
    calls = []
    batched = restore(model, image, progress=lambda done, total: calls.append((done, total)), **options)
    assert len(calls) < calls[-1][1] == calls[-1][0] == len(tile_boxes(72, 88, 32, 8))  # fewer passes than tiles
    monkeypatch.setattr(inference, "TILE_BATCH_PIXELS", 1)  # one tile per pass
    alone = restore(model, image, **options)
    assert (batched - alone).abs().max().item() < 1e-5


@pytest.mark.parametrize("tile, overlap", [(0, 0), (64, 64), (64, -1)])
def test_tile_boxes_reject_bad_options(tile, overlap):
    with pytest.raises(ConfigError):
        tile_boxes(100, 100, tile, overlap)


def test_blended_tiles_of_a_statistics_free_model_barely_differ_from_whole():
    image = smooth_image(96, 128)
    plain = tiny("tiny_none")
    whole = restore(plain, image, fast=False)
    blended = restore(plain, image, tile=64, overlap=16, fast=False)
    # Only the zero padding of convolutions at tile borders differs, and blending hides it.
    assert (blended - whole).abs().max().item() < 0.01
    assert seam_ratio(blended, 64) < 1.3

    # With instance statistics and hard tiles, each tile is normalized on its own: visible seams.
    instance = tiny("tiny_instance")
    whole_in = restore(instance, image, fast=False)
    hard = restore(instance, image, tile=64, overlap=0, blend=False, fast=False)
    assert (hard - whole_in).abs().max().item() > 10 * (blended - whole).abs().max().item()
    assert seam_ratio(hard, 64) > 2.0
    assert seam_ratio(hard, 64) > 1.5 * seam_ratio(whole_in, 64)
    soft = restore(instance, image, tile=64, overlap=16, fast=False)
    assert seam_ratio(soft, 64) < seam_ratio(hard, 64) / 2


@pytest.mark.parametrize("name", TINY)
def test_any_size_gray_and_batches_through_restore(name):
    model = tiny(name)
    rng = np.random.default_rng(0)
    for h, w in [(17, 33), (1, 1)]:
        image = rng.random((h, w, 3), dtype=np.float32)
        out = restore(model, image)
        assert out.shape == (h, w, 3) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1
    gray = np.repeat(rng.random((21, 19, 1), dtype=np.float32), 3, axis=2)
    assert restore(model, gray, tile=16, overlap=4).shape == (21, 19, 3)

    batch = torch.rand(2, 3, 17, 33, generator=torch.Generator().manual_seed(1))
    out = restore(model, batch, fast=False)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    # Eval mode: every sample is restored independently of the others in the batch.
    for i in range(2):
        torch.testing.assert_close(out[i : i + 1], restore(model, batch[i : i + 1], fast=False), atol=1e-5, rtol=0)
    tiled = restore(model, batch, tile=16, overlap=4, fast=False)
    assert tiled.shape == batch.shape and torch.isfinite(tiled).all()


def test_tensor_output_is_not_clamped_but_numpy_is():
    model = tiny("tiny_none")
    with torch.no_grad():
        model.last.bias.fill_(2.0)  # pushes every output above 1
    image = smooth_image(16, 16)
    assert restore(model, image).min().item() > 1.0
    assert restore(model, image[0].permute(1, 2, 0).numpy()).max() == 1.0


def test_fast_path_stays_close_to_plain_fp32():
    model = tiny("tiny_half_instance")
    image = smooth_image(64, 64)
    plain = run_model(model, image, PLAIN_PATH)
    fast = run_model(model, image, FAST_PATH)
    assert fast.dtype == torch.float32
    assert (fast - plain).abs().max().item() < 0.02
    mse = torch.mean((fast - plain) ** 2).item()
    assert mse < 1e-5  # > 50 dB between the two outputs


def test_restore_keeps_training_mode_and_reports_progress():
    model = create_model("tiny_batch").train()
    calls = []
    restore(model, smooth_image(40, 40), tile=16, overlap=4, progress=lambda done, total: calls.append((done, total)))
    assert model.training
    done = [d for d, _ in calls]
    assert done == sorted(set(done)) and calls[-1] == (len(tile_boxes(40, 40, 16, 4)),) * 2
    assert {total for _, total in calls} == {calls[-1][1]} and calls[-1][1] > 1


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8, 4), dtype=np.float32),
        np.zeros((0, 8, 3), dtype=np.float32),
        np.full((8, 8, 3), np.nan, dtype=np.float32),
        np.zeros((8, 8, 3), dtype=np.uint8),
        torch.zeros(1, 1, 8, 8),
        torch.full((1, 3, 8, 8), float("inf")),
        torch.zeros(3, 8, 8),
        "not an image",
    ],
)
def test_bad_images_raise_image_error(bad):
    with pytest.raises(ImageError):
        restore(tiny("tiny_none"), bad)


def test_bad_tile_options_raise_config_error():
    with pytest.raises(ConfigError):
        restore(tiny("tiny_none"), smooth_image(20, 20), tile=16, overlap=16)
    with pytest.raises(ConfigError):
        restore(tiny("tiny_none"), smooth_image(20, 20), tile=-3)
