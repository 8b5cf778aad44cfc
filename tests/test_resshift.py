"""ResShift: schedule, forward process, posterior and the deterministic sampler against float64 references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from binsr.diffusion import ResShift, ResShiftSchedule


def reference_sqrt_etas(T: int = 15, kappa: float = 2.0, p: float = 0.3, end: float = 0.99) -> list[float]:
    """ResShift's η schedule (Yue et al. 2023, §2) written out term by term."""
    start = min(0.04 / kappa, 0.04, math.sqrt(0.001))
    base = math.exp(math.log(end / start) / (T - 1))
    return [start * base ** (((t - 1) / (T - 1)) ** p * (T - 1)) for t in range(1, T + 1)]


def test_schedule_matches_closed_form() -> None:
    schedule = ResShiftSchedule()
    sqrt_etas = schedule.sqrt_etas()
    assert sqrt_etas.dtype == np.float64
    np.testing.assert_allclose(sqrt_etas, reference_sqrt_etas(), rtol=1e-14)
    assert sqrt_etas[0] == pytest.approx(0.02, abs=1e-15) and sqrt_etas[-1] == pytest.approx(0.99, abs=1e-14)
    assert np.all(np.diff(sqrt_etas) > 0)
    # α_t sums to η_T, and other κ / T / p give their own closed forms
    assert schedule.alphas().sum() == pytest.approx(0.99 ** 2, rel=1e-14)
    other = ResShiftSchedule(num_timesteps=4, kappa=1.0, power=1.0, etas_end=0.5)
    np.testing.assert_allclose(other.sqrt_etas(), reference_sqrt_etas(4, 1.0, 1.0, 0.5), rtol=1e-14)
    assert other.sqrt_eta_1 == pytest.approx(math.sqrt(0.001))


def test_posterior_is_bayes_rule_in_float64() -> None:
    """q(x_{t-1} | x_t, x0) from the prior q(x_{t-1} | x0, y) and the step q(x_t | x_{t-1}) by Bayes."""
    schedule = ResShiftSchedule()
    process = ResShift(schedule)
    kappa, etas = schedule.kappa, [0.0] + list(schedule.etas())
    x0, y, x_t = 0.3, -0.4, 0.9
    for index in range(1, schedule.num_timesteps):
        t = index + 1
        alpha = etas[t] - etas[t - 1]
        prior_mean, prior_var = x0 + etas[t - 1] * (y - x0), kappa ** 2 * etas[t - 1]
        step_var = kappa ** 2 * alpha  # x_t = x_{t-1} + α_t (y - x0) + κ √α_t ε
        var = 1 / (1 / prior_var + 1 / step_var)
        mean = var * (prior_mean / prior_var + (x_t - alpha * (y - x0)) / step_var)
        got_mean, got_var = process.posterior_mean_variance(
            torch.full((1, 1, 1, 1), x_t, dtype=torch.float64), torch.full((1, 1, 1, 1), x0, dtype=torch.float64),
            torch.tensor([index]))
        assert got_mean.item() == pytest.approx(mean, rel=1e-12)
        assert got_var.item() == pytest.approx(var, rel=1e-12)


def test_forward_process_moments() -> None:
    process = ResShift()
    count, index = 400_000, 7
    x0 = torch.full((count, 1, 1, 1), 0.25, dtype=torch.float64)
    y = torch.full_like(x0, -0.5)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_t = process.q_sample(x0, y, torch.full((count,), index), noise)
    eta = process.schedule.etas()[index]
    assert x_t.mean().item() == pytest.approx(0.25 + eta * (-0.75), abs=4 * math.sqrt(4 * eta / count))
    assert x_t.var().item() == pytest.approx(4 * eta, rel=0.01)
    prior = process.prior_sample(y, noise)
    assert prior.mean().item() == pytest.approx(-0.5, abs=0.01)
    assert prior.std().item() == pytest.approx(2 * 0.99, rel=0.01)


class ToyModel:
    """A deterministic stand-in network that records its inputs."""

    def __init__(self) -> None:
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.inputs.append((x.clone(), t.clone()))
        return torch.tanh(0.7 * x[:, :1] - 0.3 * x[:, 1:]) + 0.01 * t.to(x.dtype).reshape(-1, 1, 1, 1)


def test_deterministic_sampler_is_the_kmj_recursion() -> None:
    schedule = ResShiftSchedule()
    process = ResShift(schedule)
    generator = torch.Generator().manual_seed(1)
    y = torch.rand(2, 1, 4, 4, generator=generator, dtype=torch.float64) * 2 - 1
    x_T = process.prior_sample(y, torch.randn(y.shape, generator=generator, dtype=torch.float64))
    got = process.teacher_map(ToyModel(), x_T, y)

    etas = reference_sqrt_etas()
    etas = [0.0] + [e * e for e in etas]
    x = x_T.clone()
    for t in range(15, 0, -1):
        scaled = x / math.sqrt(4 * etas[t] + 1)
        x0 = torch.tanh(0.7 * scaled - 0.3 * y) + 0.01 * (t - 1)
        m = math.sqrt(etas[t - 1] / etas[t])
        j = etas[t - 1] - math.sqrt(etas[t - 1] * etas[t])
        k = 1 - etas[t - 1] + math.sqrt(etas[t - 1] * etas[t]) - m
        # the same step as DDIM with the implied noise: x0 + η_{t-1}(y - x0) + κ√η_{t-1} ε̂
        eps = (x - x0 - etas[t] * (y - x0)) / (2 * math.sqrt(etas[t]))
        ddim = x0 + etas[t - 1] * (y - x0) + 2 * math.sqrt(etas[t - 1]) * eps
        x = k * x0 + m * x + j * y
        torch.testing.assert_close(x, ddim, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, x, rtol=1e-12, atol=1e-12)


def test_network_inputs_and_oracle_sampling() -> None:
    process = ResShift()
    model = ToyModel()
    y = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    x_t = torch.ones_like(y)
    process.predict_x0(model, x_t, y, torch.tensor([3]))
    seen, t = model.inputs[-1]
    assert t.tolist() == [3]
    assert seen[0, 0, 0, 0].item() == pytest.approx(1 / math.sqrt(4 * process.schedule.etas()[3] + 1), rel=1e-12)

    x0 = torch.rand(2, 1, 3, 3, dtype=torch.float64)
    oracle = lambda inputs, t: x0  # noqa: E731 - predicts the true x0
    for stochastic in (False, True):
        out = process.sample(oracle, torch.zeros_like(x0), stochastic=stochastic, seed=3)
        torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)  # the last step has η_0 = 0
    generators = [torch.Generator().manual_seed(i) for i in range(2)]
    assert process.loss(oracle, x0, torch.zeros_like(x0), generators).item() == 0.0


def test_one_step_uses_the_last_index() -> None:
    process = ResShift()
    model = ToyModel()
    process.one_step(model, torch.zeros(3, 1, 2, 2), torch.zeros(3, 1, 2, 2))
    assert model.inputs[-1][1].tolist() == [14, 14, 14]


@pytest.mark.parametrize("changes", [{"num_timesteps": 1}, {"kappa": 0}, {"etas_end": 1.2},
                                     {"min_noise_level": 0.995}])
def test_bad_schedules(changes: dict) -> None:
    with pytest.raises(ValueError):
        ResShiftSchedule(**changes)


def test_residual_target_adds_y_and_an_oracle_residual_recovers_x0() -> None:
    """target="residual": x̂₀ = y + f; an oracle f = x₀ − y gives x₀ exactly through both samplers and one step."""
    process = ResShift(ResShiftSchedule(target="residual"))
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 1, 3, 3, dtype=torch.float64, generator=generator)
    y = torch.rand(2, 1, 3, 3, dtype=torch.float64, generator=generator)
    oracle = lambda inputs, t: x0 - y  # noqa: E731
    for stochastic in (False, True):
        torch.testing.assert_close(process.sample(oracle, y, stochastic=stochastic, seed=1), x0, rtol=0, atol=1e-12)
    x_T = process.prior_sample(y, torch.randn(y.shape, dtype=torch.float64, generator=generator))
    torch.testing.assert_close(process.one_step(oracle, x_T, y), x0, rtol=0, atol=1e-15)
    generators = [torch.Generator().manual_seed(i) for i in range(2)]
    assert process.loss(oracle, x0, y, generators).item() == pytest.approx(0.0, abs=1e-30)
    zero = lambda inputs, t: torch.zeros_like(y)  # noqa: E731 - an untrained zero-initialised network
    torch.testing.assert_close(process.sample(zero, y), y, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="target"):
        ResShiftSchedule(target="noise")
