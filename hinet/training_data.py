"""What a training run learns from: its batches, its validation pairs, and the record of both.

Clean images (skimage, pywt, dead leaves, a folder, optionally the Debian photos) are degraded on the fly,
or real pairs come from two folders. Batch k is drawn from a numpy generator seeded by (seed, k, rank), so
there is no data state to keep: a resumed run sees exactly the batches an unbroken run would have seen.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from hinet import data, photos
from hinet.config import TrainConfig
from hinet.errors import ConfigError

log = logging.getLogger(__name__)

_VALIDATION_SEED = 0x7A1  # the validation degradations are the same for every run and seed


@dataclass
class TrainingData:
    """Where batches come from: synthetic pairs from clean images, or real pairs from two folders."""

    task: str
    strength: dict | None  # None = blind
    clean: list | None = None  # clean training images (synthetic degradations)
    paired: data.PairedFolder | None = None
    paired_train: list[int] = field(default_factory=list)  # indices of the pairs used for training
    val_pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (lq, gt) crops
    sources: dict = field(default_factory=dict)  # what the run saw, written to the run folder (runs.DATA_FILE)
    area: np.ndarray | None = None  # data.cumulative_area(clean): images are drawn proportionally to area

    def batch(self, cfg: TrainConfig, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` of this rank. It depends only on (seed, step, rank), which is what makes a
        resumed run identical to an unbroken one and gives each DDP rank its own samples."""
        rng = np.random.default_rng([cfg.seed, step, rank])
        if self.clean is not None:
            return data.make_batch(
                self.clean,
                self.task,
                cfg.data.batch,
                cfg.data.patch,
                rng,
                blind=self.strength is None,
                strength=self.strength,
                area=self.area,
            )
        assert self.paired is not None  # TrainingData holds clean images or a paired folder
        lqs, gts = [], []
        for _ in range(cfg.data.batch):
            _, lq, gt = self.paired[self.paired_train[int(rng.integers(len(self.paired_train)))]]
            lq, gt = data.random_crop([lq, gt], cfg.data.patch, rng)
            k = int(rng.integers(8))
            lqs.append(data.dihedral(lq, k))
            gts.append(data.dihedral(gt, k))
        return _as_tensor(lqs), _as_tensor(gts)


def _as_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def no_training_data(cfg: TrainConfig) -> TrainingData:
    """The data of a finished run: nothing to draw, nothing to validate (re-running it only reports)."""
    return TrainingData(cfg.task, None)


def prepare_training_data(cfg: TrainConfig, multiple: int) -> TrainingData:
    """The batches and validation pairs of `cfg`; validation crops are multiples of the model's `multiple`."""
    strength = None if cfg.blind else cfg.resolved_strength()
    val_strength = cfg.resolved_strength()
    if cfg.data.paired_lq is not None:
        assert cfg.data.paired_gt is not None  # TrainConfig requires both folders or neither
        pairs = data.PairedFolder(cfg.data.paired_lq, cfg.data.paired_gt)
        n_val = cfg.data.val_images
        if n_val >= len(pairs):
            raise ConfigError(f"data.val_images={n_val} leaves no training pair out of {len(pairs)}; lower it")
        result = TrainingData(cfg.task, strength, paired=pairs, paired_train=list(range(len(pairs) - n_val)))
        for index in range(len(pairs) - n_val, len(pairs)):
            _, lq, gt = pairs[index]
            result.val_pairs.append(
                (_center_crop(lq, cfg.data.val_size, multiple), _center_crop(gt, cfg.data.val_size, multiple))
            )
        return result

    with_photos = use_photos(cfg.data.photos)
    train_images, val_images = _clean_split(
        cfg.data.dead_leaves,
        cfg.data.dead_leaves_size,
        tuple(cfg.data.scales),
        cfg.data.skimage,
        cfg.data.pywt,
        cfg.data.folder,
        cfg.data.val_images,
        with_photos,
    )
    if not len(train_images):
        raise ConfigError(
            "no clean training images: enable data.skimage / data.pywt, set data.dead_leaves or give data.folder"
        )
    clean = list(train_images)
    area = data.cumulative_area(clean)
    result = TrainingData(cfg.task, strength, clean=clean, area=area)
    if with_photos:
        labelled = photos.validation_crops(cfg.data.val_size)
    else:
        labelled = list(zip(val_images.names, val_images))
    for i, (_, image) in enumerate(labelled):
        gt = _center_crop(image, cfg.data.val_size, multiple)
        lq = data.degrade(gt, cfg.task, np.random.default_rng([_VALIDATION_SEED, i]), **val_strength)
        result.val_pairs.append((lq, gt))
    total_area = int(area[-1])
    shares: dict[str, int] = {}
    for name, image in zip(train_images.names, clean):
        source = name.split("/", 1)[0]
        shares[source] = shares.get(source, 0) + int(image.shape[0]) * int(image.shape[1])
    result.sources = {
        "training": _pool_sources(train_images.names),
        "area_share": {source: round(area / total_area, 4) for source, area in sorted(shares.items())},
        "sampling": "images drawn with probability proportional to area (hinet.data.pick_by_area)",
        "scales": list(cfg.data.scales),
        "validation": {
            "source": "photos" if with_photos else "pool",
            "crop": cfg.data.val_size,
            "images": [label for label, _ in labelled],
        },
    }
    return result


def validation_id(validation: Mapping[str, object]) -> str:
    """A short fingerprint of a run's validation pairs from its `sources["validation"]` record (source, crop
    size, image labels), so that scores measured on the same pairs can be matched to the run."""
    return hashlib.sha256(json.dumps(validation, sort_keys=True).encode()).hexdigest()[:12]


def sources_summary(sources: dict) -> dict:
    """The run folder's data record (`TrainingData.sources`) shortened for a checkpoint's metadata: which
    images trained (by source, photos by package and name, scales folded), their area shares, and the
    validation images. Empty for a finished run, whose data was not prepared."""
    if not sources:
        return {}
    training = {}
    for source, items in sources.get("training", {}).items():
        if source == "photos":
            training[source] = sorted(f"{p['package']}:{p['name']}" for p in items)
        elif isinstance(items, list):
            training[source] = sorted({item.rsplit("@", 1)[0] for item in items})
        else:
            training[source] = items
    return {
        "training": training,
        "area_share": sources.get("area_share", {}),
        "validation": sources.get("validation", {}),
    }


def use_photos(mode: str, warn: bool = True) -> bool:
    """Whether a run with `data.photos: mode` trains and validates on the Debian photos."""
    if mode == "none":
        return False
    if mode == "required":
        photos.require_available()
        return True
    if photos.available():
        return True
    if warn:
        log.warning(
            "data.photos=optional: the photo package(s) %s are not installed, so this run trains without "
            "natural photos and validates on held-out pool images; install them with `%s` for the "
            "recorded setup",
            ", ".join(photos.missing_packages()),
            photos.install_command(),
        )
    return False


def _center_crop(image: np.ndarray, size: int, multiple: int) -> np.ndarray:
    h, w = image.shape[:2]
    ch = min(size, h) // multiple * multiple
    cw = min(size, w) // multiple * multiple
    if ch < multiple or cw < multiple:
        raise ConfigError(f"a validation image of {w}x{h} is smaller than the model's size multiple {multiple}")
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(image[y : y + ch, x : x + cw])


@functools.lru_cache(maxsize=1)  # a sweep trains many runs on the same pool; rescaling it takes seconds
def _clean_split(
    dead_leaves: int,
    dead_leaves_size: int,
    scales: tuple,
    use_skimage: bool,
    use_pywt: bool,
    folder: str | None,
    val_images: int,
    with_photos: bool = False,
) -> tuple[data.ImagePool, data.ImagePool]:
    """(training images, validation images) of the clean sources; validation holds out whole natural
    images (none when `with_photos`: the held-out photos validate then)."""
    pool = data.training_pool(
        seed=0, n_dead_leaves=dead_leaves, dead_leaves_size=dead_leaves_size, scales=scales, photos=with_photos
    )
    keep = [
        i
        for i, name in enumerate(pool.names)
        if (use_skimage or not name.startswith("skimage/")) and (use_pywt or not name.startswith("pywt/"))
    ]
    pool = data.ImagePool([pool[i] for i in keep], [pool.names[i] for i in keep])
    if folder is not None:
        for name, image in data.folder_images(folder).items():
            pool.append(image)
            pool.names.append(f"folder/{name}@1")
    return data.split_validation(pool, 0 if with_photos else val_images, seed=0)


def _pool_sources(names: list[str]) -> dict:
    """The training images of a pool by source, as the run folder records them."""
    by_source: dict[str, list[str]] = {}
    for name in names:
        source, rest = name.split("/", 1)
        by_source.setdefault(source, []).append(rest)
    recorded: dict[str, object] = {
        source: sorted(set(items)) for source, items in by_source.items() if source != "dead_leaves"
    }
    if "photos" in by_source:
        used = {item.rsplit("@", 1)[0] for item in by_source["photos"]}
        recorded["photos"] = [p.record() for p in photos.manifest("train") if p.name in used]
    if "dead_leaves" in by_source:
        recorded["dead_leaves"] = {"images": len({i.rsplit("@", 1)[0] for i in by_source["dead_leaves"]})}
    return recorded
