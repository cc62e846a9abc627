"""What the "Inside HIN blocks" tab computes, without any Gradio: image sources, cached captures, and the
data of one block's view or of a two-variant comparison.

The tab (`app/features_tab.py`) only wires widgets to these functions. Models come from the app's
`ModelStore`, features from `hinet.features.capture_features`, and every picture, figure and table from
`app.feature_views` / `app.architecture`. Captured features are cached per (variant, image, view) in a
session's cache (an `OrderedDict` the tab keeps in a `gr.State`), so switching block, channel or k
re-renders without running the model again.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from app import feature_views as views
from app.architecture import architecture_figure, block_choices, block_layout, default_block
from app.models import ModelStore, SessionModels
from hinet.data import skimage_images
from hinet.errors import ConfigError, ImageError
from hinet.features import capture_features
from hinet.image import load_image

EXAMPLES = ("astronaut", "coffee", "chelsea", "camera", "brick")
DEFAULT_EXAMPLE = "astronaut"
CACHE_ENTRIES = 2  # captured (variant, image, view) sets per session (A and B of a comparison); ~70 MB each
RESTORE_INPUT_NAME = "the restore tab's current input"


# ----------------------------------------------------------------------------------------------------
# Image sources: {"pixels", "name", "key"}


def _source(pixels, name: str) -> dict:
    return {"pixels": pixels, "name": name, "key": views.image_key(pixels)}


def example_source(name: str) -> dict:
    images = skimage_images()
    if name not in images:
        raise ImageError(f"unknown example {name!r}; pick one of {', '.join(EXAMPLES)}")
    return _source(images[name], f"example '{name}'")


def upload_source(path: str | None) -> dict:
    if not path:
        raise ImageError("no image was uploaded; drop an image file on the upload box")
    loaded = load_image(path)
    return _source(loaded.pixels, loaded.name)


def restore_input_source(pixels: np.ndarray | None) -> dict:
    """The restore tab's model input exactly as its models saw it (float32, neither rounded nor clipped)."""
    if pixels is None:
        raise ImageError("the restore tab has no model input yet; load an image there and press Restore first")
    return _source(pixels, RESTORE_INPUT_NAME)


# ----------------------------------------------------------------------------------------------------
# Capture (cached) and views


def captured_features(
    store: ModelStore | SessionModels, entry_id: str, source: dict, view_mode: str, cache: OrderedDict | None
):
    """(CapturedFeatures, cache): from the session cache, or one forward pass of the model."""
    cache = OrderedDict() if cache is None else cache
    # The weights' version is in the key: a retrained run or a re-uploaded checkpoint keeps its entry id.
    key = (entry_id, store.weights_version(entry_id), source["key"], view_mode)
    if key in cache:
        cache.move_to_end(key)
        return cache[key], cache
    model = store.get_model(entry_id)
    pixels = source["pixels"]
    captured = capture_features(model, pixels, **views.view_arguments(view_mode, *pixels.shape[:2]))
    cache[key] = captured
    while len(cache) > CACHE_ENTRIES:
        cache.popitem(last=False)
    return captured, cache


def _norm_layer(store: ModelStore | SessionModels, entry_id: str, block: str):
    return store.get_model(entry_id).conv_blocks()[block].norm


def render_block(
    store: ModelStore | SessionModels,
    entry_id: str,
    source: dict | None,
    view_mode: str,
    block: str | None,
    k: int,
    channel: int,
    cache: OrderedDict | None,
):
    """Everything the tab shows for one block; pure data, no component updates."""
    source = source or example_source(DEFAULT_EXAMPLE)
    config = store.find_entry(entry_id).config
    captured, cache = captured_features(store, entry_id, source, view_mode, cache)
    if block not in captured:
        block = default_block(config)
    features = captured[block]
    channels = len(features.mean_before)
    channel = min(max(int(channel or 0), 0), channels - 1)
    info = next(b for b in block_layout(config) if b.name == block)
    caption = (
        f"**{info.label}** of {source['name']}. {views.view_caption(captured)} "
        f"Left to right: conv_1's output before the norm, the same channels after it (each pair shares one "
        f"colour scale), the channels that skip the norm, and the block output; the {int(k)} channels of "
        f"each with the largest spatial variance."
    )
    return {
        "source": source,
        "cache": cache,
        "block": block,
        "channel": channel,
        "channels": channels,
        "choices": block_choices(config),
        "architecture": architecture_figure(config, block),
        "overview": views.block_overview(features, int(k)),
        "caption": caption,
        "statistics": views.statistics_figure(features, channel),
        "histogram": views.histogram_figure(features, channel),
        "table": views.formula_table(features, channel, _norm_layer(store, entry_id, block)),
    }


def block_statistics(
    store: ModelStore | SessionModels, entry_id: str, source: dict | None, view_mode: str, block: str, cache
):
    """The per-channel statistics of one block (the data of the statistics figure), from the session's
    capture when it holds this view, else from one forward pass."""
    source = source or example_source(DEFAULT_EXAMPLE)
    captured, _ = captured_features(store, entry_id, source, view_mode, cache)
    if block not in captured:
        block = default_block(store.find_entry(entry_id).config)
    return views.channel_statistics_table(captured[block]).assign(variant=entry_id, image=source["name"])


def render_compare(
    store: ModelStore | SessionModels,
    entry_a: str,
    entry_b: str,
    source: dict | None,
    view_mode: str,
    block: str,
    k: int,
    cache: OrderedDict | None,
):
    source = source or example_source(DEFAULT_EXAMPLE)
    captured_a, cache = captured_features(store, entry_a, source, view_mode, cache)
    captured_b, cache = captured_features(store, entry_b, source, view_mode, cache)
    if block not in captured_a or block not in captured_b:
        raise ConfigError(f"block {block} does not exist in both variants (they differ in depth); pick another")
    fa, fb = captured_a[block], captured_b[block]
    label_a, label_b = store.find_entry(entry_a).label, store.find_entry(entry_b).label
    caption = (
        f"The same block ({block}) on the same view in two variants: A = {label_a}; B = {label_b}. "
        "The bars compare the per-channel spread after the norm: normalized channels sit near |γ|."
    )
    return {
        "source": source,
        "cache": cache,
        "a": views.block_overview(fa, int(k)),
        "b": views.block_overview(fb, int(k)),
        "figure": views.compare_figure(fa, fb, "A", "B"),
        "caption": caption,
    }


def variant_choices(store: ModelStore | SessionModels) -> tuple[list[tuple[str, str]], str, str]:
    """(dropdown choices, variant A, variant B) the tab opens with."""
    entries = store.list_entries()
    # The tab is about HIN blocks, so it opens on a trained HIN model even where a task's default uses
    # another norm; variant B is then the first model with a different norm.
    hin = [e for e in entries if e.config.norm == "half_instance"]
    default = store.default_entry(hin or entries, None)
    other = next((e.id for e in entries if e.config.norm != default.config.norm), default.id)
    return [(e.label, e.id) for e in entries], default.id, other


__all__ = [
    "EXAMPLES",
    "DEFAULT_EXAMPLE",
    "example_source",
    "upload_source",
    "restore_input_source",
    "captured_features",
    "render_block",
    "render_compare",
    "block_statistics",
    "variant_choices",
]
