"""What the "Learn normalization" tab computes, without any Gradio: the live experiments on a real image and
model, each returning (figure, picture or None, caption).

Models come from the app's `ModelStore` (trained when one exists, else the registry's seeded untrained
weights, and the captions say which); figures, pictures and the share string are `app.learn_views`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from app import learn_views as views
from app.models import ModelStore
from hinet.data import skimage_images
from hinet.errors import ConfigError
from hinet.features import capture_features

IMAGE = "astronaut"
CALIBRATION_IMAGES = ("coffee", "chelsea", "camera", "brick")  # BatchNorm's running statistics come from these
GRID = 4  # GRID x GRID crops form the "whole set" of the batch experiment
PATCH_SIDE = 32
TILE_CROP = (160, 160, 352, 352)  # a 192 x 192 crop of the astronaut for the seams experiment
BLOCK = "down_path_1.0"  # the first encoder block: its conv_1 output is the input of the first norm


def entry_for(store: ModelStore, norm: str) -> str:
    """The store's model with this norm (default ratio, affine, normalized from level 0): a trained one if
    any, else an untrained registry variant."""

    def fits(entry) -> bool:
        config = entry.config
        return (
            config.norm == norm
            and config.norm_ratio is None
            and config.norm_affine
            and config.encoder_level_is_normalized(0)
        )

    candidates = sorted((e for e in store.list_entries() if fits(e)), key=lambda e: not e.trained)
    if not candidates:
        raise ConfigError(f"the model store has no {norm} model for the experiments")
    return candidates[0].id


def weights_note(store: ModelStore, entry_id: str) -> str:
    entry = store.find_entry(entry_id)
    return (
        f"Model: {entry.label}."
        if entry.trained
        else (f"Model: {entry.label.split(' · ')[0]} with untrained (random, seed 0) weights.")
    )


def _image(name: str) -> np.ndarray:
    return skimage_images()[name]


# The caches are keyed by (store, entry id, weights version): a replaced checkpoint must not serve stale features.


def patch_set(store: ModelStore, entry_id: str) -> torch.Tensor:
    return _patch_set(store, entry_id, store.weights_version(entry_id))


@lru_cache(maxsize=4)
def _patch_set(store: ModelStore, entry_id: str, version: int) -> torch.Tensor:
    pixels = _image(IMAGE)
    boxes = views.grid_boxes(*pixels.shape[:2], GRID, GRID)
    return views.block_input_features(store.get_model(entry_id), pixels, boxes, PATCH_SIDE, BLOCK)


def calibration_set(store: ModelStore, entry_id: str) -> torch.Tensor:
    return _calibration_set(store, entry_id, store.weights_version(entry_id))


@lru_cache(maxsize=4)
def _calibration_set(store: ModelStore, entry_id: str, version: int) -> torch.Tensor:
    model = store.get_model(entry_id)
    sets = []
    for name in CALIBRATION_IMAGES:
        pixels = _image(name)
        sets.append(
            views.block_input_features(
                model, pixels, views.grid_boxes(*pixels.shape[:2], GRID, GRID), PATCH_SIDE, BLOCK
            )
        )
    return torch.cat(sets)


def batch_result(store: ModelStore, entry_id: str) -> views.BatchResult:
    return _batch_result(store, entry_id, store.weights_version(entry_id))


@lru_cache(maxsize=4)
def _batch_result(store: ModelStore, entry_id: str, version: int) -> views.BatchResult:
    return views.batch_dependence(patch_set(store, entry_id), list(range(1, GRID * GRID + 1)))


def tile_pixels() -> np.ndarray:
    y0, x0, y1, x1 = TILE_CROP
    return np.ascontiguousarray(_image(IMAGE)[y0:y1, x0:x1])


def crop_features(store: ModelStore, entry_id: str, dim: float = 1.0):
    """The first block's features for the tile crop (times `dim`), and the block's norm layer."""
    return _crop_features(store, entry_id, store.weights_version(entry_id), dim)


@lru_cache(maxsize=8)
def _crop_features(store: ModelStore, entry_id: str, version: int, dim: float):
    model = store.get_model(entry_id)
    captured = capture_features(model, tile_pixels() * np.float32(dim), blocks=[BLOCK])
    return captured[BLOCK], model.conv_blocks()[BLOCK].norm


# ----------------------------------------------------------------------------------------------------
# One function per experiment: (figure, picture or None, caption)


def run_batch(store: ModelStore, state: views.LearnState):
    entry_id = entry_for(store, "half_instance")
    result = batch_result(store, entry_id)
    i = result.batch_sizes.index(state.bs)
    bn = "BatchNorm (batch statistics)"
    caption = (
        f"BatchNorm normalizes each image with its batch's statistics, so its output depends on the other images "
        f"in the batch; InstanceNorm and HIN use each image's own statistics. Here one crop of the astronaut is "
        f"normalized together with {state.bs - 1} random other crops (6 draws) instead of all {GRID * GRID}: its "
        f"feature changes by {result.mean_change[bn][i]:.3g} on average (max {result.max_change[bn][i]:.3g}) with "
        f"BatchNorm, {result.mean_change['InstanceNorm'][i]:.3g} with InstanceNorm and "
        f"{result.mean_change['Half InstanceNorm'][i]:.3g} with HIN. {weights_note(store, entry_id)}"
    )
    return views.batch_figure(result, state.bs), None, caption


def run_mode(store: ModelStore, state: views.LearnState):
    entry_id = entry_for(store, "half_instance")
    result = views.train_vs_eval(patch_set(store, entry_id)[:1], calibration_set(store, entry_id))
    caption = (
        "In training, BatchNorm uses the current batch's statistics (here a batch of this one image: mean 0, "
        "std 1 per channel); in eval mode it uses running statistics collected during training (here from "
        f"{len(CALIBRATION_IMAGES) * GRID * GRID} crops of {', '.join(CALIBRATION_IMAGES)}), so the same image "
        f"comes out shifted and rescaled: mean |train − eval| = {result.mean_abs_difference:.3g}. "
        f"{weights_note(store, entry_id)}"
    )
    return views.mode_figure(result), None, caption


def run_tile(store: ModelStore, state: views.LearnState):
    entry_id = entry_for(store, "half_instance")
    result = views.tile_seams(store.get_model(entry_id), tile_pixels(), state.tile)
    caption = (
        "Instance statistics are computed over whatever the model sees. From left: a 192 x 192 crop of the "
        f"astronaut restored in one pass; in {state.tile} x {state.tile} tiles without overlap or blending; in one "
        f"pass with local statistics (each pixel normalized over a window 1.5 x {state.tile} px, scaled to each "
        "level, as TLC does); then |tiled − whole| (max "
        f"{result.max_difference:.3g}, mean {result.mean_difference:.3g}), whose edges follow the tile borders: "
        f"the seams; and |local − whole| (max {result.local_max_difference:.3g}, mean "
        f"{result.local_mean_difference:.3g}): where the window is smaller than the crop, local statistics change "
        "the output smoothly, without seams; a window of 1.5 x 128 px or more covers this crop at every level, "
        f"and local equals whole. Both maps share one colour scale. {weights_note(store, entry_id)}"
    )
    return None, views.tile_picture(result), caption


def run_affine(store: ModelStore, state: views.LearnState):
    entry_id = entry_for(store, "half_instance")
    features, layer = crop_features(store, entry_id)
    n = features.normalized_channels
    gamma, beta = features.gamma, features.beta
    untrained = gamma is None or (torch.all(gamma == 1) and torch.all(beta == 0))
    note = weights_note(store, entry_id)
    if untrained:
        # An untrained layer starts at γ = 1, β = 0, which would show nothing: draw illustrative values.
        generator = torch.Generator().manual_seed(0)
        gamma = 1.0 + 0.5 * torch.randn(n, generator=generator)
        beta = 0.5 * torch.randn(n, generator=generator)
        note += " Its γ/β are still 1/0, so illustrative γ/β are drawn at random (seed 0)."
    result = views.affine_effect(features.pre_norm[:n], "instance", gamma, beta)
    caption = (
        "Without affine, every normalized channel has mean 0 and std 1: the norm erased how strong and how "
        "offset it was. With affine, the layer multiplies by a learned γ and adds a learned β per channel, so "
        f"mean = β and std = |γ|: the network can restore the scale it needs. {note}"
    )
    return views.affine_figure(result, state.affine), None, caption


def run_ratio(store: ModelStore, state: views.LearnState):
    entry_id = entry_for(store, "half_instance")
    features, _ = crop_features(store, entry_id)
    dimmed, _ = crop_features(store, entry_id, 0.5)
    kept = views.scale_kept(features.pre_norm, dimmed.pre_norm, state.ratio)
    channels = features.pre_norm.shape[0]
    normalized = int(round(channels * state.ratio))
    caption = (
        f"Normalized ratio {state.ratio:g}: instance norm on the first {normalized} of {channels} channels of the "
        "first block. The image is darkened to half its brightness: normalized channels do not notice (ratio 1), "
        f"the other {channels - normalized} keep the absolute scale (ratio 0.5), a fraction "
        f"{1 - normalized / channels:.2f} of the feature. HIN's 0.5 keeps both kinds. {weights_note(store, entry_id)}"
    )
    return views.ratio_figure(kept, normalized), None, caption


EXPERIMENT_RUNNERS = {"batch": run_batch, "mode": run_mode, "tile": run_tile, "affine": run_affine, "ratio": run_ratio}


def render(store: ModelStore, state: views.LearnState) -> dict:
    figure, picture, caption = EXPERIMENT_RUNNERS[state.exp](store, state)
    return {
        "cube": views.cube_figure(state.norm, channel=state.ch),
        "cube_caption": views.NORM_CAPTIONS[state.norm],
        "figure": figure,
        "picture": picture,
        "caption": caption,
        "share": views.format_share(state),
    }


def state_from_controls(norm, ch, exp, bs, tile, affine, ratio) -> views.LearnState:
    try:
        return views.LearnState(
            norm=norm, ch=int(ch), exp=exp, bs=int(bs), tile=int(tile), affine=bool(affine), ratio=float(ratio)
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid setting: {error}") from None


__all__ = ["entry_for", "weights_note", "EXPERIMENT_RUNNERS", "render", "state_from_controls", "GRID"]
