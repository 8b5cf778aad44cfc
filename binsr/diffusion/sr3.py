"""Conditional SR3 diffusion (BI-DiffSR's framing) around any denoiser — the model is a black box.

Images are in [0, 1]. The condition is the LR image bicubic-upsampled to HR size; the denoiser sees
``cat([condition, x_t])`` (6 channels) and one timestep per sample and predicts the noise ε.
Training: linear β from 1e-6 to 1e-2 over 2000 steps, L1(ε̂, ε), a timestep per *sample* (the released
code draws one per batch). Sampling: DDIM with any step count (eta 0), from diffusers.

Randomness is drawn per sample from seeds (see :func:`sample_generators`): a batch split across DDP
ranks draws exactly what one process with the whole batch draws, and resuming needs no RNG state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from binsr.config import check_ranges

if TYPE_CHECKING:
    from diffusers import DDIMScheduler, DDPMScheduler

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SR3Schedule:
    """Noise schedule and objective (BI-DiffSR: linear 1e-6 → 1e-2, 2000 steps, ε-prediction, L1).

    Fields (default): ``num_train_timesteps`` T (2000); ``beta_start``, ``beta_end`` the first and last β
    (1e-6, 1e-2); ``beta_schedule`` diffusers' name ("linear"); ``loss`` "l1" or "l2" ("l1");
    ``prediction_type`` what the network predicts — "epsilon" (the paper), "sample" (x₀) or
    "v_prediction"; diffusers' samplers convert each back to x₀ ("epsilon"); ``target`` what is diffused —
    the HR "image" (SR3, the paper) or the "residual" HR − condition (SRDiff's choice: an untrained model
    then returns the bicubic image, and a short CPU training only has to learn the details) ("image").
    """

    num_train_timesteps: int = 2000
    beta_start: float = 1e-6
    beta_end: float = 1e-2
    beta_schedule: str = "linear"
    loss: str = "l1"
    prediction_type: str = "epsilon"
    target: str = "image"

    def __post_init__(self) -> None:
        check_ranges(self, num_train_timesteps=(1, 100_000), beta_start=(0.0, 1.0), beta_end=(0.0, 1.0))
        if self.beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise ValueError(f"beta_schedule must be linear, scaled_linear or squaredcos_cap_v2, got {self.beta_schedule!r}")
        if self.target not in ("image", "residual"):
            raise ValueError(f"target must be 'image' or 'residual', got {self.target!r}")
        if self.prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise ValueError(f"prediction_type must be epsilon, sample or v_prediction, got {self.prediction_type!r}")
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {self.loss!r}")

    @property
    def num_timesteps(self) -> int:
        """T: the number of training timesteps (what timestep-aware networks count against)."""
        return self.num_train_timesteps

    def _kwargs(self) -> dict:
        return {"num_train_timesteps": self.num_train_timesteps, "beta_start": self.beta_start,
                "beta_end": self.beta_end, "beta_schedule": self.beta_schedule,
                "prediction_type": self.prediction_type}

    # diffusers is imported where a scheduler is made: it takes seconds to import, and only SR3 models need it.
    def ddpm(self) -> DDPMScheduler:
        from diffusers import DDPMScheduler

        return DDPMScheduler(**self._kwargs())

    def ddim(self) -> DDIMScheduler:
        from diffusers import DDIMScheduler

        return DDIMScheduler(**self._kwargs())


def sample_generators(seeds: Sequence[Sequence[int]]) -> list[torch.Generator]:
    """One CPU generator per sample, seeded from a tuple of ints (e.g. (seed, step, sample index))."""
    return [torch.Generator().manual_seed(int(np.random.SeedSequence(list(s)).generate_state(1, np.uint64)[0] >> 1))
            for s in seeds]


class SR3:
    """Training loss and DDIM sampling of a conditional SR3 model."""

    def __init__(self, schedule: SR3Schedule | None = None) -> None:
        self.schedule = schedule or SR3Schedule()
        self.train_scheduler = self.schedule.ddpm()

    def loss(self, model: Denoiser, hr: torch.Tensor, condition: torch.Tensor,
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Mean L1 (or L2) between prediction and target (noise, x₀ or v); one timestep and noise per sample."""
        x0 = hr - condition if self.schedule.target == "residual" else hr
        steps = self.schedule.num_train_timesteps
        timesteps, noises = [], []
        for generator in generators:
            timesteps.append(torch.randint(0, steps, (1,), generator=generator))
            noises.append(torch.randn(x0.shape[1:], generator=generator))
        t = torch.cat(timesteps).to(x0.device)
        noise = torch.stack(noises).to(x0.device, x0.dtype)
        noisy = self.train_scheduler.add_noise(x0, noise, t)
        predicted = model(torch.cat([condition, noisy], dim=1), t)
        kind = self.schedule.prediction_type
        target = noise if kind == "epsilon" else x0 if kind == "sample" else self.train_scheduler.get_velocity(x0, noise, t)
        if self.schedule.loss == "l1":
            return F.l1_loss(predicted, target)
        return F.mse_loss(predicted, target)

    @torch.no_grad()
    def sample(self, model: Denoiser, condition: torch.Tensor, steps: int = 50, seed: int = 0,
               noise: torch.Tensor | None = None, progress: bool = False) -> torch.Tensor:
        """DDIM (eta 0) from N(0, I) given the upsampled LR (B, 3, H, W); returns images in [0, 1].

        The start noise is ``noise`` if given, else drawn from ``seed`` on the CPU (so results do not
        depend on the device).
        """
        if steps < 1 or steps > self.schedule.num_train_timesteps:
            raise ValueError(f"steps must be between 1 and {self.schedule.num_train_timesteps}, got {steps}")
        scheduler = self.schedule.ddim()
        scheduler.set_timesteps(steps)
        if noise is None:
            noise = torch.randn(condition.shape, generator=torch.Generator().manual_seed(seed))
        x = noise.to(condition.device, condition.dtype)
        for t in tqdm(scheduler.timesteps, desc="DDIM", unit="step", disable=not progress, leave=False):
            batch_t = t.expand(condition.shape[0]).to(condition.device)
            eps = model(torch.cat([condition, x], dim=1), batch_t)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        if self.schedule.target == "residual":
            x = condition + x
        return x.clamp(0, 1)
