import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from hinet.errors import ConfigError, ImageError
from hinet.metrics import Protocol, default_protocol, evaluate_pair, prepare, psnr, ssim


def images(h=40, w=48, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    target = rng.random((h, w, 3)).astype(np.float32)
    output = np.clip(target + noise * rng.standard_normal((h, w, 3)), -0.1, 1.1).astype(np.float32)
    return output, target


def to_uint8(x):
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)


def test_rgb_uint8_matches_skimage():
    output, target = images()
    expected = peak_signal_noise_ratio(to_uint8(target), to_uint8(output), data_range=255)
    assert psnr(output, target) == pytest.approx(expected, abs=1e-9)
    expected_ssim = structural_similarity(
        to_uint8(target),
        to_uint8(output),
        data_range=255,
        channel_axis=2,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(output, target) == pytest.approx(expected_ssim, abs=1e-9)


def test_hand_computed_psnr():
    target = np.zeros((16, 16, 3), np.float32)
    output = np.full((16, 16, 3), 10 / 255, np.float32)
    assert psnr(output, target) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-6)
    assert psnr(output, target, Protocol(round_to_uint8=False)) == pytest.approx(
        10 * math.log10(1 / (10 / 255) ** 2), abs=1e-4
    )


def test_float_protocol_does_not_round_or_clamp():
    output, target = images()
    expected = peak_signal_noise_ratio(target.astype(np.float64), output.astype(np.float64), data_range=1.0)
    assert psnr(output, target, Protocol(round_to_uint8=False)) == pytest.approx(expected, abs=1e-9)


def test_y_channel_matches_hand_formula():
    output, target = images()

    def y(img):
        rgb = np.rint(np.clip(img, 0, 1) * 255).astype(np.float64) / 255
        return 16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]

    protocol = Protocol(channel="y")
    assert np.allclose(prepare(target, protocol), y(target))
    mse = np.mean((y(output) - y(target)) ** 2)
    assert psnr(output, target, protocol) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-9)
    expected = structural_similarity(
        y(target), y(output), data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(output, target, protocol) == pytest.approx(expected, abs=1e-9)
    # white is 235 and black 16 on the BT.601 scale
    assert prepare(np.ones((2, 2, 3)), protocol)[0, 0] == pytest.approx(235.0)


def test_border_crop():
    output, target = images()
    output[:4] = 1.0  # damage only the top rows
    cropped = psnr(output, target, Protocol(border=4))
    assert cropped == pytest.approx(psnr(output[4:-4, 4:-4], target[4:-4, 4:-4]))
    assert cropped > psnr(output, target)


def test_identical_images_and_errors():
    _, target = images()
    assert psnr(target, target) == float("inf")
    assert ssim(target, target) == pytest.approx(1.0)
    result = evaluate_pair(target, target)
    assert set(result) == {"psnr", "ssim"}
    with pytest.raises(ImageError, match="differs"):
        psnr(target, target[:-1])
    with pytest.raises(ImageError, match="at least"):
        ssim(target[:8, :8], target[:8, :8])
    with pytest.raises(ImageError):
        psnr((target * 255).astype(np.uint8), target)
    with pytest.raises(ConfigError):
        Protocol(channel="lab")
    with pytest.raises(ConfigError):
        Protocol(border=-1)


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    output, target = images()
    as_tensor = torch.from_numpy(output).permute(2, 0, 1)[None]
    assert psnr(as_tensor, target) == pytest.approx(psnr(output, target))


def test_default_protocol_per_task():
    assert default_protocol("derain") == Protocol(channel="y")
    assert default_protocol("denoise") == Protocol() == default_protocol("deblur")
