"""What a recipe trains: the network, its loss on an (LR, HR) batch, its validation upscaler and the
model-file spec. The engine (:mod:`binsr.training.engine`) runs any of them the same way.

* :class:`SR3Task` — SR3 / BI-DiffSR (DDPM, ε-prediction by default);
* :class:`ResShiftTask` — a ResShift teacher (x₀-prediction, T = 15);
* :class:`DistillTask` — SinSR one-step distillation of a ResShift teacher file; with ``binarize`` the
  student (initialised from the teacher, or from ``init``) is binarized first — BiMaCoSR.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from binsr.models.autoencoder import load_autoencoder
from binsr.models.files import load_weights, read_spec
from binsr.models.networks import apply_binarization, build_network, describe_network
from binsr.models.resshift_unet import ResShiftUNet
from binsr.models.unet import build_unet
from binsr.pipelines import load_resshift_model
from binsr.pipelines.diffusion import DiffusionUpscaler, OneStepUpscaler, ResShiftUpscaler, SR3Upscaler
from binsr.training.config import TrainConfig

Losses = tuple[torch.Tensor, dict[str, float]]


def upsampled(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The condition every task uses: MATLAB-bicubic LR upsampled to HR size, in [0, 1]."""
    return imresize(lr, float(scale)).clamp(0, 1)


class SR3Task:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.model = build_unet(config.model)
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
        return {"kind": "sr3", "unet": to_dict(self.config.model), "diffusion": to_dict(self.config.diffusion)}


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
        self.model = ResShiftUNet(config.model)
        self.process = ResShift(config.diffusion)
        self.multiple = config.model.multiple
        self.autoencoder = load_autoencoder(config.autoencoder) if config.autoencoder else None
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
        return {"kind": "resshift", "network": describe_network(self.config.model),
                "diffusion": to_dict(self.config.diffusion), "autoencoder": self.config.autoencoder}


class DistillTask(_LatentStates):
    """Student = the teacher's network with the teacher's (or ``init``'s) weights, binarized if asked."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        teacher_spec = read_spec(config.teacher)
        if teacher_spec.get("kind") != "resshift":
            raise BinsrError(f"teacher {config.teacher} is not a ResShift teacher (kind {teacher_spec.get('kind')!r}); "
                             f"train one with a 'resshift' recipe")
        if teacher_spec["scale"] != config.data.scale:
            raise BinsrError(f"teacher {config.teacher} is a x{teacher_spec['scale']} model but the student is "
                             f"trained for x{config.data.scale} (data.scale)")
        self.teacher, self.process = load_resshift_model(config.teacher, teacher_spec)
        self.teacher.requires_grad_(False).eval()
        self.teacher_spec = teacher_spec
        arch = teacher_spec.get("autoencoder")
        self.autoencoder = load_autoencoder(arch) if arch else None
        init = config.init or config.teacher
        init_spec = teacher_spec if init == config.teacher else read_spec(init)
        if init_spec.get("kind") not in ("resshift", "onestep") or init_spec["scale"] != config.data.scale:
            raise BinsrError(f"init {init} is not a x{config.data.scale} ResShift teacher or one-step student")
        if init_spec["network"]["config"] != teacher_spec["network"]["config"]:
            raise BinsrError(f"init {init} has another architecture than the teacher {config.teacher}")
        self.model = build_network(init_spec["network"])
        load_weights(self.model, init)
        self.binarization = init_spec["network"].get("binarize")
        if config.binarize is not None:
            if self.binarization:
                raise BinsrError(f"init {init} is already binarized ({self.binarization['method']}); drop 'binarize'")
            _, self.binarization = apply_binarization(self.model, to_dict(config.binarize))
        self.distillation = SinSRDistillation(self.process, self.teacher, config.distill)
        self.multiple = self.model.config.multiple

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
        network = {**self.teacher_spec["network"], "binarize": self.binarization}
        return {"kind": "onestep", "network": network, "diffusion": self.teacher_spec["diffusion"],
                "teacher": Path(self.config.teacher).name, "autoencoder": self.teacher_spec.get("autoencoder")}


def make_task(config: TrainConfig) -> SR3Task | ResShiftTask | DistillTask:
    return {"sr3": SR3Task, "resshift": ResShiftTask, "distill": DistillTask}[config.task](config)
