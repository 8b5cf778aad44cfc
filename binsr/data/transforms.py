"""Geometric transforms for (C, H, W) image tensors; LR/HR pairs always move together."""

from __future__ import annotations

import torch


def mod_crop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right so that H and W are multiples of ``scale`` (the SR-benchmark mod-crop)."""
    height, width = image.shape[-2:]
    return image[..., : height - height % scale, : width - width % scale]


def paired_random_crop(
    lr: torch.Tensor, hr: torch.Tensor, lr_patch: int, scale: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned crops: an ``lr_patch``² LR patch at (y, x) and the HR patch at (y·s, x·s) of side lr_patch·s."""
    lr_h, lr_w = lr.shape[-2:]
    y = int(torch.randint(0, lr_h - lr_patch + 1, (1,), generator=generator))
    x = int(torch.randint(0, lr_w - lr_patch + 1, (1,), generator=generator))
    hr_patch = lr_patch * scale
    return (
        lr[..., y : y + lr_patch, x : x + lr_patch],
        hr[..., y * scale : y * scale + hr_patch, x * scale : x * scale + hr_patch],
    )


def dihedral(image: torch.Tensor, index: int) -> torch.Tensor:
    """One of the 8 flips/90° rotations: bit 0 horizontal flip, bit 1 vertical flip, bit 2 transpose."""
    if index & 1:
        image = image.flip(-1)
    if index & 2:
        image = image.flip(-2)
    if index & 4:
        image = image.transpose(-1, -2)
    return image


def random_dihedral(
    images: tuple[torch.Tensor, ...], generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Apply the same random flip/rotation to every image of the tuple."""
    index = int(torch.randint(0, 8, (1,), generator=generator))
    return tuple(dihedral(image, index) for image in images)
