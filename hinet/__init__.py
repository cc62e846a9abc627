"""HINet Explorer: a configurable, checkpoint-compatible HINet with tools to compare its variants."""

from hinet.errors import CheckpointError, ConfigError, HINetError, ImageError
from hinet.model import NORM_NAMES, HINet, HINetConfig, count_parameters, create_norm
from hinet.registry import VARIANTS, create_model, get_config, list_variants

__all__ = [
    "HINet",
    "HINetConfig",
    "NORM_NAMES",
    "create_norm",
    "count_parameters",
    "VARIANTS",
    "create_model",
    "get_config",
    "list_variants",
    "HINetError",
    "ConfigError",
    "ImageError",
    "CheckpointError",
]
