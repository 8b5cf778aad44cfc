"""Training the ``sr3`` pipeline: SR3 / BI-DiffSR, a conditional UNet trained with DDPM (ε-prediction by
default), binarized as the recipe says (BI-DiffSR's BI-Conv for the ``bidiffsr`` presets)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from binsr.config import ConfigError, from_dict, to_dict
from binsr.diffusion.processes import ProcessSpec
from binsr.diffusion.sr3 import SR3, SR3Schedule
from binsr.models.denoiser import bind_timesteps
from binsr.models.description import NetworkSpec, apply_binarization
from binsr.models.unet import UNetConfig
from binsr.pipelines.sr3 import SR3Upscaler
from binsr.training.recipe import BinarizeConfig, Recipe, check_fields, network_from_preset, split_sections
from binsr.training.tasks import Losses, register_task, upsampled

DEFAULT_PRESET = "bidiffsr-unet-small"


@dataclass
class SR3Recipe(Recipe):
    """An ``sr3`` recipe: :class:`~binsr.training.recipe.Recipe`'s sections and

    ``model`` the UNet (:class:`~binsr.models.unet.UNetConfig`; in YAML ``preset: NAME`` and keys over it,
    default preset ``bidiffsr-unet-small``); ``diffusion`` the DDPM schedule
    (:class:`~binsr.diffusion.sr3.SR3Schedule`); ``binarize`` :class:`~binsr.training.recipe.BinarizeConfig`
    or None (default: the preset's own, BI-DiffSR's for the ``bidiffsr`` presets); ``val_steps`` DDIM steps
    of validation sampling (20).
    """

    model: UNetConfig = field(default_factory=UNetConfig)
    diffusion: SR3Schedule = field(default_factory=SR3Schedule)
    binarize: BinarizeConfig | None = None
    val_steps: int = 20

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SR3Recipe:
        rest, (model, diffusion) = split_sections(data, "model", "diffusion")
        preset, model_config = network_from_preset(model, UNetConfig, DEFAULT_PRESET)
        given = rest.get("binarize")
        if isinstance(given, dict) and "method" not in given and preset.binarize:
            # keys without a method (binarize.options.X=…) refine the preset's binarization, never swap its method
            rest["binarize"] = {**preset.binarize, **given,
                                "options": {**preset.binarize.get("options", {}), **given.get("options", {})}}
        recipe = from_dict(cls, rest)
        recipe.model, recipe.diffusion = model_config, from_dict(SR3Schedule, diffusion, "diffusion.")
        if "binarize" not in data:  # the preset's own binarization (BI-DiffSR's BI-Conv)
            default = preset.binarize
            recipe.binarize = from_dict(BinarizeConfig, default, "binarize.") if default else None
        recipe.check(data)
        return recipe

    def patch_multiple(self) -> int | None:
        return self.model.multiple

    def check(self, data: dict[str, Any]) -> None:
        super().check(data)
        check_fields(self, "", val_steps=(1, 10_000))


@register_task(SR3Upscaler, SR3Recipe)
class SR3Task:
    def __init__(self, config: SR3Recipe) -> None:
        if not isinstance(config, SR3Recipe):
            raise ConfigError(f"an sr3 task needs an sr3 recipe, got {type(config).__name__}")
        self.config = config
        network = NetworkSpec.of(config.model).build()
        self.binarization = (apply_binarization(network, to_dict(config.binarize))
                             if config.binarize is not None else None)
        self.model = bind_timesteps(network, config.diffusion.num_timesteps)
        self.diffusion = SR3(config.diffusion)
        self.multiple = config.model.multiple

    def to(self, device: torch.device) -> SR3Task:
        self.model.to(device)
        return self

    def loss(self, net: nn.Module, lr: torch.Tensor, hr: torch.Tensor,
             generators: Sequence[torch.Generator]) -> Losses:
        return self.diffusion.loss(net, hr, upsampled(lr, self.config.data.scale), generators), {}

    def upscaler(self, net: nn.Module) -> SR3Upscaler:
        return SR3Upscaler(net, self.diffusion, self.config.data.scale, steps=self.config.val_steps,
                           multiple=self.multiple)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.pipeline.kind, "network": NetworkSpec.of(self.config.model, self.binarization).to_dict(),
                "process": ProcessSpec.of(self.config.diffusion).to_dict(), "autoencoder": None, "teacher": None}
