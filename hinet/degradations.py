"""The synthetic degradations, as plain functions of an image, their strengths and a generator.

Every function takes and returns float32 H x W x 3 arrays in [0, 1] (`add_noise` may leave [0, 1], see
below) and draws its randomness from the `numpy.random.Generator` it is given. Which function serves
which task, with which strengths and ranges, is `hinet.tasks`'s business; training, evaluation and the
app all reach these through `hinet.data.degrade`, so a model is always tested on exactly the
degradation it was trained on.

- `add_noise(sigma)`: additive white Gaussian noise, sigma on the 0-255 scale. The noisy image is *not*
  clipped to [0, 1] (the usual practice for synthetic AWGN training pairs: clipping would make the noise
  signal-dependent near black and white). Metrics under the default protocol clamp before measuring.
- `motion_blur(length, angle, kernel=None)`: linear motion blur, an anti-aliased line `length` pixels
  long at `angle` degrees (0 = horizontal, counter-clockwise positive), or a user `kernel` array;
  convolved per channel with a symmetric ('reflect') boundary; output the same size. No noise is added.
- `jpeg_compress(quality)`: Pillow JPEG round trip at `quality` (1-95), through uint8, in memory.
- `add_rain(density, length, angle)`: synthetic rain. `density` in [0, 1] scales the fraction of streak
  seed pixels (density 1 = 1.2% of pixels seed a streak); every seed is smeared into a streak `length`
  pixels long, tilted `angle` degrees from vertical (positive = top leaning right), with a random
  brightness; streaks are added to the image and the sum is clipped to [0, 1].
"""

from __future__ import annotations

import io
import math

import numpy as np

from hinet.errors import ConfigError

_RAIN_SEED_FRACTION = 0.012  # seed pixels per image pixel at density 1


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """A normalized (sum 1) linear motion-blur kernel: the area each pixel shares with a bar 1 pixel wide
    and `length` pixels long, centred on the middle pixel and turned `angle` degrees (0 = horizontal,
    counter-clockwise positive, image rows pointing down).

    Coverage is measured with 8 x 8 samples per pixel, which anti-aliases the line: a horizontal bar of
    odd length L covers exactly L pixels of one row; an even length covers L - 1 pixels fully and half of
    each end pixel. Kernels are square and odd-sized, so the blur does not shift the image.
    """
    length = float(length)
    if not math.isfinite(length) or length < 1:
        raise ConfigError(f"motion blur length must be at least 1 pixel, got {length:g}")
    radius = int(math.ceil(length / 2 + 0.5))
    samples = 8
    offsets = (np.arange(samples) + 0.5) / samples - 0.5
    grid = np.arange(-radius, radius + 1)
    y = (grid[:, None] + offsets[None, :]).ravel()
    x = y.copy()
    theta = math.radians(float(angle))
    along = x[None, :] * math.cos(theta) - y[:, None] * math.sin(theta)  # rows grow downwards
    across = x[None, :] * math.sin(theta) + y[:, None] * math.cos(theta)
    inside = (np.abs(along) <= length / 2) & (np.abs(across) <= 0.5)
    size = 2 * radius + 1
    kernel = inside.reshape(size, samples, size, samples).sum(axis=(1, 3)).astype(np.float64)
    return (kernel / kernel.sum()).astype(np.float32)


def _check_kernel(kernel: np.ndarray) -> np.ndarray:
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.size == 0:
        raise ConfigError(f"a blur kernel must be a 2-D array, got shape {kernel.shape}")
    if not np.all(np.isfinite(kernel)) or np.any(kernel < 0) or kernel.sum() <= 0:
        raise ConfigError("a blur kernel must be finite, non-negative and have a positive sum")
    return (kernel / kernel.sum()).astype(np.float32)


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel of an H x W x C image with a 2-D kernel; symmetric ('reflect' in
    scipy.ndimage terms) boundary; output the same size."""
    from scipy.signal import fftconvolve  # here, not at the top: it adds ~1.5 s to every import of hinet

    kh, kw = kernel.shape
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(image, ((top, kh - 1 - top), (left, kw - 1 - left), (0, 0)), mode="symmetric")
    out = fftconvolve(padded, kernel[:, :, None].astype(np.float32), mode="valid", axes=(0, 1))
    return out.astype(np.float32)


def add_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(sigma / 255.0)
    return clean + noise


def motion_blur(clean: np.ndarray, length: float, angle: float, kernel: np.ndarray | None = None) -> np.ndarray:
    kernel = motion_kernel(length, angle) if kernel is None else _check_kernel(kernel)
    return convolve(clean, kernel)


def jpeg_compress(clean: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    pixels = np.clip(np.rint(clean * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32) / 255.0


def rain_layer(
    shape: tuple[int, int], density: float, length: float, angle: float, rng: np.random.Generator
) -> np.ndarray:
    """The H x W streak intensity in [0, 1]: sparse random seeds smeared along the fall direction."""
    from scipy.ndimage import gaussian_filter  # here, not at the top: ~0.3 s of import for rain alone

    h, w = shape
    seeds = np.zeros((h, w), dtype=np.float32)
    n_seeds = int(rng.binomial(h * w, min(1.0, density * _RAIN_SEED_FRACTION)))
    if n_seeds:
        index = rng.choice(h * w, size=n_seeds, replace=False)
        seeds.flat[index] = rng.uniform(0.25, 0.9, size=n_seeds).astype(np.float32)
    # Thin streaks are slightly soft across their width, like out-of-focus drops.
    seeds = gaussian_filter(seeds, 0.6) * np.float32(2.0)
    kernel = motion_kernel(length, 90.0 - angle)  # angle is the tilt from vertical
    streaks = convolve(seeds[:, :, None], kernel)[:, :, 0] * np.float32(length) / np.float32(2.0)
    return np.clip(streaks, 0.0, 1.0)


def add_rain(clean: np.ndarray, density: float, length: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    streaks = rain_layer(clean.shape[:2], density, length, angle, rng)
    return np.clip(clean + streaks[:, :, None], 0.0, 1.0)


__all__ = ["motion_kernel", "convolve", "add_noise", "motion_blur", "jpeg_compress", "rain_layer", "add_rain"]
