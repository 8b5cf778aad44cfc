"""An upscaler applied to a whole image file's :class:`~binsr.image.Picture`: RGB through the model, alpha by
MATLAB bicubic or the model, any final scale, gray kept gray. ``binsr upscale`` and ``binsr demo`` share it,
so a file comes out the same from either. :func:`write_upscaled` streams the model's row bands into the
output file's one buffer, so the memory of an upscaled file is bounded by the model's tile plus its 8-bit
output, whatever its size."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch

from binsr.errors import BinsrError
from binsr.image import BandResize, OutputImage, Picture, imresize_window, rgb_to_gray, write_image
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
    out_h, out_w = final_size(upscaler, picture, outscale)
    sr = torch.empty(3, out_h, out_w)
    alpha = torch.empty(1, out_h, out_w) if picture.alpha is not None else None
    for part, top, rows in final_bands(upscaler, picture, alpha_mode, outscale, device):
        (sr if part == "rgb" else alpha)[:, top:top + rows.shape[-2]] = rows
    return sr, alpha


def final_size(upscaler: Upscaler, picture: Picture, outscale: float | None) -> tuple[int, int]:
    """(rows, columns) of the result: round(``outscale`` × the input's size), or the model's scale's."""
    height, width = picture.rgb.shape[-2:]
    if outscale is None:
        return height * upscaler.scale, width * upscaler.scale
    return _outscale_size(picture, outscale)


def _outscale_size(picture: Picture, outscale: float) -> tuple[int, int]:
    height, width = picture.rgb.shape[-2:]
    return max(1, round(height * outscale)), max(1, round(width * outscale))


def final_bands(upscaler: Upscaler, picture: Picture, alpha_mode: str = "bicubic", outscale: float | None = None,
                device: torch.device | str = "cpu") -> Iterator[tuple[str, int, torch.Tensor]]:
    """The bands of :func:`picture_bands` at the final size: resampled band by band with MATLAB bicubic
    (:class:`~binsr.image.BandResize`) where ``outscale`` asks for another size than the model's; the alpha
    channel clipped to [0, 1]."""
    height, width = picture.rgb.shape[-2:]
    size, native = final_size(upscaler, picture, outscale), (height * upscaler.scale, width * upscaler.scale)
    resizers = {part: BandResize(native, size) for part in ("rgb", "alpha")} if size != native else None
    for part, top, rows in picture_bands(upscaler, picture, alpha_mode, device):
        for first, band in resizers[part].push(rows) if resizers else ((top, rows),):
            band = band.float()
            yield part, first, band.clamp(0, 1) if part == "alpha" else band


ALPHA_BAND_ROWS = 64  # output rows per band of a bicubic-upscaled alpha channel


def picture_bands(upscaler: Upscaler, picture: Picture, alpha_mode: str = "bicubic",
                  device: torch.device | str = "cpu") -> Iterator[tuple[str, int, torch.Tensor]]:
    """The picture upscaled in row bands, top to bottom: ("rgb", first row, (3, rows, W·s)) of the model's
    output, then ("alpha", first row, (1, rows, W·s)) of the alpha channel (MATLAB bicubic, or the model run on
    it as a gray image; not clipped). Each band is valid until the next is asked for."""
    if alpha_mode not in ALPHA_MODES:
        raise ValueError(f"alpha_mode must be one of {', '.join(ALPHA_MODES)}, got {alpha_mode!r}")
    with torch.no_grad():
        for top, rows in upscale_rows(upscaler, picture.rgb[None].to(device)):
            yield "rgb", top, rows[0].cpu()
        alpha = picture.alpha
        if alpha is not None and alpha_mode == "model":
            for top, rows in upscale_rows(upscaler, alpha.expand(3, -1, -1)[None].to(device)):
                yield "alpha", top, rows[0].cpu().mean(0, keepdim=True)
        elif alpha is not None:
            height, width = alpha.shape[-2] * upscaler.scale, alpha.shape[-1] * upscaler.scale
            for top in range(0, height, ALPHA_BAND_ROWS):
                rows = (top, min(top + ALPHA_BAND_ROWS, height))
                yield "alpha", top, imresize_window(alpha.double(), float(upscaler.scale), rows, (0, width)).float()


def write_result(path: str | os.PathLike[str], picture: Picture, sr: torch.Tensor, alpha: torch.Tensor | None,
                 file_format: str = "png", exclusive: bool = False) -> None:
    """Write an upscaled picture as its source was: gray if it was gray, its bit depth and ICC profile, alpha
    (``exclusive``: never over an existing file, see :func:`~binsr.image.write_image`)."""
    image = rgb_to_gray(sr[None])[0] / 255 if picture.gray else sr
    write_image(path, image, alpha, bits=picture.bits, icc=picture.icc, file_format=file_format, exclusive=exclusive)


def write_upscaled(path: str | os.PathLike[str], upscaler: Upscaler, picture: Picture, alpha_mode: str = "bicubic",
                   outscale: float | None = None, device: torch.device | str = "cpu", file_format: str = "png",
                   exclusive: bool = False) -> None:
    """Upscale ``picture`` and write it to ``path`` as :func:`upscale_picture` and :func:`write_result` would, but
    band by band: the bands of :func:`picture_bands` go straight into the output file's buffer
    (:class:`~binsr.image.OutputImage`), so no full-size float image exists, also where ``outscale`` resamples
    them (:func:`final_bands`).
    ``exclusive``: never over an existing file (:class:`~binsr.utils.fs.OutputExists` if ``path`` exists by then)."""
    out_h, out_w = final_size(upscaler, picture, outscale)
    output = OutputImage(path, out_h, out_w, channels=1 if picture.gray else 3, bits=picture.bits,
                         alpha=picture.alpha is not None, file_format=file_format)
    for part, top, rows in final_bands(upscaler, picture, alpha_mode, outscale, device):
        if part == "alpha":
            output.put_alpha(top, rows)
        else:
            output.put(top, rgb_to_gray(rows[None])[0] / 255 if picture.gray else rows)
    output.save(picture.icc, exclusive)
