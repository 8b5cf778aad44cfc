"""A new pipeline type in one file: a two-step ResShift sampler (x̂₀ at T, re-noised to T/2, x̂₀ again) with
the training task that makes its model files. Nothing outside this file knows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from binsr.pipelines import ResShiftFamily, register_pipeline
from binsr.training import register_task
from binsr.training.resshift import ResShiftRecipe, ResShiftTask

KIND = "test-two-step"


@register_pipeline(KIND)
class TwoStepUpscaler(ResShiftFamily):
    """x̂₀ = f(x_T, T); x_{T/2} = q(x̂₀, y, T/2, seeded ε); output f(x_{T/2}, T/2)."""

    @classmethod
    def sampling(cls, spec: Any, steps: int | None = None) -> str:
        return "2 network calls"

    def denoise(self, x_T: torch.Tensor, y: torch.Tensor, progress: bool) -> torch.Tensor:
        x0 = self.process.one_step(self.model, x_T, y)
        middle = torch.full((x_T.shape[0],), self.process.num_timesteps // 2, dtype=torch.long)
        noise = torch.randn(x_T.shape, generator=torch.Generator().manual_seed(self.seed + 1))
        return self.process.predict_x0(self.model, self.process.q_sample(x0, y, middle, noise), y, middle)


@dataclass
class TwoStepRecipe(ResShiftRecipe):
    """A ResShift recipe (the network learns x̂₀ at every t, which both steps use)."""


@register_task(TwoStepUpscaler, TwoStepRecipe)
class TwoStepTask(ResShiftTask):
    """Trained as a ResShift teacher; saved as a two-step model."""
