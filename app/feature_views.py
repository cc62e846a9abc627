"""Pure view builders of the feature-maps tab: image views, channel grids, statistics figures, tables.

Everything here turns already-captured `hinet.features.BlockFeatures` (and an image array) into
pictures, plotly figures and tables; no Gradio, no model forward. That keeps the tab thin and lets
the tests check each figure's numbers.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from hinet.errors import ConfigError

VIEW_CROP = "centre crop 256"
VIEW_DOWNSCALE = "downscale to max side 256"
VIEW_MODES = (VIEW_CROP, VIEW_DOWNSCALE)
VIEW_SIDE = 256  # features are captured on at most VIEW_SIDE x VIEW_SIDE pixels, whatever the upload
TILE_PX = 112  # display size of one channel tile
_CMAP = colormaps["viridis"]
_FONT = ImageFont.load_default()


def as_array(values) -> np.ndarray | None:
    """BlockFeatures fields may be numpy arrays or torch tensors; the views work on float32 numpy."""
    if values is None:
        return None
    if hasattr(values, "detach"):
        values = values.detach().cpu().float().numpy()
    return np.asarray(values, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------
# The view of the image that features are captured on


def image_key(pixels: np.ndarray) -> str:
    """A short content hash: the cache key of an image."""
    digest = hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16]
    return f"{pixels.shape[0]}x{pixels.shape[1]}-{digest}"


def view_arguments(mode: str, height: int, width: int, side: int = VIEW_SIDE) -> dict:
    """`capture_features` keyword arguments for the view `mode` of an height x width image.

    Both views bound the captured maps to side x side pixels, so any upload's features fit in memory.
    """
    if mode == VIEW_CROP:
        ch, cw = min(height, side), min(width, side)
        if (ch, cw) == (height, width):
            return {}
        y0, x0 = (height - ch) // 2, (width - cw) // 2
        return {"crop_box": (y0, x0, y0 + ch, x0 + cw)}
    if mode == VIEW_DOWNSCALE:
        return {"max_side": side}
    raise ConfigError(f"view must be one of: {', '.join(VIEW_MODES)}; got {mode!r}")


def view_caption(captured) -> str:
    """Plain words for what the maps were captured on (from `CapturedFeatures`' record of it)."""
    h, w = captured.source_hw
    notes = captured.notes
    what = "; ".join(notes) if notes else "used as it is"
    ph, pw = captured.padded_hw
    return f"Features of the {h} x {w} image, {what}; the model ran on {ph} x {pw}."


def valid_region(maps: np.ndarray, valid_hw) -> np.ndarray:
    """The part of (C, H, W) maps that covers the image (padding cut off), for display."""
    h, w = valid_hw if valid_hw and valid_hw[0] > 0 else maps.shape[-2:]
    return maps[..., :h, :w]


# ----------------------------------------------------------------------------------------------------
# Channel grids


def top_channels(maps: np.ndarray | None, k: int) -> list[int]:
    """Indices of the k channels with the largest spatial variance, largest first."""
    if maps is None or len(maps) == 0:
        return []
    variance = as_array(maps).reshape(len(maps), -1).var(axis=1)
    return [int(i) for i in np.argsort(-variance, kind="stable")[: max(0, int(k))]]


def _colourize(channel: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    rgb = _CMAP(np.clip((channel - lo) / span, 0.0, 1.0))[..., :3]
    return (rgb * 255).astype(np.uint8)


def _tile(channel: np.ndarray, lo: float, hi: float) -> Image.Image:
    image = Image.fromarray(_colourize(channel, lo, hi))
    h, w = channel.shape
    scale = TILE_PX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(size, Image.NEAREST if scale >= 1 else Image.BOX)


def _colour_bar(lo: float, hi: float, height: int) -> Image.Image:
    bar = np.linspace(hi, lo, height, dtype=np.float32)[:, None].repeat(10, axis=1)
    canvas = Image.new("RGB", (62, height), "white")
    canvas.paste(Image.fromarray(_colourize(bar, lo, hi)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((13, 0), f"{hi:.3g}", fill="black", font=_FONT)
    draw.text((13, height - 12), f"{lo:.3g}", fill="black", font=_FONT)
    return canvas


def render_panel(title: str, rows: list[tuple[str, np.ndarray, float, float]]) -> np.ndarray:
    """A column of channel tiles, each with its label and a colour bar for its (lo, hi) range."""
    row_h = TILE_PX + 16
    width = TILE_PX + 70
    canvas = Image.new("RGB", (width, 18 + max(1, len(rows)) * row_h), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), title, fill="black", font=_FONT)
    if not rows:
        draw.text((4, 30), "(no channels here)", fill="gray", font=_FONT)
    for i, (label, channel, lo, hi) in enumerate(rows):
        y = 18 + i * row_h
        draw.text((2, y), label, fill="black", font=_FONT)
        canvas.paste(_tile(channel, lo, hi), (0, y + 13))
        canvas.paste(_colour_bar(lo, hi, TILE_PX), (TILE_PX + 6, y + 13))
    return np.asarray(canvas)


def _range(*maps: np.ndarray) -> tuple[float, float]:
    lo = min(float(m.min()) for m in maps)
    hi = max(float(m.max()) for m in maps)
    return lo, hi


def block_panels(features, k: int) -> dict[str, np.ndarray]:
    """Four panels: conv_1 before the norm, the normalized half (same scale per channel pair as before),
    the identity half, and the block output; top-k channels of each by activation variance."""
    hw = features.valid_hw
    pre = valid_region(as_array(features.pre_norm), hw)
    normalized = features.normalized
    normalized = None if normalized is None else valid_region(as_array(normalized), hw)
    identity = valid_region(as_array(features.identity), hw)
    output = valid_region(as_array(features.output), hw)
    n = int(features.normalized_channels)
    before_rows, after_rows = [], []
    for c in top_channels(normalized if normalized is not None else None, k):
        lo, hi = _range(pre[c], normalized[c])
        before_rows.append((f"ch {c}", pre[c], lo, hi))
        after_rows.append((f"ch {c}", normalized[c], lo, hi))
    identity_rows = [(f"ch {n + c}", identity[c], *_range(identity[c])) for c in top_channels(identity, k)]
    output_rows = [(f"ch {c}", output[c], *_range(output[c])) for c in top_channels(output, k)]
    return {
        "before": render_panel("conv_1, before norm", before_rows),
        "normalized": render_panel("normalized half", after_rows),
        "identity": render_panel("identity half", identity_rows),
        "output": render_panel("block output", output_rows),
    }


def side_by_side(panels: list[np.ndarray], gap: int = 8) -> np.ndarray:
    """Panels of any heights, left to right on a white canvas."""
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.full((height, width, 3), 255, np.uint8)
    x = 0
    for p in panels:
        canvas[: p.shape[0], x : x + p.shape[1]] = p[..., :3]
        x += p.shape[1] + gap
    return canvas


def block_overview(features, k: int) -> np.ndarray:
    panels = block_panels(features, k)
    return side_by_side([panels["before"], panels["normalized"], panels["identity"], panels["output"]])


# ----------------------------------------------------------------------------------------------------
# Statistics


def after_norm(features, channel: int) -> np.ndarray:
    """Channel `channel` of the tensor after the partial norm (normalized or passed through)."""
    n = int(features.normalized_channels)
    if channel < n:
        return as_array(features.normalized)[channel]
    return as_array(features.identity)[channel - n]


def check_channel(features, channel: int) -> int:
    count = len(as_array(features.mean_before))
    if not 0 <= int(channel) < count:
        raise ConfigError(f"channel must be between 0 and {count - 1} for block {features.name}; got {channel}")
    return int(channel)


def fast_figure(data: list[dict], layout: dict) -> go.Figure:
    """A plotly figure from plain dicts without plotly's per-property validation (50x faster here, which
    is what keeps a block/channel switch under 0.5 s); the tests validate every figure once."""
    return go.Figure(data=data, layout=layout, _validate=False)


def statistics_figure(features, channel: int | None = None) -> go.Figure:
    """Per-channel mean and std before and after the norm; the normalized channels are shaded."""
    mean_before, mean_after = as_array(features.mean_before), as_array(features.mean_after)
    std_before, std_after = as_array(features.std_before), as_array(features.std_after)
    channels = np.arange(len(mean_before))
    n = int(features.normalized_channels)
    data, shapes = [], []
    for row, (before, after) in enumerate(((mean_before, mean_after), (std_before, std_after)), start=1):
        axis = "y" if row == 1 else "y2"
        data.append(
            dict(
                type="bar",
                x=channels,
                y=before,
                name="before norm",
                marker=dict(color="#7f7f7f"),
                showlegend=row == 1,
                legendgroup="before",
                xaxis="x",
                yaxis=axis,
            )
        )
        data.append(
            dict(
                type="bar",
                x=channels,
                y=after,
                name="after norm",
                marker=dict(color="#2ca02c"),
                showlegend=row == 1,
                legendgroup="after",
                xaxis="x",
                yaxis=axis,
            )
        )
        if n:
            shapes.append(
                dict(
                    type="rect",
                    x0=-0.5,
                    x1=n - 0.5,
                    xref="x",
                    y0=0,
                    y1=1,
                    yref=f"{axis} domain",
                    fillcolor="#2ca02c",
                    opacity=0.08,
                    line=dict(width=0),
                )
            )
        if channel is not None:
            shapes.append(
                dict(
                    type="line",
                    x0=channel,
                    x1=channel,
                    xref="x",
                    y0=0,
                    y1=1,
                    yref=f"{axis} domain",
                    line=dict(dash="dot", color="black"),
                )
            )
    layout = dict(
        barmode="group",
        height=380,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", y=1.12),
        xaxis=dict(title=dict(text="channel (shaded: normalized)"), anchor="y2"),
        yaxis=dict(domain=[0.56, 1.0], title=dict(text="mean")),
        yaxis2=dict(domain=[0.0, 0.44], title=dict(text="std")),
        shapes=shapes,
    )
    return fast_figure(data, layout)


def histogram_figure(features, channel: int, bins: int = 60) -> go.Figure:
    """Histogram of one channel's values before and after the norm (counts, computed here, not in the browser)."""
    channel = check_channel(features, channel)
    pre = as_array(features.pre_norm)[channel].ravel()
    post = after_norm(features, channel).ravel()
    lo, hi = _range(pre, post)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    data = []
    for values, name, colour in ((pre, "before norm", "#7f7f7f"), (post, "after norm", "#2ca02c")):
        counts, _ = np.histogram(values, bins=edges)
        data.append(
            dict(
                type="bar",
                x=centres,
                y=counts,
                name=name,
                marker=dict(color=colour),
                opacity=0.6,
                width=float(edges[1] - edges[0]),
            )
        )
    state = "normalized" if channel < int(features.normalized_channels) else "passes through unchanged"
    layout = dict(
        barmode="overlay",
        height=300,
        margin=dict(l=10, r=10, t=40, b=10),
        title=dict(text=f"channel {channel} ({state})"),
        xaxis=dict(title=dict(text="activation")),
        yaxis=dict(title=dict(text="pixels")),
    )
    return fast_figure(data, layout)


def norm_statistics(features, channel: int, norm_layer) -> tuple[float, float, str]:
    """(mu, var, where they come from) that `norm_layer` used for `channel` of this captured sample.

    Instance/half-instance: the channel's own spatial mean and biased variance; batch in eval mode: the
    running statistics; layer/group: the mean and variance over the channel's group of channels.
    """
    pre = as_array(features.pre_norm)[: int(features.normalized_channels)].astype(np.float64)
    kind = type(norm_layer).__name__
    if kind == "BatchNorm2d":
        # capture_features runs the model in eval mode, so batch norm used its running statistics
        if norm_layer.running_mean is None:
            raise ConfigError("this batch-norm layer keeps no running statistics; no eval-mode formula exists")
        mu = float(norm_layer.running_mean[channel])
        var = float(norm_layer.running_var[channel])
        return mu, var, "BatchNorm running statistics (eval mode)"
    if kind == "GroupNorm":
        size = pre.shape[0] // norm_layer.num_groups
        group = channel // size
        values = pre[group * size : (group + 1) * size]
        source = (
            "LayerNorm: all normalized channels"
            if norm_layer.num_groups == 1
            else (f"GroupNorm: group {group} (channels {group * size}-{(group + 1) * size - 1})")
        )
        return float(values.mean()), float(values.var()), source
    if kind == "InstanceNorm2d":
        return float(pre[channel].mean()), float(pre[channel].var()), f"channel {channel} of this image, over H x W"
    raise ConfigError(f"no formula for norm layer {kind}")


def channel_statistics_table(features) -> pd.DataFrame:
    """The data of `statistics_figure`: one row per channel, its mean and std before and after the norm."""
    n = int(features.normalized_channels)
    mean_before, mean_after = as_array(features.mean_before), as_array(features.mean_after)
    std_before, std_after = as_array(features.std_before), as_array(features.std_after)
    gamma = as_array(features.gamma) if features.gamma is not None else None
    beta = as_array(features.beta) if features.beta is not None else None
    rows = []
    for channel in range(len(mean_before)):
        normalized = channel < n and features.normalized is not None
        rows.append(
            {
                "block": features.name,
                "channel": channel,
                "normalized": normalized,
                "mean before": float(mean_before[channel]),
                "std before": float(std_before[channel]),
                "mean after": float(mean_after[channel]),
                "std after": float(std_after[channel]),
                "gamma": float(gamma[channel]) if normalized and gamma is not None else None,
                "beta": float(beta[channel]) if normalized and beta is not None else None,
            }
        )
    return pd.DataFrame(rows)


def formula_table(features, channel: int, norm_layer) -> pd.DataFrame:
    """μ, σ, γ, β of one channel and (x − μ)/√(σ² + ε) · γ + β worked out at its strongest pixel.

    The last row is the layer's own output at that pixel, so the table checks itself.
    """
    channel = check_channel(features, channel)
    n = int(features.normalized_channels)
    pre = as_array(features.pre_norm)[channel]
    y, x = np.unravel_index(int(np.argmax(np.abs(pre))), pre.shape)
    value = float(pre[y, x])
    if channel >= n or norm_layer is None:
        rows = [
            ("channel", f"{channel} (identity half: not normalized)"),
            (f"x at pixel ({y}, {x})", f"{value:.5g}"),
            ("output", f"{float(after_norm(features, channel)[y, x]):.5g} (= x, unchanged)"),
            ("mean / std (before = after)", f"{pre.mean():.5g} / {pre.std():.5g}"),
        ]
        return pd.DataFrame(rows, columns=["quantity", "value"])
    mu, var, source = norm_statistics(features, channel, norm_layer)
    eps = float(norm_layer.eps)
    sigma = math.sqrt(var + eps)
    gamma = float(as_array(features.gamma)[channel]) if features.gamma is not None else 1.0
    beta = float(as_array(features.beta)[channel]) if features.beta is not None else 0.0
    result = (value - mu) / sigma * gamma + beta
    affine = "" if features.gamma is not None else " (no affine: γ = 1, β = 0)"
    rows = [
        ("channel", f"{channel} (normalized half)"),
        ("statistics from", source),
        ("μ", f"{mu:.5g}"),
        ("σ = √(var + ε)", f"√({var:.5g} + {eps:g}) = {sigma:.5g}"),
        ("γ" + affine, f"{gamma:.5g}"),
        ("β", f"{beta:.5g}"),
        (f"x at pixel ({y}, {x})", f"{value:.5g}"),
        ("(x − μ)/σ · γ + β", f"({value:.5g} − {mu:.5g}) / {sigma:.5g} · {gamma:.5g} + {beta:.5g} = {result:.5g}"),
        ("the layer's output there", f"{float(after_norm(features, channel)[y, x]):.5g}"),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value"])


def compare_figure(features_a, features_b, label_a: str, label_b: str) -> go.Figure:
    """Per-channel std after the norm of the same block in two variants."""
    fig = go.Figure()
    for features, label in ((features_a, label_a), (features_b, label_b)):
        std = as_array(features.std_after)
        fig.add_trace(
            go.Bar(
                x=np.arange(len(std)),
                y=std,
                name=f"{label} ({features.norm}, {int(features.normalized_channels)} normalized)",
            )
        )
    fig.update_layout(
        barmode="group",
        height=300,
        margin=dict(l=10, r=10, t=40, b=10),
        title="per-channel std after the norm",
        xaxis_title="channel",
        legend=dict(orientation="h", y=-0.25),
    )
    return fig
