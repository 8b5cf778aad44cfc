"""The complexity engine: hand-counted MACs, binary accounting by the papers' convention, storage."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from binsr.complexity import count_complexity


class ToyBinaryConv(nn.Conv2d):
    """Stands in for a binary layer: 1-bit weight, its MACs are binary ops, plus an FP scale."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 3, padding=1, bias=False)
        self.alpha = nn.Parameter(torch.ones(cout))

    def binary_parameter_bits(self):
        return {"weight": 1}

    def complexity_ops(self, args, kwargs, output):
        macs = output.numel() * self.in_channels * 9
        return output.numel(), macs  # one FP multiply per output for alpha; the MACs are XNOR/popcount


def test_standard_layers_hand_counted():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),      # 16·16·8 outputs × 3·9 MACs = 55296; params 216 + 8
        nn.GroupNorm(2, 8),                 # affine: 2 ops × 2048 elements = 4096; params 16
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # depthwise: 2048 × 9 = 18432; params 72
        nn.ConvTranspose2d(8, 4, 2, stride=2),                 # per input 4·4 = 16 → 2048 × 16 = 32768; params 128 + 4
        nn.Flatten(),
        nn.Linear(4 * 32 * 32, 10),         # 4096 × 10 = 40960; params 40970
    )
    report = count_complexity(model, torch.zeros(1, 3, 16, 16))
    flops = {layer.name: layer.flops for layer in report.layers}
    assert flops == {"0": 55296, "1": 4096, "3": 18432, "4": 32768, "6": 40960}
    assert report.params_fp == sum(p.numel() for p in model.parameters()) == 224 + 16 + 72 + 132 + 40970
    assert report.params_binary == 0 and report.bops == 0
    assert report.ops == report.flops == 55296 + 4096 + 18432 + 32768 + 40960
    assert report.storage_bytes == 4 * report.params_fp
    assert report.uncounted == []


def test_batch_and_repeated_calls_scale_flops_but_not_params():
    conv = nn.Conv2d(4, 4, 1)
    model = nn.Sequential(conv, nn.ReLU(), conv)  # the same layer twice: one set of weights
    one = count_complexity(model, torch.zeros(1, 4, 8, 8))
    two = count_complexity(model, torch.zeros(2, 4, 8, 8))
    assert one.params_fp == 20 and two.params_fp == 20
    assert one.flops == 2 * 64 * 4 * 4 and two.flops == 2 * one.flops
    assert one.layers[0].calls == 2


def test_binary_layers_follow_the_papers_convention():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), ToyBinaryConv(16, 16), nn.Conv2d(16, 3, 3, padding=1))
    report = count_complexity(model, torch.zeros(1, 3, 8, 8))
    binary_weights = 16 * 16 * 9
    assert report.params_binary == binary_weights
    fp = (3 * 16 * 9 + 16) + 16 + (16 * 3 * 9 + 3)  # first conv, alpha, last conv
    assert report.params_fp == fp
    assert report.params == pytest.approx(fp + binary_weights / 32)
    bops = 64 * 16 * 16 * 9
    assert report.bops == bops
    fp_macs = 64 * 16 * 27 + 64 * 16 + 64 * 3 * 144
    assert report.flops == fp_macs
    assert report.ops == pytest.approx(fp_macs + bops / 64)
    assert report.storage_bytes == 4 * fp + math.ceil(binary_weights / 8)


def test_storage_counts_persistent_buffers_at_their_size():
    model = nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.BatchNorm2d(2))
    report = count_complexity(model, torch.zeros(1, 2, 4, 4))
    # params: 4 + 4 (affine); buffers: running mean/var (2 + 2 floats) + num_batches_tracked (int64)
    assert report.storage_bytes == 4 * 8 + 4 * 4 + 8


def test_multihead_attention_rule():
    mha = nn.MultiheadAttention(embed_dim=16, num_heads=2, batch_first=True)

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x)[0]

    report = count_complexity(Wrapper(), torch.zeros(2, 10, 16))
    per_sample = 10 * 16 * 16 * 4 + 2 * 10 * 10 * 16  # q, k, v, out projections + QKᵀ and AV
    assert report.flops == 2 * per_sample


def test_unknown_leaf_layers_are_reported_not_silently_zero():
    class Mystery(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.w[:, None, None]

    report = count_complexity(nn.Sequential(Mystery()), torch.zeros(1, 3, 4, 4))
    assert report.uncounted == ["Mystery"]
    assert "not counted (no rule): Mystery" in report.format_table()


def test_counting_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Dropout(0.5))
    model.train()
    report = count_complexity(model, torch.zeros(1, 1, 2, 2))
    assert model.training and all(not m._forward_hooks for m in model.modules())
    keys = set(report.to_dict())
    assert {"params", "params_fp", "params_binary", "ops", "flops", "bops", "storage_bytes", "layers"} <= keys


def test_multi_bit_binary_weights_count_once_per_bit_plane():
    class TwoPlane(ToyBinaryConv):
        def binary_parameter_bits(self):
            return {"weight": 2}  # e.g. HORQ order 2: two sign planes per weight

    report = count_complexity(TwoPlane(8, 8), torch.zeros(1, 8, 4, 4))
    assert report.params_binary == 2 * 8 * 8 * 9
    assert report.storage_bytes == 4 * 8 + 2 * 8 * 8 * 9 // 8
