"""The encoder/decoder interface of latent diffusion SR (ResShift runs in a VQ-f4 autoencoder's latent).

Any object with ``factor``, ``latent_channels``, ``encode`` and ``decode`` plugs in; the paper's VQ-f4
weights cannot be fetched here, so pixel space (no autoencoder) is what binsr ships.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn


@runtime_checkable
class Autoencoder(Protocol):
    """encode: image (B, 3, H, W) in [-1, 1] → latent (B, latent_channels, H/factor, W/factor); decode back."""

    factor: int
    latent_channels: int

    def encode(self, image: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor: ...


class SpaceToDepth(nn.Module):
    """A lossless f-times autoencoder: pixel (un)shuffle, 3·f² latent channels. It exercises the latent
    path exactly (decode(encode(x)) == x) without trained weights."""

    def __init__(self, factor: int = 4) -> None:
        super().__init__()
        self.factor, self.latent_channels = factor, 3 * factor * factor

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(image, self.factor)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(latent, self.factor)


def load_autoencoder(arch: str) -> nn.Module:
    """The autoencoder made by ``package.module:factory`` (or a registered name), frozen in eval mode."""
    from binsr.errors import BinsrError
    from binsr.models import build

    autoencoder = build(arch)
    if not isinstance(autoencoder, Autoencoder):
        raise BinsrError(f"{arch!r} is not an autoencoder: it needs factor, latent_channels, encode and decode")
    return autoencoder.eval().requires_grad_(False)
