"""Quantizers: what a binary layer does to its input activations and to its latent weights.

Each is a small module — a forward rule, a backward :mod:`estimator <binsr.binary.estimators>`,
optional scaling and learnable parts — in the manner of Larq/Brevitas, so a binarization method is a
choice of quantizers rather than a copy of a layer.

Activation quantizers take a tensor whose channels lie on ``channel_dim`` (1 for convs, -1 for
linears); weight quantizers take the (C_out, C_in, ...) weight. Every quantizer declares what it stores:
weight quantizers ``bits`` (sign planes per weight), activation quantizers ``planes``, and activation
quantizers with a packed form say what it is (:meth:`packed_input`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from binsr.binary.estimators import ApproxSign, ClippedSTE, Estimator, binarize_sign, sign, straight_through
from binsr.errors import BinsrError


@dataclass(frozen=True)
class PackedInput:
    """How bit-packed inference binarizes a layer's input: sign(x − threshold) (threshold (C,) or None),
    times the per-pixel mean |x| over channels when ``pixel_scale``."""

    threshold: torch.Tensor | None
    pixel_scale: bool


def _channel_view(values: torch.Tensor, ndim: int, channel_dim: int) -> torch.Tensor:
    """(C,) → a shape broadcasting along ``channel_dim`` of an ``ndim``-d tensor."""
    shape = [1] * ndim
    shape[channel_dim] = -1
    return values.view(shape)


def _per_output(weight: torch.Tensor, reduce: torch.Tensor) -> torch.Tensor:
    """Reduce over all dims but the first (output channel), keeping dims: (C_out, 1, ...)."""
    return reduce.mean(dim=tuple(range(1, weight.dim())), keepdim=True)


# --- activation quantizers ---------------------------------------------------------------------


class SignActivation(nn.Module):
    """sign(x − β): plain sign (β = 0, BNN/XNOR) or with a learnable per-channel threshold β
    (ReActNet's RSign, BBCU; BiDM's sign(x + τ) is the same with τ = −β). Backward: ``estimator``."""

    planes = 1

    def __init__(self, estimator: Estimator | None = None, channels: int | None = None, channel_dim: int = 1) -> None:
        super().__init__()
        self.estimator = estimator or ApproxSign()
        self.channel_dim = channel_dim
        self.threshold = nn.Parameter(torch.zeros(channels)) if channels else None

    def packed_input(self) -> PackedInput:
        """The packed kernels' form of this rule: sign(x − β), β the threshold (or none)."""
        return PackedInput(threshold=self.threshold, pixel_scale=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.threshold is not None:
            x = x - _channel_view(self.threshold, x.dim(), self.channel_dim)
        return binarize_sign(x, self.estimator)


class ResidualSignActivation(nn.Module):
    """HORQ order N on activations: x ≈ Σᵢ βᵢ·sign(Rᵢ), R₁ = x, Rᵢ₊₁ = Rᵢ − βᵢ·sign(Rᵢ), with βᵢ the
    per-pixel (per-token) mean of |Rᵢ| over channels (detached). Order 1 is BiMaCoSR's BMB input."""

    def __init__(self, order: int = 1, estimator: Estimator | None = None, channel_dim: int = 1) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"HORQ order must be at least 1, got {order}")
        self.order = order
        self.estimator = estimator or ApproxSign()
        self.channel_dim = channel_dim

    @property
    def planes(self) -> int:
        return self.order

    def packed_input(self) -> PackedInput:
        """Order 1 is one sign plane times a per-pixel scale; higher orders have no 1-bit packed form."""
        if self.order != 1:
            raise BinsrError(f"its input quantizer (ResidualSignActivation, order {self.order}) has no 1-bit packed form")
        return PackedInput(threshold=None, pixel_scale=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual, total = x, torch.zeros_like(x)
        for _ in range(self.order):
            beta = residual.abs().mean(dim=self.channel_dim, keepdim=True).detach()
            term = beta * binarize_sign(residual, self.estimator)
            total = total + term
            residual = residual - term
        return total


# --- output scaling from the input -------------------------------------------------------------


class InputMagnitudeScale(nn.Module):
    """XNOR-Net's K (also BiDM's): per output position, the mean |x| over channels averaged over the
    layer's receptive field (a k×k box with the conv's stride and padding). Multiplies the output."""

    def __init__(self, kernel_size: tuple[int, int] = (1, 1), stride: tuple[int, int] = (1, 1),
                 padding: tuple[int, int] = (0, 0), channel_dim: int = 1) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = tuple(kernel_size), tuple(stride), tuple(padding)
        self.channel_dim = channel_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        magnitude = x.abs().mean(dim=self.channel_dim, keepdim=True)
        if self.channel_dim != 1 or magnitude.dim() != 4:
            return magnitude  # linear layers: one receptive field per token
        return F.avg_pool2d(magnitude, self.kernel_size, self.stride, self.padding, count_include_pad=True)


# --- weight quantizers -------------------------------------------------------------------------


class SignWeight(nn.Module):
    """α·sign(W) with α = mean|W| per output channel ("channel", XNOR/BI-DiffSR), one E|W| for the
    whole layer ("layer", DoReFa) or 1 (None, BNN); α detached. Backward straight through to W
    with ``estimator`` (clipped STE: the gradient of clip(W, −1, 1)), not scaled by α."""

    bits = 1

    def __init__(self, scale: str | None = "channel", estimator: Estimator | None = None) -> None:
        super().__init__()
        if scale not in ("channel", "layer", None):
            raise ValueError(f"scale must be 'channel', 'layer' or None, got {scale!r}")
        self.scale = scale
        self.estimator = estimator or ClippedSTE()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        value = sign(weight)
        if self.scale == "channel":
            value = value * _per_output(weight, weight.abs())
        elif self.scale == "layer":
            value = value * weight.abs().mean()
        return straight_through(weight, value, self.estimator)


class LibraWeight(nn.Module):
    """IR-Net's Libra-PB: standardise each output channel, Ŵ = (W − mean)/std, then
    sign(Ŵ)·2^round(log2 mean|Ŵ|) (a power-of-two scale, detached). Backward through the
    standardisation, with EDE at Ŵ."""

    bits = 1

    def __init__(self, estimator: Estimator, eps: float = 1e-8) -> None:
        super().__init__()
        self.estimator = estimator
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        centred = weight - _per_output(weight, weight)
        std = centred.pow(2).mean(dim=tuple(range(1, weight.dim())), keepdim=True).sqrt()
        standardised = centred / (std + self.eps)
        scale = torch.pow(2.0, torch.round(torch.log2(_per_output(weight, standardised.abs()))))
        return straight_through(standardised, sign(standardised) * scale, self.estimator)


class ResidualSignWeight(nn.Module):
    """HORQ order N on weights: W ≈ Σᵢ αᵢ·sign(Rᵢ), αᵢ = mean|Rᵢ| per output channel; order 1 is
    XNOR's α·sign(W). Backward straight through to W with ``estimator`` (clipped STE)."""

    def __init__(self, order: int = 1, estimator: Estimator | None = None) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"HORQ order must be at least 1, got {order}")
        self.order = order
        self.estimator = estimator or ClippedSTE()

    @property
    def bits(self) -> int:
        return self.order

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            residual, total = weight, torch.zeros_like(weight)
            for _ in range(self.order):
                term = _per_output(residual, residual.abs()) * sign(residual)
                total += term
                residual = residual - term
        return straight_through(weight, total, self.estimator)


def weight_bits(quantizer: nn.Module | None) -> int:
    """Bits per latent weight entry that a weight quantizer declares (``bits``; 0: full precision)."""
    return 0 if quantizer is None else int(quantizer.bits)


def activation_planes(quantizer: nn.Module | None) -> int:
    """Binary planes an activation quantizer declares (``planes``; 0: full-precision input)."""
    return 0 if quantizer is None else int(quantizer.planes)


__all__ = [
    "InputMagnitudeScale",
    "LibraWeight",
    "PackedInput",
    "ResidualSignActivation",
    "ResidualSignWeight",
    "SignActivation",
    "SignWeight",
    "activation_planes",
    "weight_bits",
]
