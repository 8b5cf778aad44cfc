"""A new binarization method in one file: sign activations against a learnable threshold and sign weights
with one scale per output channel (XNOR-Net's weights, ReActNet's RSign without RPReLU)."""

from __future__ import annotations

from binsr.binary import register_method
from binsr.binary.estimators import ApproxSign
from binsr.binary.methods import Method, binary_layer
from binsr.binary.quantizers import SignActivation, SignWeight

NAME = "test-rsign"


def _activation(channels: int, channel_dim: int) -> SignActivation:
    return SignActivation(ApproxSign(), channels=channels, channel_dim=channel_dim)


register_method(Method(NAME, "RSign activations, per-channel sign weights",
                       lambda layer, options: binary_layer(layer, _activation, SignWeight("channel"))))
