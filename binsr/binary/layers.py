"""Binary layers: ``nn.Conv2d`` / ``nn.Linear`` whose input and weight go through quantizers.

One pipeline serves every method (BI-DiffSR's BI-Conv, BBCU, ReActNet, XNOR, ...):

    h   = pre_bias(x)                      # LearnableBias / TaR (optional, K groups)
    out = op(input_quantizer(h), weight_quantizer(W)) · output_scale(x) + bias
    out = activation(out)                  # RPReLU / TaA (optional, K groups)
    out = out + shortcut(x)                # identity residual or BiDM's scaled shortcut (optional)

The latent FP weight is the layer's ordinary ``weight``, so ``state_dict`` keys match ``nn.Conv2d``.
Timestep-aware parts hold K parameter sets; which one a sample uses comes from the timesteps of the batch
in flight, given as a context (:func:`timestep_groups`; each sample of a batch may have its own timestep),
not stored on the modules; outside any context every part uses set 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from binsr.binary.quantizers import activation_planes, weight_bits


class TimestepGroups:
    """The diffusion timesteps of the batch in flight, (B,) or one for the batch, of a T-step process: each
    timestep-aware part with K sets uses g = clamp(⌊t·K/T⌋, 0, K−1) per sample (BI-DiffSR's rule), computed
    once per K."""

    def __init__(self, timesteps: torch.Tensor | int, num_timesteps: int) -> None:
        if num_timesteps < 1:
            raise ValueError(f"num_timesteps must be at least 1, got {num_timesteps}")
        self.timesteps, self.num_timesteps = torch.as_tensor(timesteps), int(num_timesteps)
        self._groups: dict[int, torch.Tensor] = {}

    def of(self, num_groups: int) -> torch.Tensor:
        """The group of each sample for parts with ``num_groups`` sets."""
        groups = self._groups.get(num_groups)
        if groups is None:
            groups = self._groups[num_groups] = timestep_to_group(self.timesteps, num_groups, self.num_timesteps)
        return groups


_CURRENT: ContextVar[TimestepGroups | None] = ContextVar("binsr_timestep_groups", default=None)


@contextmanager
def timestep_groups(timesteps: torch.Tensor | int, num_timesteps: int) -> Iterator[TimestepGroups]:
    """Inside the block, every timestep-aware part picks its parameter set from ``timesteps`` of a
    ``num_timesteps``-step process (per thread and task: a context variable; nested blocks restore the outer
    one). :class:`~binsr.models.Denoiser` networks open one for each call."""
    context = TimestepGroups(timesteps, num_timesteps)
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


class TimestepGrouped(nn.Module):
    """Holds K per-channel parameter sets; ``group`` (int or (B,) tensor) picks one per sample: the groups of
    the current :func:`timestep_groups` context, set 0 outside one. An input whose batch is B·m rows folded
    sample-major (the windows of each sample, as Swin layers make) gets each sample's set on its m rows."""

    def __init__(self, groups: int, channel_dim: int) -> None:
        super().__init__()
        if groups < 1:
            raise ValueError(f"timestep groups must be at least 1, got {groups}")
        self.num_groups = groups
        self.channel_dim = channel_dim

    @property
    def group(self) -> int | torch.Tensor:
        context = _CURRENT.get()
        return context.of(self.num_groups) if context is not None and self.num_groups > 1 else 0

    def select(self, param: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(K, C) parameter → the chosen rows, shaped to broadcast over ``x``."""
        group = torch.as_tensor(self.group, device=param.device).long().reshape(-1)
        if group.numel() and (group.min() < 0 or group.max() >= self.num_groups):
            raise ValueError(f"timestep group {group.tolist()} out of range for {self.num_groups} groups")
        if group.numel() > 1 and x.shape[0] % group.numel():
            raise ValueError(f"{group.numel()} timestep groups given for a batch of {x.shape[0]}")
        chosen = param[group]  # (1 or B, C)
        if 1 < group.numel() < x.shape[0]:  # a batch folded sample-major (a Swin layer's windows): B·m rows
            chosen = chosen.repeat_interleave(x.shape[0] // group.numel(), dim=0)
        shape = [chosen.shape[0]] + [1] * (x.dim() - 1)
        shape[self.channel_dim] = param.shape[1]
        return chosen.view(shape)

    def complexity_ops(self, args: tuple, kwargs: dict, output: torch.Tensor) -> tuple[int, int]:
        """Elementwise: zero in the MAC convention (as activations and biases are)."""
        return 0, 0


class GroupedBias(TimestepGrouped):
    """x + b: ReActNet's LearnableBias; with K > 1, BI-DiffSR's timestep-aware TaR. b starts at 0."""

    def __init__(self, channels: int, groups: int = 1, channel_dim: int = 1) -> None:
        super().__init__(groups, channel_dim)
        self.bias = nn.Parameter(torch.zeros(groups, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.select(self.bias, x)


class GroupedRPReLU(TimestepGrouped):
    """RPReLU: PReLU(x − γ) + ζ per channel (slope 0.25, γ = ζ = 0 at start); K > 1 gives TaA."""

    def __init__(self, channels: int, groups: int = 1, channel_dim: int = 1) -> None:
        super().__init__(groups, channel_dim)
        self.shift = nn.Parameter(torch.zeros(groups, channels))
        self.slope = nn.Parameter(torch.full((groups, channels), 0.25))
        self.bias = nn.Parameter(torch.zeros(groups, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x - self.select(self.shift, x)
        group = torch.as_tensor(self.group).reshape(-1)
        if (self.channel_dim == 1 or x.dim() == 2) and bool((group == group[0]).all()):
            y = F.prelu(y, self.slope[int(group[0])])  # one slope set for the batch: PyTorch's fused kernel
        else:  # per-sample slopes
            y = torch.where(y >= 0, y, self.select(self.slope, x) * y)
        return y + self.select(self.bias, x)


class IdentityShortcut(nn.Module):
    """+ x: the residual BI-DiffSR and BBCU put around every binary conv (shape must be kept)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ScaledShortcut(nn.Module):
    """BiDM's learnable shortcut |s|·P(x), s = 0.3 at start; P is a 1×1 FP projection when the
    channels change and an average pool when the layer strides."""

    def __init__(self, in_features: int, out_features: int, stride: int = 1, conv: bool = True, init: float = 0.3) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))
        if in_features != out_features:
            self.proj: nn.Module = (nn.Conv2d(in_features, out_features, 1, stride=stride) if conv
                                    else nn.Linear(in_features, out_features))
        elif stride > 1:
            self.proj = nn.AvgPool2d(stride, stride, ceil_mode=True)  # odd maps: as many outputs as the conv
        else:
            self.proj = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale.abs() * self.proj(x)


def timestep_to_group(timesteps: torch.Tensor | int, num_groups: int, num_timesteps: int) -> torch.Tensor:
    """BI-DiffSR's rule g = clamp(floor(t·K / T), 0, K−1), per sample; T is the diffusion process's."""
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be at least 1, got {num_timesteps}")
    t = torch.as_tensor(timesteps)
    return torch.div(t * num_groups, num_timesteps, rounding_mode="floor").clamp(0, num_groups - 1).long()


def set_training_progress(model: nn.Module, progress: float) -> None:
    """Tell scheduled estimators (IR-Net's EDE) how far training is, in [0, 1]."""
    for module in model.modules():
        setter = getattr(module, "set_progress", None)
        if callable(setter):
            setter(progress)


def finish_binary_output(layer: nn.Module, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The pipeline after the binary op: × output_scale(x), + bias, activation, + shortcut(x).

    Shared by the simulated layers here and the bit-packed ones of :mod:`binsr.deploy`; ``layer``
    has ``channel_dim``, ``bias``, ``output_scale``, ``activation`` and ``shortcut``.
    """
    if layer.output_scale is not None:
        out = out * layer.output_scale(x)
    if layer.bias is not None:
        shape = [1] * out.dim()
        shape[layer.channel_dim] = -1
        out = out + layer.bias.view(shape)
    if layer.activation is not None:
        out = layer.activation(out)
    if layer.shortcut is not None:
        skip = layer.shortcut(x)
        if skip.shape != out.shape:
            raise ValueError(f"shortcut of shape {tuple(skip.shape)} cannot be added to output {tuple(out.shape)}")
        out = out + skip
    return out


class _BinaryLayer:
    """The shared pipeline of :class:`BinaryConv2d` and :class:`BinaryLinear` (a mixin).

    ``packed_form`` names the layer's bit-packed counterpart (registered by :mod:`binsr.deploy`)."""

    channel_dim: int
    packed_form: ClassVar[str]
    weight: nn.Parameter
    bias: nn.Parameter | None

    def _init_parts(
        self,
        input_quantizer: nn.Module | None,
        weight_quantizer: nn.Module | None,
        output_scale: nn.Module | None,
        pre_bias: nn.Module | None,
        activation: nn.Module | None,
        shortcut: nn.Module | None,
    ) -> None:
        self.pre_bias = pre_bias
        self.input_quantizer = input_quantizer
        self.weight_quantizer = weight_quantizer
        self.output_scale = output_scale
        self.activation = activation
        self.shortcut = shortcut

    def _op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _macs(self, output: torch.Tensor) -> int:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pre_bias(x) if self.pre_bias is not None else x
        q = self.input_quantizer(h) if self.input_quantizer is not None else h
        w = self.weight_quantizer(self.weight) if self.weight_quantizer is not None else self.weight
        return finish_binary_output(self, self._op(q, w), x)

    def binary_parameter_bits(self) -> Mapping[str, int]:
        """The latent weight is stored as sign bit-planes (one per HORQ order) when quantized."""
        bits = weight_bits(self.weight_quantizer)
        return {"weight": bits} if bits else {}

    def complexity_ops(self, args: tuple, kwargs: dict, output: torch.Tensor) -> tuple[int, int]:
        """(FP MACs, binary ops): with binary weights *and* inputs every MAC is a binary op per
        (weight plane, input plane) pair; otherwise the MACs stay floating point."""
        macs = self._macs(output)
        planes = weight_bits(self.weight_quantizer) * activation_planes(self.input_quantizer)
        return (0, macs * planes) if planes else (macs, 0)


class BinaryConv2d(_BinaryLayer, nn.Conv2d):
    """``nn.Conv2d`` with quantizers and the optional parts of the binary pipeline (module doc)."""

    channel_dim = 1
    packed_form = "conv2d"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *,
                 input_quantizer: nn.Module | None = None, weight_quantizer: nn.Module | None = None,
                 output_scale: nn.Module | None = None, pre_bias: nn.Module | None = None,
                 activation: nn.Module | None = None, shortcut: nn.Module | None = None) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                           padding_mode)
        self._init_parts(input_quantizer, weight_quantizer, output_scale, pre_bias, activation, shortcut)

    def _op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, weight, None)

    def _macs(self, output: torch.Tensor) -> int:
        return output.numel() * (self.in_channels // self.groups) * math.prod(self.kernel_size)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, **parts: nn.Module | None) -> BinaryConv2d:
        """Same geometry as ``conv``; its weight (and bias) become the latent weights."""
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None, conv.padding_mode, **parts)
        _copy_params(conv, layer)
        return layer


class BinaryLinear(_BinaryLayer, nn.Linear):
    """``nn.Linear`` with quantizers and the optional parts of the binary pipeline (module doc)."""

    channel_dim = -1
    packed_form = "linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 input_quantizer: nn.Module | None = None, weight_quantizer: nn.Module | None = None,
                 output_scale: nn.Module | None = None, pre_bias: nn.Module | None = None,
                 activation: nn.Module | None = None, shortcut: nn.Module | None = None) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias)
        self._init_parts(input_quantizer, weight_quantizer, output_scale, pre_bias, activation, shortcut)

    def _op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight)

    def _macs(self, output: torch.Tensor) -> int:
        return output.numel() * self.in_features

    @classmethod
    def from_float(cls, linear: nn.Linear, **parts: nn.Module | None) -> BinaryLinear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, **parts)
        _copy_params(linear, layer)
        return layer


def _copy_params(source: nn.Module, target: nn.Module) -> None:
    if (target.weight.device, target.weight.dtype) != (source.weight.device, source.weight.dtype):
        target.to(device=source.weight.device, dtype=source.weight.dtype)
    if source.weight.is_meta:  # a structure only: nothing to copy
        return
    with torch.no_grad():
        target.weight.copy_(source.weight)
        if source.bias is not None:
            target.bias.copy_(source.bias)
