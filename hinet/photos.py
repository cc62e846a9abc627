"""Natural photographs from Debian packages: natural-image training data and the validation set.

`pip` packages ship only about 20 natural images, so a model trained on them learns mostly dead leaves.
Three Debian packages hold 24 usable photographs (flowers, grass, water, bark, boats, a forest...). They
are installed with apt, never downloaded at run time, and listed in `photos_manifest.json` beside this
file with package, version, path, sha256 and licence, so a run can say exactly what it saw:

    python -m hinet.photos --install      # apt-get install the packages (root), then prepare
    python -m hinet.photos                # check every file's hash and prepare the cache

Preparing downscales each photo to at most `max_side` (1280) pixels on its long side with Pillow's
Lanczos filter, which anti-aliases and attenuates the JPEG blocking of the originals (by 2-5x in each
direction), and caches it as an 8-bit PNG in `hinet.io.cache_dir()/photos/`, named by the manifest's
hash: the installed file's hash is checked when a photo is prepared, not on every read of the cache.
Multi-scale copies are made later by `hinet.data.training_pool`, like for every other source.

The manifest marks five photos `validation`: they never enter training, and `validation_crops` cuts
fixed crops from them (same crops for every run and seed), the set checkpoint selection uses. The test
set (sporco's Kodak images) is not among these packages' files.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hinet.errors import ConfigError
from hinet.io import atomic_write, cache_dir
from hinet.logs import add_verbosity_flags, configure_logging, verbosity

log = logging.getLogger(__name__)

MANIFEST_PATH = Path(__file__).with_name("photos_manifest.json")
SPLITS = ("train", "validation")
VALIDATION_CROPS_PER_PHOTO = 2
_VALIDATION_CROP_SEED = 0xC407  # crop positions depend only on this, the photo and the crop size


@dataclass(frozen=True)
class Photo:
    name: str
    package: str
    version: str
    path: str
    sha256: str
    licence: str
    split: str

    def record(self) -> dict:
        """What a run folder records about this photo (enough to find and verify the exact file)."""
        return {
            "name": self.name,
            "package": self.package,
            "version": self.version,
            "path": self.path,
            "sha256": self.sha256,
        }


@functools.lru_cache(maxsize=1)
def _manifest() -> dict:
    return json.loads(MANIFEST_PATH.read_text())


def manifest(split: str | None = None) -> list[Photo]:
    """The photos of the manifest, optionally only one split ("train" or "validation")."""
    if split is not None and split not in SPLITS:
        raise ConfigError(f"photo split must be one of {', '.join(SPLITS)}; got {split!r}")
    photos = [Photo(**entry) for entry in _manifest()["photos"]]
    return [p for p in photos if split is None or p.split == split]


def install_command(packages: Iterable[str] | None = None) -> str:
    """The apt command that installs the photo packages (all of them, or those given)."""
    packages = sorted({p.package for p in manifest()}) if packages is None else sorted(packages)
    return "apt-get install -y --no-install-recommends " + " ".join(packages)


def missing_packages(photos: list[Photo] | None = None) -> list[str]:
    """Packages with at least one manifest file absent from disk (sorted)."""
    photos = manifest() if photos is None else photos
    return sorted({p.package for p in photos if not Path(p.path).is_file()})


def available() -> bool:
    """True when every photo of the manifest is on disk."""
    return not missing_packages()


def require_available() -> None:
    """Raise a ConfigError naming the packages to install when any photo is missing."""
    missing = missing_packages()
    if missing:
        raise ConfigError(
            f"the natural training photos come from the Debian package(s) {', '.join(missing)}, which are not "
            f"installed; install them with `{install_command(missing)}` (or `python -m hinet.photos --install` "
            "as root), or set data.photos: optional / none to train without them"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(photo: Photo) -> None:
    """Raise ConfigError when the file is missing or its hash differs from the manifest's."""
    path = Path(photo.path)
    if not path.is_file():
        raise ConfigError(
            f"photo {photo.name}: {path} is missing; install it with `{install_command([photo.package])}`"
        )
    actual = _sha256(path)
    if actual != photo.sha256:
        raise ConfigError(
            f"photo {photo.name}: {path} has sha256 {actual[:16]}..., the manifest expects {photo.sha256[:16]}... "
            f"(another version of {photo.package} than {photo.version}?); a run on it would not be the "
            "recorded one. Install the manifest's version or update hinet/photos_manifest.json deliberately"
        )


def max_side() -> int:
    return int(_manifest()["max_side"])


def _cache_path(photo: Photo, side: int) -> Path:
    return cache_dir() / "photos" / f"{photo.name}_{photo.sha256[:12]}_max{side}.png"


def prepared(photo: Photo, side: int | None = None) -> np.ndarray:
    """The photo downscaled to at most `side` px on its long side, H x W x 3 float32 in [0, 1],
    read-only. Prepared once (hash verified) and cached as PNG."""
    side = max_side() if side is None else int(side)
    cached = _cache_path(photo, side)
    if cached.is_file():
        try:
            with Image.open(cached) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
            pixels.flags.writeable = False
            return pixels
        except OSError:
            pass  # a damaged cache file is prepared again below
    verify(photo)
    with Image.open(photo.path) as opened:
        rgb = opened.convert("RGB")  # the one gray photo (Grey) becomes three equal channels
        scale = side / max(rgb.size)
        if scale < 1:
            size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)  # Pillow widens the filter by the scale: anti-aliased
        pixels = np.asarray(rgb, dtype=np.uint8)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, lambda temp: Image.fromarray(pixels).save(temp, format="PNG"))
    except OSError:
        pass  # an unwritable cache only costs preparation time
    out = pixels.astype(np.float32) / 255.0
    out.flags.writeable = False
    return out


def photo_images(split: str = "train") -> dict[str, np.ndarray]:
    """Every photo of one split, prepared, keyed by name (raises ConfigError when a package is missing)."""
    photos = manifest(split)
    require_available()
    return {p.name: prepared(p) for p in photos}


def validation_crops(size: int, per_photo: int = VALIDATION_CROPS_PER_PHOTO) -> list[tuple[str, np.ndarray]]:
    """Fixed `size` x `size` crops of the validation photos: `per_photo` from each, at positions drawn
    from a generator seeded by (crop seed, photo index, size), so every run and seed validates on the
    same pixels. Returns (label, crop) pairs, label "photos/<name>#<k>"."""
    size = int(size)
    if size < 8:
        raise ConfigError(f"validation crop size must be at least 8 pixels; got {size}")
    crops = []
    for index, (name, image) in enumerate(photo_images("validation").items()):
        h, w = image.shape[:2]
        if h < size or w < size:
            raise ConfigError(f"validation photo {name} is {w}x{h}, smaller than the crop size {size}")
        rng = np.random.default_rng([_VALIDATION_CROP_SEED, index, size])
        for k in range(per_photo):
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            crops.append((f"photos/{name}#{k}", np.ascontiguousarray(image[y : y + size, x : x + size])))
    return crops


def _install(packages: list[str]) -> int:
    if shutil.which("apt-get") is None:
        log.error(
            "apt-get not found: the photos come from Debian packages; on Debian/Ubuntu run:\n  %s",
            install_command(packages),
        )
        return 2
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    log.info("running: %s", " ".join(command))
    return subprocess.call(command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hinet.photos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--install", action="store_true", help="apt-get install the missing packages first (root)")
    add_verbosity_flags(parser)
    args = parser.parse_args(argv)
    configure_logging(verbosity(args))
    missing = missing_packages()
    if missing and args.install:
        if _install(missing) != 0:
            print("error: installing the photo packages failed", file=sys.stderr)
            return 2
        missing = missing_packages()
    if missing:
        print(
            f"error: missing package(s) {', '.join(missing)}; install with:\n  {install_command(missing)}\n"
            "(or run python -m hinet.photos --install as root)",
            file=sys.stderr,
        )
        return 2
    try:
        for photo in manifest():
            verify(photo)
            image = prepared(photo)
            print(
                f"{photo.split:10s} {photo.name:14s} {image.shape[1]}x{image.shape[0]}  {photo.package} "
                f"{photo.version}  {photo.licence}  sha256 {photo.sha256[:12]}"
            )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(manifest())} photos verified and prepared", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
