"""The bicubic baseline of every SR table: MATLAB-style bicubic upsampling."""

from __future__ import annotations

import torch

from binsr.image.resize import imresize


class BicubicUpscaler:
    """``upscale(lr)`` = MATLAB ``imresize(lr, scale, 'bicubic')`` clipped to [0, 1]."""

    name = "bicubic"

    def __init__(self, scale: int) -> None:
        self.scale = scale

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        """(..., 3, h, w) in [0, 1] → (..., 3, h·s, w·s)."""
        return imresize(lr, float(self.scale)).clamp(0, 1)
