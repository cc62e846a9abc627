"""Pure logic of the "Learn normalization" tab: the axis cube, the live experiments, the share string.

The experiments run real norm layers (`hinet.model.create_norm`, applied through
`UNetConvBlock.normalize` for the partial norms) on real conv_1 features captured with
`hinet.features.capture_features`, and real tiled inference (`hinet.inference.restore`); this module
only arranges inputs and turns the results into figures and numbers. No Gradio here.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import numpy as np
import plotly.graph_objects as go
import torch
from matplotlib import colormaps

from hinet.errors import ConfigError
from hinet.features import capture_features
from hinet.inference import restore
from hinet.model import UNetConvBlock, create_norm

# ----------------------------------------------------------------------------------------------------
# The axis cube (Wu & He, Group Normalization, 2018, Fig. 2)

NORM_KEYS = {"bn": "batch", "ln": "layer", "in": "instance", "gn": "group", "hin": "half_instance"}
NORM_TITLES = {
    "bn": "BatchNorm",
    "ln": "LayerNorm",
    "in": "InstanceNorm",
    "gn": "GroupNorm",
    "hin": "Half InstanceNorm",
}
NORM_CAPTIONS = {
    "bn": "BatchNorm: one mean and variance per channel, shared by every sample of the batch and every pixel.",
    "ln": "LayerNorm: one mean and variance per sample, over all its channels and pixels.",
    "in": "InstanceNorm: one mean and variance per sample and channel, over that channel's pixels only.",
    "gn": "GroupNorm: one mean and variance per sample and group of channels (here 2 groups).",
    "hin": "Half InstanceNorm: instance norm on the first half of the channels; the second half passes "
    "through unchanged and keeps its absolute scale.",
}
CUBE_N, CUBE_C, CUBE_HW, CUBE_GROUPS = 4, 8, 6, 2


def cube_masks(
    norm_key: str,
    n: int = CUBE_N,
    c: int = CUBE_C,
    hw: int = CUBE_HW,
    groups: int = CUBE_GROUPS,
    sample: int = 0,
    channel: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(shared, normalized), bool arrays of shape (N, C, H*W).

    `shared`: the cells whose values form the one mean/variance used for cell (sample, channel);
    `normalized`: every cell the norm touches (HIN: the first half of C in each sample).
    """
    if norm_key not in NORM_KEYS:
        raise ConfigError(f"norm must be one of {', '.join(NORM_KEYS)}; got {norm_key!r}")
    if not (0 <= sample < n and 0 <= channel < c):
        raise ConfigError(f"cell ({sample}, {channel}) is outside the {n} x {c} cube")
    shared = np.zeros((n, c, hw), bool)
    normalized = np.ones((n, c, hw), bool)
    if norm_key == "bn":
        shared[:, channel] = True
    elif norm_key == "ln":
        shared[sample] = True
    elif norm_key == "in":
        shared[sample, channel] = True
    elif norm_key == "gn":
        size = c // groups
        group = channel // size
        shared[sample, group * size : (group + 1) * size] = True
    else:  # hin
        normalized[:, c // 2 :] = False
        if channel < c // 2:
            shared[sample, channel] = True
    return shared, normalized


def _cube_mesh(cells: np.ndarray, colour: str, opacity: float, name: str) -> go.Mesh3d:
    # One Mesh3d for many unit cubes: 8 corners and 12 triangles per cell, shrunk a little to show gaps.
    corners = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]])
    faces = np.array(
        [
            [0, 1, 2],
            [0, 2, 3],
            [4, 5, 6],
            [4, 6, 7],
            [0, 1, 5],
            [0, 5, 4],
            [2, 3, 7],
            [2, 7, 6],
            [1, 2, 6],
            [1, 6, 5],
            [0, 3, 7],
            [0, 7, 4],
        ]
    )
    points, triangles = [], []
    for index, (i, j, k) in enumerate(cells):
        points.append(np.array([i, j, k]) + 0.05 + corners * 0.9)
        triangles.append(faces + 8 * index)
    points = np.concatenate(points) if points else np.zeros((0, 3))
    triangles = np.concatenate(triangles) if triangles else np.zeros((0, 3), int)
    return go.Mesh3d(
        x=points[:, 0],
        y=points[:, 1],
        z=points[:, 2],
        i=triangles[:, 0],
        j=triangles[:, 1],
        k=triangles[:, 2],
        color=colour,
        opacity=opacity,
        flatshading=True,
        name=name,
        showlegend=True,
        hoverinfo="name",
    )


def cube_figure(norm_key: str, sample: int = 0, channel: int = 0) -> go.Figure:
    shared, normalized = cube_masks(norm_key, sample=sample, channel=channel)
    fig = go.Figure()
    groups = (
        (shared, "#1f5fbf", 0.95, "cells sharing one mean/variance"),
        (normalized & ~shared, "#9ecae1", 0.25, "other normalized cells (their own statistics)"),
        (~normalized, "#fdae6b", 0.3, "not normalized (passes unchanged)"),
    )
    for mask, colour, opacity, name in groups:
        if mask.any():
            fig.add_trace(_cube_mesh(np.argwhere(mask), colour, opacity, name))
    fig.update_layout(
        title=f"{NORM_TITLES[norm_key]}: dark blue = one mean/variance (sample {sample}, channel {channel})",
        height=480,
        margin=dict(l=0, r=0, t=40, b=0),
        legend=dict(orientation="h", y=-0.02),
        scene=dict(
            xaxis_title="N (samples)",
            yaxis_title="C (channels)",
            zaxis_title="H·W (pixels)",
            aspectmode="manual",
            aspectratio=dict(x=0.8, y=1.4, z=1.0),
            camera=dict(eye=dict(x=1.5, y=-1.3, z=0.9)),
        ),
    )
    return fig


# ----------------------------------------------------------------------------------------------------
# Partial norms built from the model's own pieces


def partial_norm(norm: str, channels: int, ratio: float = 1.0, affine: bool = False) -> UNetConvBlock:
    """A block whose `.normalize` applies `norm` to the first round(ratio * C) channels, as HINet does."""
    n = int(round(channels * ratio))
    layer = create_norm(norm, n, affine=affine) if n > 0 else None
    return UNetConvBlock(channels, channels, False, 0.2, norm_layer=layer, normalized_channels=n)


# ----------------------------------------------------------------------------------------------------
# Features of a real image


def block_input_features(
    model, pixels: np.ndarray, boxes: list[tuple[int, int, int, int]], side: int, block: str = "down_path_1.0"
) -> torch.Tensor:
    """conv_1 outputs (before any norm) of `block` for crops of `pixels`, each scaled to side x side."""
    maps = []
    for box in boxes:
        captured = capture_features(model, pixels, blocks=[block], crop_box=box, max_side=side)
        feature = captured[block].pre_norm
        maps.append(feature[:, :side, :side])
    return torch.stack(maps)


def grid_boxes(height: int, width: int, rows: int, cols: int) -> list[tuple[int, int, int, int]]:
    """rows x cols equal square crops from the image's centre, row by row (square, so every crop
    scales to the same side x side features)."""
    cell = min(height // rows, width // cols)
    if cell < 1:
        raise ConfigError(f"a {height} x {width} image is too small for {rows} x {cols} crops")
    y0, x0 = (height - rows * cell) // 2, (width - cols * cell) // 2
    return [
        (y0 + r * cell, x0 + c * cell, y0 + (r + 1) * cell, x0 + (c + 1) * cell)
        for r in range(rows)
        for c in range(cols)
    ]


# ----------------------------------------------------------------------------------------------------
# Experiment 1: batch size


BATCH_NORMS = {
    "BatchNorm (batch statistics)": ("batch", 1.0),
    "InstanceNorm": ("instance", 1.0),
    "Half InstanceNorm": ("instance", 0.5),
}


@dataclass
class BatchResult:
    batch_sizes: list[int]
    mean_change: dict[str, list[float]]  # per norm: mean |change| of the target's normalized feature
    max_change: dict[str, list[float]]


def batch_dependence(features: torch.Tensor, batch_sizes: list[int], draws: int = 6, seed: int = 0) -> BatchResult:
    """How much sample 0's normalized feature changes when it is normalized with random batch companions
    instead of with the whole set. BatchNorm in train mode uses the batch's statistics; IN/HIN do not."""
    total = features.shape[0]
    if any(not 1 <= b <= total for b in batch_sizes):
        raise ConfigError(f"batch sizes must be between 1 and {total}; got {batch_sizes}")
    rng = np.random.default_rng(seed)
    companions = [
        [rng.choice(np.arange(1, total), size=b - 1, replace=False) for _ in range(draws)] for b in batch_sizes
    ]
    mean_change, max_change = {}, {}
    with torch.no_grad():
        for label, (norm, ratio) in BATCH_NORMS.items():
            block = partial_norm(norm, features.shape[1], ratio).train()
            reference = block.normalize(features)[0]
            means, maxes = [], []
            for draw_list in companions:
                changes = [
                    (block.normalize(features[np.concatenate([[0], extra]).astype(int)])[0] - reference).abs()
                    for extra in draw_list
                ]
                means.append(float(np.mean([c.mean().item() for c in changes])))
                maxes.append(float(np.max([c.max().item() for c in changes])))
            mean_change[label], max_change[label] = means, maxes
    return BatchResult(list(batch_sizes), mean_change, max_change)


def batch_figure(result: BatchResult, chosen: int) -> go.Figure:
    fig = go.Figure()
    for label, values in result.mean_change.items():
        fig.add_trace(go.Scatter(x=result.batch_sizes, y=values, mode="lines+markers", name=label))
    fig.add_vline(x=chosen, line_dash="dot", annotation_text=f"batch size {chosen}")
    fig.update_layout(
        height=340,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="batch size",
        yaxis_title="mean |change| of the image's feature",
        title="The same image, normalized with different batch companions",
    )
    return fig


# ----------------------------------------------------------------------------------------------------
# Experiment 2: BatchNorm train vs eval mode


@dataclass
class ModeResult:
    mean_train: np.ndarray  # per channel, the target's normalized feature in train mode (its own statistics)
    mean_eval: np.ndarray  # in eval mode (running statistics from the calibration set)
    std_train: np.ndarray
    std_eval: np.ndarray
    mean_abs_difference: float


def train_vs_eval(target: torch.Tensor, calibration: torch.Tensor) -> ModeResult:
    """BatchNorm on `target` (1, C, H, W) with its own batch statistics vs running statistics
    accumulated (cumulative average) over `calibration` (S, C, H, W)."""
    layer = create_norm("batch", target.shape[1], affine=False)
    layer.momentum = None  # cumulative average: the running statistics are exactly the calibration set's
    with torch.no_grad():
        layer.train()
        for sample in calibration:
            layer(sample[None])
        train_out = layer(target)[0]
        layer.eval()
        eval_out = layer(target)[0]
    flat_train, flat_eval = train_out.flatten(1), eval_out.flatten(1)
    return ModeResult(
        flat_train.mean(1).numpy(),
        flat_eval.mean(1).numpy(),
        flat_train.std(1).numpy(),
        flat_eval.std(1).numpy(),
        float((train_out - eval_out).abs().mean()),
    )


def mode_figure(result: ModeResult) -> go.Figure:
    channels = np.arange(len(result.mean_train))
    fig = go.Figure()
    fig.add_trace(go.Bar(x=channels, y=result.mean_train, name="train mode: mean (batch statistics)"))
    fig.add_trace(go.Bar(x=channels, y=result.mean_eval, name="eval mode: mean (running statistics)"))
    fig.add_trace(go.Scatter(x=channels, y=result.std_train, mode="markers", name="train mode: std"))
    fig.add_trace(go.Scatter(x=channels, y=result.std_eval, mode="markers", name="eval mode: std"))
    fig.update_layout(
        barmode="group",
        height=340,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="channel",
        title="BatchNorm output of one image: per-channel mean and std",
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


# ----------------------------------------------------------------------------------------------------
# Experiment 3: tiles and seams


@dataclass
class TileResult:
    whole: np.ndarray  # H x W x 3 restored in one pass
    tiled: np.ndarray  # restored tile by tile, no overlap, no blending
    difference: np.ndarray  # H x W, mean over colour of |tiled - whole|
    max_difference: float
    mean_difference: float
    local: np.ndarray | None = None  # one pass with statistics over a sliding window 1.5x the tile (TLC)
    local_difference: np.ndarray | None = None  # H x W, mean over colour of |local - whole|

    @property
    def local_max_difference(self) -> float:
        return float(self.local_difference.max()) if self.local_difference is not None else 0.0

    @property
    def local_mean_difference(self) -> float:
        return float(self.local_difference.mean()) if self.local_difference is not None else 0.0


def tile_seams(model, pixels: np.ndarray, tile: int) -> TileResult:
    """Whole-image vs hard tiles vs local statistics, with `tile` standing for the training patch: the
    local window is 1.5x it, scaled to each level, exactly as `restore(stats="local")` does it."""
    whole = restore(model, pixels)
    tiled = restore(model, pixels, tile=tile, overlap=0, blend=False)
    local = restore(model, pixels, stats="local", train_patch=tile)
    difference = np.abs(tiled - whole).mean(axis=2)
    return TileResult(
        whole,
        tiled,
        difference,
        float(difference.max()),
        float(difference.mean()),
        local,
        np.abs(local - whole).mean(axis=2),
    )


def tile_picture(result: TileResult) -> np.ndarray:
    """[whole | tiled | local | |tiled - whole| | |local - whole|] as one uint8 picture; both difference
    maps share one magma scale (the larger maximum), so their brightness compares."""
    differences = [result.difference] + ([result.local_difference] if result.local_difference is not None else [])
    scale = max(float(d.max()) for d in differences) or 1.0
    heats = [(colormaps["magma"](d / scale)[..., :3] * 255).astype(np.uint8) for d in differences]
    restored = [result.whole, result.tiled] + ([result.local] if result.local is not None else [])
    images = [(np.clip(r, 0, 1) * 255).astype(np.uint8) for r in restored] + heats
    gap = np.full((result.whole.shape[0], 6, 3), 255, np.uint8)
    parts = [images[0]]
    for image in images[1:]:
        parts += [gap, image]
    return np.concatenate(parts, axis=1)


# ----------------------------------------------------------------------------------------------------
# Experiment 4: affine on/off


@dataclass
class AffineResult:
    mean_plain: np.ndarray  # per normalized channel, without gamma/beta
    std_plain: np.ndarray
    mean_affine: np.ndarray  # with the layer's gamma/beta
    std_affine: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray


def affine_effect(features: torch.Tensor, norm: str, gamma: torch.Tensor, beta: torch.Tensor) -> AffineResult:
    """The normalized channels of `features` (n, H, W) with and without the affine step of `norm`."""
    n = features.shape[0]
    plain = create_norm(norm, n, affine=False).eval()
    affine = create_norm(norm, n, affine=True).eval()
    with torch.no_grad():
        affine.weight.copy_(gamma)
        affine.bias.copy_(beta)
        out_plain = plain(features[None])[0].flatten(1)
        out_affine = affine(features[None])[0].flatten(1)
    return AffineResult(
        out_plain.mean(1).numpy(),
        out_plain.std(1, correction=0).numpy(),
        out_affine.mean(1).numpy(),
        out_affine.std(1, correction=0).numpy(),
        gamma.numpy(),
        beta.numpy(),
    )


def affine_figure(result: AffineResult, affine_on: bool) -> go.Figure:
    channels = np.arange(len(result.gamma))
    mean, std = (result.mean_affine, result.std_affine) if affine_on else (result.mean_plain, result.std_plain)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=channels, y=mean, name="mean after the norm"))
    fig.add_trace(go.Bar(x=channels, y=std, name="std after the norm"))
    if affine_on:
        fig.add_trace(go.Scatter(x=channels, y=result.beta, mode="markers", name="β", marker_symbol="x"))
        fig.add_trace(
            go.Scatter(x=channels, y=np.abs(result.gamma), mode="markers", name="|γ|", marker_symbol="circle-open")
        )
    fig.update_layout(
        barmode="group",
        height=340,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="channel",
        title=f"Normalized channels, affine {'on' if affine_on else 'off'}",
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


# ----------------------------------------------------------------------------------------------------
# Experiment 5: normalized ratio


def scale_kept(features: torch.Tensor, features_dimmed: torch.Tensor, ratio: float) -> np.ndarray:
    """Per channel, std(after partial IN of the dimmed image) / std(after partial IN of the image).

    The dimmed image is the same image times 0.5: a channel that keeps its absolute scale shows 0.5,
    a normalized channel shows 1 (instance norm removed the scale)."""
    block = partial_norm("instance", features.shape[0], ratio).eval()
    with torch.no_grad():
        out = block.normalize(features[None])[0].flatten(1)
        dimmed = block.normalize(features_dimmed[None])[0].flatten(1)
    return (dimmed.std(1) / out.std(1).clamp_min(1e-12)).numpy()


def ratio_figure(kept: np.ndarray, normalized: int) -> go.Figure:
    channels = np.arange(len(kept))
    colours = ["#2ca02c" if c < normalized else "#7f7f7f" for c in channels]
    fig = go.Figure(go.Bar(x=channels, y=kept, marker_color=colours, name="std ratio"))
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="0.5: scale kept")
    fig.add_hline(y=1.0, line_dash="dot", annotation_text="1: scale removed")
    fig.update_layout(
        height=340,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="channel (green: normalized)",
        yaxis_title="std(image × 0.5) / std(image)",
        title="Which channels still see that the image got darker?",
    )
    return fig


# ----------------------------------------------------------------------------------------------------
# The share string


EXPERIMENTS = {
    "batch": "batch size",
    "mode": "BN train vs eval",
    "tile": "tile size and seams",
    "affine": "affine γ/β",
    "ratio": "normalized ratio",
}


@dataclass(frozen=True)
class LearnState:
    norm: str = "hin"
    ch: int = 0  # the cube's channel whose mean/variance cells are highlighted (sample 0)
    exp: str = "batch"
    bs: int = 4
    tile: int = 64
    affine: bool = True
    ratio: float = 0.5

    def __post_init__(self):
        if self.norm not in NORM_KEYS:
            raise ConfigError(f"norm must be one of {', '.join(NORM_KEYS)}; got {self.norm!r}")
        if not 0 <= self.ch < CUBE_C:
            raise ConfigError(f"ch must be between 0 and {CUBE_C - 1}; got {self.ch}")
        if self.exp not in EXPERIMENTS:
            raise ConfigError(f"exp must be one of {', '.join(EXPERIMENTS)}; got {self.exp!r}")
        if not 1 <= self.bs <= 16:
            raise ConfigError(f"bs must be between 1 and 16; got {self.bs}")
        if not 16 <= self.tile <= 256:
            raise ConfigError(f"tile must be between 16 and 256; got {self.tile}")
        if not 0.0 <= self.ratio <= 1.0:
            raise ConfigError(f"ratio must be between 0 and 1; got {self.ratio}")


def format_share(state: LearnState) -> str:
    return urlencode(
        {
            "norm": state.norm,
            "ch": state.ch,
            "exp": state.exp,
            "bs": state.bs,
            "tile": state.tile,
            "affine": int(state.affine),
            "ratio": f"{state.ratio:g}",
        }
    )


def parse_share(text: str) -> LearnState:
    """A LearnState from "norm=hin&exp=batch&bs=4" (missing keys keep their defaults)."""
    text = (text or "").strip().lstrip("?")
    if "view=" in text and "norm=" not in text:  # a whole ?view=... query pasted
        text = dict(parse_qsl(text)).get("view", "")
    values = {}
    fields = {
        "norm": str,
        "ch": int,
        "exp": str,
        "bs": int,
        "tile": int,
        "affine": lambda v: v in ("1", "true", "on"),
        "ratio": float,
    }
    for key, value in parse_qsl(text, keep_blank_values=True):
        if key not in fields:
            raise ConfigError(f"unknown setting {key!r} in the share string; known: {', '.join(fields)}")
        try:
            values[key] = fields[key](value.strip().lower())
        except ValueError:
            raise ConfigError(f"setting {key}={value!r} is not a valid {fields[key].__name__}") from None
    return LearnState(**values)
