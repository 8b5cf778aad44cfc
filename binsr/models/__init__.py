"""Model architectures by name, built on :mod:`binsr.binary`.

:func:`build` takes a registered architecture name or an import path ``package.module:factory``
(any callable returning an ``nn.Module``), so tools such as ``binsr complexity`` work on any model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from binsr.errors import BinsrError
from binsr.models.networks import apply_binarization, build_network, describe_network
from binsr.models.presets import BIMACOSR_BINARIZATION, RESSHIFT_PRESETS, UNET_PRESETS, unet_preset
from binsr.models.resshift_unet import ResShiftUNet, ResShiftUNetConfig
from binsr.models.unet import SRUNet, UNetConfig, build_unet

ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    **{name: (lambda name=name: build_unet(unet_preset(name))) for name in UNET_PRESETS},
    **{name: (lambda name=name: ResShiftUNet(RESSHIFT_PRESETS[name])) for name in RESSHIFT_PRESETS},
    # BiMaCoSR students: the ResShift networks binarized the BiMaCoSR way.
    **{name.replace("resshift", "bimacosr"): (lambda name=name: apply_binarization(
        ResShiftUNet(RESSHIFT_PRESETS[name]), BIMACOSR_BINARIZATION)[0]) for name in RESSHIFT_PRESETS},
}


def build(arch: str) -> nn.Module:
    """The model called ``arch`` (registered name) or made by ``package.module:factory``."""
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]()
    if ":" not in arch:
        known = ", ".join(sorted(ARCHITECTURES)) or "none registered yet"
        raise BinsrError(f"unknown architecture {arch!r} (names: {known}; or give package.module:factory)")
    module_name, _, attr = arch.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise BinsrError(f"cannot import architecture {arch!r}: {err}") from None
    model = factory()
    if not isinstance(model, nn.Module):
        raise BinsrError(f"{arch!r} returned {type(model).__name__}, not an nn.Module")
    return model


__all__ = ["ARCHITECTURES", "RESSHIFT_PRESETS", "UNET_PRESETS", "ResShiftUNet", "ResShiftUNetConfig", "SRUNet",
           "UNetConfig", "apply_binarization", "build", "build_network", "build_unet", "describe_network",
           "unet_preset"]
