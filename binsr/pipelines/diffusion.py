"""Upscaling with diffusion SR models (FP or binary): bicubic condition, padding to the network's
multiple, tiling. :class:`DiffusionUpscaler` does the image handling; each registered pipeline type
(:mod:`binsr.pipelines.registry`) says how one padded tile is generated (``sr3``: DDIM; ``resshift``: its
T-step chain; ``onestep``: one network call) and how it is made from a model file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from binsr.errors import BinsrError
from binsr.image.resize import imresize_window

if TYPE_CHECKING:
    from binsr.pipelines.model_file import LoadedModel, ModelSpec


AUTO_TILE = 512  # outputs over 512² are tiled: untiled, bidiffsr-x4 needs about 3 GB per 512² of output


class DiffusionUpscaler:
    """``upscale(lr)``: LR (B, 3, h, w) in [0, 1] → SR (B, 3, h·s, w·s) by :meth:`generate`.

    Inputs are reflect-padded to the network's multiple and cropped back. With ``tile`` (HR pixels),
    the image is processed in overlapping tiles blended with linear ramps; each tile computes its own
    bicubic condition and starts from its crop of the whole image's start noise (:func:`noise_window`), so a
    tiled result matches the untiled one up to the blending near tile borders, and :meth:`upscale_rows`
    hands the output over in row bands, so any size runs in memory bounded by the tile and the width. ``auto_tile`` (default
    :data:`AUTO_TILE`, rounded down to the multiple; None: never): without ``tile``, outputs of more than
    auto_tile² pixels are tiled with that size, which bounds the memory of every caller (``binsr upscale``,
    ``binsr eval``, the analyses, training validation, the Python API) by one rule; latent models multiply
    it by their autoencoder's factor, as their network works at that much lower resolution.

    A pipeline type (a registered subclass) sets the class attributes below and implements
    :meth:`generate`, :meth:`from_model` and :meth:`sampling`.
    """

    kind: ClassVar[str] = ""                  # the model files' "kind" (set by @register_pipeline)
    process_type: ClassVar[str] = ""          # the diffusion process type its files must name
    takes_steps: ClassVar[bool] = False       # samples with a step count the user may choose (--steps)
    default_steps: ClassVar[int | None] = None  # that count when the file gives none

    def __init__(self, model: nn.Module, scale: int, name: str, seed: int = 0, tile: int | None = None,
                 tile_overlap: int = 32, multiple: int = 8, auto_tile: int | None = AUTO_TILE) -> None:
        if tile_overlap < 0:
            raise BinsrError(f"--tile-overlap must be at least 0, got {tile_overlap}")
        if auto_tile is not None:
            auto_tile -= auto_tile % multiple
        for size, what in ((tile, "--tile"), (auto_tile, "auto_tile")):
            if size is not None and (size <= 2 * tile_overlap or size % multiple):
                raise BinsrError(f"{what} must exceed twice the overlap ({tile_overlap}) and be a multiple of {multiple}")
        self.model, self.scale, self.name = model.eval(), scale, name
        self.seed, self.tile, self.tile_overlap, self.multiple = seed, tile, tile_overlap, multiple
        self.auto_tile = auto_tile

    @classmethod
    def from_model(cls, model: LoadedModel, name: str, **options: Any) -> DiffusionUpscaler:
        """The upscaler of a loaded model file of this kind; ``options``: seed, tile, tile_overlap, auto_tile
        and the type's own (``steps`` where :attr:`takes_steps`; others drop it)."""
        raise NotImplementedError

    @classmethod
    def sampling(cls, spec: ModelSpec, steps: int | None = None) -> str:
        """How a model file of this kind makes an output, in words (``binsr models``, evaluation tables);
        ``steps``: the step count it runs with, where it takes one (None: the file's default)."""
        raise NotImplementedError

    @classmethod
    def steps_for(cls, spec: ModelSpec, steps: int | None = None) -> int | None:
        """The step count a file of this kind runs with: ``steps``, else the file's own, else the type's
        default (None for types without a step count)."""
        if not cls.takes_steps:
            return None
        return steps if steps is not None else spec.sampling_steps if spec.sampling_steps is not None else cls.default_steps

    @property
    def pixel_noise(self) -> bool:
        """Whether :meth:`generate` starts from noise at output size (drawn once per image, cropped per tile)."""
        return True

    def generate(self, condition: torch.Tensor, noise: torch.Tensor | None, progress: bool) -> torch.Tensor:
        """SR (B, 3, H, W) in [0, 1] from the upsampled LR and start noise of the same shape (None where
        :attr:`pixel_noise` is False)."""
        raise NotImplementedError

    def check_size(self, height: int, width: int) -> None:
        """Raise if an LR image of height × width cannot be upscaled: any image of at least one pixel can (its
        output is padded by reflection, repeated where the image is smaller than the padding)."""
        if height < 1 or width < 1:
            raise BinsrError(f"a {width}x{height} image has no pixels to upscale")

    @torch.no_grad()
    def upscale(self, lr: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """(B, 3, h, w) or one (3, h, w) image in [0, 1] → the same rank at ×scale (one float tensor: for
        outputs too large for that, take :meth:`upscale_rows`)."""
        if lr.dim() == 3:
            return self.upscale(lr[None], progress)[0]
        out = lr.new_empty(*lr.shape[:-2], lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)
        for top, rows in self.upscale_rows(lr, progress):
            out[..., top:top + rows.shape[-2], :] = rows.to(out)
        return out

    @torch.no_grad()
    def upscale_rows(self, lr: torch.Tensor, progress: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
        """The ×scale output of LR (B, 3, h, w) in [0, 1] in finished row bands, top to bottom:
        (first row, (B, 3, rows, w·s)). Every tile computes its own bicubic condition from the LR pixels it
        needs (:func:`~binsr.image.resize.imresize_window`) and its own crop of the start noise, and a band
        is handed over as soon as no later tile touches it, so memory is bounded by the tile size and the
        output's width, not its height: the caller writes each band out (``binsr upscale``) or copies it.
        A band is a view of one reused buffer, valid until the next band is asked for."""
        self.check_size(*lr.shape[-2:])
        device = next(self.model.parameters()).device
        lr = lr.to(device)
        height, width = lr.shape[-2] * self.scale, lr.shape[-1] * self.scale
        tile = self.tile
        if tile is None and self.auto_tile is not None and height * width > self.auto_tile ** 2:
            tile = self.auto_tile
        tile_h, tile_w = (height, width) if tile is None else (min(tile, height), min(tile, width))
        tops, lefts = _starts(height, tile_h, self.tile_overlap), _starts(width, tile_w, self.tile_overlap)
        # every tile's blending weight is a row ramp times a column ramp and the tiles form a grid, so the
        # summed weight is (Σ row ramps) ⊗ (Σ column ramps): two vectors instead of a weight plane
        column_ramps = [_ramp_1d(min(tile_w, width - left), self.tile_overlap, left, width).to(device)
                        for left in lefts]
        column_weight = torch.zeros(width, device=device)
        for left, ramp_columns in zip(lefts, column_ramps):
            column_weight[left:left + len(ramp_columns)] += ramp_columns
        # Σ ramp · tile of the rows still open, [first, first + open_rows): one buffer of a band's height, reused
        # (the rows a band leaves open are those the next band starts with, so no band spans more than tile_h)
        total = lr.new_empty(lr.shape[0], 3, tile_h, width)
        row_weight = lr.new_empty(tile_h)
        first = open_rows = 0
        for index, top in enumerate(tops):
            rows = min(tile_h, height - top)
            end = top + rows
            span = end - first
            total[..., open_rows:span, :] = 0
            row_weight[open_rows:span] = 0
            ramp_rows = _ramp_1d(rows, self.tile_overlap, top, height).to(device)
            row_weight[top - first:span] += ramp_rows
            for left, ramp_columns in zip(lefts, column_ramps):
                columns = len(ramp_columns)
                condition = imresize_window(lr, float(self.scale), (top, end), (left, left + columns)).clamp(0, 1)
                noise = (noise_window(self.seed, lr.shape[0], (top, end), (left, left + columns)).to(condition)
                         if self.pixel_noise else None)  # latent models draw theirs at latent size
                result = self._padded(condition, noise, progress)
                ramp = ramp_rows[:, None] * ramp_columns[None, :]
                total[..., top - first:span, left:left + columns] += result * ramp
            done = (tops[index + 1] if index + 1 < len(tops) else height) - first  # no later tile reaches above
            band = total[..., :done, :]
            band.div_(row_weight[:done, None]).div_(column_weight)
            yield first, band  # (a view of the buffer: valid until the next band is asked for)
            open_rows = span - done
            if open_rows:
                total[..., :open_rows, :] = total[..., done:span, :].clone()
                row_weight[:open_rows] = row_weight[done:span].clone()
            first += done

    def _padded(self, condition: torch.Tensor, noise: torch.Tensor | None, progress: bool) -> torch.Tensor:
        height, width = condition.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        condition = _reflect_pad(condition, pad_h, pad_w)
        noise = _reflect_pad(noise, pad_h, pad_w) if noise is not None else None
        return self.generate(condition, noise, progress)[..., :height, :width]


NOISE_BLOCK = 64  # the start noise is drawn in blocks of this many output pixels a side, one generator each


def noise_window(seed: int, batch: int, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """Rows × columns of an unbounded N(0, 1) field (batch, 3, ·, ·): block (i, j) of NOISE_BLOCK² pixels comes
    from its own generator, seeded by (seed, i, j), so any window is the same wherever it is cut — a tile's
    noise is the crop of the whole image's, without the whole image's noise in memory."""
    (top, bottom), (left, right) = rows, cols
    first_row, first_col = top // NOISE_BLOCK, left // NOISE_BLOCK
    block_rows = range(first_row, (bottom - 1) // NOISE_BLOCK + 1)
    block_cols = range(first_col, (right - 1) // NOISE_BLOCK + 1)
    field = torch.empty(batch, 3, len(block_rows) * NOISE_BLOCK, len(block_cols) * NOISE_BLOCK)
    for i, block_row in enumerate(block_rows):
        for j, block_col in enumerate(block_cols):
            state = np.random.SeedSequence([seed, block_row, block_col]).generate_state(2, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(state))
            field[..., i * NOISE_BLOCK:(i + 1) * NOISE_BLOCK, j * NOISE_BLOCK:(j + 1) * NOISE_BLOCK] = torch.randn(
                batch, 3, NOISE_BLOCK, NOISE_BLOCK, generator=generator)
    top, left = top - first_row * NOISE_BLOCK, left - first_col * NOISE_BLOCK
    return field[..., top:top + rows[1] - rows[0], left:left + cols[1] - cols[0]]


def _reflect_pad(image: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """``image`` (…, H, W) padded at the bottom and right by reflection: repeated where the padding exceeds
    what one reflection gives (an icon padded to a network's multiple of 128), the edge repeated for 1-pixel
    sides."""
    while pad_h or pad_w:
        height, width = image.shape[-2:]
        step_h, step_w = min(pad_h, height - 1), min(pad_w, width - 1)
        if (pad_h and not step_h) or (pad_w and not step_w):  # a 1-pixel side: nothing to reflect
            return F.pad(image, (0, pad_w, 0, pad_h), mode="replicate")
        image = F.pad(image, (0, step_w, 0, step_h), mode="reflect")
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
    return image


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering [0, length) with at least ``overlap`` pixels shared by neighbours."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return sorted(set(starts))


def _ramp_1d(n: int, overlap: int, start: int, total: int) -> torch.Tensor:
    """(n,) blending weights of a tile [start, start + n) of an axis of ``total`` pixels: linear ramps over
    ``overlap`` pixels on the sides that touch a neighbour, strictly positive."""
    ramp = torch.ones(n)
    edge = torch.linspace(0, 1, overlap + 2)[1:-1]
    if start > 0 and overlap:
        ramp[:overlap] = edge
    if start + n < total and overlap:
        ramp[-overlap:] = torch.minimum(ramp[-overlap:], edge.flip(0))
    return ramp
