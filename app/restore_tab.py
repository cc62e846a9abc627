"""The "Restore & compare" tab: degrade a clean image (or upload a degraded one), restore it with up to
four variants, compare them with a before/after slider, a synced zoom grid, difference maps and a
metrics table, and download lossless outputs.

Widgets only; the work is in `app/restore_logic.py` (views, orchestration) and `hinet/` (everything
numerical). The page opens on a finished comparison of an example (the "first view", computed once and
shared by every page). The heavy result lives in a per-user `gr.State`, so zoom and display changes never
rerun a model; the model input of the last restore lives in another (`AppContext.restore_input`), read by
the feature tab.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import uuid
from functools import partial
from pathlib import Path

import gradio as gr

from app.choices import task_model_choices
from app.context import CPU_QUEUE, AppContext
from app.errors import user_errors
from app.exports import DOWNLOAD_HEIGHT, export_csv
from app.models import ModelStore
from app.restore_logic import (
    APP_PNG_LEVEL,
    EXAMPLE_CROPS,
    FIRST_EXAMPLE,
    FIRST_VIEWS,
    MAX_VARIANTS,
    MIN_TILE,
    TILE_STEP,
    RestoreRequest,
    RestoreResult,
    crop_box,
    describe_box,
    describe_scale,
    display_uint8,
    example_path,
    fit_for_screen,
    metrics_records,
    metrics_table,
    overview,
    run_restore,
    save_outputs,
    screen_factor,
    screen_size,
    strength_for,
    summary,
    zoom_panels,
)
from hinet.errors import HINetError
from hinet.image import DEFAULT_MAX_PIXELS, load_image
from hinet.stats_choice import DEFAULT_STATS
from hinet.tasks import TASK_NAMES, TASKS

log = logging.getLogger(__name__)

STATE_TTL_S = 3600
MODEL_DEFAULT = "each model's default"  # the statistics its checkpoint records (chosen on validation)
WHOLE_IMAGE = "whole image"
TILED = "tiles"  # custom tile size and overlap
TRAIN_TILES = "training-patch tiles"
LOCAL = "local statistics"
# "Run on" choices -> the stats protocol of hinet.inference (custom tiles run "whole" inside each tile).
RUN_ON_STATS = {
    MODEL_DEFAULT: DEFAULT_STATS,
    WHOLE_IMAGE: "whole",
    TRAIN_TILES: "tiled",
    LOCAL: "local",
    TILED: "whole",
}
FIRST_ZOOM = (0.5, 0.5, 4)  # the zoom sliders' start: centre x, centre y, zoom
SLIDER_HEIGHT = 360  # px: with the metrics under it, the result fits above the fold of a 1366 x 768 screen
RUN_ON_CHOICES = [
    ("Each model's default (chosen on validation when it shipped; whole image if none is recorded)", MODEL_DEFAULT),
    ("Whole image, one pass (statistics over the whole image)", WHOLE_IMAGE),
    ("Tiles of each model's training patch (statistics per tile, blended)", TRAIN_TILES),
    ("Local statistics: a sliding window 1.5x the training patch (TLC), one pass", LOCAL),
    ("Custom tiles (size and overlap below)", TILED),
]


def delete_download_dir(state: dict | None) -> None:
    """Remove a restore's folder of downloads and display files (its gr.State expired or the page closed)."""
    if state and state.get("download_dir"):
        shutil.rmtree(state["download_dir"], ignore_errors=True)


def _label_of(store: ModelStore, entry_id: str) -> str:
    try:
        entry = store.find_entry(entry_id)
    except HINetError:
        return entry_id
    return entry.id.split("/", 1)[-1] + ("" if entry.trained else " (untrained)")


def _image_source(image, example) -> str | None:
    path = image if isinstance(image, str) else getattr(image, "name", None) if image is not None else None
    if path:
        return path
    if example:
        return str(example_path(example))
    return None


def _screen(pixels):
    return fit_for_screen(display_uint8(pixels))[0]


def _screen_png(picture, folder: str) -> str:
    """Write a display picture (uint8, already fitted for the screen) and return its path.

    Display files only (downloads go through `save_outputs`), at the app's PNG level (`APP_PNG_LEVEL`).
    """
    from PIL import Image

    path = Path(folder) / "screen" / f"{uuid.uuid4().hex}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path, format="PNG", compress_level=APP_PNG_LEVEL)
    return str(path)


def _slider(state: dict, slider_variant: str | None):
    result: RestoreResult = state["result"]
    chosen = result.output(slider_variant) if slider_variant else result.outputs[0]
    saved, folder = state["saved"], state["download_dir"]
    # Full-size pictures reuse the lossless download files instead of encoding them again.
    full_size = screen_factor(result.height, result.width) == 1
    before = saved["input"] if full_size and "input" in saved else _screen_png(_screen(result.input_pixels), folder)
    after = saved[chosen.entry_id] if full_size else _screen_png(_screen(chosen.pixels), folder)
    return (before, after)


def _views(state: dict, center_x: float, center_y: float, zoom: float, show_difference: bool):
    result: RestoreResult = state["result"]
    folder = state["download_dir"]
    box = crop_box(result.height, result.width, center_x, center_y, zoom)
    panels, scale = zoom_panels(result, box, show_difference)
    note = describe_box(box)
    if scale is not None:
        note += "  \n" + describe_scale(scale)
    elif show_difference:
        note += "  \nDifference maps need a ground truth: degrade a clean image, or upload the GT."
    gallery = [(_screen_png(picture, folder), caption) for picture, caption in panels]
    overview_path = _screen_png(fit_for_screen(overview(result, box))[0], folder)
    # Gradio copies returned files into its cache, so the previous view's files can go.
    for old in state.get("view_files", []):
        Path(old).unlink(missing_ok=True)
    state["view_files"] = [overview_path] + [path for path, _ in gallery]
    return overview_path, gallery, note


@user_errors
def restore(
    store: ModelStore,
    image: str | None,
    example: str | None,
    degrade_first: bool,
    seed: float,
    ground_truth: str | None,
    task: str,
    variants: list[str] | None,
    slider_variant: str | None,
    tiling: str,
    tile_size: float,
    overlap: float,
    show_seams: bool,
    center_x: float,
    center_y: float,
    zoom: float,
    show_difference: bool,
    previous: dict | None = None,
    uploads=None,
    progress=gr.Progress(),
    **strength_values,
):
    store = store.for_session(uploads)  # the session's uploaded models resolve too
    source = _image_source(image, example)
    request = RestoreRequest(
        task=task,
        variant_ids=tuple(variants or ()),
        image_path=source,
        gt_path=None if degrade_first else ground_truth,
        degrade_first=bool(degrade_first),
        strength=strength_for(task, strength_values) if degrade_first else {},
        seed=int(seed or 0),
        tile=int(tile_size) if tiling == TILED else None,
        overlap=int(overlap),
        stats=RUN_ON_STATS.get(tiling, tiling),
        show_seams=bool(show_seams) and tiling == TILED,
        max_pixels=DEFAULT_MAX_PIXELS,
    )
    result = run_restore(
        request,
        store.get_model,
        partial(_label_of, store),
        progress=lambda fraction, text: progress(fraction, desc=text),
        train_patch_of=store.train_patch_of,
        default_stats_of=store.default_stats_of,
    )
    origin = {"example": None if image else example, "tiling": tiling}
    return _present(result, origin, previous, slider_variant, center_x, center_y, zoom, show_difference)


def _present(result: RestoreResult, origin: dict, previous, slider_variant, center_x, center_y, zoom, show_difference):
    """One user's view of a result: its own folder of downloads and display files (replaced by the next
    restore), the slider, the zoom grid, the metrics. `origin` holds the example's name and the "Run on"
    choice, for the API call that reproduces the result."""
    delete_download_dir(previous)
    download_dir = tempfile.mkdtemp(prefix="hinet_restore_")
    saved = save_outputs(result, Path(download_dir))
    state = {"result": result, "download_dir": download_dir, "saved": saved, **origin}
    overview_image, panels, note = _views(state, center_x, center_y, zoom, show_difference)
    text = summary(result) + (f"  \n{note}" if note else "")
    # The model input goes to the other tabs as it is (the same array, server-side): never rounded to 8 bits.
    return (
        state,
        _slider(state, slider_variant),
        overview_image,
        panels,
        metrics_table(result),
        [str(p) for p in saved.values()],
        text,
        result.input_pixels,
    )


def first_view_result(store: ModelStore) -> RestoreResult | None:
    """The first view (`restore_logic.FIRST_VIEWS`: computed once per store and model files), or None when
    no model can run. `build_tab` calls it in a background thread while the server starts, so that the first
    page finds it ready (a page that opens earlier waits for that computation instead of repeating it)."""
    try:
        return FIRST_VIEWS.get(store, TASK_NAMES[0], partial(_label_of, store))
    except (HINetError, OSError) as error:
        log.warning("no first view: %s", error)
        return None


@user_errors
def first_view(store: ModelStore, previous: dict | None = None):
    """The page-load event: the example comparison, and the controls set to what it shows, so that pressing
    Restore reproduces it. Nothing changes when no model can run (the page opens on the empty form)."""
    result = first_view_result(store)
    if result is None:
        return (gr.skip(),) * 11
    variant_ids = list(result.request.variant_ids)
    origin = {"example": FIRST_EXAMPLE, "tiling": MODEL_DEFAULT}
    shown = _present(result, origin, previous, "", *FIRST_ZOOM, False)
    # The cached result is shared by every page: this page's model input is its own copy.
    return (FIRST_EXAMPLE, True, gr.update(value=variant_ids), *shown[:-1], result.input_pixels.copy())


def api_call(state: dict) -> str:
    """The gradio_client call of `/restore` that computes this result again (the same numbers up to timing)."""
    req: RestoreRequest = state["result"].request
    args = {"image": "handle_file('your image')" if not state.get("example") else None, "example": state.get("example")}
    # image, example and ground_truth have no default: the call names all three.
    args["ground_truth"] = "handle_file('its ground truth')" if req.gt_path else None
    args.update(degrade_first=req.degrade_first, task=req.task, variants=list(req.variant_ids))
    if req.degrade_first:
        args["seed"] = req.seed
        args.update({f"{req.task}_{name}": value for name, value in req.strength.items()})
    args["tiling"] = state.get("tiling", MODEL_DEFAULT)
    if req.tile:
        args.update(tile_size=req.tile, overlap=req.overlap, show_seams=req.show_seams)
    lines = [
        f"    {name}={value if str(value).startswith('handle_file') else repr(value)}," for name, value in args.items()
    ]
    return "\n".join(
        [
            "from gradio_client import Client, handle_file",
            "",
            "client = Client(URL_OF_THIS_APP)",
            "outputs = client.predict(",
            *lines,
            '    api_name="/restore",',
            ")",
            "metrics = outputs[3]  # this table (headers, data)",
        ]
    )


@user_errors
def export_metrics(state: dict | None):
    """The metrics as a CSV file (every row with what produced it) and how to compute them again."""
    if not state:
        return None, ""
    frame = metrics_records(state["result"])
    path = export_csv(frame, f"{Path(state['result'].source.name).stem}_metrics", folder=Path(state["download_dir"]))
    text = (
        "*Produced by* `app.restore_logic.run_restore` (models: `hinet.inference.restore`; metrics: "
        "`hinet.metrics.evaluate_pair`), the function behind the `/restore` endpoint. The same result "
        f"from Python:\n\n```python\n{api_call(state)}\n```"
    )
    return path, text


@user_errors
def refresh_slider(state: dict | None, slider_variant: str | None):
    if not state:
        return gr.skip()
    return _slider(state, slider_variant)


@user_errors
def preview_input(image: str | None, example: str | None):
    source = _image_source(image, example)
    if not source:
        return None
    loaded = load_image(source, max_pixels=DEFAULT_MAX_PIXELS)
    return _screen(loaded.pixels)


@user_errors
def set_center(state: dict | None, evt: gr.SelectData):
    """Clicking the overview moves the zoom window's centre there (the overview may be reduced)."""
    if not state or evt.index is None:
        return gr.skip(), gr.skip()
    result: RestoreResult = state["result"]
    factor = screen_factor(result.height, result.width)
    x, y = evt.index[0], evt.index[1]
    shown_w, shown_h = screen_size(result.width, factor), screen_size(result.height, factor)
    # Rounded to the sliders' step.
    return (round(min(1.0, max(0.0, (x + 0.5) / shown_w)), 2), round(min(1.0, max(0.0, (y + 0.5) / shown_h)), 2))


@user_errors
def on_task_change(store: ModelStore, task: str, uploads=None):
    choices, default, warnings = task_model_choices(store.for_session(uploads), task)
    group_updates = [gr.update(visible=(name == task)) for name in TASK_NAMES]
    return (
        gr.update(choices=choices, value=default),
        gr.update(choices=[("first chosen", "")] + choices, value=""),
        warnings,
        *group_updates,
    )


def build_tab(ctx: AppContext) -> None:
    first_task = TASK_NAMES[0]
    store = ctx.store
    choices, default, warnings = task_model_choices(store, first_task)
    # A 12 MP compare holds ~1 GB: free it when idle, and its files with it.
    state = gr.State(None, time_to_live=STATE_TTL_S, delete_callback=delete_download_dir)
    model_input = gr.State(None, time_to_live=STATE_TTL_S)  # the same array as the result's input_pixels

    # The result is on the right, above the fold; the controls few people change are in closed accordions.
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            gr.Markdown("### 1. Image")
            example = gr.Radio(list(EXAMPLE_CROPS), label="Pick a clean example…", value=None)
            image = gr.File(
                label="…or upload an image (any size; 8/16-bit, gray, RGB or RGBA kept as is)",
                file_types=["image"],
                type="filepath",
                height=140,
            )
            preview = gr.Image(
                label="Input as read by the server",
                format="png",
                interactive=False,
                height=160,
                elem_id="restore-preview",
            )
            degrade_first = gr.Checkbox(
                value=True,
                label="The image is clean: degrade it with the task's own "
                "degradation and keep the original as ground truth",
            )
            strength_inputs = {}
            strength_groups = []
            for task in TASKS.values():
                with gr.Group(visible=(task.name == first_task)) as group:
                    for spec in task.strengths:
                        strength_inputs[f"{task.name}_{spec.name}"] = gr.Slider(
                            spec.low, spec.high, value=spec.default, step=spec.step, label=spec.label
                        )
                strength_groups.append(group)
            with gr.Accordion("Degradation seed, ground truth of a degraded upload", open=False):
                seed = gr.Number(value=0, precision=0, minimum=0, label="Degradation seed")
                ground_truth = gr.File(
                    label="Ground truth for an already degraded upload (optional, same size)",
                    file_types=["image"],
                    type="filepath",
                )

            gr.Markdown("### 2. Models")
            with gr.Row():
                task_picker = gr.Dropdown(list(TASK_NAMES), value=first_task, label="Task", scale=4)
                refresh = gr.Button("Rescan models", size="sm", scale=1)
            variants = gr.Dropdown(
                choices,
                value=default,
                multiselect=True,
                max_choices=MAX_VARIANTS,
                allow_custom_value=True,  # API callers may name any entry; models checks it
                label=f"Variants to compare (1-{MAX_VARIANTS})",
                elem_id="restore-variants",
            )
            run = gr.Button("Restore", variant="primary")
            slider_variant = gr.Dropdown(
                [("first chosen", "")] + choices, value="", label="Slider shows", allow_custom_value=True
            )
            model_warnings = gr.Markdown(warnings)

            with gr.Accordion("Test-time statistics and tiling", open=False):
                gr.Markdown(
                    "Instance-type norms (HIN, IN, LN) average over the input they are given. Models "
                    "trained on small crops can do better when the statistics at test time cover a "
                    "similar area: per tile, or over a sliding window. Batch norm is unaffected."
                )
                tiling = gr.Radio(RUN_ON_CHOICES, value=MODEL_DEFAULT, label="How statistics are computed at test time")
                tile_size = gr.Slider(MIN_TILE, 1024, value=256, step=TILE_STEP, label="Tile size (pixels)")
                overlap = gr.Slider(0, 128, value=32, step=8, label="Tile overlap (pixels)")
                show_seams = gr.Checkbox(value=False, label="Show seams: zero overlap, no blending")

        with gr.Column(scale=3):
            slider = gr.ImageSlider(
                label="Before / after (drag the handle)",
                format="png",
                type="numpy",
                height=SLIDER_HEIGHT,
                elem_id="restore-slider",
            )
            metrics = gr.Dataframe(
                label="Metrics (needs a ground truth for PSNR/SSIM)", interactive=False, elem_id="restore-metrics"
            )
            summary_text = gr.Markdown(label="Summary")
            with gr.Accordion("The metrics as CSV, and how to compute them again", open=False):
                metrics_csv = gr.File(
                    label="Metrics (CSV)", interactive=False, height=DOWNLOAD_HEIGHT, elem_id="restore-metrics-csv"
                )
                reproduce = gr.Markdown()
            with gr.Row():
                center_x = gr.Slider(0, 1, value=FIRST_ZOOM[0], step=0.01, label="Zoom centre x")
                center_y = gr.Slider(0, 1, value=FIRST_ZOOM[1], step=0.01, label="Zoom centre y")
                zoom = gr.Slider(1, 32, value=FIRST_ZOOM[2], step=0.5, label="Zoom")
            show_difference = gr.Checkbox(value=False, label="Show difference maps |x − GT|")
            grid = gr.Gallery(
                label="Synced zoom: input, each variant, ground truth",
                format="png",
                columns=3,
                object_fit="contain",
                height="auto",
                elem_id="restore-grid",
            )
            overview_image = gr.Image(
                label="Input with tile grid and zoom window (click to move the zoom)",
                format="png",
                interactive=False,
                elem_id="restore-overview",
            )
            downloads = gr.File(
                label="Downloads (lossless PNG, 16-bit when the input was)",
                file_count="multiple",
                elem_id="restore-downloads",
            )

    ctx.restore_input = model_input
    ctx.restore_task = task_picker
    ctx.restore_variants = variants

    for component in (image, example):
        component.change(preview_input, [image, example], preview, api_visibility="private", concurrency_id=CPU_QUEUE)
    example.select(lambda: (None, True), None, [image, degrade_first], api_visibility="private")
    # An upload is usually already degraded; an example is clean. Either default can be changed by hand.
    image.upload(lambda: (None, False), None, [example, degrade_first], api_visibility="private")
    task_outputs = [variants, slider_variant, model_warnings, *strength_groups]
    task_inputs = [task_picker, ctx.session_uploads()]
    task_picker.change(partial(on_task_change, store), task_inputs, task_outputs, api_visibility="private")
    # Runs finished in the train tab (or copied into results/) appear without restarting the app.
    refresh.click(partial(on_task_change, store), task_inputs, task_outputs, api_visibility="private")

    run.click(
        partial(restore, store),
        inputs=[
            image,
            example,
            degrade_first,
            seed,
            ground_truth,
            task_picker,
            variants,
            slider_variant,
            tiling,
            tile_size,
            overlap,
            show_seams,
            center_x,
            center_y,
            zoom,
            show_difference,
            state,
        ],
        inputs_kwargs={**strength_inputs, "uploads": ctx.session_uploads()},
        outputs=[state, slider, overview_image, grid, metrics, downloads, summary_text, model_input],
        api_name="restore",
        concurrency_id=CPU_QUEUE,
        concurrency_limit=1,
    )
    threading.Thread(target=first_view_result, args=(store,), name="first-view", daemon=True).start()
    # Whichever event filled the table (Restore, the first view), its CSV and API call follow it.
    metrics.change(export_metrics, state, [metrics_csv, reproduce], api_visibility="private")
    ctx.on_page_load(
        partial(first_view, store),
        [state],
        [example, degrade_first, variants, state, slider, overview_image, grid, metrics, downloads, summary_text]
        + [model_input],
    )
    view_inputs = [state, center_x, center_y, zoom, show_difference]
    view_outputs = [overview_image, grid, summary_text]
    for control in (center_x, center_y, zoom, show_difference):
        control.change(_views_event, view_inputs, view_outputs, api_visibility="private", trigger_mode="always_last")
    slider_variant.change(refresh_slider, [state, slider_variant], slider, api_visibility="private")
    overview_image.select(set_center, state, [center_x, center_y], api_visibility="private")


@user_errors
def _views_event(state, center_x, center_y, zoom, show_difference):
    if not state:
        return gr.skip(), gr.skip(), gr.skip()
    overview_image, panels, note = _views(state, center_x, center_y, zoom, show_difference)
    return overview_image, panels, summary(state["result"]) + (f"  \n{note}" if note else "")


__all__ = ["build_tab", "restore", "CPU_QUEUE"]
