"""The encoder/decoder interface of latent diffusion SR (ResShift runs in a VQ-f4 autoencoder's latent).

Any registered module with ``factor``, ``latent_channels``, ``encode`` and ``decode`` plugs in
(:func:`binsr.models.register_autoencoder`); model files and recipes name it ``{type, config}``. The
paper's VQ-f4 weights cannot be fetched here, so binsr ships the lossless space-to-depth one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from binsr.config import check_ranges
from binsr.models.registry import register_autoencoder


@runtime_checkable
class Autoencoder(Protocol):
    """encode: image (B, 3, H, W) in [-1, 1] → latent (B, latent_channels, H/factor, W/factor); decode back."""

    factor: int
    latent_channels: int

    def encode(self, image: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor: ...


@dataclass
class SpaceToDepthConfig:
    """Fields (default): ``factor`` the side of each pixel block folded into channels (4: 3 → 48 channels)."""

    factor: int = 4

    def __post_init__(self) -> None:
        check_ranges(self, factor=(1, 16))


@register_autoencoder("space_to_depth", SpaceToDepthConfig)
class SpaceToDepth(nn.Module):
    """A lossless f-times autoencoder: pixel (un)shuffle, 3·f² latent channels. It exercises the latent
    path exactly (decode(encode(x)) == x) without trained weights."""

    def __init__(self, config: SpaceToDepthConfig | int | None = None) -> None:
        super().__init__()
        self.config = SpaceToDepthConfig(config) if isinstance(config, int) else config or SpaceToDepthConfig()
        self.factor, self.latent_channels = self.config.factor, 3 * self.config.factor ** 2

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(image, self.factor)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(latent, self.factor)
