"""The ResShift pipelines: ``resshift`` (the T-step teacher) and ``onestep`` (SinSR / BiMaCoSR students,
one network call), in [-1, 1] pixel space or in an autoencoder's latent space."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from binsr.diffusion.resshift import ResShift, from_model_range, to_model_range
from binsr.models.autoencoder import Autoencoder
from binsr.pipelines.diffusion import DiffusionUpscaler
from binsr.pipelines.registry import register_pipeline

if TYPE_CHECKING:
    from binsr.pipelines.model_file import LoadedModel


class ResShiftFamily(DiffusionUpscaler):
    """ResShift-family upscaling in [-1, 1] pixel space, or in ``autoencoder``'s latent space when one
    is given (y and x_T are latents then, the start noise is drawn at latent size from ``seed``)."""

    process_type = "resshift"

    def __init__(self, model: nn.Module, process: ResShift, scale: int, name: str,
                 autoencoder: Autoencoder | None = None, **options: object) -> None:
        super().__init__(model, scale, name, **options)
        self.process, self.autoencoder = process, autoencoder
        if self.auto_tile is not None and autoencoder is not None:  # the network runs factor× smaller, so its
            self.auto_tile *= max(1, autoencoder.factor // 2)       # tiles can be larger: at factor 4, 1024² (a
            # 0.55 GB process; 2048² tiles peak at 1.2 GB, and each band of them holds 2048 output rows)

    @classmethod
    def from_model(cls, model: LoadedModel, name: str, **options: Any) -> ResShiftFamily:
        options.pop("steps", None)  # the process fixes the steps: T, or one network call
        multiple = model.network.multiple * model.spec.latent_factor
        return cls(model.network, model.process, model.spec.scale, name=name, multiple=multiple,
                   autoencoder=model.autoencoder, **options)

    @property
    def pixel_noise(self) -> bool:
        return self.autoencoder is None

    def generate(self, condition: torch.Tensor, noise: torch.Tensor | None, progress: bool) -> torch.Tensor:
        y = to_model_range(condition)
        if self.autoencoder is not None:
            y = self.autoencoder.encode(y)
            noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(self.seed))
        x0 = self.denoise(self.process.prior_sample(y, noise), y, progress)
        return from_model_range(self.autoencoder.decode(x0) if self.autoencoder is not None else x0)

    def denoise(self, x_T: torch.Tensor, y: torch.Tensor, progress: bool) -> torch.Tensor:
        raise NotImplementedError


@register_pipeline("resshift")
class ResShiftUpscaler(ResShiftFamily):
    """ResShift teacher: the deterministic T-step sampler (``stochastic``: the posterior sampler)."""

    def __init__(self, model: nn.Module, process: ResShift, scale: int, name: str = "resshift",
                 stochastic: bool = False, **options: object) -> None:
        super().__init__(model, process, scale, name, **options)
        self.stochastic = stochastic

    @classmethod
    def sampling(cls, spec: Any, steps: int | None = None) -> str:
        return f"{spec.process.num_timesteps} steps"

    def denoise(self, x_T: torch.Tensor, y: torch.Tensor, progress: bool) -> torch.Tensor:
        return self.process.run_chain(self.model, x_T, y, self.stochastic, self.seed, progress)


@register_pipeline("onestep")
class OneStepUpscaler(ResShiftFamily):
    """A distilled one-step student (SinSR / BiMaCoSR): x̂₀ = f̂(x_T, y, T), one network call."""

    def __init__(self, model: nn.Module, process: ResShift, scale: int, name: str = "onestep",
                 **options: object) -> None:
        super().__init__(model, process, scale, name, **options)

    @classmethod
    def sampling(cls, spec: Any, steps: int | None = None) -> str:
        return "1 network call"

    def denoise(self, x_T: torch.Tensor, y: torch.Tensor, progress: bool) -> torch.Tensor:
        return self.process.one_step(self.model, x_T, y)
