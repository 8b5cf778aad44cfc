"""Pipeline types: what a model file's ``kind`` names.

A pipeline type is a :class:`~binsr.pipelines.diffusion.DiffusionUpscaler` subclass registered under the kind
its model files carry (as diffusers names a pipeline class in ``model_index.json``). The class owns all that
differs between kinds: the diffusion process its files must name (``process_type``), whether it samples with
a step count (``takes_steps``, ``default_steps``), how it is built from a loaded file (``from_model``) and how
``binsr models`` and the evaluation tables describe its sampling (``sampling``). Its training task registers
under the same kind in :data:`binsr.training.tasks.TASKS`. Adding a pipeline is one file with one
``@register_pipeline("name")`` class (and, to train it, one registered task).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from binsr.utils.registry import Registry

if TYPE_CHECKING:
    from binsr.pipelines.diffusion import DiffusionUpscaler

PipelineClass = TypeVar("PipelineClass", bound="type[DiffusionUpscaler]")

PIPELINES: Registry[type[DiffusionUpscaler]] = Registry("pipeline", "binsr.pipelines")


def register_pipeline(kind: str) -> Callable[[PipelineClass], PipelineClass]:
    """``@register_pipeline("kind")`` on an upscaler class: model files of that kind load into it."""
    def register(cls: PipelineClass) -> PipelineClass:
        cls.kind = kind
        PIPELINES.register(kind, cls)
        return cls
    return register


def pipeline_type(kind: str) -> type[DiffusionUpscaler]:
    """The pipeline class registered as ``kind`` (one error listing the known kinds otherwise)."""
    return PIPELINES.get(kind)
