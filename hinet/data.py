"""Clean images, degraded inputs and training batches: the project's one data module.

Everything here works on float32 numpy arrays in [0, 1], shape H x W x 3 (`degrade` may return values
slightly outside [0, 1] for denoising, see `hinet.degradations`). Training, evaluation and the app all
call `degrade`, so a model is always tested on exactly the degradation it was trained on.

What each task's degradation does and which strengths it takes (ranges, defaults, blind ranges, the
strength a bare `--level` number means) is stated once, in the task records of `hinet.tasks`; the
functions here take a task name and read its record.

Randomness always comes from a `numpy.random.Generator` passed in (or built from an int seed), so
every result is reproducible. `rng=None` means seed 0.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import overload

import numpy as np
import skimage.data
import torch
from PIL import Image
from torch.utils.data import IterableDataset

from hinet.errors import ConfigError, ImageError
from hinet.image import load_image
from hinet.io import atomic_write, cache_dir
from hinet.photos import photo_images
from hinet.tasks import TASK_NAMES, get_task

# The task names in menu order, for callers that only need names (the records: `hinet.tasks.TASKS`).
TASKS = TASK_NAMES
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

Rng = np.random.Generator | int | None


def _as_rng(rng: Rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng(0)
    return np.random.default_rng(rng)


def _check_image(clean: np.ndarray, what: str = "image") -> np.ndarray:
    if not isinstance(clean, np.ndarray):
        raise ImageError(f"{what} must be a numpy array, got {type(clean).__name__}")
    if clean.ndim != 3 or clean.shape[2] != 3 or clean.shape[0] < 1 or clean.shape[1] < 1:
        raise ImageError(f"{what} must be an H x W x 3 array, got shape {clean.shape}")
    return np.asarray(clean, dtype=np.float32)


def validate_strength(task: str, **strength: float) -> dict[str, float]:
    """The full strength dict for `task` (defaults filled in), checked against its record's strengths.

    Raises `ConfigError` for an unknown task or parameter name, or a value outside its range.
    """
    return get_task(task).validate(strength)


def format_level(strength: Mapping[str, float]) -> str:
    """`sigma=25` / `length=15,angle=30`: the level as the evaluation CSVs write it (`parse_level` reads it)."""
    return ",".join(f"{key}={value:g}" for key, value in strength.items())


def parse_level(task: str, text: str) -> dict[str, float]:
    """Parse a command-line level: a bare number sets the task's main strength (`Task.primary`),
    `key=value,key=value` sets any (e.g. ``length=15,angle=30``). Returns the validated full dict."""
    return get_task(task).parse_level(text)


def sample_strength(task: str, rng: Rng = None, blind: bool = False) -> dict[str, float]:
    """The strength for one training sample: the task's defaults when not blind, else uniform in its
    blind ranges (JPEG quality rounded to an integer)."""
    return get_task(task).sample(_as_rng(rng), blind)


# --------------------------------------------------------------------------------------------------
# Degradations


def degrade(
    clean: np.ndarray, task: str, rng: Rng = None, kernel: np.ndarray | None = None, **strength: float
) -> np.ndarray:
    """Degrade a clean H x W x 3 float image for `task` at `strength` (missing values default to the
    task's defaults; out-of-range values raise `ConfigError`). `kernel` (deblur only) replaces the
    motion kernel with a user array. Returns a new float32 array of the same shape."""
    clean = _check_image(clean, "clean image")
    record = get_task(task)
    level = record.validate(strength)
    if kernel is not None and not record.takes_kernel:
        takers = ", ".join(name for name in TASK_NAMES if get_task(name).takes_kernel)
        raise ConfigError(f"a blur kernel only applies to the {takers} task, not {task}")
    return record.degrade(clean, level, _as_rng(rng), kernel)


def blur_margin(task: str, strength: Mapping[str, float]) -> int:
    """Pixels of context a degradation reads around a patch: the motion-kernel radius for deblur, the
    streak half-length for derain (streaks from just outside a patch reach into it)."""
    return get_task(task).margin(strength)


# --------------------------------------------------------------------------------------------------
# Clean image sources


def _to_float_rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    else:
        array = array.astype(np.float32)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"cannot use an image of shape {array.shape} as RGB")
    out = np.ascontiguousarray(np.clip(array, 0.0, 1.0))
    out.flags.writeable = False  # shared cached arrays: copy before modifying
    return out


SKIMAGE_COLOR = (
    "astronaut",
    "coffee",
    "chelsea",
    "cat",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)
SKIMAGE_GRAY = ("camera", "moon", "coins", "clock", "cell", "brick", "grass", "gravel", "text", "page")
PYWT_IMAGES = ("aero", "ascent", "camera")

_SOURCE_CACHE: dict[str, dict[str, np.ndarray]] = {}


def skimage_images() -> dict[str, np.ndarray]:
    """Every `skimage.data` image that ships with the package (no download), as read-only float32
    H x W x 3 arrays; gray images are replicated to 3 channels, `stereo_motorcycle` gives its left view.
    Images that fail to load (a stripped install) are skipped."""
    if "skimage" not in _SOURCE_CACHE:
        images = {}
        for name in SKIMAGE_COLOR + SKIMAGE_GRAY:
            try:
                array = getattr(skimage.data, name)()
            except Exception:  # noqa: BLE001 - a missing optional image is skipped, the rest still load
                continue
            if isinstance(array, tuple):
                array = array[0]
            images[name] = _to_float_rgb(array)
        _SOURCE_CACHE["skimage"] = images
    return dict(_SOURCE_CACHE["skimage"])


def pywt_images() -> dict[str, np.ndarray]:
    """`pywt.data` aero, ascent and camera (512 x 512 gray, replicated to 3 channels); {} without pywt."""
    if "pywt" not in _SOURCE_CACHE:
        images = {}
        try:
            import pywt.data  # optional: without PyWavelets the pool just lacks these three
        except ImportError:
            pywt = None
        if pywt is not None:
            for name in PYWT_IMAGES:
                try:
                    array = getattr(pywt.data, name)()
                except Exception:  # noqa: BLE001  a pywt image that cannot be loaded here is skipped, not fatal
                    continue
                array = np.asarray(array, dtype=np.float64)
                images[name] = _to_float_rgb(array / 255.0 if array.max() > 1.0 else array)
        _SOURCE_CACHE["pywt"] = images
    return dict(_SOURCE_CACHE["pywt"])


@functools.lru_cache(maxsize=1024)
def _disc_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    r = int(math.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = dy**2 + dx**2 <= radius**2
    return dy[inside], dx[inside]


def _dead_leaves_image(
    size: int, rng: np.random.Generator, r_min: float, r_max: float, coverage: float = 6.0
) -> np.ndarray:
    """One dead-leaves image. Discs are numbered front to back; each pixel takes the colour of the
    first (front-most) disc covering it, computed for all discs at once with `np.minimum.at`."""
    from scipy.ndimage import gaussian_filter  # here, not at the top: ~0.3 s of import, dead leaves only

    # Radii from p(r) ~ r^-3 on [r_min, r_max] by inverting the CDF.
    a, b = r_min**-2, r_max**-2
    mean_area = math.pi * 2 * math.log(r_max / r_min) / (a - b)
    n_discs = int(coverage * (size + r_max) ** 2 / mean_area) + 1
    radii = (a - rng.random(n_discs) * (a - b)) ** -0.5
    radii = np.round(radii * 2) / 2  # half-pixel steps: few distinct stencils, still smooth sizes
    centres = rng.uniform(-radii[:, None], size + radii[:, None], size=(n_discs, 2))
    centres = np.round(centres).astype(np.int64)
    colours = rng.random((n_discs + 1, 3)).astype(np.float32)  # the last colour is the background

    front = np.full(size * size, n_discs, dtype=np.int64)
    for radius in np.unique(radii):
        ids = np.flatnonzero(radii == radius)
        dy, dx = _disc_offsets(float(radius))
        ys = centres[ids, 0:1] + dy[None, :]
        xs = centres[ids, 1:2] + dx[None, :]
        valid = (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)
        disc_ids = np.broadcast_to(ids[:, None], ys.shape)[valid]
        np.minimum.at(front, ys[valid] * size + xs[valid], disc_ids)
    image = colours[front].reshape(size, size, 3)
    # A little optical softness: real photographs have no perfectly sharp one-pixel edges.
    image = gaussian_filter(image, sigma=(0.5, 0.5, 0))
    return np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)


def dead_leaves(n: int, size: int = 256, seed: int = 0, cache: bool = True) -> np.ndarray:
    """`n` dead-leaves images (n x size x size x 3 float32, 8-bit levels): opaque discs with power-law
    radii p(r) ~ r^-3 (size/100, at least 1.5 px, to size/2) and uniform random colours, drawn front to back until the
    image is covered. Image i depends only on (seed, i, size), so a smaller n gives a prefix of a larger
    one. Pools are cached as `dead_leaves_n{n}_s{size}_seed{seed}.npz` in `cache_dir()` (uint8)."""
    n, size = int(n), int(size)
    if n < 0 or size < 8:
        raise ConfigError(f"dead_leaves needs n >= 0 and size >= 8, got n={n}, size={size}")
    path = cache_dir() / f"dead_leaves_n{n}_s{size}_seed{seed}.npz"
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                images = stored["images"]
            if images.shape == (n, size, size, 3):
                return images.astype(np.float32) / 255.0
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is regenerated below
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        images[i] = _dead_leaves_image(
            size, np.random.default_rng([int(seed), i, size]), max(1.5, size / 100), size / 2
        )
    if cache and n:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda temp: _save_npz(temp, images=images))
        except OSError:
            pass  # an unwritable cache only costs regeneration time
    return images.astype(np.float32) / 255.0


def _save_npz(path: Path, **arrays) -> None:
    with open(path, "wb") as handle:  # a file object, because np.savez appends ".npz" to a name lacking it
        np.savez(handle, **arrays)


def _image_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _checked_folder(directory: str | os.PathLike[str], what: str = "image folder") -> Path:
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise ConfigError(f"{what} {str(directory)!r} does not exist or is not a folder")
    return directory


def folder_images(directory: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every image file in `directory` (not recursive; suffixes in `IMAGE_SUFFIXES`) loaded with
    `hinet.image.load_image` as H x W x 3 float32, keyed by file name. Raises `ConfigError` when the
    folder is missing or has no images, `ImageError` for an unreadable file."""
    return {path.name: load_image(path).pixels for path in image_files(directory)}


def image_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The image files in `directory` (not recursive; suffixes in `IMAGE_SUFFIXES`), sorted by name.
    Raises `ConfigError` when the folder is missing or has none."""
    directory = _checked_folder(directory)
    files = _image_files(directory)
    if not files:
        raise ConfigError(f"image folder {str(directory)!r} contains no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def sporco_data_dir() -> Path:
    spec = importlib.util.find_spec("sporco")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the test images come from the 'sporco' package, which is not installed; "
            "install it with: pip install --no-deps sporco"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def test_images() -> dict[str, np.ndarray]:
    """The project's TEST set (never train on it): every colour PNG in sporco's data folder
    (kodim23, monarch, sail, tulips at 768 x 512, barbara 702 x 574), keyed by stem."""
    if "test" not in _SOURCE_CACHE:
        directory = sporco_data_dir()
        files = sorted(directory.glob("*.png")) if directory.is_dir() else []
        images = {}
        for path in files:
            loaded = load_image(path)
            if not loaded.was_gray:
                pixels = np.ascontiguousarray(loaded.pixels, dtype=np.float32)
                pixels.flags.writeable = False
                images[path.stem] = pixels
        if not images:
            raise ConfigError(f"no colour PNG test images found in {str(directory)!r}; reinstall sporco")
        _SOURCE_CACHE["test"] = images
    return dict(_SOURCE_CACHE["test"])


test_images.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


class PairedFolder:
    """Degraded/clean image pairs from two folders, matched by file name, or by stem when the
    extensions differ (``x.jpg`` with ``x.png``). `names` lists the pairs; iterate for
    ``(name, lq, gt)`` float32 arrays, or index with an int."""

    def __init__(self, lq_dir: str | os.PathLike[str], gt_dir: str | os.PathLike[str]) -> None:
        lq_dir = _checked_folder(lq_dir, "degraded (LQ) folder")
        gt_dir = _checked_folder(gt_dir, "clean (GT) folder")
        lq_files, gt_files = _image_files(lq_dir), _image_files(gt_dir)
        for files, folder in ((lq_files, lq_dir), (gt_files, gt_dir)):
            if not files:
                raise ConfigError(f"folder {str(folder)!r} contains no images ({', '.join(IMAGE_SUFFIXES)})")
        gt_by_name = {p.name: p for p in gt_files}
        gt_by_stem = {p.stem: p for p in gt_files}
        pairs, unmatched = [], []
        for lq in lq_files:
            gt = gt_by_name.get(lq.name) or gt_by_stem.get(lq.stem)
            (pairs.append((lq.stem, lq, gt)) if gt is not None else unmatched.append(lq.name))
        used = {gt for _, _, gt in pairs}
        unmatched_gt = [p.name for p in gt_files if p not in used]
        if unmatched or unmatched_gt:
            parts = []
            if unmatched:
                parts.append(
                    f"{len(unmatched)} degraded image(s) without a clean match, e.g. {', '.join(unmatched[:3])}"
                )
            if unmatched_gt:
                parts.append(
                    f"{len(unmatched_gt)} clean image(s) without a degraded match, e.g. {', '.join(unmatched_gt[:3])}"
                )
            raise ConfigError(
                f"{lq_dir} and {gt_dir} do not pair up: {'; '.join(parts)}. "
                "Pairs must share a file name (or a name without extension)."
            )
        self.lq_dir, self.gt_dir = lq_dir, gt_dir
        self.pairs: list[tuple[str, Path, Path]] = pairs

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, np.ndarray]:
        name, lq_path, gt_path = self.pairs[index]
        lq, gt = load_image(lq_path).pixels, load_image(gt_path).pixels
        if lq.shape != gt.shape:
            raise ImageError(
                f"pair {name!r}: degraded image is {lq.shape[1]}x{lq.shape[0]} but the clean one "
                f"is {gt.shape[1]}x{gt.shape[0]}; pairs must have the same size"
            )
        return name, lq, gt

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for index in range(len(self)):
            yield self[index]


# --------------------------------------------------------------------------------------------------
# Crops, augmentation, batches


@overload
def random_crop(images: np.ndarray, size: int | tuple[int, int], rng: Rng = None) -> np.ndarray: ...


@overload
def random_crop(images: Sequence[np.ndarray], size: int | tuple[int, int], rng: Rng = None) -> list[np.ndarray]: ...


def random_crop(
    images: np.ndarray | Sequence[np.ndarray], size: int | tuple[int, int], rng: Rng = None
) -> np.ndarray | list[np.ndarray]:
    """The same random `size` (int or (h, w)) crop of one H x W x C array or of a sequence of arrays
    with equal H and W (e.g. lq and gt). An image smaller than the crop is first padded symmetrically
    (mirror, edge pixel repeated) up to the crop size, so any image can feed any patch size.
    Returns an array, or a list in the order given."""
    single = isinstance(images, np.ndarray)
    arrays = [images] if isinstance(images, np.ndarray) else list(images)
    if not arrays:
        raise ImageError("random_crop needs at least one image")
    if isinstance(size, (int, float, numbers.Real)):  # one side for both (a whole float such as 64.0 is fine)
        if size != int(size):
            raise ConfigError(f"crop size must be a whole number of pixels, got {size}")
        ch = cw = int(size)
    else:
        ch, cw = (int(side) for side in size)
    if ch < 1 or cw < 1:
        raise ConfigError(f"crop size must be positive, got {size}")
    h, w = arrays[0].shape[:2]
    if any(a.shape[:2] != (h, w) for a in arrays):
        raise ImageError(f"random_crop images differ in size: {[a.shape[:2] for a in arrays]}")
    rng = _as_rng(rng)
    # Not image.pad_to_multiple: that reflects without repeating the edge and takes one min_size for both
    # sides, while crops need symmetric padding to a separate height and width.
    while h < ch or w < cw:
        pad_h, pad_w = min(max(0, ch - h), h), min(max(0, cw - w), w)
        arrays = [np.pad(a, ((0, pad_h), (0, pad_w)) + ((0, 0),) * (a.ndim - 2), mode="symmetric") for a in arrays]
        h, w = arrays[0].shape[:2]
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    crops = [a[y : y + ch, x : x + cw] for a in arrays]
    return crops[0] if single else crops


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 dihedral transforms of an H x W (x C) array: rotate by 90 * (k % 4) degrees, then
    flip left-right when k >= 4. k = 0 is the identity; `dihedral_inverse` undoes it."""
    if not 0 <= int(k) <= 7:
        raise ConfigError(f"dihedral k must be in 0..7, got {k}")
    out = np.rot90(image, int(k) % 4, axes=(0, 1))
    if k >= 4:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def dihedral_inverse(image: np.ndarray, k: int) -> np.ndarray:
    if not 0 <= int(k) <= 7:
        raise ConfigError(f"dihedral k must be in 0..7, got {k}")
    out = image[:, ::-1] if k >= 4 else image
    return np.ascontiguousarray(np.rot90(out, -(int(k) % 4), axes=(0, 1)))


def cumulative_area(images: Sequence[np.ndarray]) -> np.ndarray:
    """Running total of the images' pixel counts: the table `pick_by_area` draws from."""
    return np.cumsum([int(image.shape[0]) * int(image.shape[1]) for image in images], dtype=np.int64)


def pick_by_area(cumulative: np.ndarray, rng: np.random.Generator) -> int:
    """The index of an image drawn with probability proportional to its area, so every pixel of the
    pool is equally likely to be in a crop (a 5-megapixel photo is not drawn as often as a 192x192
    dead-leaves image, but ~130x more often)."""
    return int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))


def make_pair(
    clean_images: Sequence[np.ndarray],
    task: str,
    patch: int,
    rng: np.random.Generator,
    blind: bool = False,
    strength: Mapping[str, float] | None = None,
    permute_channels: bool = True,
    area: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One (lq, gt) training pair of `patch` x `patch` x 3 float32 arrays: an image drawn with
    probability proportional to its area (`area`: `cumulative_area(clean_images)`, computed when None),
    a random crop, a random dihedral transform and channel order, then `degrade`. The crop is taken with a
    margin that the degradation may read (blur) and cut back, so no patch sees an artificial border.
    `blind=True` draws the strength per pair from the task's blind ranges (`strength` is then ignored);
    otherwise `strength` is used (None = the task's defaults)."""
    if not len(clean_images):
        raise ConfigError("no clean training images")
    level = sample_strength(task, rng, blind) if blind or strength is None else validate_strength(task, **strength)
    margin = blur_margin(task, level)
    clean = clean_images[pick_by_area(cumulative_area(clean_images) if area is None else area, rng)]
    crop = random_crop(clean, patch + 2 * margin, rng)
    crop = dihedral(crop, int(rng.integers(8)))
    if permute_channels:
        crop = crop[:, :, rng.permutation(3)]
    crop = np.ascontiguousarray(crop, dtype=np.float32)
    lq = degrade(crop, task, rng, kernel=None, **level)
    if margin:
        crop = crop[margin : margin + patch, margin : margin + patch]
        lq = lq[margin : margin + patch, margin : margin + patch]
    return np.ascontiguousarray(lq), np.ascontiguousarray(crop)


def make_batch(
    clean_images: Sequence[np.ndarray],
    task: str,
    batch: int,
    patch: int,
    rng: Rng,
    blind: bool = False,
    strength: Mapping[str, float] | None = None,
    area: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch `(lq, gt)` of float32 torch tensors `batch x 3 x patch x patch`, drawn with
    `make_pair`; deterministic given `rng` (seed it with e.g. `(seed, step, rank)`)."""
    rng = _as_rng(rng)
    area = cumulative_area(clean_images) if area is None else area
    pairs = [make_pair(clean_images, task, patch, rng, blind, strength, area=area) for _ in range(int(batch))]
    lq = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).contiguous()
    gt = torch.from_numpy(np.stack([p[1] for p in pairs])).permute(0, 3, 1, 2).contiguous()
    return lq, gt


def _as_image_list(clean_images: Mapping[str, np.ndarray] | Iterable[np.ndarray]) -> list[np.ndarray]:
    values = list(clean_images.values()) if isinstance(clean_images, Mapping) else list(clean_images)
    return [np.ascontiguousarray(_check_image(v, "clean image")) for v in values]


class SyntheticPairs(IterableDataset):
    """An endless stream of `(lq, gt)` float32 tensors 3 x patch x patch built by `make_pair`.

    Deterministic given (seed, rank); each rank of a `world_size`-process run draws its own samples.
    Iterating twice restarts the same stream. Meant to be read in the main process (no DataLoader
    workers): `batch(n)` returns stacked N x 3 x patch x patch tensors from the same stream."""

    def __init__(
        self,
        clean_images: Mapping[str, np.ndarray] | Iterable[np.ndarray],
        task: str,
        patch: int = 64,
        blind: bool = False,
        strength: Mapping[str, float] | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        get_task(task)  # an unknown task fails here, not at the first sample
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if int(patch) < 8:
            raise ConfigError(f"patch must be at least 8 pixels, got {patch}")
        self.images = _as_image_list(clean_images)
        if not self.images:
            raise ConfigError("SyntheticPairs needs at least one clean image")
        self.task, self.patch, self.blind = task, int(patch), bool(blind)
        self.strength = None if strength is None else validate_strength(task, **strength)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.area = cumulative_area(self.images)
        self._rng = self._new_rng()

    def _new_rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.rank, self.world_size])

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """The next pair as numpy H x W x 3 arrays."""
        return make_pair(self.images, self.task, self.patch, self._rng, self.blind, self.strength, area=self.area)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return make_batch(self.images, self.task, n, self.patch, self._rng, self.blind, self.strength, area=self.area)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._rng = self._new_rng()
        while True:
            lq, gt = self.sample()
            yield torch.from_numpy(lq).permute(2, 0, 1).contiguous(), torch.from_numpy(gt).permute(2, 0, 1).contiguous()


class ImagePool(list[np.ndarray]):
    """A list of H x W x 3 float32 arrays with a parallel `names` list ("source/name@scale"), so that
    `split_validation` can keep every scaled copy of an image on the same side of the split."""

    def __init__(self, images: Iterable[np.ndarray] = (), names: Iterable[str] = ()) -> None:
        super().__init__(images)
        self.names = list(names)
        if len(self.names) != len(self):
            raise ConfigError("ImagePool needs one name per image")


def _rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """Downscale with Pillow's Lanczos filter (widened by the scale factor, so it also anti-aliases),
    per channel in float so no 8-bit rounding is added."""

    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[:, :, c]), mode="F").resize(size, Image.Resampling.LANCZOS)
        )
        for c in range(3)
    ]
    return np.ascontiguousarray(np.clip(np.stack(channels, axis=2), 0, 1), dtype=np.float32)


def training_pool(
    seed: int = 0,
    n_dead_leaves: int = 200,
    dead_leaves_size: int = 256,
    scales: Sequence[float] = (1.0, 0.5),
    min_size: int = 96,
    photos: bool = False,
) -> ImagePool:
    """The clean training images: every skimage and pywt image (pywt's camera is skipped when it is
    skimage's), with `photos` the training split of `hinet.photos` (Debian packages; the validation
    photos never enter), their downscaled copies at each scale in `scales` below 1 (smaller than
    `min_size` on a side: dropped), and `n_dead_leaves` dead-leaves images. Never includes `test_images()`."""
    images: list[np.ndarray] = []
    names: list[str] = []
    groups = [("skimage", skimage_images()), ("pywt", pywt_images())]
    if photos:
        groups.append(("photos", photo_images("train")))
    for source, group in groups:
        for name, image in group.items():
            if any(existing.shape == image.shape and np.array_equal(existing, image) for existing in images):
                continue
            for scale in scales:
                if not 0 < float(scale) <= 1:
                    raise ConfigError(f"training_pool scales must be in (0, 1], got {scale}")
                scaled = image if scale == 1 else _rescale(image, float(scale))
                if min(scaled.shape[:2]) < min_size:
                    continue
                images.append(scaled)
                names.append(f"{source}/{name}@{float(scale):g}")
    leaves = dead_leaves(n_dead_leaves, dead_leaves_size, seed)
    for i in range(len(leaves)):
        images.append(leaves[i])
        names.append(f"dead_leaves/{seed}_{i}@1")
    return ImagePool(images, names)


@overload
def split_validation(pool: ImagePool, n: int, seed: int = 0) -> tuple[ImagePool, ImagePool]: ...


@overload
def split_validation(
    pool: Sequence[np.ndarray], n: int, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]: ...


def split_validation(pool: Sequence[np.ndarray], n: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split a pool into `(train, validation)`. With an `ImagePool`, n natural (non dead-leaves) source
    images go to validation at full scale and all their scaled copies leave training, so nothing
    validated on was trained on. With a plain list, n random entries move. Deterministic given seed."""
    n = int(n)
    rng = np.random.default_rng([int(seed), 0x5A11D])
    names = getattr(pool, "names", None)
    if names is None:
        if not 0 <= n < len(pool):
            raise ConfigError(f"cannot hold out {n} of {len(pool)} images for validation")
        chosen = set(rng.permutation(len(pool))[:n].tolist())
        return (
            [img for i, img in enumerate(pool) if i not in chosen],
            [img for i, img in enumerate(pool) if i in chosen],
        )
    groups = sorted({name.rsplit("@", 1)[0] for name in names if not name.startswith("dead_leaves/")})
    if not 0 <= n < len(groups):
        raise ConfigError(f"cannot hold out {n} of the {len(groups)} natural images for validation")
    held = {groups[i] for i in rng.permutation(len(groups))[:n]}
    train, val = ImagePool(), ImagePool()
    for name, image in zip(names, pool):
        group, scale = name.rsplit("@", 1)
        if group not in held:
            train.append(image)
            train.names.append(name)
        elif float(scale) == 1.0:
            val.append(image)
            val.names.append(name)
    return train, val
