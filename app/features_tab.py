"""Feature maps tab: look inside one conv block of a HINet variant for one image.

Wiring only: the model comes from the model store (`app.models`), the features from
`hinet.features.capture_features`, and every picture, figure and table from `app.feature_views` /
`app.architecture`. Captured features are cached per (variant, image, view) in the session's
`gr.State`, so switching block, channel or k re-renders without running the model again.
"""

from __future__ import annotations

from collections import OrderedDict

import gradio as gr

from app import feature_views as views
from app.architecture import architecture_figure, block_choices, block_layout, default_block
from app.context import AppContext
from app.errors import user_errors
from app.models import default_entry, find_entry, get_model, list_entries
from hinet.data import skimage_images
from hinet.errors import ConfigError, ImageError
from hinet.features import capture_features
from hinet.image import load_image

EXAMPLES = ("astronaut", "coffee", "chelsea", "camera", "brick")
DEFAULT_EXAMPLE = "astronaut"
DEFAULT_K = 4
MAX_K = 8
STATE_SECONDS = 900
CACHE_ENTRIES = 2  # captured (variant, image, view) sets per session (A and B of a comparison); ~70 MB each


# ----------------------------------------------------------------------------------------------------
# Image source (kept in a gr.State as {"pixels", "name", "key"})


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


def restore_tab_source(array) -> dict:
    if array is None:
        raise ImageError("the restore tab has no image yet; open it and load one first")
    return _source(load_image(array).pixels, "the restore tab's current input")


# ----------------------------------------------------------------------------------------------------
# Capture (cached) and views


def captured_features(entry_id: str, source: dict, view_mode: str, cache: OrderedDict | None):
    """(CapturedFeatures, cache): from the session cache, or one forward pass of the model."""
    cache = OrderedDict() if cache is None else cache
    key = (entry_id, source["key"], view_mode)
    if key in cache:
        cache.move_to_end(key)
        return cache[key], cache
    model = get_model(entry_id)
    pixels = source["pixels"]
    captured = capture_features(model, pixels, **views.view_arguments(view_mode, *pixels.shape[:2]))
    cache[key] = captured
    while len(cache) > CACHE_ENTRIES:
        cache.popitem(last=False)
    return captured, cache


def _norm_layer(entry_id: str, block: str):
    return get_model(entry_id).conv_blocks()[block].norm


def render_block(entry_id: str, source: dict | None, view_mode: str, block: str | None, k: int,
                 channel: int, cache: OrderedDict | None):
    """Everything the tab shows for one block; pure data, no component updates."""
    source = source or example_source(DEFAULT_EXAMPLE)
    config = find_entry(entry_id).config
    captured, cache = captured_features(entry_id, source, view_mode, cache)
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
        "table": views.formula_table(features, channel, _norm_layer(entry_id, block)),
    }


def render_compare(entry_a: str, entry_b: str, source: dict | None, view_mode: str, block: str, k: int,
                   cache: OrderedDict | None):
    source = source or example_source(DEFAULT_EXAMPLE)
    captured_a, cache = captured_features(entry_a, source, view_mode, cache)
    captured_b, cache = captured_features(entry_b, source, view_mode, cache)
    if block not in captured_a or block not in captured_b:
        raise ConfigError(f"block {block} does not exist in both variants (they differ in depth); pick another")
    fa, fb = captured_a[block], captured_b[block]
    label_a, label_b = find_entry(entry_a).label, find_entry(entry_b).label
    caption = (f"The same block ({block}) on the same view in two variants: A = {label_a}; B = {label_b}. "
               "The bars compare the per-channel spread after the norm: normalized channels sit near |γ|.")
    return {
        "source": source, "cache": cache, "a": views.block_overview(fa, int(k)), "b": views.block_overview(fb, int(k)),
        "figure": views.compare_figure(fa, fb, "A", "B"), "caption": caption,
    }


# ----------------------------------------------------------------------------------------------------
# The tab


def on_page_load(ctx: AppContext, fn, inputs, outputs) -> None:
    """Run `fn` when a page opens, so the tab shows its default view without a click."""
    if ctx.blocks is not None:
        ctx.blocks.load(fn, inputs, outputs, api_visibility="private")


def _variant_choices() -> tuple[list[tuple[str, str]], str, str]:
    entries = list_entries()
    # The tab is about HIN blocks, so it opens on a trained HIN model even where a task's default uses
    # another norm; variant B is then the first model with a different norm.
    hin = [e for e in entries if e.config.norm == "half_instance"]
    default = default_entry(hin or entries, None)
    other = next((e.id for e in entries if e.config.norm != default.config.norm), default.id)
    return [(e.label, e.id) for e in entries], default.id, other


def build_tab(ctx: AppContext) -> None:
    choices, default_id, other_id = _variant_choices()
    config = find_entry(default_id).config
    first_block = default_block(config)

    # Dropped 15 minutes after their last update: a closed page's features should not stay in memory.
    source_state = gr.State(None, time_to_live=STATE_SECONDS)
    cache_state = gr.State(None, time_to_live=STATE_SECONDS)
    gr.Markdown(
        "Look inside one conv block: what conv_1 produced, what the norm made of its first channels, what "
        "skipped the norm, and what the block passed on. Pick a block in the list; the strip shows where it sits."
    )
    with gr.Row():
        with gr.Column(scale=1):
            variant = gr.Dropdown(choices, value=default_id, label="Variant")
            # A file box, not gr.Image: gr.Image decodes the upload itself and answers an unreadable file with
            # a bare server error; load_image reads every upload and says plainly what is wrong.
            upload = gr.File(label="Your image (optional)", file_types=["image"], type="filepath")
            with gr.Row():
                example = gr.Dropdown(list(EXAMPLES), value=DEFAULT_EXAMPLE, label="Example image")
                example_button = gr.Button("Use example")
            restore_button = gr.Button("Use the restore tab's image", visible=ctx is not None and
                                       getattr(ctx, "restore_image", None) is not None)
            view_mode = gr.Radio(list(views.VIEW_MODES), value=views.VIEW_CROP, label="Large images: capture on")
        with gr.Column(scale=2):
            architecture = gr.Plot(architecture_figure(config, first_block), label="Architecture (both U-Nets)",
                                   elem_id="features-architecture")
            block = gr.Dropdown(block_choices(config), value=first_block, label="Block")
    with gr.Row():
        k = gr.Slider(1, MAX_K, value=DEFAULT_K, step=1, label="Channels shown per panel (top-k by variance)")
        channel = gr.Slider(0, config.channels(0) - 1, value=0, step=1, label="Channel for the statistics")
    caption = gr.Markdown()
    overview = gr.Image(label="Feature maps", format="png", type="numpy", interactive=False,
                        elem_id="features-overview")
    with gr.Row():
        statistics = gr.Plot(label="Per-channel statistics", elem_id="features-statistics")
        histogram = gr.Plot(label="Histogram of the chosen channel", elem_id="features-histogram")
    gr.Markdown(
        "Bars: each channel's mean and spread before (grey) and after (green) the norm. In the shaded, normalized "
        "channels an instance norm sets every mean to β and every std to |γ|; batch, layer and group norms share "
        "statistics, so theirs only come close. Unshaded channels pass unchanged. The histogram compares one "
        "channel's values before and after; the table works the norm's formula out for that channel's strongest pixel."
    )
    table = gr.Dataframe(label="The norm's formula with this channel's numbers", interactive=False, wrap=True)
    with gr.Accordion("Compare variants: the same block in two variants", open=False):
        variant_b = gr.Dropdown(choices, value=other_id, label="Variant B (A is the variant above)")
        compare_button = gr.Button("Compare")
        compare_caption = gr.Markdown()
        with gr.Row():
            compare_a = gr.Image(label="Variant A", format="png", type="numpy", interactive=False)
            compare_b = gr.Image(label="Variant B", format="png", type="numpy", interactive=False)
        compare_plot = gr.Plot(label="Std after the norm, A vs B")

    view_outputs = [architecture, overview, caption, statistics, histogram, table, block, channel,
                    source_state, cache_state]

    @user_errors
    def show(entry_id, mode, block_name, k_value, channel_value, source, cache):
        r = render_block(entry_id, source, mode, block_name, k_value, channel_value, cache)
        return (r["architecture"], r["overview"], r["caption"], r["statistics"], r["histogram"], r["table"],
                gr.Dropdown(choices=r["choices"], value=r["block"]),
                gr.Slider(maximum=r["channels"] - 1, value=r["channel"]), r["source"], r["cache"])

    view_inputs = [variant, view_mode, block, k, channel, source_state, cache_state]
    for trigger, name in ((variant.input, "features_view"), (view_mode.input, None), (block.input, None),
                          (k.release, None), (channel.release, None)):
        trigger(show, view_inputs, view_outputs, api_name=name, api_visibility="public" if name else "private")

    @user_errors
    def use_upload(path):
        return upload_source(path)

    @user_errors
    def use_example(name):
        return example_source(name)

    upload.upload(use_upload, upload, source_state, api_name="features_upload").then(
        show, view_inputs, view_outputs, api_visibility="private")
    example_button.click(use_example, example, source_state, api_name="features_example").then(
        show, view_inputs, view_outputs, api_visibility="private")
    if ctx is not None and getattr(ctx, "restore_image", None) is not None:
        restore_button.click(user_errors(restore_tab_source), ctx.restore_image, source_state,
                             api_name="features_restore_image").then(
            show, view_inputs, view_outputs, api_visibility="private")

    on_page_load(ctx, show, view_inputs, view_outputs)

    @user_errors
    def compare(entry_a, entry_b, mode, block_name, k_value, source, cache):
        r = render_compare(entry_a, entry_b, source, mode, block_name, k_value, cache)
        return r["caption"], r["a"], r["b"], r["figure"], r["source"], r["cache"]

    compare_button.click(compare, [variant, variant_b, view_mode, block, k, source_state, cache_state],
                         [compare_caption, compare_a, compare_b, compare_plot, source_state, cache_state],
                         api_name="features_compare")
