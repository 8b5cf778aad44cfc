"""A new network preset in one file: a tiny full-precision ResShift UNet."""

from __future__ import annotations

from binsr.models import ResShiftUNetConfig, register_preset
from binsr.models.presets import NetworkPreset

NAME = "test-resshift-unet-tiny"

register_preset(NetworkPreset(
    NAME, ResShiftUNetConfig(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, norm_groups=8, image_size=32,
                             attn_res=(16,), swin_embed_dim=32, head_channels=16, window_size=4),
    summary="ResShift, a test's tiny UNet"))
