"""Estimators and quantizers: forward values and gradients against the papers' formulas on hand-made inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from binsr.binary import (
    EDE,
    ApproxSign,
    ClippedSTE,
    IdentitySTE,
    InputMagnitudeScale,
    LibraWeight,
    ReSTE,
    ResidualSignActivation,
    ResidualSignWeight,
    SignActivation,
    SignWeight,
    sign,
)
from binsr.binary.estimators import binarize_sign

X = [-2.0, -1.0, -0.75, -0.5, -0.05, 0.0, 0.05, 0.25, 0.5, 1.0, 1.5, 2.0]


def grad_of(fn, x):
    x = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    fn(x).sum().backward()
    return x.grad.tolist()


def test_sign_of_zero_is_plus_one():
    assert sign(torch.tensor(X)).tolist() == [-1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1, 1]
    assert binarize_sign(torch.tensor([0.0, -0.0]), ClippedSTE()).tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "estimator,formula",
    [
        (IdentitySTE(), lambda x: 1.0),
        (ClippedSTE(), lambda x: 1.0 if abs(x) <= 1 else 0.0),
        (ApproxSign(), lambda x: 2 - 2 * abs(x) if abs(x) < 1 else 0.0),
        (ReSTE(3.0, 1.5, 0.1), lambda x: (0.1 ** (1 / 3) / 0.1 if abs(x) <= 0.1
                                          else (abs(x) ** (-2 / 3)) / 3 if abs(x) <= 1.5 else 0.0)),
    ],
)
def test_estimator_gradients(estimator, formula):
    assert grad_of(lambda x: binarize_sign(x, estimator), X) == pytest.approx([formula(v) for v in X], abs=1e-12)


@pytest.mark.parametrize("progress,t,k", [(0.0, 0.1, 10.0), (0.5, 1.0, 1.0), (1.0, 10.0, 1.0)])
def test_ede_schedule_and_gradient(progress, t, k):
    ede = EDE(t_min=0.1, t_max=10.0)
    ede.set_progress(progress)
    assert ede.t == pytest.approx(t) and ede.k == pytest.approx(k)
    expected = [k * t * (1 - math.tanh(t * v) ** 2) for v in X]
    assert grad_of(lambda x: binarize_sign(x, ede), X) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError):
        ede.set_progress(1.5)


def test_rsign_learnable_threshold():
    quantizer = SignActivation(ApproxSign(), channels=2, channel_dim=1).double()
    with torch.no_grad():
        quantizer.threshold.copy_(torch.tensor([0.5, -0.25]))
    x = torch.tensor([[[[0.25]], [[-0.5]]], [[[0.75]], [[0.0]]]], dtype=torch.float64, requires_grad=True)
    out = quantizer(x)
    assert out.flatten().tolist() == [-1, -1, 1, 1]  # sign(x - β): 0.25-0.5<0, -0.5+0.25<0, 0.75-0.5>0, 0+0.25>0
    out.sum().backward()
    shifted = torch.tensor([-0.25, -0.25, 0.25, 0.25])
    expected = (2 - 2 * shifted.abs()).tolist()
    assert x.grad.flatten().tolist() == pytest.approx(expected)
    # d/dβ sign(x − β) = −estimator(x − β), summed over the batch per channel
    assert quantizer.threshold.grad.tolist() == pytest.approx([-(expected[0] + expected[2]), -(expected[1] + expected[3])])


def test_per_pixel_scaled_sign_order_1_and_2():
    x = torch.tensor([[[[1.0, -0.2]], [[-3.0, 0.6]]]], dtype=torch.float64, requires_grad=True)  # (1, 2, 1, 2)
    out = ResidualSignActivation(1, ApproxSign(), channel_dim=1)(x)
    beta = torch.tensor([2.0, 0.4], dtype=torch.float64)  # mean over channels of |x| per pixel
    assert torch.allclose(out[0, :, 0], torch.sign(x.detach()[0, :, 0]) * beta)
    out.sum().backward()
    assert torch.allclose(x.grad[0, :, 0], beta * (2 - 2 * x.detach()[0, :, 0].abs()).clamp(min=0))
    # order 2 on one pixel with channels [1, -3]: β1 = 2, R2 = [1-2, -3+2] = [-1, -1], β2 = 1
    two = ResidualSignActivation(2, ApproxSign(), channel_dim=1)(x.detach())
    assert two[0, :, 0, 0].tolist() == pytest.approx([2 - 1, -2 - 1])


def test_input_magnitude_scale_is_a_box_filter_of_channel_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 3, 5, 6))
    k = InputMagnitudeScale((3, 3), (1, 1), (1, 1))(torch.from_numpy(x))
    mag = np.pad(np.abs(x).mean(axis=1)[0], 1)  # zero padding, count_include_pad: divide by 9
    expected = np.array([[mag[i:i + 3, j:j + 3].sum() / 9 for j in range(6)] for i in range(5)])
    np.testing.assert_allclose(k[0, 0].numpy(), expected, atol=1e-12)
    tokens = torch.randn(2, 4, 8, dtype=torch.float64)
    assert torch.allclose(InputMagnitudeScale(channel_dim=-1)(tokens), tokens.abs().mean(-1, keepdim=True))


W = [[[[0.5, -1.5]], [[0.0, 0.25]]], [[[-0.1, 0.2]], [[0.3, -0.4]]]]  # (2 out, 2 in, 1, 2)


@pytest.mark.parametrize(
    "quantizer,alpha,grad",
    [
        (SignWeight("channel", ClippedSTE()), [0.5625, 0.25], "clipped"),  # mean|W| per output channel
        (SignWeight("layer", IdentitySTE()), [0.40625, 0.40625], "ones"),   # one E|W| for the layer
        (SignWeight(None, ClippedSTE()), [1.0, 1.0], "clipped"),
    ],
)
def test_sign_weight_scales_and_straight_through_gradient(quantizer, alpha, grad):
    w = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    out = quantizer(w)
    expected = sign(w.detach()) * torch.tensor(alpha, dtype=torch.float64).view(2, 1, 1, 1)
    assert torch.allclose(out, expected)
    out.sum().backward()
    want = (w.detach().abs() <= 1).double() if grad == "clipped" else torch.ones_like(w)
    assert torch.equal(w.grad, want)  # straight through: not multiplied by α


def test_horq_weight_order_2():
    w = torch.tensor([[1.0, -3.0, 2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    out = ResidualSignWeight(2, ClippedSTE())(w)
    # α1 = 1.5 → R2 = [-0.5, -1.5, 0.5, -1.5], α2 = 1.0 → W ≈ 1.5·sign(W) + 1.0·sign(R2)
    assert out.tolist() == [[0.5, -2.5, 2.5, 0.5]]
    out.sum().backward()
    assert w.grad.tolist() == [[1.0, 0.0, 0.0, 1.0]]


def test_libra_pb_weight_forward_and_gradient():
    w = torch.tensor([[0.3, -0.1, 0.9, -0.5], [2.0, 1.0, 4.0, 3.0]], dtype=torch.float64, requires_grad=True)
    ede = EDE()
    ede.set_progress(0.5)
    out = LibraWeight(ede, eps=0.0)(w)

    def standardise(v):  # per output channel: (v − mean) / std (population std)
        centred = v - v.mean(dim=1, keepdim=True)
        return centred / centred.pow(2).mean(dim=1, keepdim=True).sqrt()

    ws = standardise(w.detach())
    scale = 2.0 ** torch.round(torch.log2(ws.abs().mean(dim=1, keepdim=True)))
    assert torch.allclose(out, torch.sign(ws) * scale)
    out.sum().backward()
    w_ref = w.detach().clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(standardise(w_ref), w_ref, grad_outputs=ede(ws))
    assert torch.allclose(w.grad, expected)
