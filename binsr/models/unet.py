"""The SR3 / BI-DiffSR conditional UNet: SR3 (Saharia et al. 2022, "Image Super-Resolution via Iterative
Refinement") and BI-DiffSR (Chen et al. 2024, "Binarized Diffusion Model for Image Super-Resolution").

One full-precision network covers both papers' architectures; a model description's ``binarize``
(:mod:`binsr.models.description`) then binarizes it with any method of :mod:`binsr.binary`, keeping the
FP parts (:meth:`SRUNet.full_precision_patterns`). ``forward(x, t)`` takes the 6-channel input
(bicubic-upsampled LR concatenated with x_t) and one timestep per sample.

Switches (``UNetConfig``):

* ``resample``: "cp" — BI-DiffSR's CP-Down (split halves, two 3×3 convs, add, PixelUnshuffle: C → 2C)
  and CP-Up (two 3×3 convs, concat, PixelShuffle: C → C/2); "conv" — SR3's strided 3×3 conv and
  nearest-upsample + 3×3 conv, channels changing inside the residual blocks.
* ``fusion`` of the up path's input x with its skip: "cs" (CS-Fusion: channel-shuffled halves through
  two 1×1 convs, added), "split" (x and skip through one 1×1 conv each, added), "concat" (one 1×1 conv
  on the concatenation), "add" (x + skip), "block" (SR3: the concatenation goes into the res block).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from binsr.config import check_ranges
from binsr.errors import BinsrError
from binsr.models.denoiser import Denoiser, output_head, time_embedding, upsample_nearest2x
from binsr.models.registry import register_network

RESAMPLE = ("cp", "conv")
FUSIONS = ("cs", "split", "concat", "add", "block")


@dataclass
class UNetConfig:
    """Architecture of the conditional SR UNet (full precision; binarization is described beside it).

    Fields (default): ``in_channels`` noisy image + condition channels (6); ``out_channels`` (3);
    ``inner_channel`` channels of the top level (64); ``channel_mults`` channels of each level as multiples
    of ``inner_channel``, one level per entry ((1, 2, 4, 8)); ``res_blocks`` residual blocks a level (2);
    ``norm_groups`` GroupNorm groups (16); ``dropout`` probability in the residual blocks (0.2);
    ``attn_res`` feature sizes in pixels, relative to ``image_size``, that get self-attention (none);
    ``image_size`` the reference size of ``attn_res`` and ``fp_res`` in pixels, not a limit (256);
    ``resample`` "cp" (BI-DiffSR's CP-Down/Up) or "conv" (SR3's) ("cp"); ``fusion`` how the up path joins
    its skip: "cs" (BI-DiffSR's CS-Fusion), "split", "concat", "add" or "block" (SR3's concatenation
    inside the block) ("cs"); ``fp_res`` up-path feature sizes kept full precision when binarized
    ((256, 128)); ``zero_init_tail`` the output conv starts at zero (False).
    """

    in_channels: int = 6
    out_channels: int = 3
    inner_channel: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    res_blocks: int = 2
    norm_groups: int = 16
    dropout: float = 0.2
    attn_res: tuple[int, ...] = ()          # resolutions (relative to image_size) with self-attention
    image_size: int = 256                   # reference size for attn_res / fp_res, not a limit
    resample: str = "cp"
    fusion: str = "cs"
    fp_res: tuple[int, ...] = (256, 128)    # up-path resolutions kept full precision (binary models)
    zero_init_tail: bool = False            # output conv starts at zero (guided-diffusion's zero_module)

    def __post_init__(self) -> None:
        self.channel_mults, self.attn_res, self.fp_res = (
            tuple(self.channel_mults), tuple(self.attn_res), tuple(self.fp_res))
        check_ranges(self, in_channels=(1, 1024), out_channels=(1, 1024), inner_channel=(1, 4096),
                     channel_mults=(1, 64), res_blocks=(0, 32), norm_groups=(1, 4096), dropout=(0.0, 1.0),
                     attn_res=(1, 1 << 16), image_size=(1, 1 << 16), fp_res=(1, 1 << 16))
        if not 1 <= len(self.channel_mults) <= 8:
            raise ValueError(f"channel_mults must have 1 to 8 levels, got {len(self.channel_mults)}")
        if self.resample not in RESAMPLE:
            raise BinsrError(f"resample must be one of {RESAMPLE}, got {self.resample!r}")
        if self.fusion not in FUSIONS:
            raise BinsrError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (one halving per level below the top)."""
        return 2 ** (len(self.channel_mults) - 1)


class SelfAttention(nn.Module):
    """Single-head self-attention over pixels: GroupNorm, 1×1 qkv and output convs, residual."""

    def __init__(self, channels: int, norm_groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)  # (B, HW, C) each
        attended = F.scaled_dot_product_attention(q, k, v)  # softmax(q·kᵀ/√C)·v
        return x + self.out(attended.transpose(1, 2).reshape(b, c, h, w))

    def complexity_ops(self, args: tuple, kwargs: dict, output: torch.Tensor) -> tuple[int, int]:
        """q·kᵀ and attention·v: 2·(HW)²·C MACs per sample (the convs count themselves)."""
        b, c, h, w = output.shape
        return 2 * b * (h * w) ** 2 * c, 0


class ResBlock(nn.Module):
    """[GN → SiLU → conv3×3] + time → [GN → SiLU → Dropout → conv3×3] + (1×1 conv of) x."""

    def __init__(self, dim: int, dim_out: int, time_dim: int, norm_groups: int, dropout: float, attention: bool) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups, dim)
        self.conv1 = nn.Conv2d(dim, dim_out, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, dim_out)
        self.norm2 = nn.GroupNorm(norm_groups, dim_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, padding=1)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()
        self.attn = SelfAttention(dim_out, norm_groups) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        h = h + self.res_conv(x)
        return self.attn(h) if self.attn is not None else h


class CPDown(nn.Module):
    """CP-Down: C → 2C at half resolution; both 3×3 convs keep their shape (C/2 → C/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels // 2, channels // 2, 3, padding=1)
        self.conv2 = nn.Conv2d(channels // 2, channels // 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        return F.pixel_unshuffle(self.conv1(first) + self.conv2(second), 2)


class CPUp(nn.Module):
    """CP-Up: C → C/2 at double resolution; both 3×3 convs keep their shape (C → C)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(torch.cat([self.conv1(x), self.conv2(x)], dim=1), 2)


class ConvDown(nn.Module):
    """SR3's downsampling: a stride-2 3×3 conv, channels kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ConvUp(nn.Module):
    """SR3's upsampling: nearest ×2 then a 3×3 conv, channels kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(upsample_nearest2x(x))


class Fusion(nn.Module):
    """Merge the up path's x (C_x) with its skip (C_s) into ``out`` channels (see module doc)."""

    def __init__(self, kind: str, x_channels: int, skip_channels: int, out: int) -> None:
        super().__init__()
        self.kind = kind
        if kind in ("cs", "split", "add") and not x_channels == skip_channels == out:
            raise BinsrError(f"fusion '{kind}' needs equal channels, got x {x_channels}, skip {skip_channels}, out {out}")
        if kind in ("cs", "split"):
            self.conv1 = nn.Conv2d(out, out, 1, bias=False)
            self.conv2 = nn.Conv2d(out, out, 1, bias=False)
        elif kind == "concat":
            self.conv = nn.Conv2d(x_channels + skip_channels, out, 1, bias=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.kind == "cs":  # CS-Fusion: each conv sees half of x's channels and half of the skip's
            fu1 = torch.cat([x[:, 1::2], skip[:, 0::2]], dim=1)
            fu2 = torch.cat([x[:, 0::2], skip[:, 1::2]], dim=1)
            return self.conv1(fu1) + self.conv2(fu2)
        if self.kind == "split":
            return self.conv1(x) + self.conv2(skip)
        if self.kind == "concat":
            return self.conv(torch.cat([x, skip], dim=1))
        if self.kind == "add":
            return x + skip
        return torch.cat([x, skip], dim=1)  # "block": the res block takes the concatenation


class Level(nn.Module):
    """One resolution of the down or up path: (fusions,) res blocks, and the resampler after them."""

    def __init__(self, blocks: list[ResBlock], resample: nn.Module | None, fusions: list[Fusion] | None = None) -> None:
        super().__init__()
        self.fusions = nn.ModuleList(fusions) if fusions is not None else None
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample


@register_network("sr_unet", UNetConfig)
class SRUNet(Denoiser):
    """Conditional SR UNet: (B, in_channels, H, W) and timesteps (B,) → (B, out_channels, H, W)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c, groups, dropout = config.inner_channel, config.norm_groups, config.dropout
        self.head = nn.Conv2d(config.in_channels, c, 3, padding=1)
        self.time_mlp = time_embedding(c, 4 * c, c)

        def block(dim: int, dim_out: int, resolution: int) -> ResBlock:
            return ResBlock(dim, dim_out, c, groups, dropout, resolution in config.attn_res)

        skips, channels, resolution = [c], c, config.image_size
        self.down_levels = nn.ModuleList()
        last = len(config.channel_mults) - 1
        for index, mult in enumerate(config.channel_mults):
            width = c * mult
            blocks = []
            for _ in range(config.res_blocks):
                blocks.append(block(channels, width, resolution))
                channels = width
                skips.append(channels)
            resample = None
            if index != last:
                resample = CPDown(channels) if config.resample == "cp" else ConvDown(channels)
                channels = channels * 2 if config.resample == "cp" else channels
                resolution //= 2
                skips.append(channels)
            self.down_levels.append(Level(blocks, resample))

        self.mid = nn.ModuleList([ResBlock(channels, channels, c, groups, dropout, attention=True),
                                  ResBlock(channels, channels, c, groups, dropout, attention=False)])

        self.up_levels = nn.ModuleList()
        self.fp_up_levels = []  # indices of up levels at fp_res (kept FP when binarized)
        for index, mult in reversed(list(enumerate(config.channel_mults))):
            width = c * mult
            fusions, blocks = [], []
            for _ in range(config.res_blocks + 1):
                skip = skips.pop()
                if config.fusion == "block":
                    fusions.append(Fusion("block", channels, skip, channels + skip))
                    blocks.append(block(channels + skip, width, resolution))
                else:
                    fusions.append(Fusion(config.fusion, channels, skip, width))
                    blocks.append(block(width, width, resolution))
                channels = width
            if resolution in config.fp_res:
                self.fp_up_levels.append(len(self.up_levels))
            resample = None
            if index != 0:
                resample = CPUp(channels) if config.resample == "cp" else ConvUp(channels)
                channels = channels // 2 if config.resample == "cp" else channels
                resolution *= 2
            self.up_levels.append(Level(blocks, resample, fusions))
        self.tail = output_head(channels, config.out_channels, groups, config.zero_init_tail)

    def full_precision_patterns(self) -> list[str]:
        """Module-name globs of the parts BI-DiffSR keeps full precision: first conv, time MLP and the
        per-block time projections, attention, final block, and the up-path blocks at ``fp_res``."""
        patterns = ["head", "time_mlp.*", "*.time_proj", "*.attn.*", "tail.*"]
        fusion_has_convs = self.config.fusion not in ("add", "block")
        for index in self.fp_up_levels:
            patterns.append(f"up_levels.{index}.blocks.*")
            if fusion_has_convs:
                patterns.append(f"up_levels.{index}.fusions.*")
        return patterns

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with self.timesteps(x, t) as t:  # checks, (B,) timesteps, per-sample TaR/TaA groups inside
            emb = self.time_mlp(t)
            h = self.head(x)
            skips = [h]
            for level in self.down_levels:
                for res_block in level.blocks:
                    h = res_block(h, emb)
                    skips.append(h)
                if level.resample is not None:
                    h = level.resample(h)
                    skips.append(h)
            for res_block in self.mid:
                h = res_block(h, emb)
            for level in self.up_levels:
                for fusion, res_block in zip(level.fusions, level.blocks):
                    h = res_block(fusion(h, skips.pop()), emb)
                if level.resample is not None:
                    h = level.resample(h)
            return self.tail(h)
