"""Image input and output: the one place that turns files and arrays into model pixels and back.

`load_image` accepts a path, bytes, a PIL image or a numpy array and returns a `LoadedImage` whose
`pixels` are H x W x 3 float32 in [0, 1] (gray is replicated to 3 channels, because every model takes
RGB). Everything needed to give the user back an image like the one they gave is kept beside it: the
alpha channel (never restored, never touched), whether it was gray, and its bit depth. `to_output_array`
and `save_image` use that to write gray as gray, 16-bit as 16-bit and RGBA as RGBA. What the loader
had to leave out is said in `warnings` (e.g. the later frames of an animated GIF), for the app and the
command-line tools to show.

Pillow decodes 16-bit RGB(A) PNGs to 8 bits, so those are decoded twice (high bytes, then low bytes)
through the same Pillow decoder; and Pillow cannot write them, so `_encode_png16` does.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from hinet.errors import ImageError
from hinet.io import atomic_write, atomic_write_bytes

DEFAULT_MAX_PIXELS = 40_000_000

# Float inputs a hair outside [0, 1] (resampling overshoot) are clipped; further out is a wrong scale.
_FLOAT_RANGE_TOLERANCE = 1e-3

_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_EXIF_ORIENTATION_TAG = 0x0112

# A numpy H x W (x C) array or a (..., H, W) tensor: padding and cropping give back what they are given.
_Pixels = TypeVar("_Pixels", np.ndarray, torch.Tensor)


@dataclass
class LoadedImage:
    pixels: np.ndarray  # H x W x 3 float32 in [0, 1]
    alpha: np.ndarray | None  # H x W float32 in [0, 1], or None
    was_gray: bool
    bit_depth: int  # 8 or 16
    source_mode: str  # PIL mode of the source ("array:<dtype>" for numpy input)
    name: str
    warnings: tuple[str, ...] = ()  # what of the source is not in `pixels`, in words for the user

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]


# ----------------------------------------------------------------------------------------------------
# Loading


def load_image(
    source: str | Path | bytes | bytearray | memoryview | Image.Image | np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS
) -> LoadedImage:
    """Read `source` (path, bytes, PIL image or numpy array) into model pixels; raises `ImageError`."""
    if isinstance(source, np.ndarray):
        return _load_array(source, max_pixels, name="array")
    if isinstance(source, Image.Image):
        name = Path(getattr(source, "filename", "") or "image").name
        _check_size(source.width, source.height, max_pixels, name)
        return _load_pil(source, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "image"
    elif isinstance(source, (str, Path)):
        data, name = _read_file(Path(source))
    else:
        raise ImageError(
            f"cannot read an image from a {type(source).__name__}; give a file path, bytes, a PIL image "
            "or a numpy array"
        )
    if not data:
        raise ImageError(f"{name} is empty (0 bytes): it holds no image")
    image = _open(data, name, max_pixels)
    return _load_pil(image, name)


def _read_file(path: Path) -> tuple[bytes, str]:
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file")
    try:
        return path.read_bytes(), path.name
    except OSError as error:
        raise ImageError(f"cannot read {path}: {error.strerror or error}") from error


def _check_size(width: int, height: int, max_pixels: int, name: str) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"{name} is empty ({width} x {height} pixels)")
    if width * height > max_pixels:
        raise ImageError(
            f"{name} is too large: {width} x {height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,} pixels; downscale or crop it first"
        )


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Open lazily and check the header's size before any pixel is decoded."""
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        # Pillow refuses absurd sizes in open() already, before we see the size; read the header again
        # without Pillow's limit so the message can give W x H like our own limit does.
        header = _open_header_only(data)
        if header is None:
            found = re.search(r"\((\d+) pixels\)", str(error))
            size = f"{int(found.group(1)):,} pixels" if found else "more pixels than Pillow allows"
            raise ImageError(
                f"{name} is too large: {size}, more than the limit of {max_pixels:,} pixels; downscale or crop it first"
            ) from error
        image = header
    except UnidentifiedImageError as error:
        raise ImageError(f"{name} is not an image file, or is in a format that cannot be read") from error
    except Exception as error:  # any header parser failure means a damaged file
        raise ImageError(f"{name} is damaged: its header cannot be read ({error})") from error
    _check_size(image.width, image.height, max_pixels, name)
    return image


def _open_header_only(data: bytes) -> Image.Image | None:
    """Open with the format plugin directly (what Image.open does, minus its pixel limit); None on failure."""
    Image.init()
    for format_id in Image.ID:
        factory, accept = Image.OPEN[format_id]
        try:
            accepted = accept is None or accept(data[:16])
            if accepted and not isinstance(accepted, str):  # a str is Pillow's "maybe, with a warning"
                return factory(io.BytesIO(data), "")
        except Exception:  # noqa: BLE001  a plugin may raise anything on bytes it does not parse: try the next
            continue
    return None


def _decode(image: Image.Image, name: str) -> None:
    try:
        image.load()
    except Exception as error:  # truncated data, bad checksums, decoder errors: all mean a damaged file
        raise ImageError(f"{name} is damaged or truncated and cannot be decoded ({error})") from error


def _load_pil(image: Image.Image, name: str) -> LoadedImage:
    loaded = _load_first_frame(image, name)
    frames = _frame_count(image)
    if frames > 1:
        kind = "an animated GIF" if image.format == "GIF" else f"an animation or multi-page {image.format or 'image'}"
        warning = f"{name} is {kind} with {frames} frames; only the first frame is used"
        loaded = replace(loaded, warnings=loaded.warnings + (warning,))
    return loaded


def _frame_count(image: Image.Image) -> int:
    try:
        return int(getattr(image, "n_frames", 1))
    except Exception:  # noqa: BLE001  counting seeks through the file; a damaged later frame still leaves the first
        return 1


def _load_first_frame(image: Image.Image, name: str) -> LoadedImage:
    mode = image.mode
    wide = _decode_png16(image, name)
    if wide is not None:  # 16-bit RGB, RGBA or gray+alpha PNG, full precision
        values, has_alpha, orientation = wide
        gray = values.shape[2] <= 2
        # Pillow calls these "RGB"/"RGBA" (its 8-bit reduction); name what the file holds
        wide_mode = {1: "L;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[values.shape[2]]
        return _finish(values, 65535.0, has_alpha, gray, 16, wide_mode, name, orientation)

    _decode(image, name)
    orientation = _exif_orientation(image)  # after decoding: PNG keeps EXIF after the pixel data
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode == "1":
        image = image.convert("L")
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    elif mode not in _GRAY_MODES and mode not in ("RGB", "RGBA"):
        try:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
            image = image.convert("RGB")
        except Exception as error:
            raise ImageError(f"{name} has the unsupported image mode {mode!r}") from error

    values = np.asarray(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return _finish(values.astype(np.uint16), 65535.0, False, True, 16, mode, name, orientation)
    if image.mode == "I":
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise ImageError(f"{name} is a 32-bit integer image with values {low}..{high}; only 0..65535 is supported")
        return _finish(values.astype(np.uint16), 65535.0, False, True, 16, mode, name, orientation)
    if image.mode == "F":
        return _finish(_checked_float(values, name), 1.0, False, True, 8, mode, name, orientation)
    has_alpha = image.mode in ("LA", "RGBA")
    gray = image.mode in ("L", "LA")
    return _finish(values, 255.0, has_alpha, gray, 8, mode, name, orientation)


def _load_array(array: np.ndarray, max_pixels: int, name: str) -> LoadedImage:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ImageError(f"an image array must be H x W or H x W x C; got shape {array.shape}")
    height, width, channels = array.shape
    if channels not in (1, 3, 4):
        raise ImageError(
            f"an image array must have 1 (gray), 3 (RGB) or 4 (RGBA) channels in its last axis; "
            f"got shape {array.shape} ({channels} channels)"
        )
    _check_size(width, height, max_pixels, name)
    mode = f"array:{array.dtype}"
    if array.dtype == np.bool_:
        values, scale, depth = array.astype(np.uint8), 1.0, 8
    elif array.dtype == np.uint8:
        values, scale, depth = array, 255.0, 8
    elif array.dtype == np.uint16:
        values, scale, depth = array, 65535.0, 16
    elif np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            raise ImageError(f"integer image values must be in 0..65535; got {low}..{high}")
        depth = 8 if high <= 255 else 16
        values, scale = array, (255.0 if depth == 8 else 65535.0)
    elif np.issubdtype(array.dtype, np.floating):
        values, scale, depth = _checked_float(array, name), 1.0, 8
    else:
        raise ImageError(f"unsupported image array dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")
    return _finish(values, scale, channels == 4, channels == 1, depth, mode, name, orientation=1)


def _checked_float(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    if not np.isfinite(values).all():
        raise ImageError(f"{name} contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < -_FLOAT_RANGE_TOLERANCE or high > 1 + _FLOAT_RANGE_TOLERANCE:
        raise ImageError(
            f"float image values must be in [0, 1]; {name} has values in [{low:.4g}, {high:.4g}] "
            "(divide 8-bit values by 255)"
        )
    return np.clip(values, 0.0, 1.0)


def _finish(
    values: np.ndarray,
    scale: float,
    has_alpha: bool,
    gray: bool,
    bit_depth: int,
    mode: str,
    name: str,
    orientation: int,
) -> LoadedImage:
    values = np.asarray(values)
    if values.ndim == 2:
        values = values[:, :, None]
    values = _apply_orientation(values, orientation)
    alpha = None
    if has_alpha:
        alpha = np.ascontiguousarray(values[:, :, -1], dtype=np.float32) / np.float32(scale)
        values = values[:, :, :-1]
    pixels = values.astype(np.float32) / np.float32(scale)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return LoadedImage(
        pixels=np.ascontiguousarray(pixels),
        alpha=alpha,
        was_gray=gray,
        bit_depth=bit_depth,
        source_mode=mode,
        name=name,
    )


def _exif_orientation(image: Image.Image) -> int:
    try:
        orientation = int(image.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001  unreadable EXIF only loses the orientation hint, not the image
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _apply_orientation(values: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip H x W x C `values` as EXIF orientation 1-8 asks (same result as ImageOps.exif_transpose)."""
    if orientation == 2:
        return values[:, ::-1]
    if orientation == 3:
        return values[::-1, ::-1]
    if orientation == 4:
        return values[::-1]
    if orientation == 5:
        return values.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(values, k=-1)
    if orientation == 7:
        return values[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(values, k=1)
    return values


def _decode_png16(image: Image.Image, name: str) -> tuple[np.ndarray, bool, int] | None:
    """Full-precision decode of 16-bit RGB / RGBA / gray+alpha PNGs, which Pillow reduces to 8 bits.

    The PNG tile is decoded again with a raw mode that keeps the bytes Pillow would drop (the low byte
    of each big-endian sample); Pillow still does the inflating and unfiltering. Returns
    (uint16 H x W x C, has_alpha, EXIF orientation) or None for any other image.
    """
    if not isinstance(image, ImageFile.ImageFile) or image.format != "PNG" or len(image.tile) != 1:
        return None
    tile = image.tile[0]
    rawmode = tile.args if isinstance(tile.args, str) else None
    if rawmode not in ("RGB;16B", "RGBA;16B", "LA;16B"):
        return None
    data = _source_bytes(image)
    if data is None:
        return None
    if rawmode == "LA;16B":  # 4 bytes a pixel: read them all as 8-bit RGBA
        raw, decoded = _decode_with_rawmode(data, "RGBA", name)
        return raw[..., 0::2].astype(np.uint16) * 256 + raw[..., 1::2], True, _exif_orientation(decoded)
    high, decoded = _decode_with_rawmode(data, rawmode, name)
    low, _ = _decode_with_rawmode(data, rawmode.replace("16B", "16L"), name)
    return high.astype(np.uint16) * 256 + low, rawmode == "RGBA;16B", _exif_orientation(decoded)


def _source_bytes(image: ImageFile.ImageFile) -> bytes | None:
    source = image.fp
    if source is None:  # Pillow closes single-frame files after loading them
        return None
    try:
        position = source.tell()
        source.seek(0)
        data = source.read()
        source.seek(position)
        return data
    except Exception:  # noqa: BLE001  a file object that cannot be reread only loses this fallback
        return None


def _decode_with_rawmode(data: bytes, rawmode: str, name: str) -> tuple[np.ndarray, Image.Image]:
    image = Image.open(io.BytesIO(data))
    image.tile = [image.tile[0]._replace(args=rawmode)]
    _decode(image, name)
    return np.asarray(image), image


# ----------------------------------------------------------------------------------------------------
# Output


def to_output_array(pixels: np.ndarray, like: LoadedImage | None = None) -> np.ndarray:
    """Float pixels in [0, 1] -> uint8 (uint16 when `like` was 16-bit), gray/RGB/RGBA as `like` was.

    Gray inputs come back as H x W (the mean of the channels), gray+alpha as H x W x 2, RGB(A) as
    H x W x 3 (4). Values are rounded, not truncated.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ImageError(f"pixels must be H x W, H x W x 1 or H x W x 3; got shape {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise ImageError("the pixels to write contain NaN or infinite values")
    if like is not None and like.was_gray:
        pixels = pixels.mean(axis=2, keepdims=True)
    elif pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    if like is not None and like.alpha is not None:
        if like.alpha.shape != pixels.shape[:2]:
            raise ImageError(
                f"the alpha channel is {like.alpha.shape[1]} x {like.alpha.shape[0]} but the pixels are "
                f"{pixels.shape[1]} x {pixels.shape[0]}; crop the output back to the input size first"
            )
        pixels = np.concatenate([pixels, like.alpha[:, :, None]], axis=2)
    depth = like.bit_depth if like is not None else 8
    scale, dtype = (65535.0, np.uint16) if depth == 16 else (255.0, np.uint8)
    out = np.rint(np.clip(pixels, 0.0, 1.0) * scale).astype(dtype)
    return out[:, :, 0] if out.shape[2] == 1 else out


def save_image(
    path: str | os.PathLike[str], pixels: np.ndarray, like: LoadedImage | None = None, compress_level: int = 6
) -> Path:
    """Write a lossless PNG atomically: float pixels go through `to_output_array`; uint8/uint16 arrays are
    written as is. `compress_level` (zlib 0-9) trades file size for time; every level is lossless."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ImageError(f"save_image writes lossless PNG files; give a .png file name, not {path.name!r}")
    array = np.asarray(pixels)
    if array.dtype not in (np.uint8, np.uint16):
        array = to_output_array(array, like)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise ImageError(f"cannot write an image of shape {array.shape} as PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == np.uint16:
        atomic_write_bytes(path, _encode_png16(array, compress_level))
    else:
        # Pillow infers L, LA, RGB or RGBA from the uint8 array's shape.
        picture = Image.fromarray(np.ascontiguousarray(array))
        atomic_write(path, lambda temp: picture.save(temp, format="PNG", compress_level=compress_level))
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _paeth_predictor(left: np.ndarray, up: np.ndarray, up_left: np.ndarray) -> np.ndarray:
    left, up, up_left = (v.astype(np.int16) for v in (left, up, up_left))
    estimate = left + up - up_left
    distance_left, distance_up, distance_up_left = (np.abs(estimate - v) for v in (left, up, up_left))
    return np.where(
        (distance_left <= distance_up) & (distance_left <= distance_up_left),
        left,
        np.where(distance_up <= distance_up_left, up, up_left),
    ).astype(np.uint8)


def _encode_png16(array: np.ndarray, compress_level: int = 6) -> bytes:
    """16-bit PNG (gray, gray+alpha, RGB or RGBA) with the Paeth filter on every row."""
    if array.ndim == 2:
        array = array[:, :, None]
    height, width, channels = array.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    bytes_per_pixel = 2 * channels
    rows = np.ascontiguousarray(array.astype(">u2")).view(np.uint8).reshape(height, width * bytes_per_pixel)
    # Paeth needs each byte's left, upper and upper-left neighbours; outside the image they are 0.
    padded = np.zeros((height + 1, width * bytes_per_pixel + bytes_per_pixel), dtype=np.uint8)
    padded[1:, bytes_per_pixel:] = rows
    left = padded[1:, :-bytes_per_pixel]
    up = padded[:-1, bytes_per_pixel:]
    up_left = padded[:-1, :-bytes_per_pixel]
    filtered = rows - _paeth_predictor(left, up, up_left)  # uint8 arithmetic wraps mod 256, as PNG wants
    scanlines = np.concatenate([np.full((height, 1), 4, dtype=np.uint8), filtered], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), compress_level))
        + _png_chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------------------------------
# Tensors, padding, cropping


def image_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """H x W x C (or H x W) numpy pixels -> float32 tensor (1, C, H, W)."""
    array = np.asarray(pixels, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ImageError(f"pixels must be H x W or H x W x C; got shape {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).unsqueeze(0)


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) tensor -> H x W x C float32 numpy clamped to [0, 1]."""
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ImageError(f"expected one image (batch size 1); got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    if tensor.ndim != 3:
        raise ImageError(f"expected a (1, C, H, W) or (C, H, W) tensor; got shape {tuple(tensor.shape)}")
    return tensor.detach().to("cpu", torch.float32).clamp(0, 1).permute(1, 2, 0).contiguous().numpy()


def _reflect_indices(size: int, target: int) -> np.ndarray:
    """Indices 0..target-1 mapped into 0..size-1 by mirror reflection (edge not repeated), repeated as
    often as needed, so a pad larger than the image still works; a size of 1 replicates."""
    positions = np.arange(target)
    if size == 1:
        return np.zeros(target, dtype=np.int64)
    period = 2 * (size - 1)
    folded = positions % period
    return np.where(folded < size, folded, period - folded).astype(np.int64)


def _spatial_axes(x: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """Height and width axes: numpy arrays are H x W (x C); tensors are (..., H, W)."""
    if isinstance(x, torch.Tensor):
        if x.ndim < 2:
            raise ImageError(f"expected a tensor (..., H, W); got shape {tuple(x.shape)}")
        return x.ndim - 2, x.ndim - 1
    if x.ndim not in (2, 3):
        raise ImageError(f"expected an H x W or H x W x C array; got shape {x.shape}")
    return 0, 1


def pad_to_multiple(x: _Pixels, multiple: int, min_size: int = 0) -> tuple[_Pixels, tuple[int, int]]:
    """Reflect-pad bottom/right so H and W are multiples of `multiple` and at least `min_size`.

    `x` is a numpy H x W (x C) array or a (..., H, W) tensor. Returns (padded, (h, w)) with the original
    size for `crop_to`.
    """
    if multiple < 1:
        raise ImageError(f"multiple must be positive; got {multiple}")
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
    axis_h, axis_w = _spatial_axes(x)
    height, width = x.shape[axis_h], x.shape[axis_w]
    if height < 1 or width < 1:
        raise ImageError(f"cannot pad an empty image ({width} x {height})")
    target_h = math.ceil(max(height, min_size) / multiple) * multiple
    target_w = math.ceil(max(width, min_size) / multiple) * multiple
    padded = x
    for axis, size, target in ((axis_h, height, target_h), (axis_w, width, target_w)):
        if target != size:
            indices = _reflect_indices(size, target)
            if isinstance(x, torch.Tensor):
                padded = padded.index_select(axis, torch.from_numpy(indices).to(x.device))
            else:
                padded = np.take(padded, indices, axis=axis)
    return padded, (height, width)


def crop_to(x: _Pixels, size: tuple[int, int]) -> _Pixels:
    """Keep the top-left `size` = (h, w) of a numpy H x W (x C) array or a (..., H, W) tensor."""
    height, width = size
    if isinstance(x, torch.Tensor):
        return x[..., :height, :width]
    return np.asarray(x)[:height, :width]


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "LoadedImage",
    "load_image",
    "to_output_array",
    "save_image",
    "image_to_tensor",
    "tensor_to_image",
    "pad_to_multiple",
    "crop_to",
]
