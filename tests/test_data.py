import importlib.util

import numpy as np
import pytest
from PIL import Image

from hinet import data
from hinet.degradations import motion_kernel
from hinet.errors import ConfigError, ImageError
from hinet.metrics import psnr
from hinet.tasks import TASK_NAMES, TASKS


def smooth_image(h=64, w=80, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / 16.0
    image = np.stack([0.5 + 0.3 * np.sin(x + p) * np.cos(y - p) for p in (0.0, 1.0, 2.0)], axis=2)
    return (image + 0.05 * rng.random((h, w, 3))).astype(np.float32)


def asymmetric(h=6, w=6):
    return np.arange(h * w * 3, dtype=np.float32).reshape(h, w, 3)


# ---- degradations --------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [5, 25, 50])
def test_noise_hits_sigma(sigma):
    clean = np.full((256, 256, 3), 0.5, np.float32)
    noisy = data.degrade(clean, "denoise", rng=1, sigma=sigma)
    measured = float((noisy - clean).std() * 255)
    assert abs(measured - sigma) / sigma < 0.03
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape


def test_noise_is_not_clipped():
    noisy = data.degrade(np.zeros((64, 64, 3), np.float32), "denoise", rng=0, sigma=25)
    assert noisy.min() < 0


@pytest.mark.parametrize("length", [1, 5, 15, 24])
def test_motion_kernel_extent_and_sum(length):
    horizontal = motion_kernel(length, 0)
    assert horizontal.sum() == pytest.approx(1.0, abs=1e-5)
    columns = horizontal.sum(axis=0)
    assert np.count_nonzero(horizontal.sum(axis=1)) == 1
    if length % 2:  # odd: exactly `length` full pixels
        assert np.count_nonzero(columns) == length
        assert np.allclose(columns[columns > 0], 1 / length)
    else:  # even: length - 1 full pixels and two half pixels
        assert np.count_nonzero(columns) == length + 1
        assert np.allclose(sorted(columns[columns > 0])[:2], 0.5 / length)
    vertical = motion_kernel(length, 90)
    assert np.count_nonzero(vertical.sum(axis=1)) == np.count_nonzero(columns)
    assert np.count_nonzero(vertical.sum(axis=0)) == 1


@pytest.mark.parametrize("angle", [30, -60, 120])
def test_motion_kernel_orientation(angle):
    kernel = motion_kernel(21, angle).astype(np.float64)
    ys, xs = np.mgrid[0 : kernel.shape[0], 0 : kernel.shape[1]]
    cy, cx = (kernel * ys).sum(), (kernel * xs).sum()
    assert cy == pytest.approx(kernel.shape[0] // 2, abs=1e-6) and cx == pytest.approx(kernel.shape[1] // 2, abs=1e-6)
    # principal axis of the kernel's mass, with rows pointing down (so y is negated for "up")
    cov = np.cov(np.stack([(xs - cx).ravel(), -(ys - cy).ravel()]), aweights=kernel.ravel())
    values, vectors = np.linalg.eigh(cov)
    axis = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1])) % 180
    assert min(abs(axis - angle % 180), 180 - abs(axis - angle % 180)) < 1.0
    assert values[0] < 0.05 * values[-1]


def test_deblur_same_size_and_user_kernel():
    clean = smooth_image()
    blurred = data.degrade(clean, "deblur", length=9, angle=0)
    assert blurred.shape == clean.shape
    box = np.zeros((9, 9))
    box[4, :] = 3.0  # unnormalized on purpose
    assert np.allclose(data.degrade(clean, "deblur", kernel=box, length=9), blurred, atol=2e-3)
    # horizontal blur leaves a horizontally constant image unchanged
    rows = np.repeat(np.linspace(0, 1, 32, dtype=np.float32)[:, None, None], 40, 1).repeat(3, 2)
    assert np.allclose(data.degrade(rows, "deblur", length=15, angle=0), rows, atol=1e-5)
    with pytest.raises(ConfigError):
        data.degrade(clean, "deblur", kernel=-box)
    with pytest.raises(ConfigError):
        data.degrade(clean, "denoise", kernel=box)


def test_jpeg_quality_orders_psnr():
    clean = smooth_image(96, 96)
    low = psnr(data.degrade(clean, "jpeg", quality=10), clean)
    high = psnr(data.degrade(clean, "jpeg", quality=40), clean)
    assert low < high - 1.0


def test_rain_density_is_monotone_and_deterministic():
    clean = np.full((128, 128, 3), 0.3, np.float32)
    fractions = [
        float((np.abs(data.degrade(clean, "derain", rng=3, density=d) - clean) > 0.02).any(2).mean())
        for d in (0.1, 0.3, 0.5, 0.8, 1.0)
    ]
    assert all(a < b for a, b in zip(fractions, fractions[1:])), fractions
    assert fractions[0] > 0
    rain_a = data.degrade(clean, "derain", rng=np.random.default_rng(7))
    rain_b = data.degrade(clean, "derain", rng=np.random.default_rng(7))
    assert np.array_equal(rain_a, rain_b) and rain_a.max() <= 1.0
    assert data.degrade(clean, "derain", density=0.0).tolist() == clean.tolist()


def test_strength_validation_and_parsing():
    with pytest.raises(ConfigError, match="out of range"):
        data.degrade(smooth_image(), "denoise", sigma=500)
    with pytest.raises(ConfigError, match="no strength parameter"):
        data.degrade(smooth_image(), "jpeg", sigma=5)
    with pytest.raises(ConfigError, match="unknown task"):
        data.degrade(smooth_image(), "dehaze")
    with pytest.raises(ImageError):
        data.degrade(np.zeros((8, 8)), "denoise")
    assert data.parse_level("denoise", "15") == {"sigma": 15.0}
    assert data.parse_level("deblur", "length=9, angle=45") == {"length": 9.0, "angle": 45.0}
    assert data.parse_level("jpeg", "20") == {"quality": 20}
    with pytest.raises(ConfigError):
        data.parse_level("deblur", "length=abc")
    for task in TASK_NAMES:
        assert data.validate_strength(task) == TASKS[task].defaults


def test_sample_strength_blind_ranges():
    rng = np.random.default_rng(0)
    for task in TASK_NAMES:
        assert data.sample_strength(task, rng, blind=False) == TASKS[task].defaults
        draws = [data.sample_strength(task, rng, blind=True) for _ in range(50)]
        for name, (low, high) in TASKS[task].blind_ranges.items():
            values = [d[name] for d in draws]
            assert low <= min(values) and max(values) <= high and len(set(values)) > 5


# ---- crops, augmentation, batches ----------------------------------------------------------------


def test_dihedral_distinct_and_invertible():
    image = asymmetric(5, 7)
    outs = [data.dihedral(image, k) for k in range(8)]
    assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8
    for k, out in enumerate(outs):
        assert np.array_equal(data.dihedral_inverse(out, k), image)
    with pytest.raises(ConfigError):
        data.dihedral(image, 8)


def test_random_crop_same_window_and_padding():
    lq, gt = asymmetric(20, 30), asymmetric(20, 30) * 2
    a, b = data.random_crop([lq, gt], 8, np.random.default_rng(0))
    assert a.shape == (8, 8, 3) and np.array_equal(b, a * 2)
    again = data.random_crop([lq, gt], 8, np.random.default_rng(0))[0]
    assert np.array_equal(a, again)
    small = data.random_crop(asymmetric(5, 6), (16, 20), 0)
    assert small.shape == (16, 20, 3)
    with pytest.raises(ImageError):
        data.random_crop([lq, asymmetric(10, 10)], 4)


def test_make_batch_deterministic_and_shaped():
    pool = [smooth_image(64, 64, s) for s in range(3)]
    for task in TASK_NAMES:
        lq, gt = data.make_batch(pool, task, batch=2, patch=32, rng=np.random.default_rng([1, 5, 0]))
        lq2, gt2 = data.make_batch(pool, task, batch=2, patch=32, rng=np.random.default_rng([1, 5, 0]))
        assert lq.shape == gt.shape == (2, 3, 32, 32) and lq.dtype == gt.dtype
        assert str(lq.dtype) == "torch.float32"
        assert (lq == lq2).all() and (gt == gt2).all()
        assert not (lq == gt).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deblur_pairs_have_no_border_artifact(seed):
    # the blur reads real pixels around the patch: the pair equals a window of the whole (transformed)
    # image blurred at once, not a blur of the patch with an artificial mirrored border
    clean = smooth_image(64, 64, seed)
    lq, gt = data.make_pair([clean], "deblur", 24, np.random.default_rng(seed), permute_channels=False)
    found = False
    for k in range(8):
        whole = data.dihedral(clean, k)
        for y in range(whole.shape[0] - 23):
            for x in range(whole.shape[1] - 23):
                if np.array_equal(whole[y : y + 24, x : x + 24], gt):
                    assert np.allclose(data.degrade(whole, "deblur")[y : y + 24, x : x + 24], lq, atol=1e-5)
                    found = True
    assert found and lq.shape == gt.shape == (24, 24, 3)


def test_synthetic_pairs_seed_and_rank():
    pool = [smooth_image(48, 48, s) for s in range(4)]

    def first(seed, rank, world):
        stream = iter(data.SyntheticPairs(pool, "denoise", patch=16, seed=seed, rank=rank, world_size=world))
        return [next(stream) for _ in range(3)]

    a, b = first(0, 0, 2), first(0, 0, 2)
    assert all((x[0] == y[0]).all() and (x[1] == y[1]).all() for x, y in zip(a, b))
    other_rank = first(0, 1, 2)
    assert not all((x[1] == y[1]).all() for x, y in zip(a, other_rank))
    other_seed = first(1, 0, 2)
    assert not all((x[1] == y[1]).all() for x, y in zip(a, other_seed))
    assert a[0][0].shape == (3, 16, 16)
    lq, gt = data.SyntheticPairs(pool, "jpeg", patch=16, blind=True).batch(4)
    assert lq.shape == (4, 3, 16, 16)
    with pytest.raises(ConfigError):
        data.SyntheticPairs(pool, "denoise", rank=2, world_size=2)
    with pytest.raises(ConfigError):
        data.SyntheticPairs(pool, "denoise", strength={"sigma": -1})


# ---- sources -------------------------------------------------------------------------------------


def test_dead_leaves_cache_and_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("HINET_CACHE", str(tmp_path))
    images = data.dead_leaves(3, 32, seed=4)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0.05
    assert list(tmp_path.glob("dead_leaves_n3_s32_seed4.npz"))
    assert np.array_equal(data.dead_leaves(3, 32, seed=4), images)  # from the cache
    assert np.array_equal(data.dead_leaves(2, 32, seed=4, cache=False), images[:2])
    assert not np.array_equal(data.dead_leaves(1, 32, seed=5, cache=False)[0], images[0])


def test_skimage_and_pywt_images():
    images = data.skimage_images()
    assert {"astronaut", "camera", "coffee"} <= set(images)
    for image in images.values():
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.float32
        assert image.min() >= 0 and image.max() <= 1
    wavelets = data.pywt_images()
    assert set(wavelets) == {"aero", "ascent", "camera"}


def test_training_pool_and_validation_split():
    pool = data.training_pool(seed=0, n_dead_leaves=2, dead_leaves_size=32, scales=(1.0, 0.5))
    assert len(pool) == len(pool.names)
    assert sum(n.startswith("dead_leaves/") for n in pool.names) == 2
    assert any(n.endswith("@0.5") for n in pool.names)
    assert "pywt/camera@1" not in pool.names  # the same picture as skimage's camera
    train, val = data.split_validation(pool, 3, seed=1)
    val_groups = {n.rsplit("@", 1)[0] for n in val.names}
    assert len(val_groups) == 3 and all(n.endswith("@1") for n in val.names)
    assert not val_groups & {n.rsplit("@", 1)[0] for n in train.names}
    assert data.split_validation(pool, 3, seed=1)[1].names == val.names
    plain_train, plain_val = data.split_validation(list(range(10)), 2, seed=0)
    assert len(plain_train) == 8 and len(plain_val) == 2


def save_png(path, array):
    Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path)


def test_folder_images(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        data.folder_images(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no images"):
        data.folder_images(tmp_path)
    save_png(tmp_path / "a.png", smooth_image(20, 24))
    images = data.folder_images(tmp_path)
    assert list(images) == ["a.png"] and images["a.png"].shape == (20, 24, 3)


def test_paired_folder(tmp_path):
    lq_dir, gt_dir = tmp_path / "lq", tmp_path / "gt"
    with pytest.raises(ConfigError, match="does not exist"):
        data.PairedFolder(lq_dir, gt_dir)
    lq_dir.mkdir()
    gt_dir.mkdir()
    with pytest.raises(ConfigError, match="no images"):
        data.PairedFolder(lq_dir, gt_dir)
    image = smooth_image(16, 16)
    save_png(lq_dir / "x.jpg", image)  # a different extension still pairs by stem
    save_png(gt_dir / "x.png", image)
    save_png(lq_dir / "only_lq.png", image)
    with pytest.raises(ConfigError, match="only_lq.png"):
        data.PairedFolder(lq_dir, gt_dir)
    (lq_dir / "only_lq.png").unlink()
    pairs = data.PairedFolder(lq_dir, gt_dir)
    assert pairs.names == ["x"] and len(pairs) == 1
    name, lq, gt = next(iter(pairs))
    assert name == "x" and lq.shape == gt.shape == (16, 16, 3)
    save_png(gt_dir / "y.png", smooth_image(16, 20))
    save_png(lq_dir / "y.png", smooth_image(16, 16))
    with pytest.raises(ImageError, match="same size"):
        data.PairedFolder(lq_dir, gt_dir)[1]


def test_test_images_from_sporco():
    if importlib.util.find_spec("sporco") is None:
        pytest.skip("sporco is not installed (pip install --no-deps sporco): no test images")
    images = data.test_images()
    assert {"kodim23", "monarch", "sail", "tulips"} <= set(images)
    assert images["kodim23"].shape in {(512, 768, 3), (768, 512, 3)}
    assert all(v.dtype == np.float32 for v in images.values())


def test_dead_leaves_cache_is_written_atomically_with_no_temp_left(tmp_path, monkeypatch):
    monkeypatch.setenv("HINET_CACHE", str(tmp_path))
    data.dead_leaves(2, 16, seed=1)
    assert [p.name for p in tmp_path.iterdir()] == ["dead_leaves_n2_s16_seed1.npz"]


@pytest.mark.parametrize("task, text", [("denoise", "sigma=25"), ("deblur", "length=15,angle=30")])
def test_format_level_round_trips_through_parse_level(task, text):
    strength = data.parse_level(task, text)
    assert data.parse_level(task, data.format_level(strength)) == strength
    assert data.format_level({"sigma": 25.0}) == "sigma=25"
