"""Feature maps tab: look inside one conv block of a HINet variant for one image.

Wiring only: what the tab computes is `app.feature_logic` (models from the app's model store, features
from `hinet.features`, pictures and figures from `app.feature_views` / `app.architecture`). Captured
features are cached per (variant, image, view) in the session's `gr.State`, so switching block, channel
or k re-renders without running the model again.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from app import feature_logic as logic, feature_views as views
from app.architecture import architecture_figure, block_choices, default_block
from app.context import AppContext
from app.errors import user_errors
from app.exports import DOWNLOAD_HEIGHT, export_csv

# What the figures and tables are computed by, and how to get them without the page.
PRODUCED_BY = (
    "*Produced by* `app.feature_logic.render_block`: one forward pass of the chosen model with "
    "`hinet.features.capture_features` (hooks on every conv block), figures by `app.feature_views` "
    "(`statistics_figure`, `histogram_figure`, `formula_table`) and `app.architecture.architecture_figure`. "
    "From Python: the same view through the `/features_view` and `/features_compare` endpoints."
)
DEFAULT_K = 4
MAX_K = 8
STATE_SECONDS = 900


def build_tab(ctx: AppContext) -> None:
    store = ctx.store
    choices, default_id, other_id = logic.variant_choices(store)
    config = store.find_entry(default_id).config
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
            # Custom values: an API caller may name any entry (a session's upload too); the model store checks it.
            variant = gr.Dropdown(choices, value=default_id, label="Variant", allow_custom_value=True)
            # A file box, not gr.Image: gr.Image decodes the upload itself and answers an unreadable file with
            # a bare server error; load_image reads every upload and says plainly what is wrong.
            upload = gr.File(label="Your image (optional)", file_types=["image"], type="filepath")
            with gr.Row():
                example = gr.Dropdown(list(logic.EXAMPLES), value=logic.DEFAULT_EXAMPLE, label="Example image")
                example_button = gr.Button("Use example")
            restore_button = gr.Button("Use the restore tab's image", visible=ctx.restore_input is not None)
            view_mode = gr.Radio(list(views.VIEW_MODES), value=views.VIEW_CROP, label="Large images: capture on")
        with gr.Column(scale=2):
            architecture = gr.Plot(
                architecture_figure(config, first_block),
                label="Architecture (both U-Nets)",
                elem_id="features-architecture",
            )
            block = gr.Dropdown(block_choices(config), value=first_block, label="Block")
    with gr.Row():
        k = gr.Slider(1, MAX_K, value=DEFAULT_K, step=1, label="Channels shown per panel (top-k by variance)")
        channel = gr.Slider(0, config.channels(0) - 1, value=0, step=1, label="Channel for the statistics")
    caption = gr.Markdown()
    overview = gr.Image(
        label="Feature maps", format="png", type="numpy", interactive=False, elem_id="features-overview"
    )
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
    with gr.Row():
        statistics_csv = gr.File(
            label="Per-channel statistics of this block (CSV)",
            interactive=False,
            height=DOWNLOAD_HEIGHT,
            elem_id="features-statistics-csv",
        )
        table_csv = gr.File(label="The formula table (CSV)", interactive=False, height=DOWNLOAD_HEIGHT)
    gr.Markdown(PRODUCED_BY)
    with gr.Accordion("Compare variants: the same block in two variants", open=False):
        variant_b = gr.Dropdown(
            choices, value=other_id, label="Variant B (A is the variant above)", allow_custom_value=True
        )
        compare_button = gr.Button("Compare")
        compare_caption = gr.Markdown()
        with gr.Row():
            compare_a = gr.Image(label="Variant A", format="png", type="numpy", interactive=False)
            compare_b = gr.Image(label="Variant B", format="png", type="numpy", interactive=False)
        compare_plot = gr.Plot(label="Std after the norm, A vs B")
        compare_csv = gr.File(
            label="Per-channel statistics of A and B (CSV)", interactive=False, height=DOWNLOAD_HEIGHT
        )

    view_outputs = [
        architecture,
        overview,
        caption,
        statistics,
        histogram,
        table,
        block,
        channel,
        source_state,
        cache_state,
    ]

    @user_errors
    def show(entry_id, mode, block_name, k_value, channel_value, source, cache, uploads):
        models = store.for_session(uploads)
        r = logic.render_block(models, entry_id, source, mode, block_name, k_value, channel_value, cache)
        return (
            r["architecture"],
            r["overview"],
            r["caption"],
            r["statistics"],
            r["histogram"],
            r["table"],
            gr.Dropdown(choices=r["choices"], value=r["block"]),
            gr.Slider(maximum=r["channels"] - 1, value=r["channel"]),
            r["source"],
            r["cache"],
        )

    view_inputs = [variant, view_mode, block, k, channel, source_state, cache_state, ctx.session_uploads()]
    for trigger, name in (
        (variant.input, "features_view"),
        (view_mode.input, None),
        (block.input, None),
        (k.release, None),
        (channel.release, None),
    ):
        trigger(show, view_inputs, view_outputs, api_name=name, api_visibility="public" if name else "private")

    @user_errors
    def use_upload(path):
        return logic.upload_source(path)

    @user_errors
    def use_example(name):
        return logic.example_source(name)

    upload.upload(use_upload, upload, source_state, api_name="features_upload").then(
        show, view_inputs, view_outputs, api_visibility="private"
    )
    example_button.click(use_example, example, source_state, api_name="features_example").then(
        show, view_inputs, view_outputs, api_visibility="private"
    )
    if ctx.restore_input is not None:
        # The restore tab's model input is read from its session state: no image crosses the browser, so it
        # arrives unrounded, and an API caller has no image to send here (uploads go to /features_upload).
        restore_button.click(
            user_errors(logic.restore_input_source), ctx.restore_input, source_state, api_name="features_restore_image"
        ).then(show, view_inputs, view_outputs, api_visibility="private")

    ctx.on_page_load(show, view_inputs, view_outputs)
    ctx.features_variant = variant
    ctx.features_variant_b = variant_b
    ctx.features_refresh = (show, view_inputs, view_outputs)

    @user_errors
    def export_block(entry_id, mode, block_name, source, cache, shown_table, uploads):
        stats = logic.block_statistics(store.for_session(uploads), entry_id, source, mode, block_name, cache)
        return export_csv(stats, f"channel_statistics_{block_name}"), export_csv(shown_table, f"formula_{block_name}")

    @user_errors
    def export_compare(entry_a, entry_b, mode, block_name, source, cache, uploads):
        models = store.for_session(uploads)
        both = pd.concat(
            [logic.block_statistics(models, entry, source, mode, block_name, cache) for entry in (entry_a, entry_b)]
        )
        return export_csv(both, f"compare_{block_name}")

    @user_errors
    def compare(entry_a, entry_b, mode, block_name, k_value, source, cache, uploads):
        models = store.for_session(uploads)
        r = logic.render_compare(models, entry_a, entry_b, source, mode, block_name, k_value, cache)
        return r["caption"], r["a"], r["b"], r["figure"], r["source"], r["cache"]

    compare_button.click(
        compare,
        [variant, variant_b, view_mode, block, k, source_state, cache_state, ctx.session_uploads()],
        [compare_caption, compare_a, compare_b, compare_plot, source_state, cache_state],
        api_name="features_compare",
    ).then(
        export_compare,
        [variant, variant_b, view_mode, block, source_state, cache_state, ctx.session_uploads()],
        compare_csv,
        api_visibility="private",
    )

    # Whichever event redrew the block (a control, an image source, the page load, another tab), its new
    # formula table triggers the CSV files of what is shown.
    table.change(
        export_block,
        [variant, view_mode, block, source_state, cache_state, table, ctx.session_uploads()],
        [statistics_csv, table_csv],
        api_visibility="private",
    )
