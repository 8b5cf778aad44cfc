"""Training the ``onestep`` pipeline: SinSR one-step distillation of a ResShift teacher file; with
``binarize`` the student (initialised from the teacher, or from ``init``) is binarized first — BiMaCoSR."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from binsr.config import ConfigError, from_dict, to_dict
from binsr.diffusion.distill import DistillConfig, SinSRDistillation
from binsr.errors import BinsrError
from binsr.models.description import apply_binarization
from binsr.pipelines import load_model, load_network, pipeline_type, read_model_spec
from binsr.pipelines.resshift import OneStepUpscaler, ResShiftFamily, ResShiftUpscaler
from binsr.training.recipe import BinarizeConfig, Recipe
from binsr.training.resshift import LatentStates
from binsr.training.tasks import Losses, register_task


@dataclass
class OneStepRecipe(Recipe):
    """An ``onestep`` recipe (formerly ``distill``): :class:`~binsr.training.recipe.Recipe`'s sections and

    ``teacher`` the ResShift teacher's model file (required; the student's architecture, process and
    autoencoder are the teacher's); ``init`` student weights to start from, a teacher or one-step file of
    the same architecture (None: the teacher's); ``binarize``
    :class:`~binsr.training.recipe.BinarizeConfig` or None (full precision: SinSR); ``distill`` the losses'
    weights (:class:`~binsr.diffusion.distill.DistillConfig`).
    """

    teacher: str | None = None
    init: str | None = None
    binarize: BinarizeConfig | None = None
    distill: DistillConfig = field(default_factory=DistillConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OneStepRecipe:
        if data.get("model") or data.get("diffusion"):
            raise ConfigError("a one-step recipe takes its model and diffusion from the teacher: remove "
                              "'model' and 'diffusion'")
        recipe = from_dict(cls, {k: v for k, v in data.items() if k not in ("model", "diffusion")})
        if not recipe.teacher:
            raise ConfigError("task 'onestep' needs 'teacher': the model file of a ResShift teacher")
        recipe.check(data)
        return recipe


@register_task(OneStepUpscaler, OneStepRecipe)
class DistillTask(LatentStates):
    """Student = the teacher's network with the teacher's (or ``init``'s) weights, binarized if asked."""

    def __init__(self, config: OneStepRecipe) -> None:
        self.config = config
        self.teacher_spec = read_model_spec(config.teacher)
        if pipeline_type(self.teacher_spec.kind) is not ResShiftUpscaler:
            raise BinsrError(f"teacher {config.teacher} is not a ResShift teacher (kind {self.teacher_spec.kind!r}); "
                             f"train one with a '{ResShiftUpscaler.kind}' recipe")
        if self.teacher_spec.scale != config.data.scale:
            raise BinsrError(f"teacher {config.teacher} is a x{self.teacher_spec.scale} model but the student is "
                             f"trained for x{config.data.scale} (data.scale)")
        teacher = load_model(config.teacher, spec=self.teacher_spec)
        self.teacher, self.process, self.autoencoder = teacher.network, teacher.process, teacher.autoencoder
        self.teacher.requires_grad_(False).eval()
        init = config.init or config.teacher
        init_spec = teacher.spec if init == config.teacher else read_model_spec(init)
        if (not issubclass(pipeline_type(init_spec.kind), ResShiftFamily) or init_spec.scale != config.data.scale
                or init_spec.packed):
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

    def loss(self, net: nn.Module, lr: torch.Tensor, hr: torch.Tensor,
             generators: Sequence[torch.Generator]) -> Losses:
        x0, y = self.states(lr, hr)
        return self.distillation.loss(net, x0, y, generators)

    def upscaler(self, net: nn.Module) -> OneStepUpscaler:
        return self.pipeline(net, self.process, self.config.data.scale, **self.upscaler_options(self.multiple))

    def spec(self) -> dict[str, Any]:
        network = replace(self.teacher_spec.network, binarize=self.binarization)
        autoencoder = self.teacher_spec.autoencoder
        return {"kind": self.pipeline.kind, "network": network.to_dict(), "process": self.teacher_spec.process.to_dict(),
                "teacher": Path(self.config.teacher).name,
                "autoencoder": autoencoder.to_dict() if autoencoder is not None else None}
