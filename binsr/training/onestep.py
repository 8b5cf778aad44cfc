"""Training the ``onestep`` pipeline: a one-step student distilled from a teacher.

* A ResShift teacher file: SinSR one-step distillation of its T-step map; with ``binarize`` the student
  (initialised from the teacher, or from ``init``) is binarized first — BiMaCoSR.
* Any other registered upscaler (a peer such as ``realesrgan-x4plus``, a shipped model, a model file of
  another kind): the student (``init``, required) learns the teacher's images
  (:mod:`binsr.training.imitation`), the losses in the recipe's ``imitate`` section.
"""

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
from binsr.pipelines import available, is_peer, load, load_model, load_network, model_scale, pipeline_type, read_model_spec, resolve
from binsr.pipelines.model_file import ModelSpec
from binsr.pipelines.resshift import OneStepUpscaler, ResShiftFamily, ResShiftUpscaler
from binsr.training.imitation import ImitationConfig, UpscalerImitation, teacher_fingerprint
from binsr.training.recipe import BinarizeConfig, Recipe
from binsr.training.resshift import LatentStates
from binsr.training.tasks import Losses, register_task


@dataclass
class OneStepRecipe(Recipe):
    """An ``onestep`` recipe (formerly ``distill``): :class:`~binsr.training.recipe.Recipe`'s sections and

    ``teacher`` a ResShift teacher's model file (SinSR: the student's architecture, process and autoencoder
    are the teacher's), or any other upscaler by name or file (required); ``init`` student weights to start
    from, a teacher or one-step file of the same architecture (None: the ResShift teacher's; required for
    another teacher); ``binarize`` :class:`~binsr.training.recipe.BinarizeConfig` or None (full precision:
    SinSR); ``distill`` SinSR's loss weights (:class:`~binsr.diffusion.distill.DistillConfig`), for a
    ResShift teacher; ``imitate`` the losses for another teacher
    (:class:`~binsr.training.imitation.ImitationConfig`; None: its defaults).
    """

    teacher: str | None = None
    init: str | None = None
    binarize: BinarizeConfig | None = None
    distill: DistillConfig = field(default_factory=DistillConfig)
    imitate: ImitationConfig | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OneStepRecipe:
        if data.get("model") or data.get("diffusion"):
            raise ConfigError("a one-step recipe takes its model and diffusion from the teacher: remove "
                              "'model' and 'diffusion'")
        recipe = from_dict(cls, {k: v for k, v in data.items() if k not in ("model", "diffusion")})
        if not recipe.teacher:
            raise ConfigError("task 'onestep' needs 'teacher': a ResShift teacher's model file, or an upscaler "
                              "to imitate (a name or a model file)")
        recipe.check(data)
        return recipe

    def input_models(self) -> dict[str, str]:
        return {role: ref for role, ref in (("teacher", self.teacher), ("init", self.init)) if ref}


def resshift_teacher(teacher: str) -> ModelSpec | None:
    """The spec of ``teacher`` when it is a ResShift teacher's model file (SinSR), else None."""
    if is_peer(teacher) or teacher == "bicubic":
        return None
    spec = read_model_spec(resolve(teacher))
    return spec if pipeline_type(spec.kind) is ResShiftUpscaler else None


def _student_spec(init: str, spec: ModelSpec | None, scale: int) -> ModelSpec:
    """The spec of the student's starting file ``init`` (``spec`` when already read), which must be a x``scale``
    ResShift-family file with trainable weights."""
    spec = spec or read_model_spec(resolve(init))
    if not issubclass(pipeline_type(spec.kind), ResShiftFamily) or spec.scale != scale or spec.packed:
        raise BinsrError(f"init {init} is not a x{scale} ResShift teacher or one-step student with trainable "
                         f"weights")
    return spec


def _required_file(option: str, value: str) -> None:
    """Raise if recipe key ``option`` names a model file that does not exist, saying which preset recipe writes
    it where its path is a run's (``runs/NAME/model.safetensors``)."""
    if value == "bicubic" or is_peer(value) or value in available():
        return
    path = Path(value)
    if path.exists():
        return
    from binsr.training.config import preset_names

    made_by = path.parent.name if path.name == "model.safetensors" and path.parent.name in preset_names() else None
    hint = f"; it is what 'binsr train {made_by}' writes: train that recipe first" if made_by else ""
    raise BinsrError(f"{option} {value}: no such model file{hint}")


@register_task(OneStepUpscaler, OneStepRecipe)
class DistillTask(LatentStates):
    """Student = ``init``'s network (or the ResShift teacher's), binarized if asked; its loss is SinSR's for a
    ResShift teacher and :class:`~binsr.training.imitation.UpscalerImitation` for any other upscaler."""

    def __init__(self, config: OneStepRecipe) -> None:
        self.config = config
        scale = config.data.scale
        for option, value in (("teacher", config.teacher), ("init", config.init)):
            if value:
                _required_file(option, value)
        self.teacher_spec = resshift_teacher(config.teacher)
        self.teacher: nn.Module | None = None  # a ResShift teacher's network (another teacher: in imitation)
        if self.teacher_spec is not None:
            if self.teacher_spec.scale != scale:
                raise BinsrError(f"teacher {config.teacher} is a x{self.teacher_spec.scale} model but the student is "
                                 f"trained for x{scale} (data.scale)")
            if config.imitate is not None:
                raise BinsrError(f"teacher {config.teacher} is a ResShift teacher: its losses are 'distill' "
                                 f"(SinSR), not 'imitate'")
            teacher = load_model(config.teacher, spec=self.teacher_spec)
            self.teacher, self.process, self.autoencoder = teacher.network, teacher.process, teacher.autoencoder
            self.teacher.requires_grad_(False).eval()
            init = config.init or config.teacher
            spec = self.student_spec = _student_spec(init, teacher.spec if init == config.teacher else None, scale)
            if spec.network.config != self.teacher_spec.network.config:
                raise BinsrError(f"init {init} has another architecture than the teacher {config.teacher}")
            self.model = load_network(resolve(init), spec)
            self.distillation = SinSRDistillation(self.process, self.teacher, config.distill)
        else:
            if not config.init:
                raise BinsrError(f"teacher {config.teacher} is not a ResShift teacher: name the student's model "
                                 f"file as 'init' (a x{scale} ResShift teacher or one-step student)")
            if config.distill != DistillConfig():
                raise BinsrError(f"teacher {config.teacher} is not a ResShift teacher: its losses are 'imitate', "
                                 f"not 'distill' (SinSR's)")
            model_scale(config.teacher, scale)  # a teacher of another scale is an error here, before any work
            init = config.init
            spec = self.student_spec = _student_spec(init, None, scale)
            student = load_model(resolve(init), spec=spec)
            self.model, self.process, self.autoencoder = student.network, student.process, student.autoencoder
            self.imitation = UpscalerImitation(self.process, self.autoencoder, load(config.teacher, scale),
                                               config.imitate or ImitationConfig(), teacher_fingerprint(config.teacher))
        self.binarization = spec.network.binarize
        if config.binarize is not None:
            if self.binarization:
                raise BinsrError(f"init {init} is already binarized ({self.binarization.method}); drop 'binarize'")
            self.binarization = apply_binarization(self.model, to_dict(config.binarize))
        self.multiple = self.model.multiple
        self.critic = self.imitation.adversary if self.teacher_spec is None else None

    def to(self, device: torch.device) -> DistillTask:
        for part in (self.model, self.teacher, self.autoencoder):
            if part is not None:
                part.to(device)
        if self.teacher_spec is None and hasattr(self.imitation.teacher, "to"):
            self.imitation.teacher.to(device)  # a peer teacher runs where the student trains (PyTorch off the CPU)
        return self  # the critic is moved by the engine

    def loss(self, net: nn.Module, lr: torch.Tensor, hr: torch.Tensor,
             generators: Sequence[torch.Generator]) -> Losses:
        x0, y = self.states(lr, hr)
        if self.teacher_spec is None:
            return self.imitation.loss(net, lr, hr, y, generators)
        return self.distillation.loss(net, x0, y, generators)

    def upscaler(self, net: nn.Module) -> OneStepUpscaler:
        return self.pipeline(net, self.process, self.config.data.scale, **self.upscaler_options(self.multiple))

    def spec(self) -> dict[str, Any]:
        network = replace(self.student_spec.network, binarize=self.binarization)
        autoencoder = self.student_spec.autoencoder
        return {"kind": self.pipeline.kind, "network": network.to_dict(), "process": self.student_spec.process.to_dict(),
                "teacher": Path(self.config.teacher).name,
                "autoencoder": autoencoder.to_dict() if autoencoder is not None else None}
