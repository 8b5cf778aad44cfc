"""SR3 / BI-DiffSR UNets: the paper's Table 2 counts, which parts stay FP, ablation switches, shapes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from binsr.binary import BinaryConv2d, BinaryLinear
from binsr.binary.layers import GroupedBias, IdentityShortcut
from binsr.complexity import count_complexity
from binsr.errors import BinsrError
from binsr.models import NetworkSpec, apply_binarization, bind_timesteps, build, network_preset
from binsr.models.presets import BIDIFFSR_BINARIZATION

BIDIFFSR = object()


def unet(binarize: object = BIDIFFSR, **changes: object) -> nn.Module:
    """The bidiffsr-small UNet with ``changes``, binarized as ``binarize`` says (default BI-DiffSR's), T = 2000."""
    network = NetworkSpec.of(replace(network_preset("bidiffsr-unet-small").config, **changes)).build()
    binarize = BIDIFFSR_BINARIZATION if binarize is BIDIFFSR else binarize
    if binarize is not None:
        apply_binarization(network, binarize)
    return bind_timesteps(network, 2000)


@pytest.mark.parametrize(
    "arch,params,ops,fp,binary",
    [("bidiffsr-unet", 4.58e6, 36.67e9, 3.07e6, 48.21e6), ("sr3-unet", 55.41e6, 176.41e9, 55.41e6, 0)],
)
def test_table2_params_and_ops_at_256(arch, params, ops, fp, binary):
    model = build(arch)
    report = count_complexity(model, *model.example_inputs(256, 256))
    assert report.params == pytest.approx(params, rel=0.02)
    assert report.ops == pytest.approx(ops, rel=0.03)
    assert report.params_fp == pytest.approx(fp, rel=0.02)
    assert report.params_binary == pytest.approx(binary, rel=0.001, abs=1)
    assert report.uncounted == []


def test_bidiffsr_keeps_the_right_parts_full_precision():
    model = build("bidiffsr-unet")
    binary = {n for n, m in model.named_modules() if isinstance(m, (BinaryConv2d, BinaryLinear))}
    fp_convs = {n for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)}
    assert {"head", "tail.2", "mid.0.attn.qkv", "mid.0.attn.out", "time_mlp.1"} <= fp_convs
    assert all(name.endswith("time_proj") for name in fp_convs if "blocks" in name and "up_levels.2" not in name
               and "up_levels.3" not in name and "attn" not in name)
    # up path at 128 and 256 (levels 2 and 3) is FP, but the CP-Up after level 2 is binary
    assert not any(n.startswith(("up_levels.2.blocks", "up_levels.3.blocks", "up_levels.2.fusions")) for n in binary)
    assert "up_levels.2.resample.conv1" in binary and "down_levels.0.blocks.0.conv1" in binary
    for name in binary:  # every BI-Conv keeps its shape, so each has its identity residual and K = 5 groups
        layer = model.get_submodule(name)
        assert isinstance(layer.shortcut, IdentityShortcut) and layer.pre_bias.num_groups == 5


@pytest.mark.parametrize("changes", [
    {"fusion": "concat"}, {"fusion": "split"}, {"fusion": "add"}, {"resample": "conv", "fusion": "concat"},
    {"resample": "conv", "fusion": "block"},
    {"binarize": {"method": "bidiffsr", "options": {"timestep_groups": 1, "residual": False}}},
    {"binarize": {"method": "xnor"}}, {"binarize": {"method": "bbcu"}}, {"binarize": None},
])
def test_ablation_switches_build_and_run(changes):
    model = unet(**changes)
    x, t = torch.randn(2, 6, 16, 16), torch.tensor([10, 1990])
    out = model(x, t)
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
    out.mean().backward()


def test_timesteps_select_groups_per_sample():
    torch.manual_seed(0)
    model = unet().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, GroupedBias):
                m.bias.normal_()
    x = torch.randn(2, 6, 16, 16)
    with torch.no_grad():
        both = model(x, torch.tensor([100, 1900]))
        first = model(x[:1], torch.tensor([100]))
        second = model(x[1:], torch.tensor([1900]))
        other = model(x[1:], torch.tensor([100]))
    assert torch.allclose(both[0], first[0], atol=1e-5) and torch.allclose(both[1], second[0], atol=1e-5)
    assert not torch.allclose(second, other, atol=1e-3)


def test_bad_configs_and_sizes():
    with pytest.raises(BinsrError, match="fusion must be one of"):
        replace(network_preset("bidiffsr-unet-small").config, fusion="mix")
    with pytest.raises(BinsrError, match="fusion 'cs' needs equal channels"):  # strided convs keep channels
        unet(resample="conv")
    with pytest.raises(BinsrError, match="multiple of 4"):
        unet()(torch.randn(1, 6, 18, 16), torch.zeros(1))


@pytest.mark.parametrize("kind", ["sr3", "resshift"])
def test_zero_initialised_residual_models_start_at_bicubic(kind):
    """zero_init_tail + the residual target: the untrained model's upscaled image is the bicubic image."""
    from binsr.diffusion import SR3, ResShift, ResShiftSchedule
    from binsr.diffusion.sr3 import SR3Schedule
    from binsr.image import imresize
    from binsr.models import ResShiftUNet
    from binsr.models.presets import network_preset
    from binsr.pipelines import OneStepUpscaler, ResShiftUpscaler, SR3Upscaler

    lr = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    bicubic = imresize(lr, 4.0).clamp(0, 1)
    if kind == "sr3":
        net = unet(zero_init_tail=True, inner_channel=16, norm_groups=4)
        assert float(net(torch.rand(1, 6, 32, 32), torch.tensor([5])).detach().abs().max()) == 0.0
        upscalers = [SR3Upscaler(net, SR3(SR3Schedule(prediction_type="sample", target="residual")), 4, steps=3,
                                 multiple=net.config.multiple)]
    else:
        config = network_preset("resshift-unet-small").config
        net = ResShiftUNet(type(config)(**{**config.__dict__, "zero_init_tail": True}))
        process = ResShift(ResShiftSchedule(target="residual"))
        upscalers = [cls(net, process, 4, multiple=config.multiple) for cls in (ResShiftUpscaler, OneStepUpscaler)]
    for upscaler in upscalers:
        with torch.no_grad():
            torch.testing.assert_close(upscaler.upscale(lr), bicubic, atol=2e-6, rtol=0)


def test_nearest_upsampling_is_interpolate_in_values_and_gradients():
    from binsr.models.denoiser import upsample_nearest2x

    x = torch.randn(2, 5, 3, 7, requires_grad=True)
    ours, reference = upsample_nearest2x(x), torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
    assert torch.equal(ours, reference)
    weights = torch.randn_like(ours)
    (grad,) = torch.autograd.grad((ours * weights).sum(), x)
    (expected,) = torch.autograd.grad((reference * weights).sum(), x)
    assert torch.allclose(grad, expected)
