"""NIQE against the published formulas (an independent float64 implementation written here with scipy,
block by block) and against BasicSR's ``calculate_niqe``; the pristine model file is checked before use."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import convolve
from scipy.special import gamma

from binsr.data import bicubic_downscale
from binsr.image.color import quantize
from binsr.image.io import read_image
from binsr.image.resize import imresize
from binsr.metrics.niqe import niqe, pristine_model
from binsr.pipelines import load
from conftest import smooth_image


def _aggd(x: np.ndarray) -> tuple[float, float, float]:
    """Moment-matching AGGD fit (Lasmar et al. 2009, as used by BRISQUE and NIQE): shape, left, right scale."""
    x = x.ravel()
    left, right = math.sqrt(np.mean(x[x < 0] ** 2)), math.sqrt(np.mean(x[x > 0] ** 2))
    gamma_hat = left / right
    r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    grid = np.arange(0.2, 10.0005, 0.001)
    alpha = grid[np.argmin((gamma(2 / grid) ** 2 / (gamma(1 / grid) * gamma(3 / grid)) - r_norm) ** 2)]
    scale = math.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * scale, right * scale


def _features(block: np.ndarray) -> list[float]:
    alpha, left, right = _aggd(block)
    feats = [alpha, (left + right) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        alpha, left, right = _aggd(block * np.roll(block, shift, axis=(0, 1)))
        feats += [alpha, (right - left) * gamma(2 / alpha) / gamma(1 / alpha), left, right]
    return feats


def reference_niqe(rgb: np.ndarray) -> float:
    """NIQE of an (H, W, 3) uint8 image in float64 from the paper's definitions, one block at a time."""
    model = {k: v.numpy() for k, v in pristine_model().items()}
    r, g, b = (rgb[..., i].astype(np.float64) / 255 for i in range(3))
    luma = np.round(16 + 65.481 * r + 128.553 * g + 24.966 * b)
    rows, cols = luma.shape[0] // 96, luma.shape[1] // 96
    luma = luma[: rows * 96, : cols * 96]
    per_scale = []
    for side in (96, 48):
        mu = convolve(luma, model["gaussian_window"], mode="nearest")
        sigma = np.sqrt(np.abs(convolve(luma**2, model["gaussian_window"], mode="nearest") - mu**2))
        mscn = (luma - mu) / (sigma + 1)
        per_scale.append([_features(mscn[i * side:(i + 1) * side, j * side:(j + 1) * side])
                          for j in range(cols) for i in range(rows)])
        luma = imresize(torch.from_numpy(luma / 255), scale=0.5).numpy() * 255  # MATLAB bicubic, antialiased
    feats = np.concatenate([np.array(f) for f in per_scale], axis=1)
    mu_d = np.nanmean(feats, axis=0)
    cov_d = np.cov(feats[~np.isnan(feats).any(axis=1)], rowvar=False)
    diff = model["mu_pris_param"] - mu_d
    return float(np.sqrt(diff @ np.linalg.pinv((model["cov_pris_param"] + cov_d) / 2) @ diff.T).squeeze())


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float64) / 255


@pytest.mark.parametrize("size", [(192, 288), (300, 200)])
def test_niqe_matches_the_published_formulas_in_float64(rng, size) -> None:
    height, width = size
    smooth = smooth_image(rng, height, width).astype(np.float64)
    rgb = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).round().astype(np.uint8)  # textured: no flat
    assert niqe(_tensor(rgb)) == pytest.approx(reference_niqe(rgb), abs=1e-3)               # blocks


def test_niqe_of_benchmark_images_matches_the_reference_and_basicsr(shared_data) -> None:
    # BasicSR 1.4.2's calculate_niqe(img, 0, input_order="HWC", convert_to="y") on these files (read with
    # Pillow, RGB->BGR, float64), run by the binsr developers from BasicSR's source distribution.
    basicsr = {"Set5/baby.png": 3.265489, "Set5/head.png": 8.350491, "Set14/monarch.png": 3.498779,
               "RealSet65/0003.jpg": 6.924485}
    for name, expected in basicsr.items():
        image = read_image(shared_data / name)
        assert niqe(image) == pytest.approx(expected, abs=1e-3), name
    # baby has no flat region: the float64 formulas agree too (head's flat background does not; see _mscn)
    baby = np.array(Image.open(shared_data / "Set5" / "baby.png").convert("RGB"))
    assert niqe(_tensor(baby)) == pytest.approx(reference_niqe(baby), abs=1e-3)
    # and a bicubic x4 upscale of its LR is less natural than the photo, by a wide margin (7.34 vs 3.27)
    blurred = load("bicubic", 4).upscale(bicubic_downscale(_tensor(baby).float(), 4)[None])[0]
    assert niqe(quantize(blurred)) > niqe(_tensor(baby)) + 2


def test_crop_border_and_small_images() -> None:
    rgb = torch.rand(3, 200, 300, generator=torch.Generator().manual_seed(0))
    assert niqe(rgb, crop_border=4) == pytest.approx(niqe(rgb[:, 4:-4, 4:-4]), abs=1e-12)
    with pytest.raises(ValueError, match=r"two 96x96 blocks \(96x192 pixels\) after the border crop, got 192x92"):
        niqe(rgb[:, :100, :200], crop_border=4)


def test_the_pristine_model_is_data_of_the_expected_shapes() -> None:
    model = pristine_model()
    assert {k: tuple(v.shape) for k, v in model.items()} == {
        "mu_pris_param": (1, 36), "cov_pris_param": (36, 36), "gaussian_window": (7, 7)}
    window = model["gaussian_window"]
    assert float(window.sum()) == pytest.approx(1.0, abs=1e-9) and torch.equal(window, window.T)
    assert torch.allclose(model["cov_pris_param"], model["cov_pris_param"].T)
