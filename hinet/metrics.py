"""PSNR and SSIM under an explicit protocol: the project's one metrics implementation.

A `Protocol` states how images are prepared before measuring, so every published number can say how it
was measured (`Protocol.describe()`):

- ``round_to_uint8=True`` (the official HINet/BasicSR protocol for GoPro, REDS, Rain13k): both images are
  clamped to [0, 1], scaled by 255 and rounded, then measured on the 0-255 scale (data range 255).
  ``False`` (SIDD style): the float values are used as given, without clamping, on the [0, 1] scale
  (data range 1).
- ``channel="rgb"`` measures all three channels; ``"y"`` measures the luma of ITU-R BT.601 on the 0-255
  scale, MATLAB's ``rgb2ycbcr`` as BasicSR's ``bgr2ycbcr(y_only=True)`` computes it (Y = 16 + 65.481 R +
  128.553 G + 24.966 B for R, G, B in [0, 1]; not rounded), data range 255. Rain13k is reported on Y.
- ``border``: pixels cropped from every side before measuring.

PSNR is `skimage.metrics.peak_signal_noise_ratio` over all channels jointly. Identical images give
``float("inf")`` (the mean squared error is 0).

SSIM is `skimage.metrics.structural_similarity` with the settings of Wang et al. (2004) that BasicSR's
`calculate_ssim` also uses: an 11 x 11 Gaussian window with sigma 1.5 (``gaussian_weights=True``,
``sigma=1.5``), population covariances (``use_sample_covariance=False``), K1 = 0.01, K2 = 0.03; computed
per channel and averaged over channels; the mean is taken over the region where the whole window fits
(5 pixels are left out at each border). Images must be at least 11 x 11 after the border crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import skimage.metrics  # lazy: its functions (and scipy.stats, ~0.8 s of import) load on first use
import torch

from hinet.errors import ConfigError, ImageError

CHANNELS = ("rgb", "y")
# BT.601 luma on the 0-255 scale for R, G, B in [0, 1] (MATLAB rgb2ycbcr / BasicSR bgr2ycbcr y_only).
Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
Y_OFFSET = 16.0
SSIM_WINDOW = 11  # 2 * ceil(3.5 * 1.5) + 1 for sigma 1.5 and skimage's truncate 3.5


@dataclass(frozen=True)
class Protocol:
    channel: str = "rgb"
    round_to_uint8: bool = True
    border: int = 0

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ConfigError(f"metric channel must be one of {', '.join(CHANNELS)}, got {self.channel!r}")
        if not isinstance(self.border, int) or isinstance(self.border, bool) or self.border < 0:
            raise ConfigError(f"metric border must be a non-negative integer, got {self.border!r}")
        if not isinstance(self.round_to_uint8, bool):
            raise ConfigError(f"round_to_uint8 must be True or False, got {self.round_to_uint8!r}")

    def describe(self) -> str:
        channel = "RGB" if self.channel == "rgb" else "Y (BT.601, 0-255)"
        values = "clamped and rounded to uint8" if self.round_to_uint8 else "float, no rounding"
        border = f"{self.border}-pixel border cropped" if self.border else "no border crop"
        return f"{channel}, {values}, {border}"

    @property
    def data_range(self) -> float:
        return 255.0 if self.round_to_uint8 or self.channel == "y" else 1.0


def _as_image(array: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor: accept (C, H, W) or (1, C, H, W)
        values: np.ndarray = array.detach().cpu().float().numpy()
        if values.ndim == 4 and values.shape[0] == 1:
            values = values[0]
        if values.ndim == 3 and values.shape[0] in (1, 3):
            values = np.moveaxis(values, 0, -1)
        array = values
    if not isinstance(array, np.ndarray):
        raise ImageError(f"{what} must be a numpy array, got {type(array).__name__}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ImageError(f"{what} must be H x W x 3 (or H x W gray), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        raise ImageError(f"{what} must be a float image in [0, 1], got integer dtype {array.dtype}")
    return array.astype(np.float64)


def prepare(image: np.ndarray, protocol: Protocol = Protocol(), what: str = "image") -> np.ndarray:
    """The array the metrics see under `protocol` (float64; 0-255 scale, or 0-1 for float RGB)."""
    image = _as_image(image, what)
    if protocol.round_to_uint8:
        image = np.rint(np.clip(image, 0.0, 1.0) * 255.0)
    scale = 255.0 if protocol.round_to_uint8 else 1.0
    if protocol.channel == "y":
        if image.ndim == 3:
            image = image / scale @ Y_WEIGHTS + Y_OFFSET
        else:  # gray: R = G = B
            image = image / scale * Y_WEIGHTS.sum() + Y_OFFSET
    b = protocol.border
    if b:
        if image.shape[0] <= 2 * b or image.shape[1] <= 2 * b:
            raise ImageError(f"a {b}-pixel border crop leaves nothing of a {image.shape[1]}x{image.shape[0]} image")
        image = image[b:-b, b:-b]
    return image


def _prepare_pair(
    output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, protocol: Protocol
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(protocol, Protocol):
        raise ConfigError(f"protocol must be a hinet.metrics.Protocol, got {type(protocol).__name__}")
    out = _as_image(output, "output")
    ref = _as_image(target, "target")
    if out.shape != ref.shape:
        raise ImageError(
            f"output shape {out.shape} differs from target shape {ref.shape}; metrics need images of the same size"
        )
    return prepare(out, protocol, "output"), prepare(ref, protocol, "target")


def psnr(
    output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, protocol: Protocol = Protocol()
) -> float:
    """PSNR in dB of `output` against `target` (H x W x 3 float arrays in [0, 1]); inf when identical."""
    out, ref = _prepare_pair(output, target, protocol)
    if np.array_equal(out, ref):
        return float("inf")
    return float(skimage.metrics.peak_signal_noise_ratio(ref, out, data_range=protocol.data_range))


def ssim(
    output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, protocol: Protocol = Protocol()
) -> float:
    """SSIM of `output` against `target` (see the module docstring for the exact settings)."""
    out, ref = _prepare_pair(output, target, protocol)
    if min(out.shape[:2]) < SSIM_WINDOW:
        raise ImageError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels "
            f"(after the border crop), got {out.shape[1]}x{out.shape[0]}"
        )
    return float(
        skimage.metrics.structural_similarity(
            ref,
            out,
            data_range=protocol.data_range,
            channel_axis=2 if out.ndim == 3 else None,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def evaluate_pair(
    output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, protocol: Protocol = Protocol()
) -> dict[str, float]:
    return {"psnr": psnr(output, target, protocol), "ssim": ssim(output, target, protocol)}


def default_protocol(task: str) -> Protocol:
    """The protocol `task` is reported with: its record's `hinet.tasks.Task.protocol` (RGB, except derain
    on the Y channel as the official Rain13k results are). `ConfigError` for an unknown task."""
    from hinet.tasks import get_task  # tasks builds its records from this module's Protocol

    return get_task(task).protocol
