"""HINet: Half Instance Normalization Network (Chen et al., CVPR 2021 workshops, arXiv 2105.06086).

Read this file top to bottom: the config, the normalization factory, the building blocks, then the
two-stage network.

    image ──conv_01──► U-Net 1 (encoder with normalized blocks, decoder) ──► SAM ──► out_1
      │                      │ encoder + decoder features (CSFF)             │ attention features
      └──conv_02──► cat12 ◄──┼───────────────────────────────────────────────┘
                      U-Net 2 (encoder fuses stage-1 features) ──► last ──► out_2 = last(y) + image

Each encoder block: t = conv_1(x); normalize the first `norm_ratio` fraction of t's channels, leave the
rest untouched, concatenate; LeakyReLU; conv_2; LeakyReLU; add a 1x1-conv shortcut of x. With the
default config (`norm="half_instance"`, ratio 0.5, affine) this is the paper's HIN block, and the module
and parameter names equal the official repository's, so official checkpoints load with `strict=True`.

Every ablation knob lives in `HINetConfig`, so each variant differs from the paper model in exactly one
field. The model does no padding: H and W must be multiples of `config.size_multiple`; use
`hinet.inference.restore` for images of any size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypedDict

import torch
from torch import nn

from hinet.errors import ConfigError

# ----------------------------------------------------------------------------------------------------
# Config


NORM_NAMES = ("none", "batch", "layer", "instance", "group", "half_instance")
# Sizes far past any HINet (the paper's is wf 64, depth 5): a config outside them is a mistake or a
# damaged file, and building it would try to allocate terabytes.
MAX_WF = 256
MAX_DEPTH = 8


@dataclass(frozen=True)
class HINetConfig:
    """Constructor arguments of `HINet`. Defaults equal the official `HINet()` constructor."""

    in_chn: int = 3  # image channels in and out (3 = RGB)
    wf: int = 64  # channels at level 0; level i has wf * 2**i
    depth: int = 5  # U-Net levels; inputs must be multiples of 2**(depth-1)
    relu_slope: float = 0.2  # LeakyReLU negative slope
    hin_position_left: int = 0  # first encoder level with a normalized block (official name)
    hin_position_right: int = 4  # last encoder level with a normalized block (official name)
    norm: str = "half_instance"  # one of NORM_NAMES; layer type applied to the normalized channels
    # Fraction of conv_1's output channels that are normalized; None = the norm's own default
    # (0.5 for half_instance, 1.0 for every other norm). 0.5 + instance is HIN, 1.0 + instance is IN.
    norm_ratio: float | None = None
    norm_affine: bool = True  # learn per-channel gamma/beta in the norm layer
    norm_in_decoder: bool = False  # also normalize decoder blocks at the same levels (placement ablation)
    norm_groups: int = 8  # groups for norm="group" (reduced to a divisor of the channel count)

    def __post_init__(self) -> None:
        if self.norm not in NORM_NAMES:
            raise ConfigError(f"norm must be one of {', '.join(NORM_NAMES)}; got {self.norm!r}")
        if self.in_chn < 1 or self.wf < 1:
            raise ConfigError(f"in_chn and wf must be positive; got in_chn={self.in_chn}, wf={self.wf}")
        if self.wf > MAX_WF:
            raise ConfigError(f"wf must be at most {MAX_WF} (the paper's HINet has 64); got {self.wf}")
        if self.depth < 2:
            raise ConfigError(f"depth must be at least 2; got {self.depth}")
        if self.depth > MAX_DEPTH:
            raise ConfigError(f"depth must be at most {MAX_DEPTH} (the paper's HINet has 5); got {self.depth}")
        if self.norm_ratio is not None and not 0.0 < self.norm_ratio <= 1.0:
            raise ConfigError(f"norm_ratio must be in (0, 1]; got {self.norm_ratio}")
        if self.norm_groups < 1:
            raise ConfigError(f"norm_groups must be positive; got {self.norm_groups}")
        if self.norm != "none" and self.normalized_channels(0) < 1:
            raise ConfigError(
                f"norm_ratio={self.ratio} of wf={self.wf} channels normalizes no channel at level 0; "
                "raise wf or norm_ratio"
            )

    @property
    def ratio(self) -> float:
        """The normalized fraction actually used (resolves `norm_ratio=None`)."""
        if self.norm_ratio is not None:
            return self.norm_ratio
        return 0.5 if self.norm == "half_instance" else 1.0

    @property
    def size_multiple(self) -> int:
        """H and W of the model's input must be multiples of this."""
        return 2 ** (self.depth - 1)

    def channels(self, level: int) -> int:
        return self.wf * 2**level

    def normalized_channels(self, level: int) -> int:
        """How many of conv_1's output channels the norm sees at this level (the first ones)."""
        return int(round(self.channels(level) * self.ratio))

    def encoder_level_is_normalized(self, level: int) -> bool:
        return self.norm != "none" and self.hin_position_left <= level <= self.hin_position_right

    def decoder_level_is_normalized(self, level: int) -> bool:
        return self.norm_in_decoder and self.encoder_level_is_normalized(level)

    def parameter_count(self) -> int:
        """The number of parameters `HINet(self)` has, counted from the config alone (nothing is
        allocated), so an absurd size can be refused before building it. Equals `count_parameters`."""

        def conv(c_in: int, c_out: int, kernel: int, bias: bool = True) -> int:
            return c_in * c_out * kernel * kernel + (c_out if bias else 0)

        def norm(level: int, normalized: bool) -> int:
            # Every norm layer holds one gamma and one beta per channel it sees (batch norm's running
            # statistics are buffers, not parameters).
            return 2 * self.normalized_channels(level) if normalized and self.norm_affine else 0

        def block(c_in: int, c_out: int, downsample: bool, csff: bool, norm_params: int) -> int:
            total = conv(c_in, c_out, 1) + conv(c_in, c_out, 3) + conv(c_out, c_out, 3) + norm_params
            if downsample:
                total += conv(c_out, c_out, 4, bias=False)
                if csff:
                    total += 2 * conv(c_out, c_out, 3)
            return total

        total = 2 * conv(self.in_chn, self.wf, 3)  # conv_01, conv_02
        previous = self.wf
        for level in range(self.depth):
            channels, downsample = self.channels(level), level + 1 < self.depth
            normalized = norm(level, self.encoder_level_is_normalized(level))
            total += block(previous, channels, downsample, False, normalized)  # stage 1
            total += block(previous, channels, downsample, True, normalized)  # stage 2 (CSFF)
            previous = channels
        for level in range(self.depth - 1):
            c_in, c_out = self.channels(level + 1), self.channels(level)
            up = conv(c_in, c_out, 2) + block(
                c_in, c_out, False, False, norm(level, self.decoder_level_is_normalized(level))
            )
            total += 2 * (up + conv(c_out, c_out, 3))  # up_path_1/2 and skip_conv_1/2
        total += conv(self.wf, self.wf, 3) + conv(self.wf, self.in_chn, 3) + conv(self.in_chn, self.wf, 3)  # SAM
        total += conv(2 * self.wf, self.wf, 1) + conv(self.wf, self.in_chn, 3)  # cat12, last
        return total

    def describe(self) -> str:
        """Norm, ratio, placement and size in a few words, e.g. "norm half_instance r0.50, levels 0-3, wf16 d4"."""
        size = f"wf{self.wf} d{self.depth}"
        if self.norm == "none":
            return f"no norm, {size}"
        ratio = self.ratio
        ratio_text = f"{ratio:.2f}" if round(ratio, 2) == ratio else f"{ratio:g}"
        left, right = self.hin_position_left, self.hin_position_right
        parts = [f"norm {self.norm} r{ratio_text}", f"level {left}" if left == right else f"levels {left}-{right}"]
        if self.norm_in_decoder:
            parts.append("decoder norm")
        if not self.norm_affine:
            parts.append("no affine")
        return ", ".join(parts + [size])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> HINetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown HINet config keys: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def replace(self, **changes: Any) -> HINetConfig:
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------------------------------
# Normalization factory (one place maps names to layers, as timm's create_norm does)


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def create_norm(name: str, num_channels: int, affine: bool = True, groups: int = 8) -> nn.Module | None:
    """The layer that normalizes `num_channels` channels, or None for `name="none"`.

    `instance` and `half_instance` are the same layer; they differ only in how many channels the block
    hands it (see `HINetConfig.ratio`). Instance norm keeps no running statistics, as in the paper, so
    train and eval mode compute the same thing and the layer has no buffers.
    """
    if name == "none":
        return None
    if name == "batch":
        return nn.BatchNorm2d(num_channels, affine=affine)
    if name == "layer":  # statistics over C, H and W of each sample, per-channel gamma/beta
        return nn.GroupNorm(1, num_channels, affine=affine)
    if name in ("instance", "half_instance"):
        return nn.InstanceNorm2d(num_channels, affine=affine, track_running_stats=False)
    if name == "group":
        return nn.GroupNorm(_largest_divisor_at_most(num_channels, groups), num_channels, affine=affine)
    raise ConfigError(f"norm must be one of {', '.join(NORM_NAMES)}; got {name!r}")


# ----------------------------------------------------------------------------------------------------
# Building blocks


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


class UNetConvBlock(nn.Module):
    """conv_1 -> partial norm -> LeakyReLU -> conv_2 -> LeakyReLU, plus a 1x1 shortcut.

    With `downsample` it returns (downsampled, full-resolution) outputs; the full-resolution one feeds
    the skip connection. With `use_csff` (stage 2) it adds the stage-1 encoder/decoder features.
    Attribute order is the official one: it fixes the state-dict key order.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        downsample: bool,
        relu_slope: float,
        use_csff: bool = False,
        norm_layer: nn.Module | None = None,
        normalized_channels: int = 0,
    ) -> None:
        super().__init__()
        self.downsample_enabled = downsample
        self.identity = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv_1 = conv3x3(in_channels, out_channels)
        self.relu_1 = nn.LeakyReLU(relu_slope, inplace=False)
        self.conv_2 = conv3x3(out_channels, out_channels)
        self.relu_2 = nn.LeakyReLU(relu_slope, inplace=False)
        if downsample and use_csff:
            self.csff_enc = conv3x3(out_channels, out_channels)
            self.csff_dec = conv3x3(out_channels, out_channels)
        self.use_csff = downsample and use_csff
        # `norm` sees the first `normalized_channels` channels; the rest pass through unchanged.
        self.norm = norm_layer
        self.normalized_channels = normalized_channels if norm_layer is not None else 0
        if downsample:
            self.downsample = nn.Conv2d(out_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False)

    def normalize(self, t: torch.Tensor) -> torch.Tensor:
        if self.norm is None:
            return t
        n = self.normalized_channels
        if n == t.shape[1]:
            return self.norm(t)
        return torch.cat([self.norm(t[:, :n]), t[:, n:]], dim=1)

    def forward(
        self, x: torch.Tensor, enc: torch.Tensor | None = None, dec: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        t = self.relu_1(self.normalize(self.conv_1(x)))
        t = self.relu_2(self.conv_2(t))
        t = t + self.identity(x)
        if enc is not None and dec is not None:
            t = t + self.csff_enc(enc) + self.csff_dec(dec)
        if self.downsample_enabled:
            return self.downsample(t), t
        return t


class UNetUpBlock(nn.Module):
    """2x transposed-conv upsampling, concatenation with the skip feature, then a conv block."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        relu_slope: float,
        norm_layer: nn.Module | None = None,
        normalized_channels: int = 0,
    ) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2, bias=True)
        self.conv_block = UNetConvBlock(
            in_channels, out_channels, False, relu_slope, norm_layer=norm_layer, normalized_channels=normalized_channels
        )

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), bridge], dim=1))


class SAM(nn.Module):
    """Supervised attention module: predicts the stage-1 image and gates the features passed on."""

    def __init__(self, n_feat: int, image_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = conv3x3(n_feat, n_feat)
        self.conv2 = conv3x3(n_feat, image_channels)
        self.conv3 = conv3x3(image_channels, n_feat)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1 = self.conv1(x)
        out_image = self.conv2(x) + image
        attention = torch.sigmoid(self.conv3(out_image))
        return x1 * attention + x, out_image


# ----------------------------------------------------------------------------------------------------
# The network


class _NormArguments(TypedDict, total=False):
    """The norm keywords `HINet` hands a normalized block (none for a block without a norm)."""

    norm_layer: nn.Module | None
    normalized_channels: int


class HINet(nn.Module):
    """Two-stage HINet. `forward(image)` returns `[out_1, out_2]`; inference uses `out_2`."""

    def __init__(self, config: HINetConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        config = (config or HINetConfig()).replace(**overrides)
        self.config = config
        self.depth = config.depth

        def norm_for(level: int, normalized: bool) -> _NormArguments:
            if not normalized:
                return {}
            n = config.normalized_channels(level)
            return {
                "norm_layer": create_norm(config.norm, n, affine=config.norm_affine, groups=config.norm_groups),
                "normalized_channels": n,
            }

        self.down_path_1 = nn.ModuleList()
        self.down_path_2 = nn.ModuleList()
        prev = config.wf
        for level in range(config.depth):
            downsample = level + 1 < config.depth
            out = config.channels(level)
            normalized = config.encoder_level_is_normalized(level)
            self.down_path_1.append(
                UNetConvBlock(prev, out, downsample, config.relu_slope, **norm_for(level, normalized))
            )
            self.down_path_2.append(
                UNetConvBlock(
                    prev, out, downsample, config.relu_slope, use_csff=downsample, **norm_for(level, normalized)
                )
            )
            prev = out

        self.conv_01 = conv3x3(config.in_chn, config.wf)
        self.conv_02 = conv3x3(config.in_chn, config.wf)

        # up_path_*[j] serves level depth-2-j (deepest first).
        self.up_path_1 = nn.ModuleList()
        self.up_path_2 = nn.ModuleList()
        self.skip_conv_1 = nn.ModuleList()
        self.skip_conv_2 = nn.ModuleList()
        decoder_levels = list(reversed(range(config.depth - 1)))
        for level in decoder_levels:
            normalized = config.decoder_level_is_normalized(level)
            c_in, c_out = config.channels(level + 1), config.channels(level)
            self.up_path_1.append(UNetUpBlock(c_in, c_out, config.relu_slope, **norm_for(level, normalized)))
            self.up_path_2.append(UNetUpBlock(c_in, c_out, config.relu_slope, **norm_for(level, normalized)))
        for level in decoder_levels:
            self.skip_conv_1.append(conv3x3(config.channels(level), config.channels(level)))
            self.skip_conv_2.append(conv3x3(config.channels(level), config.channels(level)))

        self.sam12 = SAM(config.wf, config.in_chn)
        self.cat12 = nn.Conv2d(2 * config.wf, config.wf, kernel_size=1)
        self.last = conv3x3(config.wf, config.in_chn)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        # Stage 1: encoder keeps each level's full-resolution output for skips and CSFF.
        x = self.conv_01(image)
        stage1_encoder = []
        for block in self.down_path_1:
            if block.downsample_enabled:
                x, skip = block(x)
                stage1_encoder.append(skip)
            else:
                x = block(x)
        stage1_decoder = []  # deepest first, like up_path_1
        for j, up in enumerate(self.up_path_1):
            x = up(x, self.skip_conv_1[j](stage1_encoder[-j - 1]))
            stage1_decoder.append(x)
        sam_features, out_1 = self.sam12(x, image)

        # Stage 2: encoder fuses stage-1 encoder and decoder features at each resolution.
        y = self.cat12(torch.cat([self.conv_02(image), sam_features], dim=1))
        stage2_encoder = []
        for i, block in enumerate(self.down_path_2):
            if block.downsample_enabled:
                y, skip = block(y, stage1_encoder[i], stage1_decoder[-i - 1])
                stage2_encoder.append(skip)
            else:
                y = block(y)
        for j, up in enumerate(self.up_path_2):
            y = up(y, self.skip_conv_2[j](stage2_encoder[-j - 1]))
        out_2 = self.last(y) + image
        return [out_1, out_2]

    def normalized_blocks(self) -> dict[str, UNetConvBlock]:
        """Every block that has a norm layer, by its module name (e.g. "down_path_1.3")."""
        return {
            name: module
            for name, module in self.named_modules()
            if isinstance(module, UNetConvBlock) and module.norm is not None
        }

    def conv_blocks(self) -> dict[str, UNetConvBlock]:
        """Every encoder/decoder conv block by module name, normalized or not."""
        return {name: m for name, m in self.named_modules() if isinstance(m, UNetConvBlock)}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "HINet",
    "HINetConfig",
    "NORM_NAMES",
    "MAX_WF",
    "MAX_DEPTH",
    "create_norm",
    "count_parameters",
    "UNetConvBlock",
    "SAM",
]
