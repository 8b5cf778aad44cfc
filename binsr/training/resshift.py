"""Training the ``resshift`` pipeline: a full-precision ResShift teacher (x₀-prediction, T steps), in pixel
space or in a registered autoencoder's latent space."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from binsr.config import ConfigError, from_dict
from binsr.diffusion.processes import ProcessSpec
from binsr.diffusion.resshift import ResShift, ResShiftSchedule, to_model_range
from binsr.errors import BinsrError
from binsr.models.denoiser import bind_timesteps
from binsr.models.description import AutoencoderSpec, NetworkSpec
from binsr.models.resshift_unet import ResShiftUNetConfig
from binsr.pipelines.resshift import ResShiftUpscaler
from binsr.training.recipe import Recipe, network_from_preset, split_sections
from binsr.training.tasks import Losses, register_task, upsampled


DEFAULT_PRESET = "resshift-unet"


@dataclass
class ResShiftRecipe(Recipe):
    """A ``resshift`` recipe: :class:`~binsr.training.recipe.Recipe`'s sections and

    ``model`` the network (:class:`~binsr.models.resshift_unet.ResShiftUNetConfig`; in YAML ``preset: NAME``
    and keys over it, default ``resshift-unet``); ``diffusion`` the process
    (:class:`~binsr.diffusion.resshift.ResShiftSchedule`); ``autoencoder`` a registered autoencoder, by name or
    ``{type, config}``, for a latent model (None: pixel space).
    """

    model: ResShiftUNetConfig = field(default_factory=ResShiftUNetConfig)
    diffusion: ResShiftSchedule = field(default_factory=ResShiftSchedule)
    autoencoder: str | dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResShiftRecipe:
        if data.get("binarize") is not None:
            raise ConfigError("a ResShift teacher trains in full precision: binarize its one-step student "
                              "(task 'onestep')")
        rest, (model, diffusion) = split_sections(data, "model", "diffusion")
        rest.pop("binarize", None)
        preset, model_config = network_from_preset(model, ResShiftUNetConfig, DEFAULT_PRESET)
        if preset.binarize is not None:
            raise ConfigError(f"model.preset {preset.name!r} is binarized; a ResShift teacher trains in full "
                              f"precision: choose a resshift-unet preset")
        recipe = from_dict(cls, rest)
        recipe.model, recipe.diffusion = model_config, from_dict(ResShiftSchedule, diffusion, "diffusion.")
        recipe.check(data)
        return recipe

    def patch_multiple(self) -> int | None:
        return self.model.multiple


def recipe_autoencoder(value: str | dict[str, Any] | None) -> AutoencoderSpec | None:
    """A recipe's ``autoencoder``: a registered name, or ``{type, config}`` with some config values."""
    if value is None:
        return None
    if isinstance(value, str):
        return AutoencoderSpec.named(value)
    unknown = set(value) - {"type", "config"}
    if unknown or "type" not in value:
        raise BinsrError(f"autoencoder must be a registered name or {{type, config}}, got keys {sorted(value)}")
    return AutoencoderSpec.named(value["type"], value.get("config"))


class LatentStates:
    """x₀ and y of a ResShift-family task: [-1, 1] pixels, or an autoencoder's latents of them."""

    autoencoder: nn.Module | None
    config: Recipe

    def states(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x0, y = to_model_range(hr), to_model_range(upsampled(lr, self.config.data.scale))
        if self.autoencoder is None:
            return x0, y
        with torch.no_grad():
            return self.autoencoder.encode(x0), self.autoencoder.encode(y)

    def upscaler_options(self, multiple: int) -> dict[str, Any]:
        factor = self.autoencoder.factor if self.autoencoder is not None else 1
        return {"autoencoder": self.autoencoder, "multiple": multiple * factor}


@register_task(ResShiftUpscaler, ResShiftRecipe)
class ResShiftTask(LatentStates):
    def __init__(self, config: ResShiftRecipe) -> None:
        self.config = config
        self.model = bind_timesteps(NetworkSpec.of(config.model).build(), config.diffusion.num_timesteps)
        self.process = ResShift(config.diffusion)
        self.multiple = config.model.multiple
        self.autoencoder_spec = recipe_autoencoder(config.autoencoder)
        self.autoencoder = self.autoencoder_spec.build() if self.autoencoder_spec is not None else None
        channels = self.autoencoder.latent_channels if self.autoencoder is not None else 3
        if (config.model.in_channels, config.model.out_channels) != (2 * channels, channels):
            raise BinsrError(f"model.in_channels / out_channels must be {2 * channels} / {channels} for "
                             f"{channels}-channel states, got {config.model.in_channels} / {config.model.out_channels}")

    def to(self, device: torch.device) -> ResShiftTask:
        self.model.to(device)
        if self.autoencoder is not None:
            self.autoencoder.to(device)
        return self

    def loss(self, net: nn.Module, lr: torch.Tensor, hr: torch.Tensor,
             generators: Sequence[torch.Generator]) -> Losses:
        x0, y = self.states(lr, hr)
        return self.process.loss(net, x0, y, generators), {}

    def upscaler(self, net: nn.Module) -> ResShiftUpscaler:
        return self.pipeline(net, self.process, self.config.data.scale, **self.upscaler_options(self.multiple))

    def spec(self) -> dict[str, Any]:
        autoencoder = self.autoencoder_spec.to_dict() if self.autoencoder_spec is not None else None
        return {"kind": self.pipeline.kind, "network": NetworkSpec.of(self.config.model).to_dict(),
                "process": ProcessSpec.of(self.config.diffusion).to_dict(), "autoencoder": autoencoder,
                "teacher": None}
