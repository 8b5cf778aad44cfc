"""PSNR / SSIM / colour: closed forms, an independent NumPy SSIM, and the SR-paper protocol details."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from binsr.image.color import quantize, rgb_to_y, rgb_to_ycbcr
from binsr.metrics import psnr, ssim


def ref_ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. SSIM on one 0..255 float64 channel: 11×11 Gaussian σ=1.5, valid windows, mean map."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    wa, wb = sliding_window_view(a, (11, 11)), sliding_window_view(b, (11, 11))
    mu_a, mu_b = (wa * w).sum((-1, -2)), (wb * w).sum((-1, -2))
    var_a = (wa**2 * w).sum((-1, -2)) - mu_a**2
    var_b = (wb**2 * w).sum((-1, -2)) - mu_b**2
    cov = (wa * wb * w).sum((-1, -2)) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float(np.mean((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))))


def ref_y(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) in [0, 1], already 8-bit levels → BT.601 Y on 0..255."""
    return 16 + 65.481 * rgb[0] + 128.553 * rgb[1] + 24.966 * rgb[2]


def random_pair(rng, shape=(3, 40, 36)):
    hr = torch.from_numpy(rng.integers(0, 256, shape) / 255.0)
    sr = (hr + torch.from_numpy(rng.normal(0, 0.04, shape))).clamp(0, 1)
    return sr, hr


def test_ycbcr_of_black_white_and_primaries():
    colours = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    ycc = rgb_to_ycbcr(colours.T[:, :, None]).squeeze(-1).T
    assert ycc[0].tolist() == pytest.approx([16, 128, 128])
    assert ycc[1].tolist() == pytest.approx([235, 128, 128])
    assert ycc[2].tolist() == pytest.approx([16 + 65.481, 128 - 37.797, 128 + 112.0])
    assert ycc[3, 0].item() == pytest.approx(16 + 128.553)
    assert ycc[4, 0].item() == pytest.approx(16 + 24.966)
    assert torch.allclose(rgb_to_y(colours.T[:, :, None])[0, :, 0], ycc[:, 0])


def test_psnr_closed_form_on_y_and_rgb():
    hr = torch.full((3, 20, 20), 100 / 255, dtype=torch.float64)
    sr = hr + 3 / 255  # every RGB value 3 levels up → Y up 3·219/255 on the 0..255 scale
    assert psnr(sr, hr).item() == pytest.approx(20 * math.log10(255 / (3 * 219 / 255)), abs=1e-9)
    sr_r = hr.clone()
    sr_r[0] += 3 / 255  # one channel only: RGB mse = 9/3
    assert psnr(sr_r, hr, channels="rgb").item() == pytest.approx(10 * math.log10(255**2 / 3), abs=1e-9)


def test_identical_images_and_sub_level_differences():
    hr = torch.rand(3, 16, 16, dtype=torch.float64)
    assert math.isinf(psnr(hr, hr).item()) and ssim(hr, hr).item() == pytest.approx(1.0)
    level = quantize(hr)
    nudged = level + 0.4 / 255  # less than half a level: identical once saved as 8-bit
    assert math.isinf(psnr(nudged, level).item())
    assert not math.isinf(psnr(nudged, level, quantize_8bit=False).item())


def test_border_crop_ignores_the_border():
    hr = torch.rand(3, 30, 30, dtype=torch.float64)
    sr = hr.clone()
    sr[:, :4, :] = 0
    sr[:, :, -4:] = 1
    assert math.isinf(psnr(sr, hr, crop_border=4).item())
    assert ssim(sr, hr, crop_border=4).item() == pytest.approx(1.0)
    assert psnr(sr, hr, crop_border=3).item() < 40


@pytest.mark.parametrize("y_channel", [True, False])
def test_ssim_matches_numpy_reference(rng, y_channel):
    sr, hr = random_pair(rng)
    got = ssim(sr, hr, crop_border=2, channels="y" if y_channel else "rgb").item()
    a, b = (np.round(x.clamp(0, 1).numpy() * 255) / 255 for x in (sr, hr))
    if y_channel:
        expected = ref_ssim_2d(ref_y(a)[2:-2, 2:-2], ref_y(b)[2:-2, 2:-2])
    else:
        expected = np.mean([ref_ssim_2d(a[c, 2:-2, 2:-2] * 255, b[c, 2:-2, 2:-2] * 255) for c in range(3)])
    assert got == pytest.approx(expected, abs=1e-12)


def test_psnr_matches_numpy_reference(rng):
    sr, hr = random_pair(rng)
    a, b = (np.round(x.numpy() * 255) / 255 for x in (sr, hr))
    mse = np.mean((ref_y(a)[3:-3, 3:-3] - ref_y(b)[3:-3, 3:-3]) ** 2)
    assert psnr(sr, hr, crop_border=3).item() == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-10)


def test_batches_give_per_image_values_and_float32_agrees(rng):
    pairs = [random_pair(rng) for _ in range(3)]
    sr = torch.stack([p[0] for p in pairs])
    hr = torch.stack([p[1] for p in pairs])
    batch = psnr(sr, hr, 2)
    assert batch.shape == (3,) and batch.dtype == torch.float64
    for i, (s, h) in enumerate(pairs):
        assert batch[i].item() == pytest.approx(psnr(s, h, 2).item(), abs=1e-12)
        assert ssim(s.float(), h.float(), 2).item() == pytest.approx(ssim(s, h, 2).item(), abs=1e-6)


def test_ssim_is_symmetric_and_drops_with_noise(rng):
    sr, hr = random_pair(rng)
    assert ssim(sr, hr).item() == pytest.approx(ssim(hr, sr).item(), abs=1e-14)
    noisier = (hr + torch.from_numpy(rng.normal(0, 0.1, hr.shape))).clamp(0, 1)
    assert ssim(noisier, hr).item() < ssim(sr, hr).item() < 1


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9))
    with pytest.raises(ValueError, match="RGB"):
        psnr(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="crop_border"):
        psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8), crop_border=4)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(3, 12, 12), torch.zeros(3, 12, 12), crop_border=1)


def test_gray_channel_mode_for_single_channel_sources():
    gray = torch.rand(1, 24, 24, dtype=torch.float64).expand(3, 24, 24)
    from binsr.image.color import rgb_to_gray

    assert torch.allclose(rgb_to_gray(gray), gray[:1] * 255, atol=1e-12)  # identity on equal channels
    hr = torch.full((3, 20, 20), 100 / 255, dtype=torch.float64)
    sr = hr + 3 / 255  # 3 gray levels off: PSNR on the gray values, not on 16-235 luma
    assert psnr(sr, hr, channels="gray").item() == pytest.approx(20 * math.log10(255 / 3), abs=1e-9)
    with pytest.raises(ValueError, match="channels must be one of"):
        psnr(sr, hr, channels="lab")
