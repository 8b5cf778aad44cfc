"""Model architectures by name, built on :mod:`binsr.binary`.

Networks implement the :class:`~binsr.models.denoiser.Denoiser` contract and are registered by type
(:func:`register_network`); a model file describes one as a :class:`NetworkSpec`; named descriptions are
presets (:data:`PRESETS`), and :func:`build` makes one by name. Nothing here imports code by a path (only
the CLI does, for an ``--arch package.module:factory`` the user types).
"""

from __future__ import annotations

from torch import nn

from binsr.models.autoencoder import Autoencoder, SpaceToDepth, SpaceToDepthConfig
from binsr.models.denoiser import Denoiser, bind_timesteps
from binsr.models.description import AutoencoderSpec, BinarizationSpec, NetworkSpec, apply_binarization
from binsr.models.presets import PRESETS, NetworkPreset, network_preset, register_preset
from binsr.models.registry import AUTOENCODERS, NETWORKS, register_autoencoder, register_network
from binsr.models.resshift_unet import ResShiftUNet, ResShiftUNetConfig
from binsr.models.unet import SRUNet, UNetConfig


def build(name: str) -> nn.Module:
    """A new, untrained network of the preset called ``name`` (see :data:`PRESETS`)."""
    return network_preset(name).build()


__all__ = ["AUTOENCODERS", "NETWORKS", "PRESETS", "Autoencoder", "AutoencoderSpec", "BinarizationSpec", "Denoiser",
           "NetworkPreset", "NetworkSpec", "ResShiftUNet", "ResShiftUNetConfig", "SRUNet", "SpaceToDepth",
           "SpaceToDepthConfig", "UNetConfig", "apply_binarization", "bind_timesteps", "build", "network_preset",
           "register_autoencoder", "register_network", "register_preset"]
