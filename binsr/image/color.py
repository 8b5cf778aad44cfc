"""Colour conversion and quantisation, in the conventions of SR benchmarks (BasicSR/MATLAB)."""

from __future__ import annotations

import torch

# ITU-R BT.601 "studio swing" YCbCr as MATLAB's rgb2ycbcr: RGB in [0, 1] -> Y in [16, 235],
# Cb/Cr in [16, 240], on the 0..255 scale.
_YCBCR_MATRIX = (
    (65.481, 128.553, 24.966),
    (-37.797, -74.203, 112.0),
    (112.0, -93.786, -18.214),
)
_YCBCR_OFFSET = (16.0, 128.0, 128.0)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] → (..., 3, H, W) YCbCr on the 0..255 scale (BT.601, 16–235)."""
    _check_rgb(rgb)
    matrix = torch.tensor(_YCBCR_MATRIX, dtype=rgb.dtype, device=rgb.device)
    offset = torch.tensor(_YCBCR_OFFSET, dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("ij,...jhw->...ihw", matrix, rgb) + offset[:, None, None]


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] → (..., 1, H, W) luma Y on the 0..255 scale (16–235)."""
    _check_rgb(rgb)
    r, g, b = rgb.unbind(dim=-3)
    y = _YCBCR_OFFSET[0] + _YCBCR_MATRIX[0][0] * r + _YCBCR_MATRIX[0][1] * g + _YCBCR_MATRIX[0][2] * b
    return y.unsqueeze(-3)


def rgb_to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] → (..., 1, H, W) full-range gray on the 0..255 scale.

    MATLAB's ``rgb2gray`` weights; exact identity on images whose three channels are equal.
    """
    _check_rgb(rgb)
    r, g, b = rgb.unbind(dim=-3)
    return (255.0 * (0.298936021293775 * r + 0.587043074451121 * g + 0.114020904255103 * b)).unsqueeze(-3)


def quantize(image: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Clip to [0, 1] and round to the nearest of 2**bits levels; stays in [0, 1] and in its dtype."""
    peak = 2**bits - 1
    return torch.round(image.clamp(0, 1) * peak) / peak


def _check_rgb(rgb: torch.Tensor) -> None:
    if rgb.dim() < 3 or rgb.shape[-3] != 3:
        raise ValueError(f"expected RGB images of shape (..., 3, H, W), got {tuple(rgb.shape)}")
