"""BiMaCoSR's three-branch layer: exact init, the right SVD factors and top-k entries, ablations, budgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from binsr.binary import BinaryConv2d, BinaryLinear, binarize, decompose
from binsr.binary.branches import build_three_branch
from binsr.binary.budget import allocate_ranks, allocate_sparse
from binsr.errors import BinsrError


def centre(weight, matrix):
    out = np.zeros_like(weight)
    out[:, :, weight.shape[2] // 2, weight.shape[3] // 2] = matrix
    return out


@pytest.mark.parametrize("shape", [(12, 8, 3, 3), (8, 20, 1, 1), (10, 6, 5, 5)])
def test_decomposition_is_exact_and_uses_the_right_parts(shape):
    rng = np.random.default_rng(0)
    w = rng.normal(size=shape)
    rank, k = 3, 2 * max(shape[:2])
    parts = decompose(torch.from_numpy(w), rank, k)
    s = np.zeros(shape[:2])
    s.flat[parts.sparse_index.numpy()] = parts.sparse_values.numpy()
    lowrank = (parts.up @ parts.down).numpy()
    np.testing.assert_allclose(parts.remainder.numpy() + centre(w, s + lowrank), w, atol=1e-12)
    # SMB: the k largest |window mean|, with their window-mean values
    mean = w.mean(axis=(2, 3))
    expected_index = np.sort(np.argsort(-np.abs(mean).ravel(), kind="stable")[:k])
    assert parts.sparse_index.tolist() == expected_index.tolist()
    np.testing.assert_allclose(parts.sparse_values.numpy(), mean.ravel()[expected_index])
    # LRMB: the best rank-r approximation (Eckart–Young) of the window mean of W − S
    target = (w - centre(w, s)).mean(axis=(2, 3))
    u, sigma, vh = np.linalg.svd(target)
    np.testing.assert_allclose(lowrank, (u[:, :rank] * sigma[:rank]) @ vh[:rank], atol=1e-10)
    # the split is symmetric: up = U_r·√Σ_r and down = √Σ_r·V_rᵀ, so upᵀ·up = down·downᵀ = Σ_r
    up, down = parts.up.numpy(), parts.down.numpy()
    np.testing.assert_allclose(up.T @ up, np.diag(sigma[:rank]), atol=1e-10)
    np.testing.assert_allclose(down @ down.T, np.diag(sigma[:rank]), atol=1e-10)


def _fp_three_branch(layer, **kwargs):
    """Three branches whose BMB keeps FP weights and inputs (no quantizers): must equal the layer."""
    return build_three_branch(layer, lambda fp: (BinaryConv2d if isinstance(fp, nn.Conv2d) else BinaryLinear).from_float(fp),
                              **kwargs)


@pytest.mark.parametrize(
    "layer,x",
    [
        (nn.Conv2d(8, 12, 3, padding=1), torch.randn(2, 8, 9, 7)),
        (nn.Conv2d(8, 6, 3, stride=2, padding=1), torch.randn(2, 8, 9, 7)),
        (nn.Conv2d(6, 6, 3, padding=2, dilation=2), torch.randn(1, 6, 10, 10)),
        (nn.Linear(10, 14), torch.randn(3, 5, 10)),
    ],
)
def test_branches_reproduce_the_fp_layer_at_init(layer, x):
    layer, x = layer.double(), x.double()
    three = _fp_three_branch(layer, rank=3, k=20)
    assert torch.allclose(three(x), layer(x), atol=1e-10)
    assert three.lrmb.rank == 3 and three.smb.k == 20 and three.smb.index.dtype == torch.int32


def test_dropping_a_branch_leaves_its_share_in_bmb():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1).double()
    both = _fp_three_branch(conv, rank=2, k=16)
    no_lrmb = _fp_three_branch(conv, rank=2, k=16, use_lrmb=False)
    no_smb = _fp_three_branch(conv, rank=2, k=16, use_smb=False)
    assert no_lrmb.lrmb is None and no_smb.smb is None
    x = torch.randn(1, 8, 6, 6, dtype=torch.float64)
    for three in (no_lrmb, no_smb):  # still exact with FP weights
        assert torch.allclose(three(x), conv(x), atol=1e-10)
    centre_of = lambda t: t.bmb.weight[:, :, 1, 1]  # noqa: E731
    # without LRMB, its low-rank part stays in BMB's weight; without SMB, the sparse part does
    assert torch.allclose(centre_of(no_lrmb) - centre_of(both), both.lrmb.matrix(), atol=1e-12)
    diff = centre_of(no_smb) - centre_of(both)
    assert torch.count_nonzero(diff.abs() > 1e-12) > 16  # S plus the changed low-rank fit
    assert torch.equal(no_lrmb.bmb.weight[:, :, 0, 0], conv.weight[:, :, 0, 0])  # off-centre taps untouched


def test_sparse_branch_trains_only_its_values():
    three = _fp_three_branch(nn.Linear(6, 4), rank=1, k=5)
    three(torch.randn(2, 6)).sum().backward()
    grad = three.smb.values.grad
    assert grad is not None and grad.shape == (5,)
    assert not three.smb.index.requires_grad
    dense = three.smb.matrix().detach()
    assert torch.count_nonzero(dense) <= 5


def test_bad_rank_k_and_layers_are_clear_errors():
    conv = nn.Conv2d(4, 6, 3, padding=1)
    with pytest.raises(BinsrError, match=r"rank 5 must be between 0 and min\(C_in, C_out\) = 4"):
        decompose(conv.weight, 5, 4)
    with pytest.raises(BinsrError, match="k = 25 sparse entries do not fit a 6x4 weight"):
        decompose(conv.weight, 1, 25)
    with pytest.raises(BinsrError, match="grouped convolution"):
        _fp_three_branch(nn.Conv2d(4, 4, 3, padding=1, groups=2), rank=1, k=1)
    with pytest.raises(BinsrError, match="even kernel"):
        _fp_three_branch(nn.Conv2d(4, 4, 2), rank=1, k=1)
    with pytest.raises(BinsrError, match="off-centre"):
        _fp_three_branch(nn.Conv2d(4, 4, 3, padding=0), rank=1, k=1)


def test_rank_budget_goes_where_the_energy_is():
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    v, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    steep = torch.from_numpy(u @ np.diag([10.0, 5.0] + [0.01] * 14) @ v.T)  # two strong directions
    flat = torch.from_numpy(u @ np.diag([1.0] * 16) @ v.T)                   # energy spread evenly
    ranks = allocate_ranks({"steep": steep, "flat": flat}, budget=32 * 4)    # room for 4 ranks
    assert ranks["steep"] == 2 and ranks["flat"] == 2  # steep's 3rd direction is worth less than flat's
    assert sum(r * 32 for r in ranks.values()) <= 128
    assert allocate_ranks({"steep": steep, "flat": flat}, budget=32 * 2) == {"steep": 2, "flat": 0}


def test_sparse_budget_takes_the_largest_shares():
    a = torch.tensor([[10.0, 0.1], [0.1, 0.1]])  # one entry holds nearly all of a's energy
    b = torch.ones(2, 2)                          # four equal shares of 1/4
    assert allocate_sparse({"a": a, "b": b}, 1) == {"a": 1, "b": 0}
    assert allocate_sparse({"a": a, "b": b}, 5) == {"a": 1, "b": 4}


def test_bimacosr_auto_rank_and_k_respect_the_budget():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 32, 1),
                          nn.Conv2d(32, 3, 3, padding=1))
    _, uniform = binarize(model, "bimacosr", keep_fp=["0", "3"])
    assert all(c.options == {"rank": 8, "k": 32 if c.name == "1" else 64} for c in uniform.replaced)
    half, report = binarize(model, "bimacosr", keep_fp=["0", "3"], rank="auto", k="auto", budget=0.5)
    ranks = {c.name: c.options["rank"] for c in report.replaced}
    ks = {c.name: c.options["k"] for c in report.replaced}
    assert sum(r * (16 + (16 if n == "1" else 32)) for n, r in ranks.items()) <= 0.5 * (8 * 32 + 8 * 48)
    assert sum(ks.values()) == int(0.5 * (32 + 64))
    assert half(torch.randn(1, 3, 8, 8)).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("layer,x", [(nn.Conv2d(32, 24, 3, stride=2, padding=1), torch.randn(2, 32, 9, 7)),
                                     (nn.Linear(40, 30), torch.randn(2, 5, 40))])
def test_sparse_branch_equals_its_dense_matrix(layer, x):
    layer, x = layer.double(), x.double().requires_grad_(True)
    smb = _fp_three_branch(layer, rank=1, k=17).smb
    if isinstance(layer, nn.Conv2d):
        reference = torch.nn.functional.conv2d(x, smb.matrix()[:, :, None, None], stride=2)
    else:
        reference = x @ smb.matrix().T
    out = smb(x)
    assert torch.allclose(out, reference, atol=1e-12)
    grads = torch.autograd.grad(out.sum(), (x, smb.values))
    reference_grads = torch.autograd.grad(reference.sum(), (x, smb.values))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(grads, reference_grads))


@pytest.mark.parametrize("layer,x", [(nn.Conv2d(32, 24, 3, stride=2, padding=1), torch.randn(2, 32, 9, 7)),
                                     (nn.Linear(40, 30), torch.randn(2, 5, 40))])
def test_sparse_branch_under_autocast_multiplies_in_its_values_precision(layer, x):
    """Under autocast (fp16 on CUDA, which has no fp16 sparse matmul; bf16 here) the product runs in fp32 and
    only the result is rounded: it equals the fp32 product of the low-precision input, rounded once."""
    smb = _fp_three_branch(layer, rank=1, k=17).smb
    low = x.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = smb(low)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, smb(low.float()).bfloat16())
