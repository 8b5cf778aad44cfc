"""Binary layers: the pipeline against explicit formulas, timestep groups per sample, accounting."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from binsr.binary import (
    ApproxSign,
    BinaryConv2d,
    BinaryLinear,
    GroupedBias,
    GroupedRPReLU,
    ResidualSignActivation,
    ResidualSignWeight,
    SignActivation,
    SignWeight,
    timestep_groups,
    timestep_to_group,
)
from binsr.binary.layers import IdentityShortcut
from binsr.binary.quantizers import InputMagnitudeScale
from binsr.complexity import count_complexity


def rprelu(x, shift, slope, bias):
    y = x - shift
    return torch.where(y >= 0, y, slope * y) + bias


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return module


def test_bi_conv_pipeline_matches_formula():
    """BI-DiffSR's BI-Conv: TaA(conv(sign(TaR(x)), α·sign(W))) + x."""
    layer = BinaryConv2d(4, 4, 3, padding=1, bias=True, input_quantizer=SignActivation(ApproxSign()),
                         weight_quantizer=SignWeight("channel"), pre_bias=GroupedBias(4),
                         activation=GroupedRPReLU(4), shortcut=IdentityShortcut()).double()
    randomize(layer)
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    b = layer.pre_bias.bias[0].view(1, 4, 1, 1)
    w = layer.weight
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    conv = F.conv2d(torch.where(x + b >= 0, 1.0, -1.0).double(), alpha * torch.where(w >= 0, 1.0, -1.0).double(),
                    layer.bias, padding=1)
    act = layer.activation
    expected = rprelu(conv, act.shift[0].view(1, 4, 1, 1), act.slope[0].view(1, 4, 1, 1),
                      act.bias[0].view(1, 4, 1, 1)) + x
    assert torch.allclose(layer(x), expected, atol=1e-12)


def test_xnor_conv_scales_output_by_k_and_alpha():
    layer = BinaryConv2d(3, 5, 3, stride=2, padding=1, bias=False, input_quantizer=SignActivation(ApproxSign()),
                         weight_quantizer=SignWeight("channel"),
                         output_scale=InputMagnitudeScale((3, 3), (2, 2), (1, 1))).double()
    randomize(layer, 1)
    x = torch.randn(1, 3, 7, 7, dtype=torch.float64)
    k = F.avg_pool2d(x.abs().mean(1, keepdim=True), 3, 2, 1, count_include_pad=True)
    alpha = layer.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = F.conv2d(torch.where(x >= 0, 1.0, -1.0).double(), alpha * torch.sign(layer.weight), stride=2, padding=1) * k
    assert torch.allclose(layer(x), expected, atol=1e-12)


def test_binary_linear_on_tokens_with_per_sample_groups():
    layer = BinaryLinear(6, 6, input_quantizer=SignActivation(ApproxSign(), channel_dim=-1),
                         weight_quantizer=SignWeight("channel"), pre_bias=GroupedBias(6, 5, channel_dim=-1),
                         activation=GroupedRPReLU(6, 5, channel_dim=-1)).double()
    randomize(layer, 2)
    x = torch.randn(3, 4, 6, dtype=torch.float64)  # (B, tokens, C)
    with timestep_groups(torch.tensor([0, 4, 2]), 5):  # T = K: each timestep is its group
        batched = layer(x)
    for i, g in enumerate([0, 4, 2]):
        with timestep_groups(g, 5):
            assert torch.allclose(batched[i], layer(x[i : i + 1])[0], atol=1e-12)
    assert not torch.allclose(batched[1], layer(x[1:2])[0])  # outside a context: group 0; groups really differ


def test_groups_come_from_the_context_and_default_to_zero():
    bias = GroupedBias(2, groups=3)
    with torch.no_grad():
        bias.bias.copy_(torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))
    x = torch.zeros(2, 2, 1, 1)
    assert bias(x).flatten().tolist() == [1.0] * 4
    with timestep_groups(torch.tensor([1500, 700]), 2000):  # ⌊t·3/2000⌋: 2, 1
        assert bias(x)[:, 0, 0, 0].tolist() == [3.0, 2.0]
        with timestep_groups(0, 2000):  # nested: the inner context, then the outer one again
            assert bias(x)[:, 0, 0, 0].tolist() == [1.0, 1.0]
        assert bias(x)[:, 0, 0, 0].tolist() == [3.0, 2.0]
        assert "group" not in vars(bias)  # nothing is stored on the module
    assert bias(x).flatten().tolist() == [1.0] * 4
    with timestep_groups(torch.tensor([0, 1, 2]), 3), pytest.raises(ValueError, match="3 timestep groups given for a batch of 2"):
        bias(x)


def test_timestep_to_group_rule():
    t = torch.tensor([0, 399, 400, 1000, 1999, 2500])
    assert timestep_to_group(t, 5, 2000).tolist() == [0, 0, 1, 2, 4, 4]
    model = nn.Sequential(GroupedBias(2, 5), GroupedRPReLU(2, 2))
    with timestep_groups(torch.tensor([1999, 10]), 2000):
        assert model[0].group.tolist() == [4, 0] and model[1].group.tolist() == [1, 0]


def test_complexity_of_binary_layers():
    layer = BinaryConv2d(16, 32, 3, padding=1, input_quantizer=SignActivation(), weight_quantizer=SignWeight())
    report = count_complexity(layer, torch.zeros(1, 16, 8, 8))
    macs = 8 * 8 * 32 * 16 * 9
    assert report.params_binary == 32 * 16 * 9 and report.params_fp == 32  # the bias
    assert report.bops == macs and report.flops == 0
    horq = BinaryConv2d(16, 32, 3, padding=1, input_quantizer=ResidualSignActivation(2),
                        weight_quantizer=ResidualSignWeight(2))
    report2 = count_complexity(horq, torch.zeros(1, 16, 8, 8))
    assert report2.params_binary == 2 * 32 * 16 * 9 and report2.bops == 4 * macs
    fp_inputs = BinaryConv2d(16, 32, 3, padding=1, weight_quantizer=SignWeight())  # weights only
    report3 = count_complexity(fp_inputs, torch.zeros(1, 16, 8, 8))
    assert report3.bops == 0 and report3.flops == macs and report3.params_binary == 32 * 16 * 9
