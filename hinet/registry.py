"""Named HINet variants, each a small dict of `HINetConfig` overrides (the timm registry pattern).

The paper configs come first; then small CPU variants that differ from `small_hin` in exactly one knob,
so any pair of them is a one-factor comparison. `tiny_*` variants exist for fast tests.
"""

from __future__ import annotations

from typing import Any

from hinet.errors import ConfigError
from hinet.model import NORM_NAMES, HINet, HINetConfig

# The paper's released configs (official option files).
PAPER_VARIANTS: dict[str, dict] = {
    "hinet_gopro": dict(wf=64, depth=5, hin_position_left=3, hin_position_right=4),  # deblurring (GoPro/REDS)
    "hinet_sidd": dict(wf=64, depth=5, hin_position_left=0, hin_position_right=4),  # real denoising
    "hinet_sidd_0.5x": dict(wf=32, depth=5, hin_position_left=0, hin_position_right=4),
    "hinet_rain13k": dict(wf=64, depth=5, hin_position_left=0, hin_position_right=4),  # deraining
}

# Small CPU base: wf 16, depth 4 (1.38 M params), HIN at every encoder level.
SMALL_BASE = dict(wf=16, depth=4, hin_position_left=0, hin_position_right=3)

SMALL_VARIANTS: dict[str, dict] = {
    "small_hin": dict(SMALL_BASE, norm="half_instance"),
    "small_none": dict(SMALL_BASE, norm="none"),
    "small_batch": dict(SMALL_BASE, norm="batch"),
    "small_layer": dict(SMALL_BASE, norm="layer"),
    "small_instance": dict(SMALL_BASE, norm="instance"),
    "small_group": dict(SMALL_BASE, norm="group"),
    # normalized fraction (ratio ablation); 0.5 is small_hin, 1.0 is small_instance
    "small_hin_r0.25": dict(SMALL_BASE, norm="half_instance", norm_ratio=0.25),
    "small_hin_r0.75": dict(SMALL_BASE, norm="half_instance", norm_ratio=0.75),
    # "half" without "instance": HIN differs from BN/LN in two knobs (norm type and fraction 0.5 vs 1.0)
    "small_half_batch": dict(SMALL_BASE, norm="batch", norm_ratio=0.5),
    "small_half_layer": dict(SMALL_BASE, norm="layer", norm_ratio=0.5),
    # placement ablation; "all encoder levels" is small_hin
    "small_hin_shallow": dict(SMALL_BASE, hin_position_left=0, hin_position_right=1),
    "small_hin_deep": dict(SMALL_BASE, hin_position_left=2, hin_position_right=3),
    "small_hin_encdec": dict(SMALL_BASE, norm_in_decoder=True),
    "small_hin_noaffine": dict(SMALL_BASE, norm_affine=False),
}

# Tiny variants for tests: wf 8, depth 3, one per norm type.
TINY_VARIANTS: dict[str, dict] = {
    f"tiny_{name}": dict(wf=8, depth=3, hin_position_left=0, hin_position_right=2, norm=name) for name in NORM_NAMES
}

VARIANTS: dict[str, dict] = {**PAPER_VARIANTS, **SMALL_VARIANTS, **TINY_VARIANTS}


def list_variants(prefix: str = "") -> list[str]:
    return [name for name in VARIANTS if name.startswith(prefix)]


def get_config(name: str, **overrides: Any) -> HINetConfig:
    if name not in VARIANTS:
        raise ConfigError(f"unknown variant {name!r}; known variants: {', '.join(VARIANTS)}")
    return HINetConfig(**{**VARIANTS[name], **overrides})


def create_model(name: str, **overrides: Any) -> HINet:
    return HINet(get_config(name, **overrides))
