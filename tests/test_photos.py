"""The Debian photo set: manifest, hashes, preparation, fixed validation crops, area-proportional sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hinet import data, photos
from hinet.errors import ConfigError

needs_photos = pytest.mark.skipif(
    not photos.available(), reason="photo packages not installed: " + photos.install_command()
)


@pytest.fixture(autouse=True)
def _hermetic(tmp_path, monkeypatch):
    monkeypatch.setenv("HINET_CACHE", str(tmp_path / "cache"))


def test_manifest_lists_packages_versions_licences_and_disjoint_splits():
    entries = photos.manifest()
    assert len(entries) == 24
    assert {p.package for p in entries} == {
        "mate-backgrounds",
        "plasma-workspace-wallpapers",
        "lomiri-wallpapers-20.04",
    }
    assert all(len(p.sha256) == 64 and p.licence and p.version for p in entries)
    train, val = photos.manifest("train"), photos.manifest("validation")
    assert len(val) == 5 and len(train) + len(val) == len(entries)
    assert not {p.name for p in train} & {p.name for p in val}
    assert len({p.name for p in entries}) == len(entries)
    with pytest.raises(ConfigError, match="split"):
        photos.manifest("test")


def test_test_set_is_not_among_the_photos():
    assert not any("sporco" in p.path for p in photos.manifest())


@needs_photos
def test_every_installed_photo_matches_its_manifest_hash():
    for photo in photos.manifest():
        photos.verify(photo)  # raises on a changed file


def test_a_changed_file_is_refused(tmp_path):
    fake = tmp_path / "x.jpg"
    fake.write_bytes(b"not the photo")
    photo = photos.Photo("x", "mate-backgrounds", "1", str(fake), "0" * 64, "GPL-2+", "train")
    with pytest.raises(ConfigError, match="sha256"):
        photos.verify(photo)
    with pytest.raises(ConfigError, match="apt-get install"):
        photos.verify(photos.Photo("y", "mate-backgrounds", "1", str(tmp_path / "gone.jpg"), "0" * 64, "GPL", "train"))


def test_missing_packages_are_named_with_the_install_command(monkeypatch, tmp_path):
    absent = [photos.Photo(**dict(p.__dict__, path=str(tmp_path / "none.jpg"))) for p in photos.manifest()]
    monkeypatch.setattr(photos, "manifest", lambda split=None: [p for p in absent if split in (None, p.split)])
    assert photos.missing_packages() == sorted({p.package for p in absent})
    with pytest.raises(ConfigError, match="lomiri-wallpapers-20.04.*data.photos"):
        photos.require_available()
    assert photos.main([]) == 2


@needs_photos
def test_prepared_photos_are_downscaled_cached_and_validation_crops_are_fixed(tmp_path):
    photo = next(p for p in photos.manifest("validation"))
    image = photos.prepared(photo)
    assert max(image.shape[:2]) == 1280 and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
    assert any((tmp_path / "cache" / "photos").glob(f"{photo.name}_*.png"))
    again = photos.prepared(photo)  # from the cache
    assert np.array_equal(image, again)
    crops = photos.validation_crops(192)
    assert len(crops) == 2 * len(photos.manifest("validation")) >= 8
    assert all(c.shape == (192, 192, 3) for _, c in crops)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(crops, photos.validation_crops(192)))
    assert len({label for label, _ in crops}) == len(crops)


@needs_photos
def test_training_pool_with_photos_never_holds_validation_photos():
    pool = data.training_pool(n_dead_leaves=2, dead_leaves_size=64, scales=(1.0,), photos=True)
    used = {name.split("/", 1)[1].rsplit("@", 1)[0] for name in pool.names if name.startswith("photos/")}
    assert used == {p.name for p in photos.manifest("train")}


def test_images_are_drawn_in_proportion_to_their_area():
    images = [np.zeros((10, 10, 3), np.float32), np.zeros((30, 10, 3), np.float32), np.zeros((20, 30, 3), np.float32)]
    area = data.cumulative_area(images)
    rng = np.random.default_rng(0)
    draws = np.bincount([data.pick_by_area(area, rng) for _ in range(40000)], minlength=3) / 40000
    np.testing.assert_allclose(draws, np.array([100, 300, 600]) / 1000, atol=0.01)
    # make_pair uses it: a 1x1 image next to a large one is almost never the source of a crop
    sources = [np.full((1, 1, 3), 1.0, np.float32), np.zeros((200, 200, 3), np.float32)]
    rng = np.random.default_rng(1)
    picked_tiny = sum(
        data.make_pair(sources, "jpeg", 8, rng, strength={"quality": 90})[1].mean() > 0.5 for _ in range(400)
    )
    assert picked_tiny <= 3


def test_repo_has_the_manifest_beside_the_module():
    assert Path(photos.MANIFEST_PATH).is_file()
