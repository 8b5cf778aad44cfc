"""The ``sr3`` pipeline: SR3 / BI-DiffSR, DDIM from N(0, I) conditioned on the bicubic-upsampled LR."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from binsr.diffusion.sr3 import SR3
from binsr.pipelines.diffusion import DiffusionUpscaler
from binsr.pipelines.registry import register_pipeline

if TYPE_CHECKING:
    from binsr.pipelines.model_file import LoadedModel, ModelSpec


@register_pipeline("sr3")
class SR3Upscaler(DiffusionUpscaler):
    """SR3 / BI-DiffSR: DDIM with ``steps`` steps from N(0, I) (default: the file's own, else 50)."""

    process_type = "sr3"
    takes_steps = True
    default_steps = 50

    def __init__(self, model: nn.Module, diffusion: SR3, scale: int, name: str = "sr3", steps: int = 50,
                 **options: object) -> None:
        super().__init__(model, scale, name, **options)
        self.diffusion, self.steps = diffusion, steps

    @classmethod
    def from_model(cls, model: LoadedModel, name: str, **options: Any) -> SR3Upscaler:
        options["steps"] = cls.steps_for(model.spec, options.get("steps"))
        return cls(model.network, model.process, model.spec.scale, name=name, multiple=model.network.multiple,
                   **options)

    @classmethod
    def sampling(cls, spec: ModelSpec, steps: int | None = None) -> str:
        return f"DDIM, {cls.steps_for(spec, steps)} steps"

    def generate(self, condition: torch.Tensor, noise: torch.Tensor, progress: bool) -> torch.Tensor:
        return self.diffusion.sample(self.model, condition, self.steps, noise=noise, progress=progress)
