"""Optimizers and learning-rate schedules by name (a recipe's ``optim.name`` and ``optim.schedule``).

An optimizer entry builds ``torch.optim`` from the parameters and the recipe's :class:`OptimConfig`; a
schedule entry gives the learning-rate factor at a step after warm-up. Adding one is one registration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch

from binsr.utils.registry import Registry

if TYPE_CHECKING:
    from binsr.training.recipe import OptimConfig

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter], "OptimConfig"], torch.optim.Optimizer]
Schedule = Callable[[float, int, "OptimConfig"], float]  # (progress in [0, 1], step, optim) -> lr factor

OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
SCHEDULES: Registry[Schedule] = Registry("learning-rate schedule")


@OPTIMIZERS.decorator("adam", lambda f: f)
def adam(params: Iterable[torch.nn.Parameter], o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


@OPTIMIZERS.decorator("adamw", lambda f: f)
def adamw(params: Iterable[torch.nn.Parameter], o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


@SCHEDULES.decorator("constant", lambda f: f)
def constant(progress: float, step: int, o: OptimConfig) -> float:
    return 1.0


@SCHEDULES.decorator("cosine", lambda f: f)
def cosine(progress: float, step: int, o: OptimConfig) -> float:
    """Half a cosine from 1 to 0 over the steps after warm-up."""
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@SCHEDULES.decorator("multistep", lambda f: f)
def multistep(progress: float, step: int, o: OptimConfig) -> float:
    """× ``gamma`` at each of ``milestones`` (steps)."""
    return o.gamma ** sum(step >= m for m in o.milestones)


def lr_factor(step: int, total_steps: int, o: OptimConfig) -> float:
    """The learning-rate factor at ``step`` of ``total_steps``: a linear warm-up over ``warmup_steps``, then
    the schedule ``o.schedule`` over the rest."""
    if o.warmup_steps and step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    progress = (step - o.warmup_steps) / max(1, total_steps - o.warmup_steps)
    return SCHEDULES.get(o.schedule)(progress, step, o)


def make_optimizer(params: Iterable[torch.nn.Parameter], o: OptimConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(o.name)(params, o)
