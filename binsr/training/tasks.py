"""What a recipe trains: the network, its loss on an (LR, HR) batch, its validation upscaler and the
model-file spec. The engine (:mod:`binsr.training.engine`) runs any of them the same way.

* :class:`SR3Task` — SR3 / BI-DiffSR (DDPM, ε-prediction by default);
* :class:`ResShiftTask` — a ResShift teacher (x₀-prediction, T = 15);
* :class:`DistillTask` — SinSR one-step distillation of a ResShift teacher file; with ``binarize`` the
  student (initialised from the teacher, or from ``init``) is binarized first — BiMaCoSR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from binsr.config import to_dict
from binsr.diffusion.distill import SinSRDistillation
from binsr.diffusion.resshift import ResShift, to_model_range
from binsr.diffusion.sr3 import SR3
from binsr.errors import BinsrError
from binsr.image.resize import imresize
from binsr.diffusion.processes import ProcessSpec
from binsr.models.denoiser import bind_timesteps
from binsr.models.description import AutoencoderSpec, BinarizationSpec, NetworkSpec, apply_binarization
from binsr.pipelines import load_model, load_network, read_model_spec
from binsr.pipelines.diffusion import DiffusionUpscaler, OneStepUpscaler, ResShiftUpscaler, SR3Upscaler
from binsr.training.config import TrainConfig

Losses = tuple[torch.Tensor, dict[str, float]]


def upsampled(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The condition every task uses: MATLAB-bicubic LR upsampled to HR size, in [0, 1]."""
    return imresize(lr, float(scale)).clamp(0, 1)


def sr3_network(config: TrainConfig) -> tuple[nn.Module, BinarizationSpec | None]:
    """The UNet of an sr3 recipe, binarized as its ``binarize`` says, bound to its process's T."""
    network = NetworkSpec.of(config.model).build()
    binarization = apply_binarization(network, to_dict(config.binarize)) if config.binarize is not None else None
    return bind_timesteps(network, config.diffusion.num_timesteps), binarization


class SR3Task:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.model, self.binarization = sr3_network(config)
        self.diffusion = SR3(config.diffusion)
        self.multiple = config.model.multiple

    def to(self, device: torch.device) -> SR3Task:
        self.model.to(device)
        return self

    def loss(self, net: nn.Module, lr: torch.Tensor, hr: torch.Tensor, generators: Sequence[torch.Generator]) -> Losses:
        loss = self.diffusion.loss(net, hr, upsampled(lr, self.config.data.scale), generators)
        return loss, {}

    def upscaler(self, net: nn.Module) -> DiffusionUpscaler:
        return SR3Upscaler(net, self.diffusion, self.config.data.scale, steps=self.config.val_steps,
                           multiple=self.multiple)

    def spec(self) -> dict[str, Any]:
        return {"kind": "sr3", "network": NetworkSpec.of(self.config.model, self.binarization).to_dict(),
                "process": ProcessSpec.of(self.config.diffusion).to_dict(), "autoencoder": None, "teacher": None}


class _LatentStates:
    """x₀ and y of a ResShift task: [-1, 1] pixels, or an autoencoder's latents of them."""

    autoencoder: nn.Module | None
    config: TrainConfig

    def states(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x0, y = to_model_range(hr), to_model_range(upsampled(lr, self.config.data.scale))
        if self.autoencoder is None:
            return x0, y
        with torch.no_grad():
            return self.autoencoder.encode(x0), self.autoencoder.encode(y)

    def upscaler_options(self, multiple: int) -> dict[str, Any]:
        factor = self.autoencoder.factor if self.autoencoder is not None else 1
        return {"autoencoder": self.autoencoder, "multiple": multiple * factor}


class ResShiftTask(_LatentStates):
    def __init__(self, config: TrainConfig) -> None:
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

    def loss(self, net: nn.Module, lr: torch.Tensor, hr: torch.Tensor, generators: Sequence[torch.Generator]) -> Losses:
        x0, y = self.states(lr, hr)
        return self.process.loss(net, x0, y, generators), {}

    def upscaler(self, net: nn.Module) -> DiffusionUpscaler:
        return ResShiftUpscaler(net, self.process, self.config.data.scale, **self.upscaler_options(self.multiple))

    def spec(self) -> dict[str, Any]:
        autoencoder = self.autoencoder_spec.to_dict() if self.autoencoder_spec is not None else None
        return {"kind": "resshift", "network": NetworkSpec.of(self.config.model).to_dict(),
                "process": ProcessSpec.of(self.config.diffusion).to_dict(), "autoencoder": autoencoder,
                "teacher": None}


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


class DistillTask(_LatentStates):
    """Student = the teacher's network with the teacher's (or ``init``'s) weights, binarized if asked."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.teacher_spec = read_model_spec(config.teacher)
        if self.teacher_spec.kind != "resshift":
            raise BinsrError(f"teacher {config.teacher} is not a ResShift teacher (kind {self.teacher_spec.kind!r}); "
                             f"train one with a 'resshift' recipe")
        if self.teacher_spec.scale != config.data.scale:
            raise BinsrError(f"teacher {config.teacher} is a x{self.teacher_spec.scale} model but the student is "
                             f"trained for x{config.data.scale} (data.scale)")
        teacher = load_model(config.teacher, spec=self.teacher_spec)
        self.teacher, self.process, self.autoencoder = teacher.network, teacher.process, teacher.autoencoder
        self.teacher.requires_grad_(False).eval()
        init = config.init or config.teacher
        init_spec = teacher.spec if init == config.teacher else read_model_spec(init)
        if init_spec.kind not in ("resshift", "onestep") or init_spec.scale != config.data.scale or init_spec.packed:
            raise BinsrError(f"init {init} is not a x{config.data.scale} ResShift teacher or one-step student "
                             f"with trainable weights")
        if init_spec.network.config != teacher.spec.network.config:
            raise BinsrError(f"init {init} has another architecture than the teacher {config.teacher}")
        self.model = load_network(init, init_spec)
        self.binarization = init_spec.network.binarize
        if config.binarize is not None:
            if self.binarization:
                raise BinsrError(f"init {init} is already binarized ({self.binarization.method}); drop 'binarize'")
            self.binarization = apply_binarization(self.model, to_dict(config.binarize))
        self.distillation = SinSRDistillation(self.process, self.teacher, config.distill)
        self.multiple = self.model.multiple

    def to(self, device: torch.device) -> DistillTask:
        for part in (self.model, self.teacher, self.autoencoder):
            if part is not None:
                part.to(device)
        return self

    def loss(self, net: nn.Module, lr: torch.Tensor, hr: torch.Tensor, generators: Sequence[torch.Generator]) -> Losses:
        x0, y = self.states(lr, hr)
        return self.distillation.loss(net, x0, y, generators)

    def upscaler(self, net: nn.Module) -> DiffusionUpscaler:
        return OneStepUpscaler(net, self.process, self.config.data.scale, **self.upscaler_options(self.multiple))

    def spec(self) -> dict[str, Any]:
        network = replace(self.teacher_spec.network, binarize=self.binarization)
        autoencoder = self.teacher_spec.autoencoder
        return {"kind": "onestep", "network": network.to_dict(), "process": self.teacher_spec.process.to_dict(),
                "teacher": Path(self.config.teacher).name,
                "autoencoder": autoencoder.to_dict() if autoencoder is not None else None}


def make_task(config: TrainConfig) -> SR3Task | ResShiftTask | DistillTask:
    return {"sr3": SR3Task, "resshift": ResShiftTask, "distill": DistillTask}[config.task](config)
