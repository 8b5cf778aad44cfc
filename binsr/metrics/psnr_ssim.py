"""PSNR and SSIM as SR papers report them (the BasicSR / MATLAB convention).

Both take RGB images in [0, 1], shape (3, H, W) or (B, 3, H, W), and:

1. round them to 8-bit levels (the numbers papers publish are for saved 8-bit images);
2. compare ``channels``: "y" (default) the Y channel of BT.601 YCbCr (16–235); "rgb" all three
   channels; "gray" full-range gray values — what benchmark code does for single-channel (grayscale)
   files, which it does not convert to YCbCr (Set14's bridge.png; see ``is_grayscale_file``);
3. crop ``crop_border`` pixels on every side (papers use the scale factor);
4. compute in float64 on the 0..255 scale.

SSIM uses an 11×11 Gaussian window with σ = 1.5 over the valid region only, constants
C1 = (0.01·255)², C2 = (0.03·255)², and averages the SSIM map (and then the channels).
Results are float64 tensors: a scalar for one image, shape (B,) for a batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from binsr.image.color import quantize, rgb_to_gray, rgb_to_y

_PEAK = 255.0
_CHANNELS = {"y": rgb_to_y, "gray": rgb_to_gray, "rgb": lambda rgb: rgb * _PEAK}
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * _PEAK) ** 2
_SSIM_C2 = (0.03 * _PEAK) ** 2


def psnr(
    sr: torch.Tensor,
    hr: torch.Tensor,
    crop_border: int = 0,
    channels: str = "y",
    quantize_8bit: bool = True,
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    a, b, single = _prepare(sr, hr, crop_border, channels, quantize_8bit)
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))
    value = 10.0 * torch.log10(_PEAK**2 / mse)
    return value[0] if single else value


def ssim(
    sr: torch.Tensor,
    hr: torch.Tensor,
    crop_border: int = 0,
    channels: str = "y",
    quantize_8bit: bool = True,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) in [−1, 1]; 1 for identical images."""
    a, b, single = _prepare(sr, hr, crop_border, channels, quantize_8bit)
    if min(a.shape[-2:]) < _SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} after cropping, got {tuple(a.shape[-2:])}"
        )
    channels = a.shape[1]
    # The Gaussian window is separable: two 11-tap passes instead of 121 taps, on all five maps at once.
    taps = gaussian_kernel_1d(_SSIM_WINDOW, _SSIM_SIGMA, a.dtype, a.device)
    maps = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    groups = maps.shape[1]
    maps = F.conv2d(maps, taps.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)
    maps = F.conv2d(maps, taps.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups)
    mu_a, mu_b, mean_aa, mean_bb, mean_ab = maps.split(channels, dim=1)  # valid region only
    var_a = mean_aa - mu_a**2
    var_b = mean_bb - mu_b**2
    cov = mean_ab - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_a**2 + mu_b**2 + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    )
    value = ssim_map.mean(dim=(2, 3)).mean(dim=1)
    return value[0] if single else value


def gaussian_kernel_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps; its outer product with itself is the SSIM window."""
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def _prepare(
    sr: torch.Tensor, hr: torch.Tensor, crop_border: int, channels: str, quantize_8bit: bool
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Shared steps 1–4: returns (B, C, H, W) float64 tensors on the 0..255 scale."""
    if channels not in _CHANNELS:
        raise ValueError(f"channels must be one of {sorted(_CHANNELS)}, got {channels!r}")
    if sr.shape != hr.shape:
        raise ValueError(f"images differ in shape: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    single = sr.dim() == 3
    if single:
        sr, hr = sr.unsqueeze(0), hr.unsqueeze(0)
    if sr.dim() != 4 or sr.shape[1] != 3:
        raise ValueError(f"expected RGB images (3, H, W) or (B, 3, H, W), got {tuple(sr.shape)}")
    if crop_border < 0 or 2 * crop_border >= min(sr.shape[-2:]):
        raise ValueError(f"crop_border {crop_border} is too large for images of size {tuple(sr.shape[-2:])}")
    prepared = []
    for image in (sr, hr):
        image = image.detach().to(torch.float64)
        if quantize_8bit:
            image = quantize(image, 8)
        image = _CHANNELS[channels](image)
        if crop_border:
            image = image[..., crop_border:-crop_border, crop_border:-crop_border]
        prepared.append(image)
    return prepared[0], prepared[1], single
