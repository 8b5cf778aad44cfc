"""Find the binarized layers of a model: BiMaCoSR three-branch layers and plain 1-bit layers,
simulated (latent FP weights) or packed (``binsr export``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from binsr.binary import BinaryConv2d, BinaryLinear, ThreeBranch
from binsr.deploy import PackedBinaryConv2d, PackedBinaryLinear
from binsr.deploy.layers import quantized_signs

BINARY_LAYERS = (BinaryConv2d, BinaryLinear, PackedBinaryConv2d, PackedBinaryLinear)


@dataclass
class BinarizedLayer:
    """One binarized layer: ``module`` is a ThreeBranch or a binary layer; ``binary`` its 1-bit part."""

    name: str
    module: nn.Module
    binary: nn.Module

    @property
    def kind(self) -> str:
        """"conv" or "linear" (the grouping of BiMaCoSR's frequency figure)."""
        return "linear" if isinstance(self.binary, (BinaryLinear, PackedBinaryLinear)) else "conv"

    @property
    def shape(self) -> tuple[int, int]:
        """(C_in, C_out)."""
        b = self.binary
        if isinstance(b, BinaryConv2d):
            return b.in_channels, b.out_channels
        return b.in_features, b.out_features  # linears and both packed layers


def binarized_layers(model: nn.Module) -> Iterator[BinarizedLayer]:
    """Every ThreeBranch, and every binary layer not inside one, in module order."""
    inside: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, ThreeBranch):
            inside.add(id(module.bmb))
            yield BinarizedLayer(name, module, module.bmb)
        elif isinstance(module, BINARY_LAYERS) and id(module) not in inside:
            yield BinarizedLayer(name, module, module)


def sign_matrix(layer: nn.Module) -> torch.Tensor:
    """The ±1 weight matrix a 1-bit layer multiplies with, float64 (C_out, C_in·kh·kw) — the im2col
    form for convs; the per-channel scale α does not change its rank and is left out."""
    if isinstance(layer, (PackedBinaryConv2d, PackedBinaryLinear)):
        signs = layer.packed_weight().signs()
    else:
        negative, _ = quantized_signs(layer)
        signs = 1.0 - 2.0 * negative.double()
    return signs.double().flatten(1)
