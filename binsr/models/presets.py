"""Named UNet architectures: the papers' settings and small ones that train on a CPU.

Counted with ``binsr complexity`` at a 3×256×256 output (paper Table 2 in brackets):
``bidiffsr`` 4.587 M params (4.58: 3.08 M FP + 48.21 M binary weights / 32), 36.41 G OPs (36.67);
``sr3`` 55.41 M (55.41), 176.06 G (176.41). The remaining −0.7 % / −0.2 % in OPs is below what
elementwise ops (norms count, activations and biases do not) would add; we count MACs of convs,
linears and attention, GroupNorm at 2 ops an element, binary MACs / 64.
"""

from __future__ import annotations

from dataclasses import replace

from binsr.models.resshift_unet import ResShiftUNetConfig
from binsr.models.unet import UNetConfig

UNET_PRESETS: dict[str, UNetConfig] = {
    # BI-DiffSR paper setting: CP-Down/Up, CS-Fusion, K = 5 TaR/TaA groups, FP up path at 256/128.
    "bidiffsr": UNetConfig(),
    # The FP SR3 baseline of BI-DiffSR's Table 2.
    "sr3": UNetConfig(resample="conv", fusion="block", fp_res=()),
    # CPU-sized: 3 levels of 32/64/128 channels, one res block each; FP up path at the top level.
    "bidiffsr-small": UNetConfig(inner_channel=32, channel_mults=(1, 2, 4), res_blocks=1, norm_groups=8, dropout=0.0,
                                 image_size=64, fp_res=(64,)),
    "sr3-small": UNetConfig(inner_channel=32, channel_mults=(1, 2, 4), res_blocks=1, norm_groups=8, dropout=0.0,
                            image_size=64, resample="conv", fusion="block", fp_res=()),
}

# How each UNet preset is binarized (None: full precision). BI-DiffSR: its BI-Conv with K = 5 TaR/TaA
# groups, the FP parts of SRUNet.full_precision_patterns.
BIDIFFSR_BINARIZATION: dict[str, object] = {"method": "bidiffsr", "options": {"timestep_groups": 5}}
UNET_BINARIZATION: dict[str, dict[str, object] | None] = {
    "bidiffsr": BIDIFFSR_BINARIZATION, "sr3": None, "bidiffsr-small": BIDIFFSR_BINARIZATION, "sr3-small": None,
}
# The process T the paper presets' timestep groups are counted against (BI-DiffSR's SR3: 2000 steps).
UNET_TIMESTEPS = 2000


# ResShift / SinSR / BiMaCoSR networks (ResShift, Yue et al. 2023; BiMaCoSR, Liu et al. 2025). Counted at a
# 64×64 latent (a 256×256 output through the VQ-f4 autoencoder, which is not counted): see
# ``binsr complexity --arch bimacosr --size 64``.
RESSHIFT_PRESETS: dict[str, ResShiftUNetConfig] = {
    # The paper's latent-space UNet: 160 channels, (1, 2, 2, 4), Swin layers at every level.
    "resshift": ResShiftUNetConfig(),
    # CPU-sized, pixel space: 32/64/64 channels, one res block a level, Swin layers at the lowest level.
    "resshift-small": ResShiftUNetConfig(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, norm_groups=8,
                                         image_size=64, attn_res=(16,), swin_embed_dim=64, window_size=8),
    # The shipped CPU models: the 4x latent of a lossless space-to-depth autoencoder (48 channels), so the
    # network runs at LR resolution; 64/128/128 channels, Swin layers at the lowest level.
    "resshift-cpu": ResShiftUNetConfig(in_channels=96, out_channels=48, model_channels=64, channel_mult=(1, 2, 2),
                                       num_res_blocks=1, norm_groups=8, image_size=64, attn_res=(16,),
                                       swin_embed_dim=64, window_size=8),
}

# BiMaCoSR's binarization of the student (BiMaCoSR §3): three branches, r = 8, k = 2·max(C_in, C_out),
# everything but the first and last conv binarized.
BIMACOSR_BINARIZATION: dict[str, object] = {"method": "bimacosr", "options": {"rank": 8, "k": "2max"}}


def unet_preset(name: str, **changes: object) -> UNetConfig:
    """A copy of preset ``name`` with ``changes`` applied."""
    return replace(UNET_PRESETS[name], **changes)
