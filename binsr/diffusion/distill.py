"""SinSR one-step distillation of a ResShift teacher (SinSR: Wang et al. 2024, "SinSR: Diffusion-Based Image
Super-Resolution in a Single Step", CVPR; BiMaCoSR eq. 5).

The student f̂ — a network of the teacher's kind, usually initialised from it — learns the teacher's
deterministic map in one call: L = MSE(f̂(x_T, y, T), F_θ(x_T, y)). SinSR's two extra terms are options:

* inverse (``inverse_weight``): f̂ at index 0 applied to the teacher's output must give back x_T;
* ground-truth consistency (``consistency_weight``, SinSR uses 1.0): x̂_T = f̂(x_gt, y, 0), then
  f̂(x̂_T, y, T) ≈ x_gt (gradients flow through both calls);
* regression (``regression_weight``, not in SinSR): MSE(f̂(x_T, y, T), x_gt) on the same one-step output,
  so it costs no extra network call. The teacher's T-step output is a sharp sample, not the posterior mean,
  so distillation alone gives up PSNR; this term (with a smaller ``teacher_weight``) trades some of the
  teacher's detail for fidelity.

The teacher runs without gradients, on the fly; with ``cache_size`` its outputs are kept in memory per
sample (keyed by the exact contents of x_T and y), so repeated inputs cost no teacher calls. With
``cache_dir`` they are also kept on disk, keyed by the teacher's weights as well: students trained from one
teacher with the same data seed (BiMaCoSR and its same-budget XNOR / ReActNet baselines) see the same
batches, so only the first run pays for the teacher's T network calls per sample, and the later ones read
its outputs back bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from binsr.diffusion.resshift import Denoiser, ResShift
from binsr.utils.tensor_cache import TensorCache, content_key


@dataclass
class DistillConfig:
    """SinSR distillation's loss weights and the teacher-output caches.

    Fields (default): ``teacher_weight`` of the distillation term MSE(f̂(x_T, y, T), F(x_T, y)) (1.0);
    ``inverse_weight`` of SinSR's inverse term (0.0); ``consistency_weight`` of SinSR's ground-truth
    consistency term (0.0); ``regression_weight`` of MSE(f̂(x_T, y, T), x₀), beyond SinSR (0.0);
    ``cache_size`` teacher outputs kept in memory, a count (0: none); ``cache_dir`` a folder of teacher
    outputs kept on disk (None: none).
    """

    teacher_weight: float = 1.0
    inverse_weight: float = 0.0
    consistency_weight: float = 0.0
    regression_weight: float = 0.0
    cache_size: int = 0
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if min(self.teacher_weight, self.inverse_weight, self.consistency_weight, self.regression_weight,
               self.cache_size) < 0:
            raise ValueError("distill weights and cache_size must be non-negative")


class SinSRDistillation:
    """``loss(student, x0, y, generators) -> (total, {"distill": …, "inverse": …, "consistency": …})``."""

    def __init__(self, process: ResShift, teacher: Denoiser, config: DistillConfig | None = None) -> None:
        self.process, self.teacher = process, teacher
        self.config = config or DistillConfig()
        self.cache = TensorCache(self.config.cache_size, self.config.cache_dir)
        self.teacher_calls = 0  # samples the teacher has mapped (cache misses)
        # the disk cache's keys start with the teacher's weights and process, so a new teacher misses
        self.teacher_key = (content_key(*teacher.state_dict().values(), prefix=repr(process.schedule))
                            if self.cache.folder else "")

    def start_states(self, y: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """x_T = y + κ√η_T ε with one seeded ε per sample."""
        return start_states(self.process, y, generators)

    @torch.no_grad()
    def teacher_outputs(self, x_T: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """F_θ(x_T, y) per sample, from the memory or disk cache where the same (x_T, y) was seen before."""
        found, computed = self.cache.get_or_compute(
            x_T.shape[0], lambda i: content_key(x_T[i], y[i], prefix=self.teacher_key),
            lambda rows: self.process.teacher_map(self.teacher, x_T[rows], y[rows]))
        self.teacher_calls += computed
        return torch.stack(found).to(x_T)

    def loss(self, student: Denoiser, x0: torch.Tensor, y: torch.Tensor,
             generators: Sequence[torch.Generator]) -> tuple[torch.Tensor, dict[str, float]]:
        x_T = self.start_states(y, generators).to(y)
        one_step = self.process.one_step(student, x_T, y)
        total, parts = one_step.new_zeros(()), {}
        needs_teacher = self.config.teacher_weight or self.config.inverse_weight
        target = self.teacher_outputs(x_T, y) if needs_teacher else None  # T network calls: only when used
        if self.config.teacher_weight:
            distill = F.mse_loss(one_step, target)
            total = total + self.config.teacher_weight * distill
            parts["distill"] = float(distill.detach())
        if self.config.regression_weight:
            regression = F.mse_loss(one_step, x0)
            total = total + self.config.regression_weight * regression
            parts["regression"] = float(regression.detach())
        first = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        if self.config.inverse_weight:
            inverse = F.mse_loss(self.process.predict_x0(student, target, y, first), x_T)
            total = total + self.config.inverse_weight * inverse
            parts["inverse"] = float(inverse.detach())
        if self.config.consistency_weight:
            x_T_gt = self.process.predict_x0(student, x0, y, first)
            consistency = F.mse_loss(self.process.one_step(student, x_T_gt, y), x0)
            total = total + self.config.consistency_weight * consistency
            parts["consistency"] = float(consistency.detach())
        return total, parts


def start_states(process: ResShift, y: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """x_T = y + κ√η_T ε with one seeded ε per sample (one generator each)."""
    noise = torch.stack([torch.randn(y.shape[1:], generator=g) for g in generators])
    return process.prior_sample(y, noise)
