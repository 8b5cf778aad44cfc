"""XNOR-popcount conv2d and linear on bit-packed ±1 values, with a PyTorch fallback.

Bit layout (shared with the C sources, ``csrc/bitkernels.h``): a bit 1 means −1 and a bit 0 means +1,
so sign(0) = +1 as in the simulated layers; 64 input channels per word (bit b of word g is channel
64g + b); bits past the last channel are 0. Weights are ``(C_out, kh, kw, C_words)`` (convs) or
``(C_out, C_words)`` (linears), stored as ``torch.uint64``.

The native kernels (``binsr.deploy._bitkernels``, built by ``pip install`` when a C compiler is there)
sign-pack the activations, compute each ±1 dot product as K − 2·popcount(a XOR w) and scale the
result; with none built, or with ``set_backend("torch")``, the same numbers come from unpacked ±1
floats and ``F.conv2d``/``F.linear`` (exact while |dot| < 2²⁴).
"""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager, contextmanager
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from binsr.binary.estimators import sign
from binsr.errors import BinsrError

try:  # built from csrc/*.c by setup.py; optional
    from binsr.deploy import _bitkernels as _native
except ImportError:  # pragma: no cover - depends on the machine's compiler
    _native = None

WORD_BITS = 64
_state = {"backend": "native" if _native is not None else "torch", "fuse": True, "fuse_inputs": True,
          "profile": False}


def words(channels: int) -> int:
    """Number of 64-bit words that hold ``channels`` bits."""
    return (channels + WORD_BITS - 1) // WORD_BITS


# --- backend choice --------------------------------------------------------------------------------


def native_available() -> bool:
    """True when the compiled kernels were built and import."""
    return _native is not None


def instruction_sets() -> list[str]:
    """Instruction sets the native kernels can use on this CPU, fastest first ([] without them)."""
    return list(_native.isas()) if _native is not None else []


def native_peak(iterations: int) -> tuple[float, float]:
    """(fp32, 1-bit) multiply-accumulates per second one thread sustains in tight loops (native ISA)."""
    if _native is None:
        raise BinsrError("the native bit kernels are not built; there is no native peak to measure")
    return _native.peak(iterations)


def backend() -> str:
    """What runs the packed layers: 'native (avx512-vpopcntdq)', 'native (avx2)', ... or 'torch'."""
    if _state["backend"] == "native":
        return f"native ({_native.isa()})"
    return "torch"


def set_backend(name: str) -> None:
    """'torch' (fallback), 'native' (fastest instruction set) or one of :func:`instruction_sets`."""
    if name == "torch":
        _state["backend"] = "torch"
        return
    if _native is None:
        raise BinsrError("the native bit kernels are not built (no C compiler at install time?); "
                         "only the 'torch' backend is available")
    if name == "native":
        name = _native.isas()[0]
    if name not in _native.isas():
        raise BinsrError(f"instruction set {name!r} is not available here (available: "
                         f"{', '.join(['torch', 'native', *_native.isas()])})")
    _native.set_isa(name)
    _state["backend"] = "native"


@contextmanager
def using_backend(name: str) -> Iterator[None]:
    """Run a block with another backend, then restore the previous one."""
    previous = _state["backend"], (_native.isa() if _native is not None else None)
    set_backend(name)
    try:
        yield
    finally:
        _state["backend"] = previous[0]
        if previous[1] is not None:
            _native.set_isa(previous[1])


@contextmanager
def profiling() -> Iterator[dict[str, float]]:
    """Within the block, every native call adds its wall time (seconds) to the yielded dict under its kind
    (``binary conv 3x3``, ``binary linear``, ``sign packing``, ...): what ``binsr bench`` reports as the
    packed layers' share of a network call. Off by default (it adds a clock read around every native call)."""
    previous = _state["profile"]
    spent: dict[str, float] = {}
    _state["profile"] = spent
    try:
        yield spent
    finally:
        _state["profile"] = previous


class _Timed:
    """Adds the block's wall time to the profiling dict under ``kind`` (a no-op unless profiling)."""

    __slots__ = ("kind", "start")

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __enter__(self) -> None:
        self.start = time.perf_counter() if _state["profile"] is not False else 0.0

    def __exit__(self, *exc: object) -> None:
        spent = _state["profile"]
        if spent is not False:
            spent[self.kind] = spent.get(self.kind, 0.0) + time.perf_counter() - self.start


def _native_on(x: torch.Tensor) -> bool:
    return _state["backend"] == "native" and x.is_cpu


# --- packing (PyTorch; used for weights at export and by the fallback) ---------------------------------


def pack_signs(negative: torch.Tensor) -> torch.Tensor:
    """(..., C) bool, True where the value is −1 → (..., ceil(C/64)) uint64 words."""
    channels = negative.shape[-1]
    padded = F.pad(negative.to(torch.int64), (0, words(channels) * WORD_BITS - channels))
    bits = padded.view(*negative.shape[:-1], -1, WORD_BITS)
    powers = torch.ones(WORD_BITS, dtype=torch.int64, device=negative.device) << torch.arange(
        WORD_BITS, device=negative.device)  # bit 63 is int64's sign bit: wraps to -2**63, which is the right bit
    return (bits * powers).sum(-1).view(torch.uint64)  # distinct powers of two: the sum is a bitwise or


def unpack_signs(packed: torch.Tensor, channels: int) -> torch.Tensor:
    """(..., C_words) uint64 → (..., channels) bool, True where −1."""
    shifts = torch.arange(WORD_BITS, device=packed.device)
    bits = (packed.view(torch.int64).unsqueeze(-1) >> shifts) & 1
    return bits.flatten(-2)[..., :channels].bool()


def stray_bits(packed: torch.Tensor, channels: int) -> int:
    """How many bits are set past the last of ``channels`` (0 in every valid file)."""
    full = channels // WORD_BITS  # words wholly inside the channels: only the later words can have stray bits
    return int(unpack_signs(packed[..., full:], (packed.shape[-1] - full) * WORD_BITS)[..., channels % WORD_BITS:].sum())


# --- packed weights ------------------------------------------------------------------------------------------


@dataclass
class PackedWeight:
    """One binary layer's weights: bits (C_out, kh, kw, C_words) or (C_out, C_words), the number of
    input channels, and the per-output-channel scale α (None: 1). Derived tables are cached."""

    bits: torch.Tensor
    channels: int
    alpha: torch.Tensor | None = None
    _signs: torch.Tensor | None = field(default=None, repr=False)

    @property
    def out_channels(self) -> int:
        return self.bits.shape[0]

    def signs(self) -> torch.Tensor:
        """±1 float weights, (C_out, C_in, kh, kw) or (C_out, C_in), for the fallback."""
        if self._signs is None:
            negative = unpack_signs(self.bits, self.channels)
            values = 1.0 - 2.0 * negative.float()
            self._signs = values.permute(0, 3, 1, 2).contiguous() if values.dim() == 4 else values
        return self._signs


def _view(t: torch.Tensor | None) -> Any:
    """A NumPy view of a CPU tensor (no copy) for the native kernels, which check its dtype, shape, contiguity
    and alignment themselves and hold it only for the call; None stays None."""
    return None if t is None else t.detach().numpy()


def _float_input(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.dtype != torch.float32:
        raise BinsrError(f"packed binary layers compute in float32; got a {x.dtype} {what}")
    return x.contiguous()


# --- the two operations --------------------------------------------------------------------------------------


def binary_conv2d(x: torch.Tensor, weight: PackedWeight, stride: tuple[int, int] = (1, 1),
                  padding: tuple[int, int] = (0, 0), threshold: torch.Tensor | None = None,
                  pixel_scale: torch.Tensor | None = None) -> torch.Tensor:
    """α_o · Σ_taps [s(p)] · ⟨sign(x − threshold), sign(w_o)⟩ with zero padding: (N, C, H, W) → (N, O, H', W').

    ``threshold`` (C,) shifts the sign per input channel; ``pixel_scale`` (N, H, W) multiplies each
    input pixel's ±1 vector (BiMaCoSR's per-pixel activation scale). Equal to ``F.conv2d`` of the
    ±1 tensors; bit-identical integers without scales.
    """
    batch, channels, height, width = x.shape
    if channels != weight.channels:
        raise BinsrError(f"packed conv expects {weight.channels} input channels, got {channels}")
    kh, kw = weight.bits.shape[1:3]
    (sh, sw), (ph, pw) = stride, padding
    out_h, out_w = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
    if not _native_on(x):
        q = sign(x - threshold.view(1, -1, 1, 1) if threshold is not None else x)
        if pixel_scale is not None:
            q = q * pixel_scale.unsqueeze(1)
        out = F.conv2d(q, weight.signs().to(q.device), stride=stride, padding=padding)
        return out * weight.alpha.view(1, -1, 1, 1) if weight.alpha is not None else out
    x = _float_input(x, "input")
    packed = torch.empty(batch, height + 2 * ph, words(channels), width + 2 * pw, dtype=torch.uint64)
    thr = _float_input(threshold, "threshold") if threshold is not None else None
    with _Timed("sign packing"):
        _native.pack_nchw(_view(x), _view(thr), _view(packed), (ph, pw), torch.get_num_threads())
    scale = F.pad(pixel_scale, (pw, pw, ph, ph)) if pixel_scale is not None else None
    return _native_conv(packed, weight, scale, (out_h, out_w), stride, padding)


def binary_linear(x: torch.Tensor, weight: PackedWeight, threshold: torch.Tensor | None = None,
                  token_scale: torch.Tensor | None = None) -> torch.Tensor:
    """α_o · [s(token)] · ⟨sign(x − threshold), sign(w_o)⟩: (..., C) → (..., O).

    The native result is a transposed view (the kernel writes channel-major), which PyTorch ops accept.
    """
    channels = x.shape[-1]
    if channels != weight.channels:
        raise BinsrError(f"packed linear expects {weight.channels} input features, got {channels}")
    if not _native_on(x):
        q = sign(x - threshold if threshold is not None else x)
        if token_scale is not None:
            q = q * token_scale.unsqueeze(-1)
        out = F.linear(q, weight.signs().to(q.device))
        return out * weight.alpha if weight.alpha is not None else out
    lead = x.shape[:-1]
    rows = _float_input(x.reshape(-1, channels), "input")
    tokens = rows.shape[0]
    packed = torch.empty(words(channels), tokens, dtype=torch.uint64)
    thr = _float_input(threshold, "threshold") if threshold is not None else None
    with _Timed("sign packing"):
        _native.pack_rows(_view(rows), _view(thr), _view(packed), torch.get_num_threads())
    scale = token_scale.reshape(1, 1, tokens) if token_scale is not None else None
    bits = weight.bits.view(weight.out_channels, 1, 1, -1)  # tokens are a 1 x P image, the linear a 1x1 conv
    out = _native_conv(packed.view(1, 1, -1, tokens), PackedWeight(bits, channels, weight.alpha), scale, (1, tokens),
                       (1, 1), (0, 0))
    return out.view(weight.out_channels, tokens).T.reshape(*lead, weight.out_channels)


def _native_conv(packed: torch.Tensor, weight: PackedWeight, scale: torch.Tensor | None, out_size: tuple[int, int],
                 stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """The native conv on packed (N, Hp, C_words, Wp) activations; ``scale`` (N, Hp, Wp) is 0 on padding."""
    scale = _float_input(scale, "activation scale") if scale is not None else None
    out = torch.empty(packed.shape[0], weight.out_channels, *out_size)
    with _Timed(f"binary conv {weight.bits.shape[1]}x{weight.bits.shape[2]}"):
        _native.conv(_view(packed), _view(weight.bits), weight.channels, _view(out), stride, padding,
                     torch.get_num_threads(), alpha=_view(weight.alpha), scale=_view(scale))
    return out


# --- fused layers ------------------------------------------------------------------------------------------


@dataclass
class Epilogue:
    """What a fused layer does after α·(binary result), in this order, while each output tile is hot:
    + ``bias`` (O,); RPReLU ``activation`` = (shift, slope, bias), each (rows, O), row ⌊sample·rows/N⌋
    for each sample (token block for linears); + the input (``residual``, identity shortcut);
    + LRMB ``up`` (O, r) · ``down`` (r, C) · x; + SMB ``sparse`` = (row pointers (O+1,), input channels (k,),
    values (k,)), CSR over the (O, C) matrix, int32/int32/float32."""

    bias: torch.Tensor | None = None
    activation: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    residual: bool = False
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    sparse: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


@dataclass
class InputTransform:
    """What a fused conv does to its input before everything else: h = SiLU?(GroupNorm(x) · mul + shift), x given
    whole or as two tensors concatenated along channels (``split``: the first one's channels, a multiple of 64;
    0: one tensor). ``mul``/``shift`` (N, C) come with each call (ResShift's 1 + scale and shift of the
    timestep embedding). h then is the layer's input: it is packed, and the 1x1 branches and the residual read
    it. Rounding differs from PyTorch's GroupNorm and SiLU (statistics in float64, one multiply-add, an exp
    of about 1 ulp): see :func:`using_input_fusion`."""

    norm_groups: int = 0
    norm_weight: torch.Tensor | None = None
    norm_bias: torch.Tensor | None = None
    eps: float = 1e-5
    silu: bool = False
    split: int = 0


def input_fusion() -> bool:
    """Whether packed blocks fold the GroupNorm, affine, SiLU and concatenation before a binary layer into it."""
    return _state["fuse_inputs"]


def using_input_fusion(enabled: bool) -> AbstractContextManager[None]:
    """Run a block with the norms, activations, adds and concatenations between packed layers folded into the
    layers' native calls (the default: no float tensor between two binary layers is written and read again)
    or as PyTorch ops (PyTorch's exact rounding: what the simulated network computes), then restore."""
    return _setting("fuse_inputs", bool(enabled))


def fusable(x: torch.Tensor) -> bool:
    """Whether a :class:`FusedCall` can run on ``x`` (native kernels and fusion on, a float32 CPU tensor)."""
    return _state["fuse"] and _native_on(x) and x.dtype == torch.float32


def using_fusion(enabled: bool) -> AbstractContextManager[None]:
    """Run a block with packed layers fused into one native call each (the default) or not (one call per
    step: packing, conv, then the FP parts as PyTorch ops), then restore the previous setting."""
    return _setting("fuse", bool(enabled))


@contextmanager
def _setting(name: str, value: object) -> Iterator[None]:
    """One of the kernels' settings changed for a block, then restored."""
    previous = _state[name]
    _state[name] = value
    try:
        yield
    finally:
        _state[name] = previous


def _table(t: torch.Tensor | None, dtype: torch.dtype, what: str) -> Any:
    """A layer table for the native FusedLayer (which checks its shape and copies it): a contiguous CPU view."""
    if t is None:
        return None
    if t.dtype != dtype or t.device.type != "cpu":
        raise BinsrError(f"fused layer: {what} must be a {dtype} CPU tensor, got {t.dtype} on {t.device}")
    return _view(t.contiguous())


class FusedCall:
    """A whole packed layer prepared for one input shape: (N, C, H, W) → (N, O, H', W') for a 4-D weight
    (conv), (..., C) → (..., O) for a 2-D one (linear). Built once (the native ``FusedLayer`` checks every
    table against the weights and the input shape and keeps its own copy), then ``call(x, h)`` is one native
    call: sign-pack ``h`` (default ``x``; the layer's pre-biased input) against ``threshold`` (C,) with
    BiMaCoSR's per-pixel β = mean_c |h| if ``pixel_scale``, XNOR-popcount, α, then the :class:`Epilogue` (its
    residual, LRMB and SMB read ``x``). Equal to the unfused layer up to float rounding (the binary dot
    products are the same integers).
    """

    def __init__(self, shape: tuple[int, ...], weight: PackedWeight, epilogue: Epilogue,
                 stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                 threshold: torch.Tensor | None = None, pixel_scale: bool = False,
                 transform: InputTransform | None = None) -> None:
        if _native is None:
            raise BinsrError("fused layers need the native kernels")
        conv = weight.bits.dim() == 4
        channels = weight.channels
        if (conv and len(shape) != 4) or shape[1 if conv else -1] != channels:
            raise BinsrError(f"packed layer expects {channels} input channels, got input {tuple(shape)}")
        self.in_shape = tuple(shape)
        native_shape = self.in_shape if conv else (math.prod(shape[:-1]), channels)  # a linear's tokens as rows
        activation = epilogue.activation or (None, None, None)
        sparse = epilogue.sparse or (None, None, None)
        try:
            self._layer = _native.FusedLayer(
                native_shape, _table(weight.bits, torch.uint64, "weight bits"), channels,
                alpha=_table(weight.alpha, torch.float32, "alpha"),
                threshold=_table(threshold, torch.float32, "threshold"), pixel_scale=pixel_scale,
                stride=tuple(stride), padding=tuple(padding), bias=_table(epilogue.bias, torch.float32, "bias"),
                act_shift=_table(activation[0], torch.float32, "act_shift"),
                act_slope=_table(activation[1], torch.float32, "act_slope"),
                act_bias=_table(activation[2], torch.float32, "act_bias"), residual=epilogue.residual,
                down=_table(epilogue.down, torch.float32, "low-rank down"),
                up=_table(epilogue.up if epilogue.down is not None else None, torch.float32, "low-rank up"),
                sparse_rows=_table(sparse[0], torch.int32, "sparse row pointers"),
                sparse_cols=_table(sparse[1], torch.int32, "sparse columns"),
                sparse_values=_table(sparse[2], torch.float32, "sparse values"),
                **({} if transform is None else {
                    "norm_groups": transform.norm_groups, "eps": float(transform.eps), "silu": transform.silu,
                    "split": transform.split, "norm_weight": _table(transform.norm_weight, torch.float32, "norm weight"),
                    "norm_bias": _table(transform.norm_bias, torch.float32, "norm bias")}))
        except ValueError as err:
            raise BinsrError(f"fused layer: {err}") from None
        native_out = self._layer.out_shape
        self.out_shape = native_out if conv else (*shape[:-1], native_out[-1])
        self._timed = _Timed(f"binary conv {weight.bits.shape[1]}x{weight.bits.shape[2]}" if conv else "binary linear")

    def __call__(self, x: torch.Tensor, h: torch.Tensor | None = None, *, x2: torch.Tensor | None = None,
                 mul: torch.Tensor | None = None, shift: torch.Tensor | None = None,
                 add: torch.Tensor | None = None) -> torch.Tensor:
        """The layer on ``x`` (its first ``split`` channels with ``x2`` the rest, for a split transform);
        ``mul``/``shift`` (N, C): the transform's affine after its norm; ``add``: a tensor of the output's shape
        added last."""
        if (x.shape != self.in_shape and x2 is None) or (h is not None and h.shape != x.shape):
            raise BinsrError(f"this fused call was prepared for inputs {self.in_shape}, got {tuple(x.shape)}")
        if x.dtype != torch.float32 or not _native_on(x):
            raise BinsrError("fused layers need the native kernels and a float32 CPU input")
        if h is not None:
            h = _float_input(h, "pre-biased input")
        extra = {}
        for name, t in (("x2", x2), ("mul", mul), ("shift", shift), ("add", add)):
            if t is not None:
                extra[name] = _float_input(t, name)
        return self.run(x, h, extra)

    def run(self, x: torch.Tensor, h: torch.Tensor | None, extra: dict[str, torch.Tensor]) -> torch.Tensor:
        """The native call itself on float32 CPU tensors (``__call__`` checks them; the C side checks every
        buffer again). ``extra``: x2, mul, shift, add by name."""
        x = x.contiguous()  # (a linear's tokens may keep their leading extents: the kernels read them as rows)
        h = None if h is None else h.contiguous()
        out = torch.empty(self.out_shape)
        arrays = {name: t.contiguous().numpy() for name, t in extra.items()} if extra else {}
        if _state["profile"] is False:
            self._layer(x.numpy(), None if h is None else h.numpy(), out.numpy(), torch.get_num_threads(), **arrays)
        else:
            with self._timed:
                self._layer(x.numpy(), None if h is None else h.numpy(), out.numpy(), torch.get_num_threads(), **arrays)
        return out
