"""Model architectures by name, built on :mod:`binsr.binary`.

Networks implement the :class:`~binsr.models.denoiser.Denoiser` contract and are registered by type
(:func:`register_network`); a model file describes one as a :class:`NetworkSpec`. :func:`build` makes a
registered architecture by name; nothing here imports code by a path (only the CLI does, for an
``--arch package.module:factory`` the user types).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from binsr.errors import BinsrError
from binsr.models.autoencoder import Autoencoder, SpaceToDepth, SpaceToDepthConfig
from binsr.models.denoiser import Denoiser, bind_timesteps
from binsr.models.description import AutoencoderSpec, BinarizationSpec, NetworkSpec, apply_binarization
from binsr.models.presets import (
    BIMACOSR_BINARIZATION,
    RESSHIFT_PRESETS,
    UNET_BINARIZATION,
    UNET_PRESETS,
    UNET_TIMESTEPS,
    unet_preset,
)
from binsr.models.registry import AUTOENCODERS, NETWORKS, register_autoencoder, register_network
from binsr.models.resshift_unet import ResShiftUNet, ResShiftUNetConfig
from binsr.models.unet import SRUNet, UNetConfig


def _unet(name: str) -> nn.Module:
    network = NetworkSpec.of(UNET_PRESETS[name]).build()
    if UNET_BINARIZATION[name]:
        apply_binarization(network, UNET_BINARIZATION[name])
    return bind_timesteps(network, UNET_TIMESTEPS)


def _bimacosr(name: str) -> nn.Module:
    network = ResShiftUNet(RESSHIFT_PRESETS[name])
    apply_binarization(network, BIMACOSR_BINARIZATION)
    return network


ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    **{name: (lambda name=name: _unet(name)) for name in UNET_PRESETS},
    **{name: (lambda name=name: ResShiftUNet(RESSHIFT_PRESETS[name])) for name in RESSHIFT_PRESETS},
    # BiMaCoSR students: the ResShift networks binarized the BiMaCoSR way.
    **{name.replace("resshift", "bimacosr"): (lambda name=name: _bimacosr(name)) for name in RESSHIFT_PRESETS},
}


def build(arch: str) -> nn.Module:
    """The registered architecture called ``arch`` (a new, untrained network)."""
    if arch not in ARCHITECTURES:
        raise BinsrError(f"unknown architecture {arch!r} (names: {', '.join(sorted(ARCHITECTURES))}; "
                         f"or give package.module:factory)")
    return ARCHITECTURES[arch]()


__all__ = ["ARCHITECTURES", "AUTOENCODERS", "NETWORKS", "RESSHIFT_PRESETS", "UNET_BINARIZATION", "UNET_PRESETS",
           "Autoencoder", "AutoencoderSpec", "BinarizationSpec", "Denoiser", "NetworkSpec", "ResShiftUNet",
           "ResShiftUNetConfig", "SRUNet", "SpaceToDepth", "SpaceToDepthConfig", "UNetConfig", "apply_binarization",
           "bind_timesteps", "build", "register_autoencoder", "register_network", "unet_preset"]
