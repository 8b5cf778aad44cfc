"""sign() and the backward approximations ("straight-through estimators") of binary networks.

``sign(0) = +1`` everywhere, so a simulated binary layer and a bit-packed kernel (which has no 0)
agree bit for bit. An estimator is a small module whose ``forward(x)`` returns the surrogate
derivative d sign(x)/dx; :func:`straight_through` pairs it with any forward value.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sign(x: torch.Tensor) -> torch.Tensor:
    """±1 with sign(0) = +1 (``torch.sign`` gives 0 there)."""
    return (x >= 0).to(x.dtype).mul_(2).sub_(1)  # fewer passes than torch.where with scalars


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, value: torch.Tensor, estimator: nn.Module) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(x)
        ctx.estimator = estimator
        return value

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: ANN001, ANN205
        (x,) = ctx.saved_tensors
        return grad_output * ctx.estimator(x), None, None


def straight_through(x: torch.Tensor, value: torch.Tensor, estimator: nn.Module) -> torch.Tensor:
    """Forward: ``value`` (computed from x without gradient); backward: upstream · estimator(x)."""
    return _StraightThrough.apply(x, value.detach(), estimator)


def binarize_sign(x: torch.Tensor, estimator: nn.Module) -> torch.Tensor:
    """sign(x) forward, ``estimator`` backward."""
    return straight_through(x, sign(x), estimator)


class Estimator(nn.Module):
    """Base class: ``forward(x)`` is the surrogate derivative of sign at x."""

    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1]; only scheduled estimators (EDE) use it."""


class IdentitySTE(Estimator):
    """Plain straight-through: derivative 1 everywhere (DoReFa weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)


class ClippedSTE(Estimator):
    """BNN's clipped STE: 1 where |x| ≤ 1, else 0 (the derivative of clip(x, −1, 1))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() <= 1).to(x.dtype)


class ApproxSign(Estimator):
    """Bi-Real's ApproxSign: 2 − 2|x| for |x| < 1, else 0 (derivative of the piecewise quadratic)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs().mul_(-2).add_(2).clamp_(min=0)


class EDE(Estimator):
    """IR-Net's error decay estimator: k·t·(1 − tanh²(t·x)), sharpening as training progresses.

    t = T_min · 10^(progress · log10(T_max / T_min)), k = max(1/t, 1); progress e/E in [0, 1].
    """

    def __init__(self, t_min: float = 0.1, t_max: float = 10.0) -> None:
        super().__init__()
        self.t_min, self.t_max = t_min, t_max
        self.progress = 0.0

    def set_progress(self, progress: float) -> None:
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"training progress must be in [0, 1], got {progress}")
        self.progress = float(progress)

    @property
    def t(self) -> float:
        return self.t_min * 10 ** (self.progress * math.log10(self.t_max / self.t_min))

    @property
    def k(self) -> float:
        return max(1 / self.t, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.t
        return self.k * t * (1 - torch.tanh(t * x) ** 2)

    def extra_repr(self) -> str:
        return f"t_min={self.t_min}, t_max={self.t_max}, progress={self.progress}"


class ReSTE(Estimator):
    """ReSTE: the derivative of sign(x)·|x|^(1/o), (1/o)·|x|^((1−o)/o) for |x| ≤ t, else 0.

    It diverges at 0, so inside |x| ≤ ``interval`` the secant slope interval^(1/o) / interval is used
    (as the ReSTE authors do).
    """

    def __init__(self, order: float = 3.0, threshold: float = 1.5, interval: float = 0.1) -> None:
        super().__init__()
        if order < 1 or threshold <= 0 or not 0 < interval < threshold:
            raise ValueError(f"ReSTE needs order >= 1 and 0 < interval < threshold, got {order}, {interval}, {threshold}")
        self.order, self.threshold, self.interval = order, threshold, interval

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.order
        magnitude = x.abs().clamp(min=self.interval)  # below the interval: secant slope
        slope = magnitude ** ((1 - o) / o) / o
        secant = self.interval ** (1 / o) / self.interval
        slope = torch.where(x.abs() <= self.interval, torch.full_like(x, secant), slope)
        return slope * (x.abs() <= self.threshold)

    def extra_repr(self) -> str:
        return f"order={self.order}, threshold={self.threshold}, interval={self.interval}"


ESTIMATORS: dict[str, type[Estimator]] = {
    "identity": IdentitySTE,
    "clipped": ClippedSTE,
    "approx": ApproxSign,
    "ede": EDE,
    "reste": ReSTE,
}
