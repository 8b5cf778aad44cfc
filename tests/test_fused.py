"""Fused packed layers: one native call per binary layer (packing, XNOR-popcount, α, β, bias, RPReLU/TaA
per sample, residual, LRMB, SMB) against float64 re-computations and against the unfused layers."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import binsr
from binsr.binary import binarize
from binsr.binary.layers import timestep_groups
from binsr.binary.branches import ThreeBranch
from binsr.deploy import PackedWeight, instruction_sets, native_available, pack_model, pack_signs, using_backend
from binsr.deploy.convert import packed_layers
from binsr.deploy.kernels import Epilogue, FusedCall, using_fusion
from binsr.deploy.layers import PackedThreeBranch, sparse_rows
from binsr.errors import BinsrError
from binsr.pipelines import shipped_models
from test_deploy import TwoLayers

pytestmark = pytest.mark.skipif(not native_available(), reason="the native kernels are not built here")
ISAS = instruction_sets()


def sign64(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0).double()


def random_weight(out: int, channels: int, kernel: int | None, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(negative mask, ±1 float64 weight): conv (O, C, k, k) or linear (O, C)."""
    shape = (out, channels, kernel, kernel) if kernel else (out, channels)
    negative = torch.rand(*shape, generator=generator) < 0.5
    return negative, 1.0 - 2.0 * negative.double()


def packed(negative: torch.Tensor, alpha: torch.Tensor | None = None) -> PackedWeight:
    bits = pack_signs(negative.permute(0, 2, 3, 1) if negative.dim() == 4 else negative)
    return PackedWeight(bits, negative.shape[1], alpha)


# (N, C, O, H, W, k, stride, padding): word tails, strides, paddings, ragged and full 64-pixel rows
CONV_CASES = [(2, 70, 13, 9, 11, 3, 1, 1), (1, 64, 16, 8, 64, 3, 1, 1), (2, 5, 7, 10, 13, 3, 2, 1),
              (1, 130, 9, 17, 5, 1, 1, 0), (1, 200, 33, 6, 20, 3, 1, 2), (1, 64, 8, 16, 16, 3, 2, 1),
              (1, 1, 3, 1, 1, 3, 1, 1)]


@pytest.mark.parametrize("isa", ISAS)
def test_fused_conv_gives_the_exact_integer_dot_products(isa: str) -> None:
    generator = torch.Generator().manual_seed(0)
    for n, c, o, h, w, k, stride, pad in CONV_CASES:
        x = torch.randn(n, c, h, w, generator=generator)
        x[0, 0, 0, 0] = 0.0  # sign(0) = +1
        negative, weight = random_weight(o, c, k, generator)
        for threshold in (None, 0.3 * torch.randn(c, generator=generator)):
            shifted = x - threshold.view(1, -1, 1, 1) if threshold is not None else x
            expected = F.conv2d(sign64(shifted), weight, stride=stride, padding=pad)
            with using_backend(isa):
                got = FusedCall(tuple(x.shape), packed(negative), Epilogue(), (stride, stride), (pad, pad), threshold)(x)
            assert torch.equal(got.double(), expected), (isa, n, c, o, h, w, k, stride, pad)


@pytest.mark.parametrize("isa", ISAS)
def test_fused_linear_gives_the_exact_integer_dot_products(isa: str) -> None:
    generator = torch.Generator().manual_seed(1)
    for lead, c, o in [((5,), 64, 3), ((2, 37), 130, 17), ((3, 4), 1, 5), ((4, 64), 192, 96), ((1,), 256, 256)]:
        x = torch.randn(*lead, c, generator=generator)
        negative, weight = random_weight(o, c, None, generator)
        threshold = torch.randn(c, generator=generator)
        with using_backend(isa):
            got = FusedCall(tuple(x.shape), packed(negative), Epilogue(), threshold=threshold)(x)
        assert got.shape == (*lead, o)
        assert torch.equal(got.double(), sign64(x - threshold) @ weight.T), (isa, lead, c, o)


def reference(x: torch.Tensor, weight: torch.Tensor, alpha: torch.Tensor, stride: int, pad: int, rows: int,
              epilogue: Epilogue, dense_sparse: torch.Tensor) -> torch.Tensor:
    """The whole layer in float64 (conv: weight 4-D; linear: 2-D), β per pixel, as the simulated layer adds."""
    x64 = x.double()
    conv = weight.dim() == 4
    beta = x64.abs().mean(1 if conv else -1, keepdim=True)
    q = sign64(x) * beta
    if conv:
        out = F.conv2d(q, weight, stride=stride, padding=pad) * alpha.double().view(1, -1, 1, 1)
        sampled = x64[:, :, ::stride, ::stride]
        low_rank = torch.einsum("or,rc,nchw->nohw", epilogue.up.double(), epilogue.down.double(), sampled)
        sparse = torch.einsum("oc,nchw->nohw", dense_sparse, sampled)
    else:
        out = q @ weight.T * alpha.double()
        low_rank = x64 @ (epilogue.up.double() @ epilogue.down.double()).T
        sparse = x64 @ dense_sparse.T
    out = out + epilogue.bias.double().view(-1, *([1, 1] if conv else []))
    shift, slope, bias = (p.double() for p in epilogue.activation)
    units = out.shape[0] if conv else out.numel() // out.shape[-1]  # samples, or tokens in order
    flat = out.reshape(units, -1) if not conv else out
    group = torch.arange(units) // (units // rows)

    def per_unit(p: torch.Tensor) -> torch.Tensor:
        return p[group].view(units, -1, 1, 1) if conv else p[group]

    y = flat - per_unit(shift)
    flat = torch.where(y >= 0, y, per_unit(slope) * y) + per_unit(bias)
    out = flat.reshape(out.shape)
    if epilogue.residual:
        out = out + x64
    return out + low_rank + sparse


def random_epilogue(o: int, c: int, rows: int, residual: bool, generator: torch.Generator
                    ) -> tuple[Epilogue, torch.Tensor]:
    """An epilogue with every part (rank 3, 2·max(C, O) sparse entries) and the dense sparse matrix."""
    k = min(2 * max(c, o), c * o)
    index = torch.randperm(o * c, generator=generator)[:k].sort().values
    dense = torch.zeros(o * c, dtype=torch.float64)
    values = torch.randn(k, generator=generator)
    dense[index] = values.double()

    class Sparse:  # what sparse_rows reads from a SparseBranch
        shape = (o, c)

    Sparse.index, Sparse.values = index.to(torch.int32), values
    activation = (torch.randn(rows, o, generator=generator), torch.rand(rows, o, generator=generator),
                  torch.randn(rows, o, generator=generator))
    return Epilogue(bias=torch.randn(o, generator=generator), activation=activation, residual=residual,
                    down=torch.randn(3, c, generator=generator), up=torch.randn(o, 3, generator=generator),
                    sparse=sparse_rows(Sparse)), dense.view(o, c)


@pytest.mark.parametrize("isa", ISAS)
def test_fused_epilogue_matches_float64(isa: str) -> None:
    generator = torch.Generator().manual_seed(2)
    cases = [(2, 24, 24, 9, 13, 3, 1, 1, True), (2, 40, 24, 64, 64, 3, 1, 1, False), (2, 24, 16, 9, 9, 3, 2, 1, False),
             (1, 64, 128, 8, 8, 1, 1, 0, False), (2, 70, 70, 7, 16, 3, 1, 1, True),
             (1, 64, 40, 11, 37, 3, 2, 1, False), (2, 100, 12, 20, 34, 3, 2, 1, False)]  # 8-pixel strided tiles + tails
    for n, c, o, h, w, k, stride, pad, residual in cases:
        x = torch.randn(n, c, h, w, generator=generator)
        negative, weight = random_weight(o, c, k, generator)
        alpha = torch.rand(o, generator=generator)
        epilogue, dense = random_epilogue(o, c, n, residual, generator)
        with using_backend(isa):
            got = FusedCall(tuple(x.shape), packed(negative, alpha), epilogue, (stride, stride), (pad, pad),
                            pixel_scale=True)(x)
        expected = reference(x, weight, alpha, stride, pad, n, epilogue, dense)
        assert torch.allclose(got.double(), expected, rtol=1e-5, atol=2e-4), (isa, n, c, o, h, w, k, stride)


@pytest.mark.parametrize("isa", ISAS)
def test_fused_linear_epilogue_per_sample_rows_of_a_folded_batch(isa: str) -> None:
    generator = torch.Generator().manual_seed(3)
    for lead, c, o, rows in [((2 * 4, 16), 64, 64, 2), ((3, 5), 130, 17, 3), ((1,), 256, 96, 1)]:
        x = torch.randn(*lead, c, generator=generator)  # e.g. the windows of 2 samples, sample-major
        negative, weight = random_weight(o, c, None, generator)
        alpha = torch.rand(o, generator=generator)
        epilogue, dense = random_epilogue(o, c, rows, c == o, generator)
        with using_backend(isa):
            got = FusedCall(tuple(x.shape), packed(negative, alpha), epilogue, pixel_scale=True)(x)
        expected = reference(x, weight, alpha, 1, 0, rows, epilogue, dense)
        assert torch.allclose(got.double(), expected, rtol=1e-5, atol=2e-4), (isa, lead, c, o)


class Layers(TwoLayers):
    """TwoLayers' 3×3, strided 3×3 and 1×1 convs, then its linear on folded, non-contiguous tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.point(self.down(self.conv(x)))
        tokens = y.permute(0, 2, 3, 1).reshape(2 * y.shape[0], -1, 40)  # two "windows" per sample
        return self.fc(tokens)


UNFUSED = {"xnor": "output scale InputMagnitudeScale is not fused", "bidm": "output scale InputMagnitudeScale is not fused"}
METHOD_OPTIONS = {"bnn": {}, "xnor": {}, "reactnet": {}, "bbcu": {}, "bidm": {}, "bidiffsr": {"timestep_groups": 3},
                  "bimacosr": {"rank": 4, "k": 8, "timestep_groups": 3}, "horq": {"order": 1}}


@pytest.mark.parametrize("method", sorted(METHOD_OPTIONS))
def test_fused_layers_equal_the_unfused_ones(method: str) -> None:
    torch.manual_seed(0)
    model, _ = binarize(Layers(), method, **METHOD_OPTIONS[method])
    with torch.no_grad():  # thresholds, RPReLU, TaR and shortcuts non-trivial
        for name, param in model.named_parameters():
            if not name.endswith("weight"):
                param.add_(0.1 * torch.randn_like(param))
    pack_model(model)
    if method == "bimacosr":
        assert sum(isinstance(m, PackedThreeBranch) for m in model.modules()) == 4
        assert not any(type(m) is ThreeBranch for m in model.modules())
    x = torch.randn(2, 24, 11, 9)
    with torch.no_grad(), timestep_groups(torch.tensor([100, 900]), 1000):  # each sample its own set (3 groups: 0, 2)
        fused = model(x)
        with using_fusion(False):
            unfused = model(x)
    assert torch.allclose(fused, unfused, rtol=1e-5, atol=1e-5), float((fused - unfused).abs().max())
    layers = packed_layers(model).values()
    assert all(bool(layer._plans) == (layer.fusion_problem() is None) for layer in layers)  # fused where it can be
    problems = {layer.fusion_problem() for layer in layers}
    assert problems == {UNFUSED.get(method)}, problems  # all fused but XNOR and BiDM (their K map)


def test_a_fused_layer_follows_its_parameters() -> None:
    torch.manual_seed(1)
    model, _ = binarize(Layers(), "bimacosr", rank=4, k=8)
    pack_model(model)
    layer = model.conv
    x = torch.randn(1, 24, 8, 8)
    with torch.no_grad():
        before = layer(x)
        layer.bmb.activation.bias.add_(1.0)  # in place, as load_state_dict does
        layer.lrmb.up.weight.mul_(2.0)
        after = layer(x)
        with using_fusion(False):
            expected = layer(x)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # other memory under the same parameter (no version bump): followed too
        layer.bmb.activation.bias.data = layer.bmb.activation.bias.detach() - 3.0
        moved = layer(x)
        with using_fusion(False):
            expected = layer(x)
    assert not torch.allclose(moved, after)
    assert torch.allclose(moved, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # another parameter object in its place (load_state_dict(assign=True) does this)
        layer.lrmb.down.weight = torch.nn.Parameter(-layer.lrmb.down.weight.detach(), requires_grad=False)
        replaced = layer(x)
        with using_fusion(False):
            expected = layer(x)
    assert not torch.allclose(replaced, moved)
    assert torch.allclose(replaced, expected, rtol=1e-5, atol=1e-5)


def test_fused_calls_refuse_what_they_were_not_prepared_for() -> None:
    negative, _ = random_weight(8, 16, 3, torch.Generator().manual_seed(4))
    call = FusedCall((1, 16, 8, 8), packed(negative), Epilogue(), padding=(1, 1))
    with pytest.raises(BinsrError, match="prepared for inputs"):
        call(torch.zeros(1, 16, 9, 8))
    with pytest.raises(BinsrError, match="float32"):
        call(torch.zeros(1, 16, 8, 8, dtype=torch.float64))
    with pytest.raises(BinsrError, match="expects 16 input channels"):
        FusedCall((1, 12, 8, 8), packed(negative), Epilogue())
    with pytest.raises(BinsrError, match=r"bias: expected shape \(8,\)"):
        FusedCall((1, 16, 8, 8), packed(negative), Epilogue(bias=torch.zeros(7)))
    with pytest.raises(BinsrError, match="residual"):
        FusedCall((1, 16, 8, 8), packed(negative), Epilogue(residual=True))
    with pytest.raises(BinsrError, match="one that divides the 2 samples"):
        rows = (torch.zeros(3, 8),) * 3
        FusedCall((2, 16, 8, 8), packed(negative), Epilogue(activation=rows), padding=(1, 1))

    class Broken:
        shape, index, values = (8, 16), torch.tensor([5, 200], dtype=torch.int32), torch.zeros(2)

    with pytest.raises(BinsrError, match="sorted and inside"):
        sparse_rows(Broken)


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_shipped_models_fused_and_unfused_agree(name: str) -> None:
    """With PyTorch's norms between the packed layers the fused calls compute what the unfused ones do (1e-4).
    Input fusion computes each GroupNorm in double as one affine per channel, not PyTorch's float32 rounding, so
    a pre-activation within rounding of zero may binarize the other way and move every pixel downstream a
    little: seen on an Intel Xeon (bimacosr-real-x4: max 0.031, 44.5 dB), not on an AMD EPYC. Bound that as a
    PSNR (a fusion bug, such as a wrong group, costs tens of dB)."""
    from binsr.deploy.kernels import using_input_fusion

    upscaler = binsr.load(name, steps=2)
    lr = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        fused = upscaler.upscale(lr)
        with using_input_fusion(False):
            pytorch_norms = upscaler.upscale(lr)
        with using_fusion(False):
            unfused = copy.copy(upscaler).upscale(lr)
    assert (pytorch_norms - unfused).abs().max() < 1e-4
    mse = float(((fused - unfused) ** 2).mean())
    assert mse <= 1e-4, f"fused against unfused: {10 * math.log10(1 / mse):.1f} dB"  # 40 dB on [0, 1] images


# --- what sits between binary layers, folded into their calls ------------------------------------------------


def test_input_transform_norm_affine_silu_concatenation_and_added_tensor_match_pytorch() -> None:
    """h = SiLU(GroupNorm(cat(x, x2)) * mul + shift), then the three-branch layer, then + add: the fused call
    against the same steps as PyTorch float32 ops and the unfused layer (rounding of h only)."""
    from binsr.deploy.kernels import InputTransform

    generator = torch.Generator().manual_seed(11)
    for n, c1, c2, o, size, groups in [(1, 64, 64, 32, 20, 8), (2, 128, 0, 64, 9, 4), (1, 64, 30, 16, 33, 2)]:
        c = c1 + c2
        x = torch.randn(n, c, size, size, generator=generator) * 3 + 1
        negative, _ = random_weight(o, c, 3, generator)
        weight, gamma, beta = packed(negative, torch.rand(o, generator=generator)), torch.rand(c) + 0.5, torch.randn(c)
        mul, shift = 1 + 0.1 * torch.randn(n, c, generator=generator), 0.1 * torch.randn(n, c, generator=generator)
        add = torch.randn(n, o, size, size, generator=generator)
        epilogue = Epilogue(bias=torch.randn(o, generator=generator), down=torch.randn(4, c, generator=generator),
                            up=torch.randn(o, 4, generator=generator))
        h = F.silu(F.group_norm(x, groups, gamma, beta, 1e-5) * mul[..., None, None] + shift[..., None, None])
        expected = FusedCall(tuple(x.shape), weight, epilogue, padding=(1, 1), pixel_scale=True)(h) + add
        split = c1 if c2 and c1 % 64 == 0 else 0
        transform = InputTransform(groups, gamma, beta, 1e-5, True, split)
        call = FusedCall(tuple(x.shape), weight, epilogue, padding=(1, 1), pixel_scale=True, transform=transform)
        got = call(x[:, :split].contiguous(), x2=x[:, split:].contiguous(), mul=mul, shift=shift, add=add) if split \
            else call(x, mul=mul, shift=shift, add=add)
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-3), (n, c1, c2, (got - expected).abs().max())


def test_packed_resshift_blocks_fold_their_norms_and_concatenations_and_agree_with_the_unfused_ones() -> None:
    from binsr.deploy.blocks import PackedScaleShiftResBlock
    from binsr.deploy.kernels import using_input_fusion
    from binsr.models.resshift_unet import ScaleShiftResBlock

    torch.manual_seed(3)
    for dim, dim_out, parts in [(64, 64, [64]), (128, 64, [64, 64]), (64, 128, [64])]:
        block, _ = binarize(ScaleShiftResBlock(dim, dim_out, 32, 8, 0.0), "bimacosr", rank=4, k=16)
        with torch.no_grad():  # GroupNorm affine and RPReLU away from their initial values
            for p in block.parameters():
                p.add_(0.05 * torch.randn_like(p))
        wrapper = torch.nn.ModuleDict({"b": block})
        pack_model(wrapper)
        packed_block = wrapper["b"]
        assert isinstance(packed_block, PackedScaleShiftResBlock)
        x = [torch.randn(2, p, 12, 12) for p in parts]
        emb = torch.randn(2, 32)
        with torch.no_grad():
            fused = packed_block(x if len(x) > 1 else x[0], emb)
            with using_input_fusion(False):
                exact = packed_block(x if len(x) > 1 else x[0], emb)
            simulated = ScaleShiftResBlock.forward(packed_block, torch.cat(x, 1), emb)
        assert torch.equal(exact, simulated)
        assert any(key[4] is not None for key in packed_block.conv1.bmb._plans)  # the transformed calls ran
        assert torch.allclose(fused, exact, rtol=1e-4, atol=1e-3), (dim, dim_out, (fused - exact).abs().max())
        seen: list = []  # a hook on a part (an analysis, a counter) sees its calls: the block runs unfused then
        hook = packed_block.conv1.register_forward_hook(lambda m, a, o, seen=seen: seen.append(o.shape))
        with torch.no_grad():
            assert torch.equal(packed_block(x if len(x) > 1 else x[0], emb), exact) and len(seen) == 1
        hook.remove()
