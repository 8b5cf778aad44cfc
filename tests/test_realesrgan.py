"""Real-ESRGAN degradations: kernels against their formulas, seeded reproducibility, drawn statistics."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import special

from binsr.config import ConfigError
from binsr.data.realesrgan import (
    RealESRGANConfig,
    RealESRGANDegradation,
    anisotropic_kernel,
    gaussian_noise,
    poisson_noise,
    sinc_kernel,
)


def grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    return torch.meshgrid(r, r, indexing="ij")


def test_gaussian_kernels_match_formulas() -> None:
    y, x = grid(21)
    iso = torch.exp(-(x ** 2 + y ** 2) / (2 * 1.7 ** 2))
    torch.testing.assert_close(anisotropic_kernel(21, 1.7, 1.7, 0.3), iso / iso.sum(), rtol=1e-12, atol=1e-15)
    # anisotropic, rotated by θ: the quadratic form in the rotated frame
    theta, sx, sy = 0.6, 2.5, 0.8
    u = math.cos(theta) * x + math.sin(theta) * y
    v = -math.sin(theta) * x + math.cos(theta) * y
    aniso = torch.exp(-0.5 * (u ** 2 / sx ** 2 + v ** 2 / sy ** 2))
    torch.testing.assert_close(anisotropic_kernel(21, sx, sy, theta), aniso / aniso.sum(), rtol=1e-10, atol=1e-15)
    q = u ** 2 / sx ** 2 + v ** 2 / sy ** 2
    generalized = torch.exp(-0.5 * q ** 2.5)
    plateau = 1 / (q ** 1.5 + 1)
    torch.testing.assert_close(anisotropic_kernel(21, sx, sy, theta, "generalized", 2.5),
                               generalized / generalized.sum(), rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(anisotropic_kernel(21, sx, sy, theta, "plateau", 1.5),
                               plateau / plateau.sum(), rtol=1e-10, atol=1e-15)


def test_sinc_kernel_is_the_circular_lowpass() -> None:
    cutoff = 1.3
    y, x = grid(13)
    r = torch.sqrt(x ** 2 + y ** 2).numpy()
    with np.errstate(invalid="ignore"):
        expected = torch.from_numpy(cutoff * special.j1(cutoff * r) / (2 * math.pi * r))
    expected[6, 6] = cutoff ** 2 / (4 * math.pi)
    torch.testing.assert_close(sinc_kernel(13, cutoff), expected / expected.sum(), rtol=1e-5, atol=1e-9)  # torch J1 ~ 6e-6


def test_reproducible_for_a_seed_and_shapes() -> None:
    degrade = RealESRGANDegradation()
    hr = torch.rand(3, 64, 48, generator=torch.Generator().manual_seed(0))
    a = degrade(hr, torch.Generator().manual_seed(5))
    b = degrade(hr, torch.Generator().manual_seed(5))
    c = degrade(hr, torch.Generator().manual_seed(6))
    assert a.shape == (3, 16, 12)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a * 255, (a * 255).round(), rtol=0, atol=1e-4)  # 8-bit values
    assert 0 <= a.min() and a.max() <= 1


def test_drawn_statistics_fall_in_the_configured_ranges() -> None:
    config = RealESRGANConfig()
    degrade = RealESRGANDegradation(config)
    hr = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    records = []
    for seed in range(400):
        degrade(hr, torch.Generator().manual_seed(seed))
        records.append(degrade.last_record)
    count = len(records)

    def near(observed: int, probability: float, n: int) -> bool:
        return abs(observed - probability * n) <= 4.5 * math.sqrt(n * probability * (1 - probability)) + 1

    assert near(sum("second" in r for r in records), config.second_order_prob, count)
    firsts = [r["first"] for r in records]
    assert near(sum(f["kernel"] == "sinc" for f in firsts), config.sinc_prob, count)
    mixed = [f for f in firsts if f["kernel"] != "sinc"]
    kinds = Counter(f["kernel"] for f in mixed)
    for kind, probability in zip(config.kernel_list, config.kernel_prob):
        assert near(kinds[kind], probability, len(mixed)), (kind, kinds)
    for f in mixed:
        assert config.blur_sigma[0] <= f["sigma_x"] <= config.blur_sigma[1]
        assert config.blur_sigma[0] <= f["sigma_y"] <= config.blur_sigma[1]
        if f["kernel"].startswith("generalized"):
            assert config.betag_range[0] <= f["beta"] <= config.betag_range[1]
        if f["kernel"].startswith("plateau"):
            assert config.betap_range[0] <= f["beta"] <= config.betap_range[1]
        assert 7 <= f["kernel_size"] <= config.blur_kernel_size and f["kernel_size"] % 2
    directions = Counter(f["resize"] for f in firsts)
    for direction, probability in zip(("up", "down", "keep"), config.resize_prob):
        assert near(directions[direction], probability, count)
    for f in firsts:
        low, high = config.resize_range
        assert (1 <= f["resize_factor"] <= high) if f["resize"] == "up" else (
            low <= f["resize_factor"] <= 1 if f["resize"] == "down" else f["resize_factor"] == 1)
        if f["noise"] == "gaussian":
            assert config.noise_range[0] <= f["noise_sigma"] <= config.noise_range[1]
        else:
            assert config.poisson_scale_range[0] <= f["poisson_scale"] <= config.poisson_scale_range[1]
        assert config.jpeg_range[0] <= f["jpeg_quality"] <= config.jpeg_range[1]
    assert near(sum(f["noise"] == "gaussian" for f in firsts), config.gaussian_noise_prob, count)
    assert near(sum(f["gray_noise"] for f in firsts), config.gray_noise_prob, count)
    seconds = [r["second"] for r in records if "second" in r]
    assert near(sum("kernel" in s for s in seconds), config.second_blur_prob, len(seconds))
    for s in seconds:
        assert s.get("kernel_size", 7) <= config.blur_kernel_size2
        if s["noise"] == "gaussian":
            assert config.noise_range2[0] <= s["noise_sigma"] <= config.noise_range2[1]
    finals = [r["final"] for r in records]
    assert near(sum(f["kernel"] == "sinc" for f in finals), config.final_sinc_prob, count)
    assert all(math.pi / 3 <= f["cutoff"] <= math.pi for f in finals if f["kernel"] == "sinc")


def test_gaussian_noise_has_the_drawn_sigma() -> None:
    flat = torch.full((3, 256, 256), 0.5)
    for gray in (False, True):
        noisy = gaussian_noise(flat, 10 / 255, gray, torch.Generator().manual_seed(0))
        assert (noisy - flat).std().item() == pytest.approx(10 / 255, rel=0.02)
        channels_equal = torch.equal(noisy[0], noisy[1])
        assert channels_equal == gray


@pytest.mark.parametrize("gray", [False, True])
def test_poisson_noise_is_zero_mean_shot_noise_at_the_images_levels(gray: bool) -> None:
    # Equal channels (gray is then the image itself): a 0.25 field, and one row holding all 256 values,
    # so Real-ESRGAN's rule gives 256 photon levels and noise of std sqrt(0.25 * 256) / 256 * scale.
    image = torch.full((3, 256, 256), 64 / 255, dtype=torch.float64)
    image[:, 0] = torch.arange(256, dtype=torch.float64) / 255
    scale = 1.5
    noise = (poisson_noise(image, scale, gray, torch.Generator().manual_seed(0)) - image)[:, 1:]
    expected_std = math.sqrt(64 / 255 * 256) / 256 * scale
    assert noise.std().item() == pytest.approx(expected_std, rel=0.03)
    assert abs(noise.mean().item()) < 4 * expected_std / math.sqrt(noise[0].numel())
    assert torch.equal(noise[0], noise[1]) == gray


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu() -> None:
    degrade = RealESRGANDegradation()
    hr = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    cpu = degrade(hr, torch.Generator().manual_seed(3))
    gpu = degrade(hr.cuda(), torch.Generator().manual_seed(3)).cpu()
    assert (cpu - gpu).abs().max() <= 2 / 255  # rounding at JPEG and 8-bit steps may differ by a level


@pytest.mark.parametrize("changes, message", [
    ({"kernel_prob": (0.5, 0.5, 0.1, 0.0, 0.0, 0.0)}, "must sum to 1"),
    ({"jpeg_range": (30, 120)}, "jpeg_range must lie in"),
    ({"blur_sigma": (-1.0, 2.0)}, "blur_sigma"),
    ({"sinc_prob": 1.5}, "sinc_prob must hold probabilities"),
    ({"kernel_list": ("iso", "box", "aniso", "generalized_iso", "plateau_iso", "plateau_aniso")}, "unknown kernels"),
    ({"blur_kernel_size": 8}, "must be odd"),
])
def test_out_of_range_configs_are_one_clear_error(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RealESRGANConfig(**changes)
