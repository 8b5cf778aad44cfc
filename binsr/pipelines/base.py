"""What every upscaler offers: a name, a scale and ``upscale``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Upscaler(Protocol):
    """Maps LR images (B, 3, h, w) in [0, 1] to SR images (B, 3, h·scale, w·scale) in [0, 1]."""

    name: str
    scale: int

    def upscale(self, lr: torch.Tensor) -> torch.Tensor: ...


def upscale_rows(upscaler: Upscaler, lr: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """``upscaler``'s output of LR (B, 3, h, w) as (first row, (B, 3, rows, w·s)) bands, top to bottom: its own
    ``upscale_rows`` where it has one (memory bounded by its tile), else one band of the whole ``upscale``."""
    rows = getattr(upscaler, "upscale_rows", None)
    if callable(rows):
        yield from rows(lr)
    else:
        yield 0, upscaler.upscale(lr)
