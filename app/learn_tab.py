"""Learn normalization tab: what each norm averages over, and live experiments on a real image and model.

Wiring only: the cube, the experiments and the share string are `app.learn_views`; models come from
the model store (`app.models`, trained when one exists, else the registry's seeded untrained weights,
and the captions say which). The state of the tab is a `LearnState`, shareable as a short string
("norm=hin&exp=batch&bs=4") or as the page URL's `?view=` query.
"""

from __future__ import annotations

from functools import lru_cache

import gradio as gr
import numpy as np
import torch

from app import learn_views as views
from app.errors import user_errors
from app.features_tab import on_page_load
from app.models import find_entry, get_model, list_entries, weights_version
from hinet.data import skimage_images
from hinet.errors import ConfigError
from hinet.features import capture_features

IMAGE = "astronaut"
CALIBRATION_IMAGES = ("coffee", "chelsea", "camera", "brick")  # BatchNorm's running statistics come from these
GRID = 4  # GRID x GRID crops form the "whole set" of the batch experiment
PATCH_SIDE = 32
TILE_CROP = (160, 160, 352, 352)  # a 192 x 192 crop of the astronaut for the seams experiment
BLOCK = "down_path_1.0"  # the first encoder block: its conv_1 output is the input of the first norm


def entry_for(norm: str) -> str:
    """The store's model with this norm (default ratio, affine, normalized from level 0): a trained one if
    any, else an untrained registry variant."""

    def fits(entry) -> bool:
        config = entry.config
        return (config.norm == norm and config.norm_ratio is None and config.norm_affine
                and config.encoder_level_is_normalized(0))

    candidates = sorted((e for e in list_entries() if fits(e)), key=lambda e: not e.trained)
    if not candidates:
        raise ConfigError(f"the model store has no {norm} model for the experiments")
    return candidates[0].id


def weights_note(entry_id: str) -> str:
    entry = find_entry(entry_id)
    return f"Model: {entry.label}." if entry.trained else (
        f"Model: {entry.label.split(' · ')[0]} with untrained (random, seed 0) weights.")


def _image(name: str) -> np.ndarray:
    return skimage_images()[name]


# The caches are keyed by (entry id, weights version): a replaced checkpoint must not serve stale features.


def patch_set(entry_id: str) -> torch.Tensor:
    return _patch_set(entry_id, weights_version(entry_id))


@lru_cache(maxsize=4)
def _patch_set(entry_id: str, version: int) -> torch.Tensor:
    pixels = _image(IMAGE)
    boxes = views.grid_boxes(*pixels.shape[:2], GRID, GRID)
    return views.block_input_features(get_model(entry_id), pixels, boxes, PATCH_SIDE, BLOCK)


def calibration_set(entry_id: str) -> torch.Tensor:
    return _calibration_set(entry_id, weights_version(entry_id))


@lru_cache(maxsize=4)
def _calibration_set(entry_id: str, version: int) -> torch.Tensor:
    model = get_model(entry_id)
    sets = []
    for name in CALIBRATION_IMAGES:
        pixels = _image(name)
        sets.append(views.block_input_features(model, pixels, views.grid_boxes(*pixels.shape[:2], GRID, GRID),
                                               PATCH_SIDE, BLOCK))
    return torch.cat(sets)


def batch_result(entry_id: str) -> views.BatchResult:
    return _batch_result(entry_id, weights_version(entry_id))


@lru_cache(maxsize=4)
def _batch_result(entry_id: str, version: int) -> views.BatchResult:
    return views.batch_dependence(patch_set(entry_id), list(range(1, GRID * GRID + 1)))


def tile_pixels() -> np.ndarray:
    y0, x0, y1, x1 = TILE_CROP
    return np.ascontiguousarray(_image(IMAGE)[y0:y1, x0:x1])


def crop_features(entry_id: str, dim: float = 1.0):
    """The first block's features for the tile crop (times `dim`), and the block's norm layer."""
    return _crop_features(entry_id, weights_version(entry_id), dim)


@lru_cache(maxsize=8)
def _crop_features(entry_id: str, version: int, dim: float):
    model = get_model(entry_id)
    captured = capture_features(model, tile_pixels() * np.float32(dim), blocks=[BLOCK])
    return captured[BLOCK], model.conv_blocks()[BLOCK].norm


# ----------------------------------------------------------------------------------------------------
# One function per experiment: (figure, picture or None, caption)


def run_batch(state: views.LearnState):
    entry_id = entry_for("half_instance")
    result = batch_result(entry_id)
    i = result.batch_sizes.index(state.bs)
    bn = "BatchNorm (batch statistics)"
    caption = (
        f"BatchNorm normalizes each image with its batch's statistics, so its output depends on the other images "
        f"in the batch; InstanceNorm and HIN use each image's own statistics. Here one crop of the astronaut is "
        f"normalized together with {state.bs - 1} random other crops (6 draws) instead of all {GRID * GRID}: its "
        f"feature changes by {result.mean_change[bn][i]:.3g} on average (max {result.max_change[bn][i]:.3g}) with "
        f"BatchNorm, {result.mean_change['InstanceNorm'][i]:.3g} with InstanceNorm and "
        f"{result.mean_change['Half InstanceNorm'][i]:.3g} with HIN. {weights_note(entry_id)}"
    )
    return views.batch_figure(result, state.bs), None, caption


def run_mode(state: views.LearnState):
    entry_id = entry_for("half_instance")
    result = views.train_vs_eval(patch_set(entry_id)[:1], calibration_set(entry_id))
    caption = (
        "In training, BatchNorm uses the current batch's statistics (here a batch of this one image: mean 0, "
        "std 1 per channel); in eval mode it uses running statistics collected during training (here from "
        f"{len(CALIBRATION_IMAGES) * GRID * GRID} crops of {', '.join(CALIBRATION_IMAGES)}), so the same image "
        f"comes out shifted and rescaled: mean |train − eval| = {result.mean_abs_difference:.3g}. "
        f"{weights_note(entry_id)}"
    )
    return views.mode_figure(result), None, caption


def run_tile(state: views.LearnState):
    entry_id = entry_for("half_instance")
    result = views.tile_seams(get_model(entry_id), tile_pixels(), state.tile)
    caption = (
        "Instance statistics are computed over whatever the model sees. From left: a 192 x 192 crop of the "
        f"astronaut restored in one pass; in {state.tile} x {state.tile} tiles without overlap or blending; in one "
        f"pass with local statistics (each pixel normalized over a window 1.5 x {state.tile} px, scaled to each "
        "level, as TLC does); then |tiled − whole| (max "
        f"{result.max_difference:.3g}, mean {result.mean_difference:.3g}), whose edges follow the tile borders: "
        f"the seams; and |local − whole| (max {result.local_max_difference:.3g}, mean "
        f"{result.local_mean_difference:.3g}): where the window is smaller than the crop, local statistics change "
        "the output smoothly, without seams; a window of 1.5 x 128 px or more covers this crop at every level, "
        f"and local equals whole. Both maps share one colour scale. {weights_note(entry_id)}"
    )
    return None, views.tile_picture(result), caption


def run_affine(state: views.LearnState):
    entry_id = entry_for("half_instance")
    features, layer = crop_features(entry_id)
    n = features.normalized_channels
    gamma, beta = features.gamma, features.beta
    untrained = gamma is None or (torch.all(gamma == 1) and torch.all(beta == 0))
    note = weights_note(entry_id)
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


def run_ratio(state: views.LearnState):
    entry_id = entry_for("half_instance")
    features, _ = crop_features(entry_id)
    dimmed, _ = crop_features(entry_id, 0.5)
    kept = views.scale_kept(features.pre_norm, dimmed.pre_norm, state.ratio)
    channels = features.pre_norm.shape[0]
    normalized = int(round(channels * state.ratio))
    caption = (
        f"Normalized ratio {state.ratio:g}: instance norm on the first {normalized} of {channels} channels of the "
        "first block. The image is darkened to half its brightness: normalized channels do not notice (ratio 1), "
        f"the other {channels - normalized} keep the absolute scale (ratio 0.5), a fraction "
        f"{1 - normalized / channels:.2f} of the feature. HIN's 0.5 keeps both kinds. {weights_note(entry_id)}"
    )
    return views.ratio_figure(kept, normalized), None, caption


EXPERIMENT_RUNNERS = {"batch": run_batch, "mode": run_mode, "tile": run_tile, "affine": run_affine,
                      "ratio": run_ratio}


def render(state: views.LearnState) -> dict:
    figure, picture, caption = EXPERIMENT_RUNNERS[state.exp](state)
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
        return views.LearnState(norm=norm, ch=int(ch), exp=exp, bs=int(bs), tile=int(tile), affine=bool(affine),
                                ratio=float(ratio))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid setting: {error}") from None


# ----------------------------------------------------------------------------------------------------
# The tab


def build_tab(ctx) -> None:
    default = views.LearnState()
    gr.Markdown("What does each normalization average over, and what does that do to a real image's features?")
    with gr.Row():
        with gr.Column(scale=1):
            norm = gr.Radio([(views.NORM_TITLES[k], k) for k in views.NORM_KEYS], value=default.norm,
                            label="Normalization")
            cube_channel = gr.Slider(0, views.CUBE_C - 1, value=default.ch, step=1,
                                     label="Channel whose statistics are highlighted (sample 0)")
            cube_caption = gr.Markdown(views.NORM_CAPTIONS[default.norm])
        with gr.Column(scale=2):
            cube = gr.Plot(views.cube_figure(default.norm), label="The (N, C, H·W) cube", elem_id="learn-cube")
    gr.Markdown("### Live experiments")
    experiment = gr.Radio([(label, key) for key, label in views.EXPERIMENTS.items()], value=default.exp,
                          label="Experiment")
    with gr.Row():
        batch_size = gr.Slider(1, GRID * GRID, value=default.bs, step=1, label="Batch size (batch experiment)")
        tile = gr.Slider(16, 192, value=default.tile, step=16, label="Tile size (tile experiment)")
        affine = gr.Checkbox(value=default.affine, label="Affine γ/β on (affine experiment)")
        ratio = gr.Slider(0, 1, value=default.ratio, step=0.125, label="Normalized ratio (ratio experiment)")
    caption = gr.Markdown()
    figure = gr.Plot(label="Experiment", elem_id="learn-figure")
    picture = gr.Image(label="Whole | tiled | local statistics | |tiled − whole| | |local − whole|", format="png", type="numpy", interactive=False,
                       visible=False)
    with gr.Row():
        share = gr.Textbox(label="Share this view (paste it below, or add ?view=<string> to the page URL)",
                           value=views.format_share(default), interactive=False, buttons=["copy"],
                           elem_id="learn-share")
        load_text = gr.Textbox(label="Load a shared view", placeholder="norm=hin&exp=batch&bs=4")
        load_button = gr.Button("Load")

    controls = [norm, cube_channel, experiment, batch_size, tile, affine, ratio]
    outputs = [cube, cube_caption, figure, picture, caption, share]

    def outputs_for(state: views.LearnState):
        r = render(state)
        return (r["cube"], r["cube_caption"], gr.Plot(r["figure"], visible=r["figure"] is not None),
                gr.Image(r["picture"], visible=r["picture"] is not None), r["caption"], r["share"])

    @user_errors
    def show(*values):
        return outputs_for(state_from_controls(*values))

    def control_values(state: views.LearnState):
        return state.norm, state.ch, state.exp, state.bs, state.tile, state.affine, state.ratio

    @user_errors
    def load(text):
        state = views.parse_share(text)
        return (*control_values(state), *outputs_for(state))

    @user_errors
    def load_from_url(request: gr.Request):
        query = dict(request.query_params) if request is not None else {}
        text = query.get("view") or "&".join(f"{k}={v}" for k, v in query.items() if k != "__theme")
        try:
            state = views.parse_share(text) if text else views.LearnState()
        except ConfigError as error:
            gr.Warning(f"ignored the page's ?view= setting: {error}")
            state = views.LearnState()
        return (*control_values(state), *outputs_for(state))

    show_event = dict(fn=show, inputs=controls, outputs=outputs)
    norm.input(**show_event, api_name="learn_view")
    for control in (experiment, affine):
        control.input(**show_event, api_visibility="private")
    for control in (cube_channel, batch_size, tile, ratio):
        control.release(**show_event, api_visibility="private")
    load_button.click(load, load_text, controls + outputs, api_name="learn_load")
    load_text.submit(load, load_text, controls + outputs, api_visibility="private")
    on_page_load(ctx, load_from_url, None, controls + outputs)
