"""The denoiser contract: what every diffusion network of binsr provides, and the parts they share.

A :class:`Denoiser` is an ``nn.Module`` built from one config dataclass (``config``) that

* maps ``x`` (B, ``in_channels``, H, W) and timesteps ``t`` ((B,) or one for the batch) to
  (B, ``out_channels``, H, W); H and W must be multiples of ``multiple`` (checked, one clear error);
* serves a process of ``num_timesteps`` steps (T): each call runs inside a
  :func:`~binsr.binary.layers.timestep_groups` context of its timesteps, from which every timestep-aware
  binary part (BI-DiffSR's TaR/TaA) takes its group g(t) = ⌊t·K/T⌋ per sample (nothing is stored on the
  modules). T comes from the process alone (:func:`bind_timesteps`, done wherever a network is built for a
  process);
* names the layers its papers keep full precision (``full_precision_patterns``) and makes zero inputs
  for counting (``example_inputs``).

New architectures subclass it, run their ``forward`` body inside ``with self.timesteps(x, t) as t:``, and
register themselves with :func:`binsr.models.register_network`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from binsr.binary.convert import structure_generation
from binsr.binary.layers import TimestepGrouped, timestep_groups
from binsr.errors import BinsrError


class Denoiser(nn.Module):
    """Base class of binsr's diffusion networks (see the module doc for the contract)."""

    config: Any
    num_timesteps: int | None = None

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return self.config.multiple

    def full_precision_patterns(self) -> list[str]:
        """Module-name globs of the layers kept full precision when the network is binarized."""
        raise NotImplementedError

    def example_inputs(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero inputs for one call at height × width (complexity counting): x and a timestep of 0."""
        return torch.zeros(1, self.in_channels, height, width), torch.zeros(1, dtype=torch.long)

    @contextmanager
    def timesteps(self, x: torch.Tensor, t: torch.Tensor | int) -> Iterator[torch.Tensor]:
        """Check ``x``, broadcast ``t`` to (B,) and yield it, with every timestep-aware part choosing its group
        from it inside the block."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise BinsrError(f"{type(self).__name__} takes (B, {self.in_channels}, H, W) inputs, got {tuple(x.shape)}")
        multiple = self.multiple
        if x.shape[-1] % multiple or x.shape[-2] % multiple:
            raise BinsrError(f"input size {tuple(x.shape[-2:])} must be a multiple of {multiple} for this network")
        t = torch.as_tensor(t, device=x.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(x.shape[0])
        elif t.numel() != x.shape[0]:
            raise BinsrError(f"{t.numel()} timesteps given for a batch of {x.shape[0]}")
        grouped = _has_grouped_parts(self)
        if grouped and self.num_timesteps is None:
            raise BinsrError(f"{type(self).__name__} has timestep-aware parts but no process T: "
                             f"call binsr.models.bind_timesteps(network, T) first")
        with timestep_groups(t, self.num_timesteps) if grouped else nullcontext():
            yield t


def _has_grouped_parts(network: nn.Module) -> bool:
    """Whether the network has timestep-aware parts with more than one group, found once per structure:
    again after bind_timesteps or after a binsr conversion swapped modules (a walk every call is slow in
    a packed network; modules swapped by hand need a new bind_timesteps)."""
    cached = network.__dict__.get("_grouped_parts")
    if cached is None or cached[0] != structure_generation():
        grouped = any(isinstance(m, TimestepGrouped) and m.num_groups > 1 for m in _all_modules(network))
        cached = network.__dict__["_grouped_parts"] = structure_generation(), grouped
    return cached[1]


def _all_modules(root: nn.Module) -> list[nn.Module]:
    """Every module below ``root`` (a plain walk over ``_modules``: ``Module.modules()`` runs a generator
    frame per module, slow for a packed network's thousand modules)."""
    found, stack = [], [root]
    while stack:
        module = stack.pop()
        if module is not None:
            found.append(module)
            stack.extend(module._modules.values())
    return found


def bind_timesteps(network: nn.Module, num_timesteps: int) -> nn.Module:
    """Tell ``network`` the T of the process it serves (the only place T is given to a network)."""
    if num_timesteps < 1:
        raise BinsrError(f"a process needs at least 1 timestep, got {num_timesteps}")
    network.num_timesteps = int(num_timesteps)
    network.__dict__.pop("_grouped_parts", None)  # (listed again at the next call)
    return network


# --- parts both UNets share -----------------------------------------------------------------------


def upsample_nearest2x(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, C, 2H, 2W), each pixel repeated 2×2: ``F.interpolate(x, scale_factor=2,
    mode="nearest")`` as one strided copy, which PyTorch's CPU copy kernel does faster than its
    nearest-upsampling kernel does the upsampling."""
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


def zero_init(layer: nn.Conv2d) -> None:
    """Zero a layer's weight and bias: a residual-predicting network then starts at the identity of its base."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class SinusoidalEmbedding(nn.Module):
    """Timestep t (B,) → (B, dim) sin/cos features (the Transformer / WaveGrad positional encoding)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(1e4) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        angles = t.float()[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def time_embedding(channels: int, hidden: int, out: int) -> nn.Sequential:
    """t → sinusoidal features (``channels``) → Linear → SiLU → Linear (``out``)."""
    return nn.Sequential(SinusoidalEmbedding(channels), nn.Linear(channels, hidden), nn.SiLU(), nn.Linear(hidden, out))


def output_head(channels: int, out: int, groups: int, zero: bool) -> nn.Sequential:
    """GroupNorm → SiLU → 3×3 conv to ``out`` channels; ``zero``: the conv starts at zero."""
    head = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, out, 3, padding=1))
    if zero:
        zero_init(head[-1])
    return head
