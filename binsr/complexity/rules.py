"""Operation counts of standard ``torch.nn`` layers, per forward call.

Convention (the one of the BI-DiffSR / BBCU tables and of thop-style counters): a "FLOP" is one
multiply-accumulate. Convolutions and linears count their MACs (bias adds are not counted);
normalisation counts one op per element (two with an affine transform); activations, pooling,
resampling and dropout count zero. A rule gets ``(module, args, kwargs, output)`` and returns MACs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Rule = Callable[[nn.Module, tuple[Any, ...], dict[str, Any], Any], int]


def _first_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError("no tensor among the module's inputs/outputs")


def _conv(module: nn.modules.conv._ConvNd, args: tuple, kwargs: dict, output: Any) -> int:
    per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return _first_tensor(output).numel() * per_output


def _conv_transpose(module: nn.modules.conv._ConvTransposeNd, args: tuple, kwargs: dict, output: Any) -> int:
    per_input = (module.out_channels // module.groups) * math.prod(module.kernel_size)
    return _first_tensor(args).numel() * per_input


def _linear(module: nn.Linear, args: tuple, kwargs: dict, output: Any) -> int:
    return _first_tensor(output).numel() * module.in_features


def _norm(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> int:
    affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
    return _first_tensor(output).numel() * (2 if affine else 1)


def _multihead_attention(module: nn.MultiheadAttention, args: tuple, kwargs: dict, output: Any) -> int:
    query = args[0] if args else kwargs["query"]
    key = args[1] if len(args) > 1 else kwargs.get("key", query)
    if query.dim() == 2:  # unbatched (L, E)
        query, key = query.unsqueeze(1), key.unsqueeze(1)
    if module.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    q_len, batch, embed = query.shape
    k_len = key.shape[0]
    projections = q_len * embed * embed + k_len * embed * (module.kdim + module.vdim) + q_len * embed * embed
    attention = 2 * q_len * k_len * embed  # Q·Kᵀ and A·V
    return batch * (projections + attention)


DEFAULT_RULES: dict[type[nn.Module], Rule] = {
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.Conv3d: _conv,
    nn.ConvTranspose1d: _conv_transpose,
    nn.ConvTranspose2d: _conv_transpose,
    nn.ConvTranspose3d: _conv_transpose,
    nn.Linear: _linear,
    nn.BatchNorm1d: _norm,
    nn.BatchNorm2d: _norm,
    nn.BatchNorm3d: _norm,
    nn.GroupNorm: _norm,
    nn.LayerNorm: _norm,
    nn.InstanceNorm1d: _norm,
    nn.InstanceNorm2d: _norm,
    nn.InstanceNorm3d: _norm,
    nn.MultiheadAttention: _multihead_attention,
}


def rule_for(module: nn.Module) -> Rule | None:
    """The rule of the nearest class in the module's MRO, or None."""
    for cls in type(module).__mro__:
        if cls in DEFAULT_RULES:
            return DEFAULT_RULES[cls]
    return None
