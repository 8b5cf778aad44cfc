"""BiMaCoSR's three-branch layer: BMB (1-bit) + LRMB (low rank, SVD) + SMB (top-k sparse).

Built from a pretrained FP conv/linear with weight W (convs: W̄ = W averaged over the kernel window):

1. SMB: the k entries of largest |W̄| become a sparse FP matrix S (trainable values, fixed indices);
   S is subtracted from W at the kernel centre.
2. LRMB: the SVD of the window-averaged remainder, U Σ Vᵀ, gives up = U_r √Σ_r and
   down = √Σ_r V_rᵀ; up·down is subtracted at the kernel centre.
3. BMB: a binary layer on what is left.

A 1×1 conv (with the layer's stride) equals a k×k conv that is zero except at its centre tap when
the padding is dilation·(k−1)/2, so at initialisation BMB-with-FP-weights + LRMB + SMB equals the FP
layer exactly: only binarizing the remainder loses information. Unlike the released code, the
sparse branch keeps sorted integer indices (nothing to round or coalesce per call), and strided layers
keep both branches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from binsr.errors import BinsrError


@dataclass
class Decomposition:
    """W = remainder + centre(S + up·down). Shapes: index/values (k,), up (C_out, r), down (r, C_in)."""

    sparse_index: torch.Tensor  # flat indices into the (C_out, C_in) matrix, int64
    sparse_values: torch.Tensor
    up: torch.Tensor
    down: torch.Tensor
    remainder: torch.Tensor  # same shape as the weight


def window_mean(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, kh, kw) → (C_out, C_in) mean over the kernel window; 2-D weights unchanged."""
    return weight.mean(dim=(2, 3)) if weight.dim() == 4 else weight


def _at_centre(weight: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """A weight-shaped tensor holding ``matrix`` at the kernel centre (itself for 2-D weights)."""
    if weight.dim() == 2:
        return matrix
    placed = torch.zeros_like(weight)
    placed[:, :, weight.shape[2] // 2, weight.shape[3] // 2] = matrix
    return placed


def decompose(weight: torch.Tensor, rank: int, k: int) -> Decomposition:
    """Split a conv/linear weight into sparse, low-rank and remainder parts (SMB first, as released)."""
    out_features, in_features = weight.shape[:2]
    if not 0 <= rank <= min(in_features, out_features):
        raise BinsrError(f"rank {rank} must be between 0 and min(C_in, C_out) = {min(in_features, out_features)}")
    if not 0 <= k <= in_features * out_features:
        raise BinsrError(f"k = {k} sparse entries do not fit a {out_features}x{in_features} weight matrix")
    weight = weight.detach()
    mean = window_mean(weight)
    index = torch.topk(mean.abs().flatten(), k).indices.sort().values
    values = mean.flatten()[index].clone()
    sparse = torch.zeros_like(mean).flatten().index_put((index,), values).view_as(mean)
    remainder = weight - _at_centre(weight, sparse)
    u, s, vh = torch.linalg.svd(window_mean(remainder).double(), full_matrices=False)
    root = s[:rank].sqrt()
    up = (u[:, :rank] * root).to(weight.dtype)
    down = (root[:, None] * vh[:rank]).to(weight.dtype)
    remainder = remainder - _at_centre(weight, up @ down)
    return Decomposition(index, values, up, down, remainder)


def _shapes_only(weight: torch.Tensor, rank: int, k: int) -> Decomposition:
    """A decomposition with the right shapes and no values (meta tensors), for structure-only builds."""
    out_features, in_features = weight.shape[:2]
    if not 0 <= rank <= min(in_features, out_features) or not 0 <= k <= in_features * out_features:
        raise BinsrError(f"rank {rank} / k = {k} do not fit a {out_features}x{in_features} weight matrix")
    like = {"device": weight.device, "dtype": weight.dtype}
    return Decomposition(torch.zeros(k, dtype=torch.int64, device=weight.device), torch.zeros(k, **like),
                         torch.zeros(out_features, rank, **like), torch.zeros(rank, in_features, **like), weight)


class LowRankBranch(nn.Module):
    """LRMB: x → down (C_in → r) → up (r → C_out), two FP 1×1 convs (or linears); the stride is
    applied by the first conv so the output matches the binary conv's."""

    def __init__(self, up: torch.Tensor, down: torch.Tensor, stride: tuple[int, int] | None) -> None:
        super().__init__()
        rank, in_features = down.shape
        out_features = up.shape[0]
        like = {"device": down.device, "dtype": down.dtype}  # no float32 detour for float64 weights
        if stride is None:
            self.down: nn.Module = nn.Linear(in_features, rank, bias=False, **like)
            self.up: nn.Module = nn.Linear(rank, out_features, bias=False, **like)
        else:
            self.down = nn.Conv2d(in_features, rank, 1, stride=stride, bias=False, **like)
            self.up = nn.Conv2d(rank, out_features, 1, bias=False, **like)
        if down.is_meta:  # a structure only: no values to copy
            return
        with torch.no_grad():
            self.down.weight.copy_(down.view_as(self.down.weight))
            self.up.weight.copy_(up.view_as(self.up.weight))

    @property
    def rank(self) -> int:
        return self.down.weight.shape[0]

    def matrix(self) -> torch.Tensor:
        """The equivalent (C_out, C_in) matrix up·down."""
        return self.up.weight.flatten(1) @ self.down.weight.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


class SparseBranch(nn.Module):
    """SMB: a (C_out × C_in) matrix with k trainable entries at fixed positions, applied as a 1×1 conv
    (with the layer's stride) or a linear.

    The flat indices are stored once as int32 and sorted, i.e. already in coalesced order, so each
    call only wraps them with the current values (``is_coalesced=True``: no coalescing, no float
    indices to round) for ``torch.sparse.mm``, which trains faster than a dense 1×1 conv or a gather/index-add
    at these channel counts (``benchmarks/bench_binary_layers.py`` times the three-branch layer).
    """

    def __init__(self, index: torch.Tensor, values: torch.Tensor, shape: tuple[int, int],
                 stride: tuple[int, int] | None) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.stride = stride
        if not index.is_meta:  # a meta structure has no order to establish
            order = torch.argsort(index)
            index, values = index[order], values[order]
        self.values = nn.Parameter(values.clone())
        self.register_buffer("index", index.to(torch.int32))

    @property
    def k(self) -> int:
        return self.values.numel()

    def matrix(self) -> torch.Tensor:
        """Dense (C_out, C_in) matrix; differentiable in the values."""
        dense = self.values.new_zeros(math.prod(self.shape))
        return dense.index_put((self.index.long(),), self.values).view(self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., C_in) or (B, C_in, H, W) → (..., C_out) or (B, C_out, H', W') in x's dtype; the product runs in
        the values' dtype even under autocast (CUDA has no fp16 sparse matmul; k terms gain nothing from it)."""
        index = self.index.long()
        coordinates = torch.stack([index // self.shape[1], index % self.shape[1]])
        matrix = torch.sparse_coo_tensor(coordinates, self.values, self.shape, is_coalesced=True,
                                         check_invariants=False)  # sorted and in range since __init__
        with torch.autocast(x.device.type, enabled=False):
            if self.stride is None:  # (..., C_in) → (..., C_out)
                flat = x.reshape(-1, self.shape[1]).T.to(self.values.dtype)
                return torch.sparse.mm(matrix, flat).T.reshape(*x.shape[:-1], self.shape[0]).to(x.dtype)
            x = x[..., :: self.stride[0], :: self.stride[1]]
            batch, _, height, width = x.shape
            flat = x.transpose(0, 1).reshape(self.shape[1], -1).to(self.values.dtype)
            out = torch.sparse.mm(matrix, flat).reshape(self.shape[0], batch, height, width).transpose(0, 1)
            return out.to(x.dtype)

    def complexity_ops(self, args: tuple, kwargs: dict, output: torch.Tensor) -> tuple[int, int]:
        """k multiply-adds per output position (a sparse kernel skips the zeros)."""
        return output.numel() // self.shape[0] * self.k, 0


class ThreeBranch(nn.Module):
    """BMB(x) + LRMB(x) + SMB(x); either auxiliary branch may be absent (ablations)."""

    def __init__(self, bmb: nn.Module, lrmb: LowRankBranch | None, smb: SparseBranch | None) -> None:
        super().__init__()
        self.bmb, self.lrmb, self.smb = bmb, lrmb, smb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bmb(x)
        if self.lrmb is not None:
            out = out + self.lrmb(x)
        if self.smb is not None:
            out = out + self.smb(x)
        return out


def same_padding(conv: nn.Conv2d) -> tuple[int, ...]:
    """The padding that keeps a stride-1 conv's output the size of its input: dilation·(k − 1)/2 a side."""
    return tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size))


def explicit_padding(conv: nn.Conv2d) -> tuple[int, ...]:
    """A conv's padding as numbers ("same" and "valid" written out)."""
    if conv.padding == "same":
        return same_padding(conv)
    return (0,) * len(conv.kernel_size) if conv.padding == "valid" else tuple(conv.padding)


def centre_tap_problem(layer: nn.Module) -> str | None:
    """Why 1×1 branches cannot stand in for this layer's centre tap, or None if they can."""
    if isinstance(layer, nn.Linear):
        return None
    if layer.groups != 1:
        return f"grouped convolution (groups={layer.groups}) has no single C_out x C_in matrix"
    if any(k % 2 == 0 for k in layer.kernel_size):
        return f"even kernel {tuple(layer.kernel_size)} has no centre tap"
    padding, wanted = explicit_padding(layer), same_padding(layer)
    if padding != wanted:
        return f"padding {tuple(padding)} is not dilation*(k-1)/2 = {wanted}, so the centre tap is off-centre"
    return None


def build_three_branch(layer: nn.Module, bmb_factory: Callable[[nn.Module], nn.Module], rank: int, k: int,
                       use_lrmb: bool = True, use_smb: bool = True) -> ThreeBranch:
    """Three-branch replacement of an FP conv/linear; ``bmb_factory(layer)`` builds the binary branch,
    whose latent weight then becomes the remainder. A dropped branch keeps its share inside BMB.

    A layer on the ``meta`` device has no values to decompose: the branches get their shapes only (no
    SVD), which is how a model file's structure is built before its tensors are loaded into it."""
    problem = centre_tap_problem(layer)
    if problem:
        raise BinsrError(f"three-branch layer impossible: {problem}")
    rank, k = (rank if use_lrmb else 0), (k if use_smb else 0)
    parts = _shapes_only(layer.weight, rank, k) if layer.weight.is_meta else decompose(layer.weight, rank, k)
    conv_stride = None if isinstance(layer, nn.Linear) else tuple(layer.stride)
    shape = tuple(layer.weight.shape[:2])
    lrmb = LowRankBranch(parts.up, parts.down, conv_stride) if use_lrmb and rank > 0 else None
    smb = SparseBranch(parts.sparse_index, parts.sparse_values, shape, conv_stride) if use_smb and k > 0 else None
    bmb = bmb_factory(layer)
    if not layer.weight.is_meta:
        with torch.no_grad():
            bmb.weight.copy_(parts.remainder)
    return ThreeBranch(bmb, lrmb, smb)
