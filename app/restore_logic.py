"""What the "Restore & compare" tab computes, without any Gradio: testable on plain arrays.

The tab (`app/restore_tab.py`) only turns widgets into a `RestoreRequest`, calls `run_restore`, and turns
the `RestoreResult` into pictures with the view helpers below (synced zoom crops, difference maps, the
tile grid overlay, the metrics table). All model maths, padding, metrics and degradations are the
`hinet` modules' job; this module calls them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hinet.data import degrade
from hinet.errors import ConfigError, ImageError
from hinet.image import DEFAULT_MAX_PIXELS, LoadedImage, load_image, save_image, to_output_array
from hinet.inference import STATS_PROTOCOLS, describe_stats, restore, tile_boxes, tiled_stats_options
from hinet.io import cache_dir
from hinet.metrics import SSIM_WINDOW, Protocol, evaluate_pair, psnr
from hinet.stats_choice import DEFAULT_STATS
from hinet.tasks import get_task

if TYPE_CHECKING:
    from app.models import ModelStore

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end-exclusive, as hinet.inference.tile_boxes

MAX_VARIANTS = 4
TILE_STEP = 32
MIN_TILE = 64
DIFFERENCE_COLORMAP = "magma"
ZOOM_PANEL_SIZE = 256  # a zoom crop is enlarged by an integer factor up to about this many pixels a side
# zlib level of the PNGs the app writes (downloads and screen pictures): lossless like every level; for
# skimage's astronaut at 512 x 512 it wrote in 35 ms instead of 93 ms at Pillow's default 6, 10% larger.
APP_PNG_LEVEL = 1
SCREEN_MAX_PIXELS = 4_000_000  # larger pictures are reduced for the browser (never the downloads)

TILE_COLOR = (0, 200, 255)
CROP_COLOR = (255, 60, 60)


# ----------------------------------------------------------------------------------------------------
# Request and result


@dataclass(frozen=True)
class RestoreRequest:
    task: str
    variant_ids: tuple[str, ...]
    image_path: str | None = None  # an uploaded file, read on the server (no browser re-encoding)
    gt_path: str | None = None  # optional ground truth for an already degraded upload
    degrade_first: bool = False  # treat the image as clean: it becomes the GT, its degraded copy the input
    strength: dict = field(default_factory=dict)  # kwargs of hinet.data.degrade for this task
    seed: int = 0
    tile: int | None = None  # None = whole image at once (or the stats protocol's own tiles)
    overlap: int = 32
    # How the norms' statistics are computed at test time (hinet.inference.STATS_PROTOCOLS): "whole",
    # "tiled" (tiles of each model's training patch) or "local" (a sliding window, TLC). Ignored with `tile`.
    stats: str = DEFAULT_STATS  # each model its recorded default (hinet.stats_choice)
    show_seams: bool = False  # tiles with zero overlap and no blending, to show tile seams
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class VariantOutput:
    entry_id: str
    label: str
    pixels: np.ndarray  # H x W x 3 float32 in [0, 1]
    seconds: float
    metrics: dict | None  # {"psnr", "ssim"} when a ground truth exists; "ssim" None below SSIM's window
    stats_text: str = ""  # how its statistics were computed, e.g. "local: ... window; training patch 64 px"


@dataclass
class RestoreResult:
    request: RestoreRequest
    source: LoadedImage  # the image as read (its alpha, bit depth and mode shape every download)
    input_pixels: np.ndarray  # what the models saw: the upload, or its degraded copy
    gt_pixels: np.ndarray | None
    input_metrics: dict | None  # the input itself against the GT: the baseline every variant must beat
    outputs: list[VariantOutput]
    tiles: list[Box]  # empty for whole-image restores
    overlap: int  # the overlap actually used (0 with show_seams)
    total_seconds: float

    @property
    def height(self) -> int:
        return self.input_pixels.shape[0]

    @property
    def width(self) -> int:
        return self.input_pixels.shape[1]

    def output(self, entry_id: str) -> VariantOutput:
        for out in self.outputs:
            if out.entry_id == entry_id:
                return out
        raise ConfigError(
            f"{entry_id!r} is not among the variants of this restore; pick one of "
            f"{', '.join(out.entry_id for out in self.outputs)}, or restore again."
        )


def check_variant_ids(variant_ids: Sequence[str] | None) -> tuple[str, ...]:
    ids = tuple(dict.fromkeys(variant_ids or ()))  # drop repeats, keep order
    if not ids:
        raise ConfigError("Choose at least one model variant to run.")
    if len(ids) > MAX_VARIANTS:
        raise ConfigError(f"Choose at most {MAX_VARIANTS} variants to compare; {len(ids)} are selected.")
    return ids


def check_stats(stats: str) -> str:
    """A protocol of `STATS_PROTOCOLS`, or `DEFAULT_STATS`: each model's recorded default."""
    if stats not in (DEFAULT_STATS, *STATS_PROTOCOLS):
        raise ConfigError(
            f"Unknown test-time statistics {stats!r}; choose one of {', '.join((DEFAULT_STATS, *STATS_PROTOCOLS))}."
        )
    return stats


def check_task(task: str) -> str:
    return get_task(task).name


def check_tile(tile: int | None) -> None:
    # hinet.inference rounds a tile up to the model's size multiple; multiples of TILE_STEP are never
    # rounded (size multiples of every offered depth divide it), so the drawn grid is the grid that ran.
    if tile is not None and (tile < MIN_TILE or tile % TILE_STEP):
        raise ConfigError(f"The tile size must be a multiple of {TILE_STEP} pixels, at least {MIN_TILE}; got {tile}.")


def check_seed(seed: int) -> int:
    # numpy's generators refuse negative seeds with a bare ValueError.
    if seed < 0:
        raise ConfigError(f"The degradation seed must be a whole number of at least 0; got {seed}.")
    return seed


def strength_for(task: str, values: dict) -> dict:
    """The task's own strength kwargs out of all the tab's sliders (named "<task>_<kwarg>")."""
    strength = get_task(task).defaults
    prefix = f"{task}_"
    for key, value in values.items():
        if key.startswith(prefix) and value is not None:
            strength[key[len(prefix) :]] = value
    return strength


def load_inputs(request: RestoreRequest) -> tuple[LoadedImage, np.ndarray, np.ndarray | None]:
    """(source image, model input, ground truth or None) for a request."""
    if not request.image_path:
        raise ImageError("Upload an image or pick an example first.")
    source = load_image(request.image_path, max_pixels=request.max_pixels)
    if request.degrade_first:
        rng = np.random.default_rng(check_seed(request.seed))
        degraded = degrade(source.pixels, request.task, rng=rng, **request.strength)
        return source, np.asarray(degraded, dtype=np.float32), source.pixels
    gt = None
    if request.gt_path:
        gt_image = load_image(request.gt_path, max_pixels=request.max_pixels)
        if gt_image.pixels.shape[:2] != source.pixels.shape[:2]:
            gh, gw = gt_image.pixels.shape[:2]
            h, w = source.pixels.shape[:2]
            raise ImageError(
                f"The ground truth is {gw} x {gh} pixels but the input is {w} x {h}; "
                "upload the ground truth of this exact image, or leave it empty."
            )
        gt = gt_image.pixels
    return source, source.pixels, gt


def ssim_fits(pixels: np.ndarray, protocol: Protocol) -> bool:
    """Whether SSIM's window fits the image (after the protocol's border crop)."""
    return min(pixels.shape[:2]) - 2 * protocol.border >= SSIM_WINDOW


def score_pair(pixels: np.ndarray, gt: np.ndarray, protocol: Protocol) -> dict:
    """PSNR and SSIM under `protocol`; an image too small for SSIM still gets its PSNR (SSIM None)."""
    if ssim_fits(gt, protocol):
        return evaluate_pair(pixels, gt, protocol)
    return {"psnr": psnr(pixels, gt, protocol), "ssim": None}


def run_restore(
    request: RestoreRequest,
    get_model: Callable[[str], object],
    label_of: Callable[[str], str] = str,
    progress: Callable[[float, str], None] | None = None,
    train_patch_of: Callable[[str], tuple[int, str | None]] | None = None,
    default_stats_of: Callable[[str], tuple[str, str]] | None = None,
) -> RestoreResult:
    """Degrade (optionally), restore with every chosen variant, time each, score each against the GT.

    `train_patch_of(entry_id)` gives a model's (training patch, note when assumed) for stats "tiled"
    and "local"; None assumes `hinet.inference.training_patch`'s default for every model.
    `default_stats_of(entry_id)` gives a model's (default statistics, why) for stats `DEFAULT_STATS`;
    None runs every model on the whole image then."""
    from hinet.inference import training_patch

    # Scored as results/ scores the task (`Task.protocol`), so the numbers compare with the tables there.
    protocol = get_task(request.task).protocol
    stats = check_stats(request.stats) if request.tile is None else "whole"
    variant_ids = check_variant_ids(request.variant_ids)
    check_tile(request.tile)
    started = time.perf_counter()
    source, input_pixels, gt = load_inputs(request)
    overlap = 0 if request.show_seams else request.overlap
    blend = not request.show_seams
    tiles = tile_boxes(*input_pixels.shape[:2], request.tile, overlap) if request.tile else []

    outputs = []
    for index, entry_id in enumerate(variant_ids):
        label = label_of(entry_id)
        model = get_model(entry_id)

        def tile_done(done: int, total: int, index=index, label=label) -> None:
            if progress is not None:
                progress((index + done / total) / len(variant_ids), f"{label}: tile {done}/{total}")

        if progress is not None:
            progress(index / len(variant_ids), f"{label}: running")
        t0 = time.perf_counter()
        patch, note = (train_patch_of or (lambda _: training_patch({})))(entry_id)
        model_stats, why = stats, ""
        if stats == DEFAULT_STATS:
            model_stats, why = (default_stats_of or (lambda _: ("whole", "no default known")))(entry_id)
        if model_stats == "tiled" and not tiles:  # draw the first model's training-patch grid
            tiles = tile_boxes(*input_pixels.shape[:2], *tiled_stats_options(patch))
        pixels = restore(
            model,
            input_pixels,
            tile=request.tile,
            overlap=overlap if request.tile else None,
            blend=blend,
            progress=tile_done,
            stats=model_stats,
            train_patch=patch,
        )
        seconds = time.perf_counter() - t0
        metrics = score_pair(pixels, gt, protocol) if gt is not None else None
        stats_text = describe_stats(model_stats, patch, tile=request.tile, overlap=overlap if request.tile else None)
        if note and model_stats != "whole":
            stats_text += f" ({note})"
        if why:
            stats_text += f" [{why}]"
        outputs.append(VariantOutput(entry_id, label, pixels, seconds, metrics, stats_text))

    input_metrics = score_pair(input_pixels, gt, protocol) if gt is not None else None
    return RestoreResult(
        request=request,
        source=source,
        input_pixels=input_pixels,
        gt_pixels=gt,
        input_metrics=input_metrics,
        outputs=outputs,
        tiles=tiles,
        overlap=overlap,
        total_seconds=time.perf_counter() - started,
    )


def metrics_table(result: RestoreResult) -> pd.DataFrame:
    """One row per variant (plus the input as a baseline); PSNR/SSIM columns only when a GT exists."""
    has_gt = result.gt_pixels is not None
    rows = []
    if has_gt:
        rows.append(
            {
                "variant": "input (no restoration)",
                "PSNR (dB)": _rounded(result.input_metrics["psnr"], 2),
                "SSIM": _rounded(result.input_metrics["ssim"], 4),
                "seconds": None,
            }
        )
    for out in result.outputs:
        row = {"variant": out.label}
        if has_gt:
            row["PSNR (dB)"] = _rounded(out.metrics["psnr"], 2)
            row["SSIM"] = _rounded(out.metrics["ssim"], 4)
        row["seconds"] = round(out.seconds, 3)
        rows.append(row)
    columns = ["variant", "PSNR (dB)", "SSIM", "seconds"] if has_gt else ["variant", "seconds"]
    return pd.DataFrame(rows, columns=columns)


def metrics_records(result: RestoreResult) -> pd.DataFrame:
    """The metrics table's data for its CSV: full precision, and what produced each row (image, degradation,
    seed, model id, test-time statistics, metric protocol), so that a row stands on its own."""
    req = result.request
    has_gt = result.gt_pixels is not None
    common = {
        "image": result.source.name,
        "width": result.width,
        "height": result.height,
        "task": req.task,
        "degradation": ", ".join(f"{k}={v}" for k, v in req.strength.items()) if req.degrade_first else "as uploaded",
        "seed": req.seed if req.degrade_first else None,
        "metric protocol": get_task(req.task).protocol.describe() if has_gt else "no ground truth",
    }
    rows = []
    if has_gt:
        rows.append(
            {"variant": "input (no restoration)", "model id": "", **result.input_metrics, "seconds": None, **common}
        )
    for out in result.outputs:
        scores = out.metrics or {"psnr": None, "ssim": None}
        rows.append(
            {
                "variant": out.label,
                "model id": out.entry_id,
                **scores,
                "seconds": out.seconds,
                **common,
                "test-time statistics": out.stats_text,
            }
        )
    return pd.DataFrame(rows)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def save_outputs(result: RestoreResult, out_dir: Path) -> dict[str, Path]:
    """Every output as a lossless PNG shaped like the source (16-bit, gray, alpha kept as uploaded).

    Keys: "input" (only for a degraded clean image: the exact model input) and each variant's entry id.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = _safe_stem(result.source.name)
    paths = {}
    if result.request.degrade_first:
        paths["input"] = save_image(
            out_dir / f"{stem}_{result.request.task}_input.png",
            result.input_pixels,
            like=result.source,
            compress_level=APP_PNG_LEVEL,
        )
    for out in result.outputs:
        paths[out.entry_id] = save_image(
            out_dir / f"{stem}_{_safe_stem(out.entry_id)}.png",
            out.pixels,
            like=result.source,
            compress_level=APP_PNG_LEVEL,
        )
    return paths


def _safe_stem(name: str) -> str:
    stem = Path(name or "image").stem or "image"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60]


# ----------------------------------------------------------------------------------------------------
# Views


def display_uint8(pixels: np.ndarray) -> np.ndarray:
    """An H x W x 3 uint8 copy for the screen (downloads keep full precision via save_outputs)."""
    return to_output_array(pixels, None)


def screen_size(length: int, factor: int) -> int:
    """A side's length after PIL's `reduce(factor)` (a partial last block still makes a pixel)."""
    return -(-length // factor)


def screen_factor(height: int, width: int, max_pixels: int = SCREEN_MAX_PIXELS) -> int:
    """The smallest integer reduction that brings a picture under `max_pixels` for the browser."""
    factor = 1
    while screen_size(height, factor) * screen_size(width, factor) > max_pixels:
        factor += 1
    return factor


def fit_for_screen(image: np.ndarray, max_pixels: int = SCREEN_MAX_PIXELS) -> tuple[np.ndarray, int]:
    """(image, factor): uint8 pictures over `max_pixels` are box-reduced by an integer factor for the
    browser only; zoom panels and downloads always use the full-resolution pixels."""
    factor = screen_factor(*image.shape[:2], max_pixels)
    if factor == 1:
        return image, 1
    from PIL import Image

    return np.asarray(Image.fromarray(image).reduce(factor)), factor


def crop_box(height: int, width: int, center_x: float, center_y: float, zoom: float) -> Box:
    """The window 1/zoom of the image's size centred at (center_x, center_y) (fractions of W and H).

    The window is shifted, never shrunk, to stay inside the image, so every panel shows the same
    number of pixels.
    """
    if height < 1 or width < 1:
        raise ImageError(f"cannot crop an empty image ({height} x {width})")
    zoom = max(1.0, float(zoom))
    box_h = max(1, min(height, round(height / zoom)))
    box_w = max(1, min(width, round(width / zoom)))
    cy = float(np.clip(center_y, 0.0, 1.0)) * height
    cx = float(np.clip(center_x, 0.0, 1.0)) * width
    y0 = int(np.clip(round(cy - box_h / 2), 0, height - box_h))
    x0 = int(np.clip(round(cx - box_w / 2), 0, width - box_w))
    return (y0, x0, y0 + box_h, x0 + box_w)


def zoom_crop(image: np.ndarray, box: Box, panel_size: int = ZOOM_PANEL_SIZE) -> np.ndarray:
    """The box's pixels enlarged by an integer nearest-neighbour factor, so single pixels stay visible."""
    y0, x0, y1, x1 = box
    crop = image[y0:y1, x0:x1]
    factor = max(1, panel_size // max(crop.shape[0], crop.shape[1]))
    return np.repeat(np.repeat(crop, factor, axis=0), factor, axis=1)


def difference_scale(errors: Sequence[np.ndarray]) -> float:
    """One colour scale for every difference panel (the 99.5th percentile of all their errors)."""
    values = [float(np.percentile(e, 99.5)) for e in errors if e.size]
    return max(values + [1.0 / 255.0])


def absolute_error(output: np.ndarray, target: np.ndarray) -> np.ndarray:
    """|output - target| averaged over the colour channels, H x W, in [0, 1] units."""
    if output.shape != target.shape:
        raise ImageError(f"cannot compare images of shapes {output.shape} and {target.shape}")
    return np.abs(output.astype(np.float32) - target.astype(np.float32)).mean(axis=2)


def difference_map(error: np.ndarray, scale: float) -> np.ndarray:
    """An H x W x 3 uint8 heatmap of `error` (H x W) with 0 black and `scale` (or more) brightest."""
    import matplotlib

    colormap = matplotlib.colormaps[DIFFERENCE_COLORMAP]
    normalized = np.clip(error / max(scale, 1e-12), 0.0, 1.0)
    return (colormap(normalized)[..., :3] * 255.0 + 0.5).astype(np.uint8)


def _subsample(error: np.ndarray, max_values: int = 1_000_000) -> np.ndarray:
    step = max(1, int(np.ceil(np.sqrt(error.size / max_values))))
    return error[::step, ::step]


def describe_box(box: Box) -> str:
    y0, x0, y1, x1 = box
    return f"Zoom window: x {x0}-{x1}, y {y0}-{y1} ({x1 - x0} x {y1 - y0} px), enlarged with nearest neighbour."


def describe_scale(scale: float) -> str:
    return (
        f"Difference maps: |output − GT| averaged over R, G, B; colour map {DIFFERENCE_COLORMAP}, "
        f"black = 0, brightest = {scale:.3f} ({scale * 255:.1f} of 255) or more."
    )


def zoom_panels(
    result: RestoreResult,
    box: Box,
    show_difference: bool = False,
    panel_size: int = ZOOM_PANEL_SIZE,
) -> tuple[list[tuple[np.ndarray, str]], float | None]:
    """The synced-zoom grid: (picture, caption) for the input, each variant and the GT, all on one box.

    With `show_difference` (and a GT) the input and variant panels show |x - GT| on one shared colour
    scale, returned second (None otherwise).
    """
    y0, x0, y1, x1 = box
    named = [("input", result.input_pixels)] + [(out.label, out.pixels) for out in result.outputs]
    if show_difference and result.gt_pixels is not None:
        errors = [absolute_error(pixels, result.gt_pixels) for _, pixels in named]
        # Whole-image scale, so colours keep their meaning while the zoom window moves.
        scale = difference_scale([_subsample(e) for e in errors])
        panels = [
            (zoom_crop(difference_map(e, scale), box, panel_size), f"|{name} − GT|")
            for (name, _), e in zip(named, errors)
        ]
    else:
        scale = None
        panels = [(zoom_crop(display_uint8(pixels), box, panel_size), name) for name, pixels in named]
    if result.gt_pixels is not None:
        panels.append((zoom_crop(display_uint8(result.gt_pixels), box, panel_size), "ground truth"))
    return panels, scale


def draw_boxes(image: np.ndarray, boxes: Sequence[Box], color: tuple[int, int, int], thickness: int = 2) -> np.ndarray:
    """A copy of an H x W x 3 uint8 image with each box's outline drawn inside its bounds."""
    out = image.copy()
    h, w = out.shape[:2]
    for y0, x0, y1, x1 in boxes:
        y0, x0 = max(0, y0), max(0, x0)
        y1, x1 = min(h, y1), min(w, x1)
        if y1 <= y0 or x1 <= x0:
            continue
        t = max(1, min(thickness, (y1 - y0 + 1) // 2, (x1 - x0 + 1) // 2))
        out[y0 : y0 + t, x0:x1] = color
        out[y1 - t : y1, x0:x1] = color
        out[y0:y1, x0 : x0 + t] = color
        out[y0:y1, x1 - t : x1] = color
    return out


def overview(result: RestoreResult, box: Box) -> np.ndarray:
    """The input with the tile grid (if tiled) and the zoom window drawn on it."""
    image = display_uint8(result.input_pixels)
    thickness = max(1, round(max(result.height, result.width) / 400))
    if result.tiles:
        image = draw_boxes(image, result.tiles, TILE_COLOR, thickness)
    return draw_boxes(image, [box], CROP_COLOR, thickness + 1)


def summary(result: RestoreResult) -> str:
    req = result.request
    lines = [
        f"{result.width} x {result.height} px, {len(result.outputs)} variant(s), {result.total_seconds:.2f} s in total."
    ]
    if req.degrade_first:
        strength = ", ".join(f"{k}={v}" for k, v in req.strength.items())
        lines.append(
            f"Input: the image degraded with `{req.task}` ({strength}), seed {req.seed}; "
            "the clean image is the ground truth."
        )
    elif result.gt_pixels is None:
        lines.append("No ground truth, so no PSNR/SSIM.")
    if result.input_metrics is not None and result.input_metrics["ssim"] is None:
        lines.append(
            f"No SSIM: its {SSIM_WINDOW} x {SSIM_WINDOW} window does not fit a {result.width} x "
            f"{result.height} px image; PSNR is shown."
        )
    if req.tile:
        mode = (
            "zero overlap, no blending (seams visible)" if req.show_seams else f"overlap {result.overlap} px, blended"
        )
        lines.append(f"Tiled: {len(result.tiles)} tiles of up to {req.tile} px, {mode}.")
    elif req.stats == "whole":
        lines.append("Whole image in one pass (normalization statistics over the whole image).")
    else:
        lines.append(
            "Test-time statistics per model: "
            + "; ".join(f"{out.label}: {out.stats_text}" for out in result.outputs)
            + "."
        )
    if result.gt_pixels is not None:
        protocol = get_task(req.task).protocol
        lines.append(f"Metrics: PSNR/SSIM on {protocol.describe()} (how results/ scores {req.task}).")
    lines.extend(f"Note: {warning}." for warning in result.source.warnings)
    return "  \n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Example images: crops of skimage.data images, written once as PNG files so they go through the same
# file path as an upload.

EXAMPLE_CROPS = {  # name -> (skimage.data function, (y0, x0, y1, x1))
    "astronaut": ("astronaut", (24, 136, 280, 392)),
    "coffee": ("coffee", (72, 176, 328, 432)),
    "chelsea": ("chelsea", (24, 96, 280, 352)),
}


def example_path(name: str) -> Path:
    """The PNG file of an example (written on first use under hinet.io.cache_dir())."""
    if name not in EXAMPLE_CROPS:
        raise ImageError(f"Unknown example {name!r}; choose one of {', '.join(EXAMPLE_CROPS)}.")
    path = cache_dir() / "app_examples" / f"{name}.png"
    if not path.exists():
        import skimage.data

        function, (y0, x0, y1, x1) = EXAMPLE_CROPS[name]
        crop = np.ascontiguousarray(getattr(skimage.data, function)()[y0:y1, x0:x1, :3])
        # save_image writes atomically: two requests (threads) may create the same example at once.
        save_image(path, crop)
    return path


# ----------------------------------------------------------------------------------------------------
# The first view: the page opens on a finished comparison (an example, degraded, restored by the task's
# default model and a HIN model), computed by the first page that opens and then shared by every page
# until a model file changes.

FIRST_EXAMPLE = "astronaut"
FIRST_VIEW_NORM = "half_instance"  # the paper's norm: the default is compared with it, or with another norm
FIRST_VIEW_CACHE_SIZE = 4  # (store, task) first views kept


def first_view_variants(store: ModelStore, task: str) -> tuple[str, ...]:
    """The task's default model and one trained partner of another norm: a HIN model when the default uses
    another norm (the shipped `<task>_hin`), otherwise the best trained model of another norm; the default
    alone when nothing else is trained for the task."""
    entries = store.list_entries(task)
    default = store.default_entry(entries, task)
    others = [e for e in entries if e.trained and e.task == task and e.config.norm != default.config.norm]
    if default.config.norm != FIRST_VIEW_NORM:
        others = [e for e in others if e.config.norm == FIRST_VIEW_NORM]
    if not default.trained or not others:
        return (default.id,)
    return (default.id, store.default_entry(others, task).id)  # ranked like defaults: shipped first, then PSNR


def first_view_request(task: str, variant_ids: Sequence[str]) -> RestoreRequest:
    """What the first view shows: the example degraded at the task's default strength, seed 0, one pass."""
    return RestoreRequest(
        task=task,
        variant_ids=tuple(variant_ids),
        image_path=str(example_path(FIRST_EXAMPLE)),
        degrade_first=True,
        strength=get_task(task).defaults,
        seed=0,
    )


class FirstViews:
    """First views per (store, task, models and their file versions): a retrained or replaced model file
    gives a new key, so a page never opens on outputs of weights that are gone. Thread-safe: two pages
    opening together compute it once."""

    def __init__(self, size: int = FIRST_VIEW_CACHE_SIZE) -> None:
        self.size = size
        self._results: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: ModelStore, task: str, label_of: Callable[[str], str] = str) -> RestoreResult:
        request = first_view_request(task, first_view_variants(store, task))
        versions = tuple(store.weights_version(entry_id) for entry_id in request.variant_ids)
        key = (store, task, request.variant_ids, versions)  # the request follows from the task and the ids
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
            result = run_restore(
                request,
                store.get_model,
                label_of,
                train_patch_of=store.train_patch_of,
                default_stats_of=store.default_stats_of,
            )
            self._results[key] = result
            while len(self._results) > self.size:
                self._results.popitem(last=False)
            return result

    def clear(self) -> None:
        with self._lock:
            self._results.clear()


FIRST_VIEWS = FirstViews()  # the app's one cache (pages of every user share its results, read-only)


__all__ = [
    "FIRST_EXAMPLE",
    "FIRST_VIEWS",
    "FirstViews",
    "first_view_variants",
    "first_view_request",
    "metrics_records",
    "MAX_VARIANTS",
    "RestoreRequest",
    "RestoreResult",
    "VariantOutput",
    "run_restore",
    "metrics_table",
    "save_outputs",
    "crop_box",
    "zoom_crop",
    "zoom_panels",
    "difference_map",
    "difference_scale",
    "absolute_error",
    "describe_scale",
    "describe_box",
    "draw_boxes",
    "overview",
    "summary",
    "check_variant_ids",
    "check_tile",
    "TILE_STEP",
    "MIN_TILE",
    "screen_factor",
    "screen_size",
    "fit_for_screen",
    "example_path",
    "EXAMPLE_CROPS",
    "check_task",
    "strength_for",
    "load_inputs",
    "display_uint8",
    "check_seed",
    "score_pair",
    "ssim_fits",
]
