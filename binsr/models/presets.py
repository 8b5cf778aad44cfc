"""Named network descriptions: the papers' architectures and small ones that train on a CPU, one registry.

A preset is a registered network type's config, how it is binarized (None: full precision), the process T
its timestep groups count against and how much smaller than the output its input is. ``models.build``,
the recipes' ``model.preset``, ``binsr complexity --arch`` and ``binsr bench --model`` all read
:data:`PRESETS`; adding one is one :func:`register_preset` call. Names end in ``-unet`` and say the method:
a method (``bimacosr``), a preset (``bimacosr-unet``) and a shipped model (``bimacosr-x4``) never share a
name. Counted with ``binsr complexity`` at a 3×256×256 output (BI-DiffSR's Table 2 in brackets):
``bidiffsr-unet`` 4.587 M params (4.58: 3.08 M FP + 48.21 M binary weights / 32), 36.41 G OPs (36.67);
``sr3-unet`` 55.41 M (55.41), 176.06 G (176.41). (We count MACs of convs, linears and attention, GroupNorm
at 2 ops an element, binary MACs / 64; the remaining −0.7 % / −0.2 % is below what elementwise ops would add.)
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from binsr.errors import BinsrWarning
from binsr.models.denoiser import bind_timesteps
from binsr.models.description import NetworkSpec, apply_binarization
from binsr.models.resshift_unet import ResShiftUNetConfig
from binsr.models.unet import UNetConfig
from binsr.utils.registry import Registry


@dataclass(frozen=True)
class NetworkPreset:
    """A named network description.

    Fields: ``name``; ``config`` a registered network type's config dataclass (the type follows from it);
    ``binarize`` ``{"method", "options"}`` of a registered binarization method, completed (FP layers,
    per-layer options) when applied, or None for full precision; ``timesteps`` the process T its timestep
    groups count against (None: not bound); ``latent`` output side / network input side (4: the network
    sees a 64×64 input for a 256×256 output); ``summary`` one line for listings.
    """

    name: str
    config: Any
    binarize: dict[str, Any] | None = None
    timesteps: int | None = None
    latent: int = 1
    summary: str = ""

    @property
    def type(self) -> str:
        """The registered network type of ``config``."""
        return NetworkSpec.of(self.config).type

    def build(self, device: str | torch.device | None = None, **changes: Any) -> nn.Module:
        """A new, untrained network (binarized as described; ``changes``: config fields to override)."""
        config = dataclasses.replace(self.config, **changes) if changes else self.config
        network = NetworkSpec.of(config).build(device)
        if self.binarize is not None:
            apply_binarization(network, self.binarize)
        return bind_timesteps(network, self.timesteps) if self.timesteps else network

    def spec(self) -> NetworkSpec:
        """The complete description (binarization with its FP layers and per-layer options), found on the
        meta device."""
        network = NetworkSpec.of(self.config).build("meta")
        binarization = apply_binarization(network, self.binarize) if self.binarize is not None else None
        return NetworkSpec.of(self.config, binarization)


PRESETS: Registry[NetworkPreset] = Registry("network preset", "binsr.presets")
# names of the previous release -> their new names (still accepted, with one line saying so)
RENAMED = {"bidiffsr": "bidiffsr-unet", "sr3": "sr3-unet", "bidiffsr-small": "bidiffsr-unet-small",
           "sr3-small": "sr3-unet-small", "resshift": "resshift-unet", "resshift-small": "resshift-unet-small",
           "resshift-cpu": "resshift-unet-cpu", "bimacosr": "bimacosr-unet", "bimacosr-small": "bimacosr-unet-small",
           "bimacosr-cpu": "bimacosr-unet-cpu"}


def register_preset(preset: NetworkPreset) -> NetworkPreset:
    return PRESETS.register(preset.name, preset)


def network_preset(name: str) -> NetworkPreset:
    """The preset called ``name`` (an old name: its new one, with a warning; unknown: one error listing them)."""
    if name in RENAMED and name not in PRESETS:
        warnings.warn(f"network preset {name!r} is now called {RENAMED[name]!r}", BinsrWarning, stacklevel=2)
        name = RENAMED[name]
    return PRESETS.get(name)


def presets_of(config_type: type) -> list[str]:
    """The names of the presets whose config is a ``config_type``."""
    return [name for name in PRESETS.names() if isinstance(PRESETS.get(name).config, config_type)]


# BI-DiffSR: its BI-Conv with K = 5 TaR/TaA groups, the FP parts of SRUNet.full_precision_patterns; groups
# counted against SR3's T = 2000.
BIDIFFSR_BINARIZATION: dict[str, Any] = {"method": "bidiffsr", "options": {"timestep_groups": 5}}
SR3_TIMESTEPS = 2000
# BiMaCoSR §3: three branches, r = 8, k = 2·max(C_in, C_out), all but the first and last conv binarized.
BIMACOSR_BINARIZATION: dict[str, Any] = {"method": "bimacosr", "options": {"rank": 8, "k": "2max"}}

_UNET_SMALL = UNetConfig(inner_channel=32, channel_mults=(1, 2, 4), res_blocks=1, norm_groups=8, dropout=0.0,
                         image_size=64, fp_res=(64,))
_SR3 = {"resample": "conv", "fusion": "block", "fp_res": ()}
for _preset in (
    NetworkPreset("bidiffsr-unet", UNetConfig(), BIDIFFSR_BINARIZATION, SR3_TIMESTEPS,
                  summary="BI-DiffSR (paper): CP-Down/Up, CS-Fusion, K = 5 TaR/TaA groups, FP up path at 256/128"),
    NetworkPreset("sr3-unet", UNetConfig(**_SR3), None, SR3_TIMESTEPS,
                  summary="SR3 (paper), the FP baseline of BI-DiffSR's Table 2"),
    NetworkPreset("bidiffsr-unet-small", _UNET_SMALL, BIDIFFSR_BINARIZATION, SR3_TIMESTEPS,
                  summary="BI-DiffSR, CPU-sized: 32/64/128 channels, one res block a level, FP up path at the top"),
    NetworkPreset("sr3-unet-small", dataclasses.replace(_UNET_SMALL, **_SR3), None, SR3_TIMESTEPS,
                  summary="SR3, CPU-sized"),
):
    register_preset(_preset)

# ResShift / SinSR / BiMaCoSR (ResShift, Yue et al. 2023; BiMaCoSR, Liu et al. 2025): the paper's UNet works
# in a VQ-f4 latent (64×64 for a 256×256 output; the autoencoder is not counted).
_RESSHIFT = {
    "": (ResShiftUNetConfig(), 4, "the paper's latent-space UNet: 160 channels, (1, 2, 2, 4), Swin at every level"),
    "-small": (ResShiftUNetConfig(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, norm_groups=8,
                                  image_size=64, attn_res=(16,), swin_embed_dim=64, window_size=8), 1,
               "CPU-sized, pixel space: 32/64/64 channels, one res block a level, Swin at the lowest level"),
    # the shipped CPU models: the 4x latent of a lossless space-to-depth autoencoder (48 channels)
    "-cpu": (ResShiftUNetConfig(in_channels=96, out_channels=48, model_channels=64, channel_mult=(1, 2, 2),
                                num_res_blocks=1, norm_groups=8, image_size=64, attn_res=(16,), swin_embed_dim=64,
                                window_size=8), 4,
             "the shipped CPU models' network: 4x space-to-depth latent, 64/128/128 channels"),
}
for _suffix, (_config, _latent, _summary) in _RESSHIFT.items():
    register_preset(NetworkPreset(f"resshift-unet{_suffix}", _config, None, None, _latent, f"ResShift, {_summary}"))
    register_preset(NetworkPreset(f"bimacosr-unet{_suffix}", _config, BIMACOSR_BINARIZATION, None, _latent,
                                  f"BiMaCoSR (1-bit), {_summary}"))
