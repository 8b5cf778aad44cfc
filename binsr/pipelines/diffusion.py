"""Upscaling with diffusion SR models (FP or binary): bicubic condition, padding to the network's
multiple, tiling. :class:`DiffusionUpscaler` does the image handling; each registered pipeline type
(:mod:`binsr.pipelines.registry`) says how one padded tile is generated (``sr3``: DDIM; ``resshift``: its
T-step chain; ``onestep``: one network call) and how it is made from a model file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from binsr.errors import BinsrError
from binsr.image.resize import imresize

if TYPE_CHECKING:
    from binsr.pipelines.model_file import LoadedModel, ModelSpec


AUTO_TILE = 512  # outputs over 512² are tiled: untiled, bidiffsr-x4 needs about 3 GB per 512² of output


class DiffusionUpscaler:
    """``upscale(lr)``: LR (B, 3, h, w) in [0, 1] → SR (B, 3, h·s, w·s) by :meth:`generate`.

    Inputs are reflect-padded to the network's multiple and cropped back. With ``tile`` (HR pixels),
    the image is processed in overlapping tiles blended with linear ramps, so any size runs in
    bounded memory; each tile starts from its crop of the whole image's start noise, so a tiled result
    matches the untiled one up to the blending near tile borders. ``auto_tile`` (default
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
        """Raise if an LR image of height × width is too small: its output is reflect-padded up to the
        network's multiple, and reflection needs the padding to be smaller than the image."""
        out_h, out_w = height * self.scale, width * self.scale
        if -out_h % self.multiple >= out_h or -out_w % self.multiple >= out_w:
            raise BinsrError(f"a {width}x{height} image is too small for this model: its x{self.scale} output "
                             f"{out_w}x{out_h} must be at least {self.multiple // 2 + 1} pixels a side "
                             f"(the network works on multiples of {self.multiple})")

    @torch.no_grad()
    def upscale(self, lr: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """(B, 3, h, w) or one (3, h, w) image in [0, 1] → the same rank at ×scale."""
        if lr.dim() == 3:
            return self.upscale(lr[None], progress)[0]
        self.check_size(*lr.shape[-2:])
        device = next(self.model.parameters()).device
        condition = imresize(lr.to(device), float(self.scale)).clamp(0, 1)
        height, width = condition.shape[-2:]
        noise = (torch.randn(condition.shape, generator=torch.Generator().manual_seed(self.seed))
                 if self.pixel_noise else None)  # latent models draw theirs at latent size
        tile = self.tile
        if tile is None and self.auto_tile is not None and height * width > self.auto_tile ** 2:
            tile = self.auto_tile
        if tile is None or (height <= tile and width <= tile):
            return self._padded(condition, noise, progress)
        return self._tiled(condition, noise, progress, tile)

    def _padded(self, condition: torch.Tensor, noise: torch.Tensor, progress: bool) -> torch.Tensor:
        height, width = condition.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        if pad_h or pad_w:
            condition = F.pad(condition, (0, pad_w, 0, pad_h), mode="reflect")
            noise = F.pad(noise, (0, pad_w, 0, pad_h), mode="reflect") if noise is not None else None
        return self.generate(condition, noise, progress)[..., :height, :width]

    def _tiled(self, condition: torch.Tensor, noise: torch.Tensor, progress: bool, tile: int) -> torch.Tensor:
        height, width = condition.shape[-2:]
        out = torch.zeros_like(condition)
        weight = torch.zeros_like(condition[:, :1])
        for top in _starts(height, tile, self.tile_overlap):
            for left in _starts(width, tile, self.tile_overlap):
                window = (..., slice(top, top + tile), slice(left, left + tile))
                result = self._padded(condition[window], noise[window] if noise is not None else None, progress)
                ramp = _ramp(result.shape[-2], result.shape[-1], self.tile_overlap, top, left, height, width)
                out[window] += result * ramp.to(result)
                weight[window] += ramp.to(result)
        return out / weight


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering [0, length) with at least ``overlap`` pixels shared by neighbours."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return sorted(set(starts))


def _ramp(h: int, w: int, overlap: int, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """(1, 1, h, w) blending weights: linear ramps over ``overlap`` pixels on sides that touch a neighbour."""
    def axis(n: int, start: int, total: int) -> torch.Tensor:
        ramp = torch.ones(n)
        edge = torch.linspace(0, 1, overlap + 2)[1:-1]  # strictly positive
        if start > 0:
            ramp[:overlap] = edge
        if start + n < total:
            ramp[-overlap:] = torch.minimum(ramp[-overlap:], edge.flip(0))
        return ramp
    return (axis(h, top, height)[:, None] * axis(w, left, width)[None, :])[None, None]
