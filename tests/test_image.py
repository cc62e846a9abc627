"""hinet.image: loading every kind of input, refusing bad ones with ImageError, lossless output."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps

from hinet.errors import ImageError
from hinet.image import (
    DEFAULT_MAX_PIXELS,
    crop_to,
    image_to_tensor,
    load_image,
    pad_to_multiple,
    save_image,
    tensor_to_image,
    to_output_array,
)

RNG = np.random.default_rng(0)


def random_uint8(*shape):
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def png_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


# ----------------------------------------------------------------------------------------------------
# Bad files and bad arrays


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty \(0 bytes\)"):
        load_image(path)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "notes.png"
    path.write_bytes(b"this is a text file, not a picture\n" * 10)
    with pytest.raises(ImageError, match="not an image file"):
        load_image(path)


def test_truncated_png(tmp_path):
    data = png_bytes(Image.fromarray(random_uint8(64, 64, 3)))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nowhere.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_unsupported_source_type():
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        load_image(42)


def test_huge_png_header_is_refused_without_decoding(tmp_path):
    # A valid PNG header claiming 20000 x 20000 RGB, followed by a tiny IDAT: decoding would fail with
    # "truncated", so a "too large" error proves the size was checked from the header alone.
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + png_chunk(b"IEND", b"")
    )
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    started = time.perf_counter()
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert time.perf_counter() - started < 2.0
    message = str(caught.value)
    assert "too large" in message and "20000 x 20000" in message and f"{DEFAULT_MAX_PIXELS:,}" in message


def test_max_pixels_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    path.write_bytes(png_bytes(Image.fromarray(random_uint8(80, 100, 3))))

    def refuse_to_decode(self):
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)
    with pytest.raises(ImageError, match=r"100 x 80 = 8,000 pixels, more than the limit of 5,000"):
        load_image(path, max_pixels=5000)


def test_max_pixels_applies_to_arrays_and_pil_images():
    with pytest.raises(ImageError, match="too large"):
        load_image(np.zeros((50, 50, 3), np.uint8), max_pixels=100)
    with pytest.raises(ImageError, match="too large"):
        load_image(Image.new("RGB", (50, 50)), max_pixels=100)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_arrays(bad):
    array = np.full((8, 8, 3), 0.5, np.float32)
    array[3, 4, 1] = bad
    with pytest.raises(ImageError, match="NaN or infinite"):
        load_image(array)


def test_float_array_on_the_wrong_scale():
    with pytest.raises(ImageError, match=r"must be in \[0, 1\]"):
        load_image(np.full((8, 8, 3), 200.0, np.float32))


@pytest.mark.parametrize("shape", [(8, 8, 2), (8, 8, 5), (3, 8, 8, 3), (8,), (0, 8, 3)])
def test_wrong_array_layouts(shape):
    with pytest.raises(ImageError):
        load_image(np.zeros(shape, np.uint8))


def test_channel_count_message_is_plain():
    with pytest.raises(ImageError, match=r"1 \(gray\), 3 \(RGB\) or 4 \(RGBA\) channels.*5 channels"):
        load_image(np.zeros((8, 8, 5), np.uint8))


def test_negative_integer_array():
    with pytest.raises(ImageError, match="0..65535"):
        load_image(np.full((4, 4), -3, np.int32))


# ----------------------------------------------------------------------------------------------------
# Modes and round trips


def test_rgb_png_round_trip_is_exact(tmp_path):
    rgb = random_uint8(20, 30, 3)
    source = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(source)
    loaded = load_image(source)
    assert loaded.pixels.shape == (20, 30, 3) and loaded.pixels.dtype == np.float32
    assert not loaded.was_gray and loaded.bit_depth == 8 and loaded.alpha is None and loaded.name == "rgb.png"
    out = save_image(tmp_path / "out.png", loaded.pixels, loaded)
    assert np.array_equal(np.asarray(Image.open(out)), rgb)


def test_gray_round_trip(tmp_path):
    gray = random_uint8(17, 23)
    source = tmp_path / "gray.png"
    Image.fromarray(gray).save(source)
    loaded = load_image(source)
    assert loaded.was_gray and loaded.source_mode == "L"
    assert np.array_equal(loaded.pixels[..., 0], loaded.pixels[..., 2])  # replicated for the model
    output = to_output_array(loaded.pixels, loaded)
    assert output.shape == (17, 23) and output.dtype == np.uint8
    assert np.array_equal(output, gray)
    written = Image.open(save_image(tmp_path / "out.png", loaded.pixels, loaded))
    assert written.mode == "L" and np.array_equal(np.asarray(written), gray)


def test_gray_output_is_the_channel_mean():
    loaded = load_image(np.zeros((2, 2), np.uint8))
    pixels = np.zeros((2, 2, 3), np.float32)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 0.3, 0.6, 0.9
    assert np.all(to_output_array(pixels, loaded) == round(0.6 * 255))


def test_rgba_alpha_is_kept_untouched(tmp_path):
    rgba = random_uint8(16, 12, 4)
    source = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(source)
    loaded = load_image(source)
    assert loaded.alpha is not None and loaded.alpha.shape == (16, 12)
    assert np.array_equal(np.rint(loaded.alpha * 255).astype(np.uint8), rgba[..., 3])
    # Colour premultiplied by nothing: transparent pixels keep their RGB values.
    assert np.array_equal(to_output_array(loaded.pixels), rgba[..., :3])
    restored = np.clip(loaded.pixels * 0.5, 0, 1)  # whatever the model did to the colour...
    written = np.asarray(Image.open(save_image(tmp_path / "out.png", restored, loaded)))
    assert written.shape == (16, 12, 4)
    assert np.array_equal(written[..., 3], rgba[..., 3])  # ...the alpha is the input's, bit for bit


def test_alpha_size_mismatch_is_explained():
    loaded = load_image(random_uint8(8, 8, 4))
    with pytest.raises(ImageError, match="crop the output back"):
        to_output_array(np.zeros((16, 16, 3), np.float32), loaded)


def test_gray_with_alpha(tmp_path):
    la = Image.merge("LA", [Image.fromarray(random_uint8(6, 5)), Image.fromarray(random_uint8(6, 5))])
    loaded = load_image(png_bytes(la))
    assert loaded.was_gray and loaded.alpha is not None
    output = to_output_array(loaded.pixels, loaded)
    assert output.shape == (6, 5, 2) and np.array_equal(output, np.asarray(la))
    written = Image.open(save_image(tmp_path / "la.png", loaded.pixels, loaded))
    assert written.mode == "LA" and np.array_equal(np.asarray(written), np.asarray(la))


def test_palette_with_and_without_transparency():
    rgb = Image.fromarray(random_uint8(10, 10, 3)).quantize(colors=16)
    plain = load_image(png_bytes(rgb))
    assert plain.source_mode == "P" and plain.alpha is None
    assert np.array_equal(to_output_array(plain.pixels), np.asarray(rgb.convert("RGB")))

    index = np.asarray(rgb)
    transparent = rgb.copy()
    transparent.info["transparency"] = int(index[0, 0])
    loaded = load_image(png_bytes(transparent, transparency=int(index[0, 0])))
    assert loaded.alpha is not None
    assert loaded.alpha[0, 0] == 0.0
    assert np.array_equal(loaded.alpha == 0, index == index[0, 0])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil(orientation):
    base = Image.fromarray(random_uint8(5, 7, 3))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = png_bytes(base, exif=exif)
    loaded = load_image(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert np.array_equal(to_output_array(loaded.pixels), expected)
    assert loaded.pixels.shape[:2] == ((7, 5) if orientation >= 5 else (5, 7))


def test_exif_rotation_of_a_jpeg(tmp_path):
    base = Image.fromarray(np.repeat(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], 16, 0).repeat(3, 2))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "photo.jpg"
    base.save(path, quality=95, exif=exif)
    loaded = load_image(path)
    assert loaded.pixels.shape == (32, 16, 3)


def _animation(format_name: str, colors) -> bytes:
    frames = [Image.new("RGB", (20, 12), color) for color in colors]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=format_name, save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def test_an_animated_gif_says_only_its_first_frame_is_used(tmp_path):
    path = tmp_path / "moving.gif"
    path.write_bytes(_animation("GIF", [(255, 0, 0), (0, 0, 255), (0, 255, 0)]))
    loaded = load_image(path)
    assert np.allclose(loaded.pixels[0, 0], [1, 0, 0])  # the first frame
    assert loaded.warnings == ("moving.gif is an animated GIF with 3 frames; only the first frame is used",)
    assert (
        load_image(_animation("PNG", [(255, 0, 0), (0, 0, 255)]))
        .warnings[0]
        .endswith("PNG with 2 frames; only the first frame is used")
    )
    still = io.BytesIO()
    Image.new("RGB", (20, 12), (255, 0, 0)).save(still, format="GIF")
    assert load_image(still.getvalue()).warnings == ()
    assert load_image(np.zeros((4, 4, 3), np.uint8)).warnings == ()


def test_cmyk_is_converted_to_rgb():
    cmyk = Image.fromarray(random_uint8(8, 9, 3)).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="TIFF")
    loaded = load_image(buffer.getvalue())
    assert loaded.source_mode == "CMYK" and not loaded.was_gray
    assert np.array_equal(to_output_array(loaded.pixels), np.asarray(cmyk.convert("RGB")))


def test_pil_images_and_bilevel():
    bilevel = Image.fromarray(random_uint8(8, 8) > 127)
    loaded = load_image(bilevel)
    assert loaded.was_gray and set(np.unique(loaded.pixels)) <= {0.0, 1.0}
    loaded = load_image(Image.fromarray(np.full((4, 4), 40000, np.int32)))
    assert loaded.source_mode == "I" and loaded.bit_depth == 16
    assert np.all(to_output_array(loaded.pixels, loaded) == 40000)


def test_float_and_uint16_arrays():
    floats = RNG.random((6, 6, 3), dtype=np.float32)
    loaded = load_image(floats)
    assert loaded.bit_depth == 8 and np.array_equal(loaded.pixels, floats)
    deep = RNG.integers(0, 65536, (6, 6), dtype=np.uint16)
    loaded = load_image(deep)
    assert loaded.bit_depth == 16 and loaded.was_gray
    assert np.array_equal(to_output_array(loaded.pixels, loaded), deep)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_png_round_trip_is_bit_exact(tmp_path, channels):
    # Smooth gradients plus noise, so every PNG filter path (and carries across bytes) is exercised.
    height, width = 19, 23
    ramp = np.linspace(0, 65535, height * width * channels).reshape(height, width, channels)
    noise = RNG.integers(-300, 300, ramp.shape)
    deep = np.clip(ramp + noise, 0, 65535).astype(np.uint16)
    deep[0, 0] = 65535
    deep[-1, -1] = 0
    if channels == 1:
        deep = deep[..., 0]
    path = save_image(tmp_path / "deep.png", deep)
    loaded = load_image(path)
    assert loaded.bit_depth == 16 and loaded.source_mode == ["I;16", "LA;16", "RGB;16", "RGBA;16"][channels - 1]
    assert loaded.was_gray == (channels <= 2) and (loaded.alpha is not None) == (channels in (2, 4))
    assert np.array_equal(to_output_array(loaded.pixels, loaded), deep)
    # An independent decoder (Pillow, which keeps the high byte of 16-bit colour) agrees.
    with Image.open(path) as reference:
        reference_values = np.asarray(reference)
    if channels == 1:
        assert np.array_equal(reference_values, deep)
    elif channels == 3:
        assert np.array_equal(reference_values, (deep >> 8).astype(np.uint8))


def test_16_bit_gray_png_from_pil_keeps_full_precision(tmp_path):
    deep = RNG.integers(0, 65536, (9, 11), dtype=np.uint16)
    path = tmp_path / "deep_gray.png"
    Image.fromarray(deep).save(path)
    loaded = load_image(path)
    assert loaded.bit_depth == 16 and loaded.was_gray
    np.testing.assert_array_equal(loaded.pixels[..., 0], deep.astype(np.float32) / 65535)
    written = save_image(tmp_path / "again.png", loaded.pixels, loaded)
    assert np.array_equal(np.asarray(Image.open(written)), deep)


def test_output_rounds_instead_of_truncating():
    pixels = np.full((2, 2, 3), 2.6 / 255, np.float32)
    assert np.all(to_output_array(pixels) == 3)
    deep = load_image(np.zeros((2, 2, 3), np.uint16))
    assert np.all(to_output_array(np.full((2, 2, 3), 2.6 / 65535, np.float32), deep) == 3)
    assert to_output_array(np.full((1, 1, 3), 1.7, np.float32))[0, 0, 0] == 255  # clipped


def test_output_refuses_non_finite_pixels():
    with pytest.raises(ImageError, match="NaN"):
        to_output_array(np.full((2, 2, 3), np.nan, np.float32))


def test_save_image_requires_png(tmp_path):
    with pytest.raises(ImageError, match=r"\.png"):
        save_image(tmp_path / "out.jpg", np.zeros((4, 4, 3), np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_every_png_level_is_lossless_and_the_level_sets_the_size(tmp_path, dtype):
    ramp = np.linspace(0, np.iinfo(dtype).max, 64 * 64 * 3).reshape(64, 64, 3)
    pixels = (ramp + np.random.default_rng(0).integers(0, 3, ramp.shape)).clip(0, np.iinfo(dtype).max).astype(dtype)
    sizes = {}
    for level in (0, 1, 9):
        path = save_image(tmp_path / f"level{level}.png", pixels, compress_level=level)
        loaded = load_image(path)
        assert loaded.bit_depth == np.iinfo(dtype).bits
        assert np.array_equal(np.rint(loaded.pixels * np.iinfo(dtype).max).astype(dtype), pixels)
        sizes[level] = path.stat().st_size
    assert sizes[0] > sizes[1] >= sizes[9]


# ----------------------------------------------------------------------------------------------------
# Tensors, padding, cropping


def test_tensor_round_trip_and_clamping():
    pixels = RNG.random((5, 7, 3), dtype=np.float32)
    tensor = image_to_tensor(pixels)
    assert tensor.shape == (1, 3, 5, 7) and tensor.dtype == torch.float32
    assert np.array_equal(tensor_to_image(tensor), pixels)
    assert tensor_to_image(tensor * 4 - 2).min() == 0.0 and tensor_to_image(tensor * 4 - 2).max() == 1.0
    with pytest.raises(ImageError, match="batch"):
        tensor_to_image(torch.zeros(2, 3, 4, 4))


def test_pad_reflects_like_numpy_and_torch_when_the_pad_is_small():
    pixels = RNG.random((13, 10, 3), dtype=np.float32)
    padded, size = pad_to_multiple(pixels, 8)
    assert size == (13, 10) and padded.shape == (16, 16, 3)
    assert np.array_equal(padded, np.pad(pixels, ((0, 3), (0, 6), (0, 0)), mode="reflect"))
    tensor = image_to_tensor(pixels)
    padded_tensor, _ = pad_to_multiple(tensor, 8)
    assert torch.equal(padded_tensor, F.pad(tensor, (0, 6, 0, 3), mode="reflect"))
    assert np.array_equal(crop_to(padded, size), pixels)
    assert torch.equal(crop_to(padded_tensor, size), tensor)


def test_pad_min_size_and_exact_multiple():
    pixels = RNG.random((16, 32, 3), dtype=np.float32)
    same, size = pad_to_multiple(pixels, 16)
    assert same.shape == pixels.shape and size == (16, 32)
    bigger, _ = pad_to_multiple(pixels, 16, min_size=40)
    assert bigger.shape == (48, 48, 3)


@pytest.mark.parametrize("height, width", [(1, 1), (1, 5), (2, 3), (3, 2)])
def test_pad_tiny_images_beyond_reflect_range(height, width):
    pixels = RNG.random((height, width, 3), dtype=np.float32)
    padded, size = pad_to_multiple(pixels, 16)
    assert padded.shape == (16, 16, 3) and size == (height, width)
    assert np.array_equal(crop_to(padded, size), pixels)
    # Every padded value is one of the image's own values in the same channel, and no edge row/column
    # is duplicated next to itself (mirror without repeating the edge), except for size 1.
    for channel in range(3):
        assert set(np.unique(padded[..., channel])) <= set(np.unique(pixels[..., channel]))
    if height == 1:
        assert np.all(padded == padded[:1])
    else:
        assert np.array_equal(padded[height, :width], pixels[height - 2])
    tensor_padded, _ = pad_to_multiple(image_to_tensor(pixels), 16)
    assert np.array_equal(tensor_to_image(tensor_padded), padded)


def test_pad_rejects_bad_arguments():
    with pytest.raises(ImageError):
        pad_to_multiple(np.zeros((4, 4, 3)), 0)
    with pytest.raises(ImageError):
        pad_to_multiple(np.zeros((0, 4, 3)), 8)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_save_image_failure_keeps_the_old_png_and_leaves_no_temp(tmp_path, monkeypatch, dtype):
    import errno
    import os

    path = save_image(tmp_path / "out.png", np.zeros((4, 5, 3), dtype))
    before = path.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        save_image(path, np.full((4, 5, 3), 7, dtype))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
