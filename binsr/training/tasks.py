"""Training tasks: what a recipe trains, by the pipeline kind it makes.

A task trains the network of one pipeline type (:mod:`binsr.pipelines.registry`) and is registered under
its kind with the recipe dataclass it reads (:class:`~binsr.training.recipe.Recipe` plus its own sections).
It gives the network, its loss on an (LR, HR) batch, its validation upscaler and the model file's header;
the engine (:mod:`binsr.training.engine`) runs every task the same way. Built in:

* ``sr3`` (:mod:`binsr.training.sr3`) — SR3 / BI-DiffSR (DDPM, ε-prediction by default);
* ``resshift`` (:mod:`binsr.training.resshift`) — a ResShift teacher (x₀-prediction, T = 15);
* ``onestep`` (:mod:`binsr.training.onestep`) — SinSR one-step distillation of a ResShift teacher file;
  with ``binarize`` the student is binarized first — BiMaCoSR.

Adding a task is one file: a recipe dataclass and a task class under ``@register_task(PipelineClass)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import torch
from torch import nn

from binsr.image.resize import imresize
from binsr.pipelines.diffusion import DiffusionUpscaler
from binsr.training.recipe import Recipe
from binsr.utils.registry import Registry

Losses = tuple[torch.Tensor, dict[str, float]]


class Critic(Protocol):
    """A second network a task trains alongside its model (a GAN's discriminator,
    :class:`~binsr.training.adversary.Adversary`). The task's loss uses it; after each step of the model the
    engine calls :meth:`update`, which trains it on that step's batch; its state rides in every checkpoint."""

    def to(self, device: torch.device) -> Critic: ...

    def distribute(self) -> None:
        """Average its gradients over the processes of a torchrun group."""
        ...

    def update(self) -> float: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Task(Protocol):
    """What the engine needs of a task (``recipe``: its recipe class; ``pipeline``: the type it trains).
    A task that trains a second network names it as ``critic`` (:class:`Critic`; absent or None: none)."""

    recipe: ClassVar[type[Recipe]]
    pipeline: ClassVar[type[DiffusionUpscaler]]
    model: nn.Module

    def __init__(self, config: Any) -> None: ...

    def to(self, device: torch.device) -> Task: ...

    def loss(self, net: nn.Module, lr: torch.Tensor, hr: torch.Tensor,
             generators: Sequence[torch.Generator]) -> Losses: ...

    def upscaler(self, net: nn.Module) -> DiffusionUpscaler: ...

    def spec(self) -> dict[str, Any]:
        """The model file's header fields this task decides: kind, network, process, autoencoder, teacher."""
        ...


TASKS: Registry[type[Task]] = Registry("training task", "binsr.training_tasks")
RENAMED = {"distill": "onestep"}  # old recipe task names -> the pipeline kind they train

TaskClass = TypeVar("TaskClass", bound=type)


def register_task(pipeline: type[DiffusionUpscaler], recipe: type[Recipe]) -> Callable[[TaskClass], TaskClass]:
    """``@register_task(PipelineClass, RecipeClass)`` on a task class: recipes with ``task: <kind>`` train it."""
    def register(cls: TaskClass) -> TaskClass:
        cls.pipeline, cls.recipe = pipeline, recipe
        recipe.task = pipeline.kind
        TASKS.register(pipeline.kind, cls)
        return cls
    return register


def make_task(config: Recipe) -> Task:
    """The task that trains ``config`` (a recipe of a registered task)."""
    return TASKS.get(config.task)(config)


def upsampled(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The condition every task uses: MATLAB-bicubic LR upsampled to HR size, in [0, 1]."""
    return imresize(lr, float(scale)).clamp(0, 1)
