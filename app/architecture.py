"""The architecture strip: HINet's two U-Nets drawn as blocks per level, coloured by norm type.

Block names equal the module names of `HINet.conv_blocks()` ("down_path_1.0", "up_path_2.1.conv_block"),
so a name picked here is the name `hinet.features.capture_features` reports. The layout is computed from
the config alone: drawing the strip needs no model.
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from hinet.model import HINetConfig

NORM_COLOURS = {
    "none": "#bdbdbd",
    "batch": "#d62728",
    "layer": "#9467bd",
    "instance": "#1f77b4",
    "group": "#ff7f0e",
    "half_instance": "#2ca02c",
}
NORM_LABELS = {
    "none": "no norm",
    "batch": "BatchNorm",
    "layer": "LayerNorm",
    "instance": "InstanceNorm",
    "group": "GroupNorm",
    "half_instance": "Half InstanceNorm",
}


@dataclass(frozen=True)
class BlockInfo:
    name: str  # module name in HINet.conv_blocks()
    stage: int  # 1 or 2
    side: str  # "encoder" or "decoder"
    level: int  # 0 = full resolution
    channels: int  # conv_1 output channels
    normalized_channels: int  # the first ones go through the norm; 0 = no norm in this block
    norm: str  # the config's norm, or "none" for an unnormalized block

    @property
    def label(self) -> str:
        if self.normalized_channels:
            norm = f"{NORM_LABELS[self.norm]}, {self.normalized_channels}/{self.channels} ch normalized"
        else:
            norm = "no norm"
        return f"stage {self.stage} {self.side} level {self.level} ({norm})"


def block_layout(config: HINetConfig) -> list[BlockInfo]:
    """Every conv block of a HINet with this config, stage 1 first, encoder (shallow to deep) then decoder."""
    blocks = []
    decoder_levels = list(reversed(range(config.depth - 1)))  # up_path_s[j] serves decoder_levels[j]
    for stage in (1, 2):
        for level in range(config.depth):
            n = config.normalized_channels(level) if config.encoder_level_is_normalized(level) else 0
            blocks.append(
                BlockInfo(
                    f"down_path_{stage}.{level}",
                    stage,
                    "encoder",
                    level,
                    config.channels(level),
                    n,
                    config.norm if n else "none",
                )
            )
        for j, level in enumerate(decoder_levels):
            n = config.normalized_channels(level) if config.decoder_level_is_normalized(level) else 0
            blocks.append(
                BlockInfo(
                    f"up_path_{stage}.{j}.conv_block",
                    stage,
                    "decoder",
                    level,
                    config.channels(level),
                    n,
                    config.norm if n else "none",
                )
            )
    return blocks


def block_choices(config: HINetConfig) -> list[tuple[str, str]]:
    """(label, block name) pairs for a dropdown."""
    return [(b.label, b.name) for b in block_layout(config)]


def default_block(config: HINetConfig) -> str:
    """The first normalized block (the most interesting one to open with), else the first block."""
    blocks = block_layout(config)
    return next((b.name for b in blocks if b.normalized_channels), blocks[0].name)


def _stage_offset(config: HINetConfig, stage: int) -> float:
    return 0.0 if stage == 1 else 2.0 * (config.depth - 1) + 2.0


def _position(config: HINetConfig, block: BlockInfo) -> tuple[float, float]:
    # Each U-Net is drawn as a U (encoder down to the right, decoder back up), stage 2 right of stage 1,
    # so each level is one row and the CSFF arrows between the stages run along their level's row.
    x = block.level if block.side == "encoder" else 2 * (config.depth - 1) - block.level
    return _stage_offset(config, block.stage) + x, -float(block.level)


def architecture_figure(config: HINetConfig, selected: str | None = None, title: str = "") -> go.Figure:
    """Plotly strip of both U-Nets; blocks coloured by norm type (legend), `selected` outlined in black.

    Built from plain dicts without plotly's validation (see `app.feature_views.fast_figure`): it is
    redrawn on every block switch. The tests validate it once.
    """
    blocks = block_layout(config)
    positions = {b.name: _position(config, b) for b in blocks}
    data = []
    for norm in NORM_COLOURS:
        members = [b for b in blocks if b.norm == norm]
        if not members:
            continue
        name = NORM_LABELS[norm]
        if norm == "half_instance" and config.ratio != 0.5:
            name += f" (ratio {config.ratio:g})"
        data.append(
            dict(
                type="scatter",
                mode="markers",
                name=name,
                x=[positions[b.name][0] for b in members],
                y=[positions[b.name][1] for b in members],
                marker=dict(symbol="square", size=26, color=NORM_COLOURS[norm], line=dict(width=1, color="#444")),
                customdata=[b.name for b in members],
                hovertext=[f"{b.name}<br>{b.label}" for b in members],
                hoverinfo="text",
            )
        )
    if selected in positions:
        x, y = positions[selected]
        data.append(
            dict(
                type="scatter",
                mode="markers",
                name="selected block",
                x=[x],
                y=[y],
                hoverinfo="skip",
                marker=dict(symbol="square-open", size=38, color="black", line=dict(width=4)),
            )
        )

    annotations = []

    def arrow(start, end, text="", colour="#888"):
        annotations.append(
            dict(
                x=end[0],
                y=end[1],
                ax=start[0],
                ay=start[1],
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                showarrow=True,
                arrowhead=3,
                arrowsize=1,
                arrowwidth=1.5,
                arrowcolor=colour,
                text=text,
                font=dict(size=10, color=colour),
                standoff=13,
                startstandoff=13,
            )
        )

    for stage in (1, 2):
        ordered = sorted((b.name for b in blocks if b.stage == stage), key=lambda n: positions[n][0])
        for a, b in zip(ordered, ordered[1:]):
            arrow(positions[a], positions[b])
    # SAM passes stage 1's last features (decoder level 0, up_path_1[depth-2]) to stage 2's first block;
    # CSFF adds stage 1's encoder and decoder features of each level to stage 2's encoder block there
    # (one arrow per level: the encoder's would run through the decoder block on the same row).
    last_decoder = f"up_path_1.{config.depth - 2}.conv_block"
    arrow(positions[last_decoder], positions["down_path_2.0"], text="SAM + CSFF", colour="#8c564b")
    for level in range(1, config.depth - 1):
        j = config.depth - 2 - level
        arrow(positions[f"up_path_1.{j}.conv_block"], positions[f"down_path_2.{level}"], text="CSFF", colour="#17becf")
    width = _stage_offset(config, 2) + 2 * (config.depth - 1)
    for stage in (1, 2):
        middle = _stage_offset(config, stage) + config.depth - 1
        annotations.append(dict(x=middle, y=0.75, xref="x", yref="y", text=f"stage {stage}", showarrow=False))
    layout = dict(
        annotations=annotations,
        title=dict(text=title) if title else None,
        height=80 + 55 * config.depth,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        xaxis=dict(visible=False, range=[-0.7, width + 0.7]),
        yaxis=dict(visible=False, range=[-(config.depth - 1) - 0.6, 1.1]),
        legend=dict(orientation="h", y=-0.02),
        plot_bgcolor="white",
    )
    if layout["title"] is None:
        del layout["title"]
    return go.Figure(data=data, layout=layout, _validate=False)
