"""The bicubic baseline of every SR table: MATLAB-style bicubic upsampling."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from binsr.image.resize import imresize, imresize_window

BAND_ROWS = 64  # output rows per band of upscale_rows (the width pass gathers 6 taps a pixel)


class BicubicUpscaler:
    """``upscale(lr)`` = MATLAB ``imresize(lr, scale, 'bicubic')`` clipped to [0, 1]."""

    name = "bicubic"

    def __init__(self, scale: int) -> None:
        self.scale = scale

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        """(..., 3, h, w) in [0, 1] → (..., 3, h·s, w·s)."""
        return imresize(lr, float(self.scale)).clamp(0, 1)

    def upscale_rows(self, lr: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """(B, 3, h, w) → (first row, (B, 3, rows, w·s)) bands of :meth:`upscale`'s output, ``BAND_ROWS`` at a
        time, each from the LR rows it needs: memory bounded by the width, not the height."""
        height, width = lr.shape[-2] * self.scale, lr.shape[-1] * self.scale
        for top in range(0, height, BAND_ROWS):
            rows = (top, min(top + BAND_ROWS, height))
            yield top, imresize_window(lr, float(self.scale), rows, (0, width)).clamp(0, 1)
