"""ResShift: diffusion that shifts the residual between HR and LR (Yue et al. 2023, "ResShift: Efficient Diffusion
Model for Image Super-resolution by Residual Shifting", NeurIPS; BiMaCoSR's teacher).

States live in the model's space: pixels in [-1, 1] (``to_model_range``) or an autoencoder's latent.
``y`` is the bicubic-upsampled LR image (or its latent), the same size as x₀.

Index convention: the paper's t = 1 … T is index ``i = t − 1`` = 0 … T−1 here, which is also the
timestep the network is given (as in the released code). η_0 = 0 is implicit.

* forward  q(x_t | x₀, y) = N(x₀ + η_t (y − x₀), κ² η_t I);  prior x_T = y + κ √η_T ε
* posterior q(x_{t−1} | x_t, x₀) = N((η_{t−1}/η_t) x_t + (α_t/η_t) x₀, κ² (η_{t−1}/η_t) α_t I)
* network  x̂₀ = f(cat[x_t / √(κ² η_t + 1), y], t)  (x₀-prediction, "normalize_input"); with
  ``target="residual"``, x̂₀ = y + f(…): the network predicts the residual x₀ − y, so a network whose output
  is zero returns the bicubic image (SRDiff's choice, as SR3's ``target`` option)
* deterministic sampler (BiMaCoSR eq. 3–4): x_{t−1} = k_t x̂₀ + m_t x_t + j_t y — the teacher map F(x_T, y)

Schedule values are kept in float64 (NumPy) and cast when applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ResShiftSchedule:
    """ResShift's η schedule; the defaults are the paper's (and BiMaCoSR's) values.

    Fields (default): ``num_timesteps`` T (15); ``kappa`` κ, the noise scale (2.0); ``power`` p of the
    schedule's shape (0.3); ``min_noise_level`` √η_1 (None: min(0.04/κ, 0.04, √0.001) = 0.02 for κ = 2);
    ``etas_end`` √η_T (0.99); ``normalize_input`` scale x_t to unit variance before the network (True);
    ``target`` what the network predicts — the HR state x₀ ("image", the paper) or x₀ − y ("residual")
    ("image").
    """

    num_timesteps: int = 15
    kappa: float = 2.0
    power: float = 0.3
    min_noise_level: float | None = None
    etas_end: float = 0.99
    normalize_input: bool = True
    target: str = "image"

    def __post_init__(self) -> None:
        if self.target not in ("image", "residual"):
            raise ValueError(f"target must be 'image' or 'residual', got {self.target!r}")
        steps = self.num_timesteps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= 10_000:
            raise ValueError(f"num_timesteps must be an integer from 2 to 10000, got {self.num_timesteps!r}")
        if self.kappa <= 0 or self.power <= 0:
            raise ValueError(f"kappa and power must be positive, got kappa={self.kappa}, power={self.power}")
        if not 0 < self.sqrt_eta_1 < self.etas_end < 1:
            raise ValueError(f"need 0 < min_noise_level ({self.sqrt_eta_1}) < etas_end ({self.etas_end}) < 1")

    @property
    def sqrt_eta_1(self) -> float:
        if self.min_noise_level is not None:
            return float(self.min_noise_level)
        return min(0.04 / self.kappa, 0.04, float(np.sqrt(0.001)))

    def sqrt_etas(self) -> np.ndarray:
        """√η_t for t = 1 … T (float64, shape (T,)): √η_1 · b^{β_t}, β_t = ((t−1)/(T−1))^p · (T−1)."""
        steps = self.num_timesteps
        base = np.exp(np.log(self.etas_end / self.sqrt_eta_1) / (steps - 1))
        beta = ((np.arange(steps, dtype=np.float64) / (steps - 1)) ** self.power) * (steps - 1)
        return self.sqrt_eta_1 * base ** beta

    def etas(self) -> np.ndarray:
        return self.sqrt_etas() ** 2

    def etas_prev(self) -> np.ndarray:
        """η_{t−1} for t = 1 … T (η_0 = 0)."""
        return np.concatenate([[0.0], self.etas()[:-1]])

    def alphas(self) -> np.ndarray:
        """α_t = η_t − η_{t−1}."""
        return self.etas() - self.etas_prev()

    def posterior(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(coefficient of x_t, coefficient of x₀, variance) of q(x_{t−1} | x_t, x₀), each (T,)."""
        etas, prev, alphas = self.etas(), self.etas_prev(), self.alphas()
        return prev / etas, alphas / etas, self.kappa ** 2 * prev / etas * alphas

    def deterministic_coefficients(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k_t, m_t, j_t) of BiMaCoSR eq. 4, each (T,)."""
        etas, prev = self.etas(), self.etas_prev()
        m = np.sqrt(prev / etas)
        j = prev - np.sqrt(prev * etas)
        k = 1 - prev + np.sqrt(prev * etas) - m
        return k, m, j

    def input_scale(self) -> np.ndarray:
        """Factor applied to x_t before the network: 1/√(κ² η_t + 1), or 1 without normalize_input."""
        if not self.normalize_input:
            return np.ones(self.num_timesteps)
        return 1 / np.sqrt(self.kappa ** 2 * self.etas() + 1)


def to_model_range(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] image → [-1, 1], the range ResShift's κ is set for."""
    return image * 2 - 1


def from_model_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] → [0, 1], clamped."""
    return ((x + 1) / 2).clamp(0, 1)


class ResShift:
    """The ResShift process around any x₀-predicting network ``model(cat[x_t, y], t) -> x̂₀``."""

    def __init__(self, schedule: ResShiftSchedule | None = None) -> None:
        self.schedule = schedule or ResShiftSchedule()
        s = self.schedule
        self._tables = {name: torch.from_numpy(values) for name, values in {
            "eta": s.etas(), "sqrt_eta": s.sqrt_etas(), "scale": s.input_scale(),
            "post_xt": s.posterior()[0], "post_x0": s.posterior()[1], "post_var": s.posterior()[2],
            "k": s.deterministic_coefficients()[0], "m": s.deterministic_coefficients()[1],
            "j": s.deterministic_coefficients()[2]}.items()}

    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_timesteps

    def coefficient(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Table ``name`` at per-sample indices t (B,), shaped (B, 1, 1, 1) like ``like``."""
        values = self._tables[name][t.cpu().long()]
        return values.to(like.device, like.dtype).reshape(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = x₀ + η_t (y − x₀) + κ √η_t ε."""
        eta, sqrt_eta = self.coefficient("eta", t, x0), self.coefficient("sqrt_eta", t, x0)
        return x0 + eta * (y - x0) + self.schedule.kappa * sqrt_eta * noise

    def prior_sample(self, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_T = y + κ √η_T ε."""
        return y + self.schedule.kappa * float(self.schedule.sqrt_etas()[-1]) * noise.to(y)

    def predict_x0(self, model: Denoiser, x_t: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x̂₀ = model(cat[x_t · scale_t, y], t) (+ y for the residual target) for per-sample indices t (B,)."""
        t = t.to(x_t.device).long().reshape(-1).expand(x_t.shape[0])
        out = model(torch.cat([x_t * self.coefficient("scale", t, x_t), y], dim=1), t)
        return y + out if self.schedule.target == "residual" else out

    def posterior_mean_variance(self, x_t: torch.Tensor, x0: torch.Tensor,
                                t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.coefficient("post_xt", t, x_t) * x_t + self.coefficient("post_x0", t, x_t) * x0
        return mean, self.coefficient("post_var", t, x_t)

    def loss(self, model: Denoiser, x0: torch.Tensor, y: torch.Tensor,
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        """MSE(x̂₀, x₀) at one uniformly drawn index and noise per sample (seeded per sample)."""
        t = torch.cat([torch.randint(0, self.num_timesteps, (1,), generator=g) for g in generators])
        noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in generators]).to(x0)
        t = t.to(x0.device)
        return F.mse_loss(self.predict_x0(model, self.q_sample(x0, y, t, noise), y, t), x0)

    @torch.no_grad()
    def sample(self, model: Denoiser, y: torch.Tensor, noise: torch.Tensor | None = None, seed: int = 0,
               stochastic: bool = False, progress: bool = False) -> torch.Tensor:
        """x₀ from x_T = y + κ√η_T ε in T network calls (model space).

        ``stochastic=False`` is the deterministic sampler of eq. 3–4 (the teacher map F); True draws
        from the posterior (ResShift's own sampler; extra noise from ``seed``).
        """
        if noise is None:
            noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
        return self.run_chain(model, self.prior_sample(y, noise), y, stochastic, seed, progress)

    def run_chain(self, model: Denoiser, x_T: torch.Tensor, y: torch.Tensor, stochastic: bool = False,
                  seed: int = 0, progress: bool = False) -> torch.Tensor:
        """Iterate from x_T down to x₀ (gradients flow if the caller enables them)."""
        generator = torch.Generator().manual_seed(seed + 1)
        x = x_T
        for index in tqdm(range(self.num_timesteps - 1, -1, -1), desc="ResShift", unit="step",
                          disable=not progress, leave=False):
            t = torch.full((x.shape[0],), index, dtype=torch.long, device=x.device)
            x0 = self.predict_x0(model, x, y, t)
            if stochastic:
                mean, variance = self.posterior_mean_variance(x, x0, t)
                noise = torch.randn(x.shape, generator=generator).to(x) if index > 0 else torch.zeros_like(x)
                x = mean + variance.sqrt() * noise
            else:
                x = self.coefficient("k", t, x) * x0 + self.coefficient("m", t, x) * x + self.coefficient("j", t, x) * y
        return x

    @torch.no_grad()
    def teacher_map(self, model: Denoiser, x_T: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """F_θ(x_T, y): the deterministic T-step sampler from a given start state."""
        return self.run_chain(model, x_T, y)

    def one_step(self, model: Denoiser, x_T: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """A one-step student's output f̂(x_T, y, T): the network at the last index, one call."""
        t = torch.full((x_T.shape[0],), self.num_timesteps - 1, dtype=torch.long, device=x_T.device)
        return self.predict_x0(model, x_T, y, t)
