"""What every upscaler offers: a name, a scale and ``upscale``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Upscaler(Protocol):
    """Maps LR images (B, 3, h, w) in [0, 1] to SR images (B, 3, h·scale, w·scale) in [0, 1]."""

    name: str
    scale: int

    def upscale(self, lr: torch.Tensor) -> torch.Tensor: ...
