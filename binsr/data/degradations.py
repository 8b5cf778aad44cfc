"""Making LR images from HR images."""

from __future__ import annotations

import torch

from binsr.image.color import quantize
from binsr.image.resize import imresize


def bicubic_downscale(hr: torch.Tensor, scale: int, quantize_bits: int | None = 8) -> torch.Tensor:
    """LR = MATLAB ``imresize(hr, 1/scale, 'bicubic')``, rounded to ``quantize_bits`` levels.

    Rounding to 8 bits reproduces the LR PNGs of the SR benchmarks (None keeps floats).
    ``hr`` (..., H, W) must have H and W divisible by ``scale`` (see ``mod_crop``).
    """
    height, width = hr.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(f"HR size {height}x{width} is not divisible by the scale {scale}")
    lr = imresize(hr, 1 / scale)
    return quantize(lr, quantize_bits) if quantize_bits else lr
