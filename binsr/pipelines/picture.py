"""An upscaler applied to a whole image file's :class:`~binsr.image.Picture`: RGB through the model, alpha by
MATLAB bicubic or the model, any final scale, gray kept gray. ``binsr upscale`` and ``binsr demo`` share it,
so a file comes out the same from either. :func:`write_upscaled` streams the model's row bands into the
output file's one buffer, so the memory of an upscaled file is bounded by the model's tile plus its 8-bit
output, whatever its size."""

from __future__ import annotations

import os

import torch

from binsr.errors import BinsrError
from binsr.image import OutputImage, Picture, imresize, imresize_window, rgb_to_gray, write_image
from binsr.pipelines.base import Upscaler, upscale_rows

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
                 file_format: str = "png", exclusive: bool = False) -> None:
    """Write an upscaled picture as its source was: gray if it was gray, its bit depth and ICC profile, alpha
    (``exclusive``: never over an existing file, see :func:`~binsr.image.write_image`)."""
    image = rgb_to_gray(sr[None])[0] / 255 if picture.gray else sr
    write_image(path, image, alpha, bits=picture.bits, icc=picture.icc, file_format=file_format, exclusive=exclusive)


ALPHA_BAND_ROWS = 64  # output rows per band of a bicubic-upscaled alpha channel


def write_upscaled(path: str | os.PathLike[str], upscaler: Upscaler, picture: Picture, alpha_mode: str = "bicubic",
                   outscale: float | None = None, device: torch.device | str = "cpu", file_format: str = "png",
                   exclusive: bool = False) -> None:
    """Upscale ``picture`` and write it to ``path`` as :func:`upscale_picture` and :func:`write_result` would, but
    band by band: the model's output rows (:func:`~binsr.pipelines.base.upscale_rows`) go straight into the
    output file's buffer (:class:`~binsr.image.OutputImage`), so no full-size float image exists. A final size
    other than the model's scale (``outscale``) resamples the whole output, so it takes that path instead.
    ``exclusive``: never over an existing file (:class:`~binsr.utils.fs.OutputExists` if ``path`` exists by then)."""
    if alpha_mode not in ALPHA_MODES:
        raise ValueError(f"alpha_mode must be one of {', '.join(ALPHA_MODES)}, got {alpha_mode!r}")
    height, width = picture.rgb.shape[-2:]
    out_h, out_w = height * upscaler.scale, width * upscaler.scale
    if outscale is not None and (max(1, round(height * outscale)), max(1, round(width * outscale))) != (out_h, out_w):
        write_result(path, picture, *upscale_picture(upscaler, picture, alpha_mode, outscale, device), file_format,
                     exclusive)
        return
    output = OutputImage(path, out_h, out_w, channels=1 if picture.gray else 3, bits=picture.bits,
                         alpha=picture.alpha is not None, file_format=file_format)
    with torch.no_grad():
        for top, rows in upscale_rows(upscaler, picture.rgb[None].to(device)):
            rows = rows[0].cpu()
            output.put(top, rgb_to_gray(rows[None])[0] / 255 if picture.gray else rows)
        alpha = picture.alpha
        if alpha is not None and alpha_mode == "model":
            for top, rows in upscale_rows(upscaler, alpha.expand(3, -1, -1)[None].to(device)):
                output.put_alpha(top, rows[0].cpu().mean(0, keepdim=True).clamp(0, 1))
        elif alpha is not None:
            for top in range(0, out_h, ALPHA_BAND_ROWS):
                band = imresize_window(alpha.double(), float(upscaler.scale), (top, min(top + ALPHA_BAND_ROWS, out_h)),
                                       (0, out_w))
                output.put_alpha(top, band.float().clamp(0, 1))
    output.save(picture.icc, exclusive)
