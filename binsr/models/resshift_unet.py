"""The ResShift / SinSR / BiMaCoSR UNet — ResShift (Yue et al. 2023, "ResShift: Efficient Diffusion Model
for Image Super-resolution by Residual Shifting"), the network SinSR (Wang et al. 2024) distils and
BiMaCoSR (Liu et al. 2025) binarizes: residual blocks with scale-shift timestep norm, Swin-Transformer
window-attention layers at chosen resolutions, concatenated skips.

``forward(x, t)``: x is cat[x_t (scaled), y] — ``in_channels`` = 2 × the state's channels (6 in pixel
space, 6 for a 3-channel latent) — and t one timestep index per sample; the output is x̂₀.
The Swin layers use ``nn.Linear`` for qkv, projections and MLPs, so binarization reaches them like
BiMaCoSR does (convs and linears all binarized but ``head`` and ``tail.2``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from binsr.config import check_ranges
from binsr.models.denoiser import Denoiser, output_head, time_embedding, upsample_nearest2x
from binsr.models.registry import register_network


@dataclass
class ResShiftUNetConfig:
    """Architecture of ResShift's UNet.

    Fields (default): ``in_channels`` state + condition channels (6; 96 for a 48-channel latent);
    ``out_channels`` (3); ``model_channels`` channels of the top level (160); ``channel_mult`` channels of
    each level as multiples of ``model_channels`` ((1, 2, 2, 4)); ``num_res_blocks`` a level (2);
    ``norm_groups`` GroupNorm groups (32); ``dropout`` probability (0.0); ``image_size`` the reference size
    of ``attn_res`` in pixels (64); ``attn_res`` feature sizes that get Swin layers ((64, 32, 16, 8));
    ``swin_depth`` Swin blocks a layer (2); ``swin_embed_dim`` their token width (192); ``window_size``
    attention window side in tokens (8); ``mlp_ratio`` MLP width / token width (4.0); ``head_channels``
    channels an attention head (32); ``zero_init_tail`` the output conv starts at zero, as ResShift's
    released UNet (False).
    """

    in_channels: int = 6
    out_channels: int = 3
    model_channels: int = 160
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    norm_groups: int = 32
    dropout: float = 0.0
    image_size: int = 64
    attn_res: tuple[int, ...] = (64, 32, 16, 8)
    swin_depth: int = 2
    swin_embed_dim: int = 192
    window_size: int = 8
    mlp_ratio: float = 4.0
    head_channels: int = 32
    zero_init_tail: bool = False    # ResShift's released UNet zero-initialises its output conv

    def __post_init__(self) -> None:
        self.channel_mult, self.attn_res = tuple(self.channel_mult), tuple(self.attn_res)
        check_ranges(self, in_channels=(1, 1024), out_channels=(1, 1024), model_channels=(1, 4096),
                     channel_mult=(1, 64), num_res_blocks=(0, 32), norm_groups=(1, 4096), dropout=(0.0, 1.0),
                     image_size=(1, 1 << 16), attn_res=(1, 1 << 16), swin_depth=(0, 64), swin_embed_dim=(1, 8192),
                     window_size=(1, 256), mlp_ratio=(0.0, 64.0), head_channels=(1, 8192))
        if not 1 <= len(self.channel_mult) <= 8:
            raise ValueError(f"channel_mult must have 1 to 8 levels, got {len(self.channel_mult)}")
        if self.swin_embed_dim % self.head_channels:
            raise ValueError(f"swin_embed_dim {self.swin_embed_dim} must be a multiple of head_channels "
                             f"{self.head_channels}")

    def attention_levels(self) -> list[int]:
        return [i for i in range(len(self.channel_mult)) if self.image_size // 2 ** i in self.attn_res]

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this: one halving per level, whole windows at Swin levels."""
        halvings = 2 ** (len(self.channel_mult) - 1)
        levels = self.attention_levels()
        return max([halvings] + [2 ** i * self.window_size for i in levels])


class WindowAttention(nn.Module):
    """Multi-head self-attention inside (shifted) windows, with a learned relative position bias."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self._bias_index: torch.Tensor | None = None

    def bias_index(self, device: torch.device) -> torch.Tensor:
        """(N, N) index into ``bias_table`` of each token pair's relative position (made on first use, so
        a network built on the meta device and then loaded needs nothing recomputed)."""
        if self._bias_index is None or self._bias_index.device != device:
            window = self.window
            coords = torch.stack(torch.meshgrid(torch.arange(window, device=device), torch.arange(window, device=device),
                                                indexing="ij")).flatten(1)
            relative = (coords[:, :, None] - coords[:, None, :]) + window - 1  # (2, N, N) in [0, 2w-2]
            self._bias_index = relative[0] * (2 * window - 1) + relative[1]
        return self._bias_index

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """windows (B·nW, N, C), mask (nW, N, N) additive or None → (B·nW, N, C)."""
        count, tokens, dim = windows.shape
        q, k, v = self.qkv(windows).reshape(count, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.bias_table[self.bias_index(windows.device)].permute(2, 0, 1)[None]  # (1, heads, N, N)
        if mask is not None:
            bias = (bias.reshape(1, 1, self.heads, tokens, tokens)
                    + mask[None, :, None].to(bias)).expand(count // mask.shape[0], -1, -1, -1, -1)
            bias = bias.reshape(count, self.heads, tokens, tokens)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(attended.transpose(1, 2).reshape(count, tokens, dim))

    def complexity_ops(self, args: tuple, kwargs: dict, output: torch.Tensor) -> tuple[int, int]:
        """q·kᵀ and attention·v: 2·N²·C MACs per window (the linears count themselves)."""
        count, tokens, dim = output.shape
        return 2 * count * tokens * tokens * dim, 0


class SwinBlock(nn.Module):
    """LN → (shifted) window attention → residual; LN → MLP (GELU) → residual. Tokens (B, H, W, C)."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        win, shift = self.window, self.shift if min(h, w) > self.window else 0
        y = self.norm1(x)
        if shift:
            y = torch.roll(y, (-shift, -shift), dims=(1, 2))
        windows = y.reshape(b, h // win, win, w // win, win, c).transpose(2, 3).reshape(-1, win * win, c)
        windows = self.attn(windows, _shift_mask(h, w, win, shift, x.device) if shift else None)
        y = windows.reshape(b, h // win, w // win, win, win, c).transpose(2, 3).reshape(b, h, w, c)
        if shift:
            y = torch.roll(y, (shift, shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


@functools.lru_cache(maxsize=16)  # the same few (size, window, shift) every call: built once each (read-only)
def _shift_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """(nW, N, N) additive mask: tokens from different regions of the rolled image must not attend."""
    region = torch.zeros(h, w, device=device)
    label = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            region[rows, cols] = label
            label += 1
    windows = region.reshape(h // window, window, w // window, window).transpose(1, 2).reshape(-1, window * window)
    different = windows[:, :, None] != windows[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill(different, float("-inf"))


class SwinLayer(nn.Module):
    """Feature map (B, C, H, W) → tokens projected to ``embed`` → ``depth`` Swin blocks (every second one
    shifted by half a window) → projected back, added to the input."""

    def __init__(self, channels: int, embed: int, depth: int, heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.proj_in = nn.Linear(channels, embed)
        self.blocks = nn.ModuleList(SwinBlock(embed, heads, window, (i % 2) * (window // 2), mlp_ratio)
                                    for i in range(depth))
        self.norm = nn.LayerNorm(embed)
        self.proj_out = nn.Linear(embed, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj_in(x.permute(0, 2, 3, 1))
        for block in self.blocks:
            tokens = block(tokens)
        return x + self.proj_out(self.norm(tokens)).permute(0, 3, 1, 2)


class ScaleShiftResBlock(nn.Module):
    """GN → SiLU → conv3×3; then GN(h)·(1 + scale) + shift from the timestep embedding → SiLU → dropout
    → conv3×3; plus the (1×1-projected) input."""

    def __init__(self, dim: int, dim_out: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, dim)
        self.conv1 = nn.Conv2d(dim, dim_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * dim_out)
        self.norm2 = nn.GroupNorm(groups, dim_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, padding=1)
        self.skip = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor | list[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        """x: (B, dim, H, W), or tensors to concatenate along channels into it (the up path's skips)."""
        x = torch.cat(x, dim=1) if isinstance(x, list) else x
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.dropout(F.silu(h)))


class Stage(nn.Module):
    """One res block, optionally followed by a Swin layer."""

    def __init__(self, block: ScaleShiftResBlock, swin: SwinLayer | None) -> None:
        super().__init__()
        self.block, self.swin = block, swin

    def forward(self, x: torch.Tensor | list[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        x = self.block(x, emb)
        return self.swin(x) if self.swin is not None else x


@register_network("resshift_unet", ResShiftUNetConfig)
class ResShiftUNet(Denoiser):
    """(B, in_channels, H, W), timestep indices (B,) → x̂₀ (B, out_channels, H, W)."""

    def __init__(self, config: ResShiftUNetConfig) -> None:
        super().__init__()
        self.config = config
        c, groups, dropout = config.model_channels, config.norm_groups, config.dropout
        emb_dim = 4 * c
        self.time_mlp = time_embedding(c, emb_dim, emb_dim)
        attention = set(config.attention_levels())
        heads = config.swin_embed_dim // config.head_channels

        def stage(dim: int, dim_out: int, level: int) -> Stage:
            swin = (SwinLayer(dim_out, config.swin_embed_dim, config.swin_depth, heads, config.window_size,
                              config.mlp_ratio) if level in attention else None)
            return Stage(ScaleShiftResBlock(dim, dim_out, emb_dim, groups, dropout), swin)

        self.head = nn.Conv2d(config.in_channels, c, 3, padding=1)
        skips, channels, last = [c], c, len(config.channel_mult) - 1
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                self.down.append(stage(channels, c * mult, level))
                channels = c * mult
                skips.append(channels)
            if level != last:
                self.downsample.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
                skips.append(channels)
        self.mid = nn.ModuleList([stage(channels, channels, last), stage(channels, channels, -1)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for _ in range(config.num_res_blocks + 1):
                self.up.append(stage(channels + skips.pop(), c * mult, level))
                channels = c * mult
            if level != 0:
                self.upsample.append(nn.Conv2d(channels, channels, 3, padding=1))
        self.tail = output_head(channels, config.out_channels, groups, config.zero_init_tail)

    def full_precision_patterns(self) -> list[str]:
        """BiMaCoSR keeps only the first and the last conv full precision."""
        return ["head", "tail.2"]

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with self.timesteps(x, t) as t:  # checks, (B,) timesteps, per-sample TaR/TaA groups inside
            emb = self.time_mlp(t)
            h = self.head(x)
            skips, blocks = [h], iter(self.down)
            for level in range(len(self.config.channel_mult)):
                for _ in range(self.config.num_res_blocks):
                    h = next(blocks)(h, emb)
                    skips.append(h)
                if level < len(self.downsample):
                    h = self.downsample[level](h)
                    skips.append(h)
            for stage in self.mid:
                h = stage(h, emb)
            blocks = iter(self.up)
            for level in range(len(self.config.channel_mult)):
                for _ in range(self.config.num_res_blocks + 1):
                    h = next(blocks)([h, skips.pop()], emb)  # concatenated by the block (or read as two inputs)
                if level < len(self.upsample):
                    h = self.upsample[level](upsample_nearest2x(h))
            return self.tail(h)
