"""An upscaler applied to a whole image file's :class:`~binsr.image.Picture`: RGB through the model, alpha by
MATLAB bicubic or the model, any final scale, gray kept gray. ``binsr upscale`` and ``binsr demo`` share it,
so a file comes out the same from either."""

from __future__ import annotations

import os

import torch

from binsr.errors import BinsrError
from binsr.image import Picture, imresize, rgb_to_gray, write_image
from binsr.pipelines.base import Upscaler

ALPHA_MODES = ("bicubic", "model")


def check_picture_size(upscaler: Upscaler, picture: Picture, name: object) -> None:
    """The upscaler's own size limits for ``picture``, as one error naming the file ``name``."""
    check = getattr(upscaler, "check_size", None)
    if callable(check):
        try:
            check(*picture.rgb.shape[-2:])
        except BinsrError as err:
            raise BinsrError(f"{name}: {err}") from None


def upscale_picture(upscaler: Upscaler, picture: Picture, alpha_mode: str = "bicubic",
                    outscale: float | None = None,
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model's (3, H·s, W·s) output and the alpha channel upscaled (``alpha_mode``: MATLAB bicubic, or the
    model run on it as a gray image), both resized to round(``outscale`` × the input's size) when given."""
    if alpha_mode not in ALPHA_MODES:
        raise ValueError(f"alpha_mode must be one of {', '.join(ALPHA_MODES)}, got {alpha_mode!r}")
    with torch.no_grad():
        sr = upscaler.upscale(picture.rgb[None].to(device))[0].cpu()
        alpha = picture.alpha
        if alpha is not None:
            if alpha_mode == "model":
                alpha = upscaler.upscale(alpha.expand(3, -1, -1)[None].to(device))[0].cpu().mean(0, keepdim=True)
            else:
                alpha = imresize(alpha.double(), size=tuple(sr.shape[-2:])).float()
            alpha = resize_to_scale(alpha, picture, outscale).clamp(0, 1)
    return resize_to_scale(sr, picture, outscale), alpha


def resize_to_scale(image: torch.Tensor, picture: Picture, outscale: float | None) -> torch.Tensor:
    """``image`` resized to round(outscale × the input's size) with MATLAB bicubic, if it is not that size."""
    if outscale is None:
        return image
    height, width = picture.rgb.shape[-2:]
    size = (max(1, round(height * outscale)), max(1, round(width * outscale)))
    if tuple(image.shape[-2:]) == size:
        return image
    return imresize(image.double(), size=size).float()


def write_result(path: str | os.PathLike[str], picture: Picture, sr: torch.Tensor, alpha: torch.Tensor | None,
                 file_format: str = "png") -> None:
    """Write an upscaled picture as its source was: gray if it was gray, its bit depth and ICC profile, alpha."""
    image = rgb_to_gray(sr[None])[0] / 255 if picture.gray else sr
    write_image(path, image, alpha, bits=picture.bits, icc=picture.icc, file_format=file_format)
