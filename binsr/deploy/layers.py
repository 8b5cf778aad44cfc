"""Inference-only binary layers whose weights are bits: :class:`PackedBinaryConv2d`, :class:`PackedBinaryLinear`.

Built from a trained :class:`~binsr.binary.BinaryConv2d` / :class:`~binsr.binary.BinaryLinear`: the
quantized weight α·sign(W) becomes 64-per-word bits plus α (``weight_scale``, one per output channel);
the input rule becomes a per-channel threshold (sign(x − β): BNN, XNOR, ReActNet, BBCU, BI-DiffSR, ...)
or a per-pixel scale (BiMaCoSR's BMB, HORQ order 1). Every FP part of the layer — TaR/learnable bias,
XNOR's K, bias, RPReLU/TaA, shortcut — is the same module as in the simulated layer, and the pipeline
after the binary op is the same function (:func:`~binsr.binary.layers.finish_binary_output`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from binsr.binary.branches import LowRankBranch, SparseBranch, ThreeBranch
from binsr.binary.layers import (
    BinaryConv2d,
    BinaryLinear,
    GroupedBias,
    GroupedRPReLU,
    IdentityShortcut,
    TimestepGrouped,
    finish_binary_output,
)
from binsr.binary.quantizers import weight_bits
from binsr.deploy.kernels import (
    Epilogue,
    FusedCall,
    InputTransform,
    PackedWeight,
    binary_conv2d,
    binary_linear,
    fusable,
    pack_signs,
    stray_bits,
    words,
)
from binsr.errors import BinsrError
from binsr.utils.registry import Registry

PARTS = ("pre_bias", "output_scale", "activation", "shortcut")
Transform = tuple  # (nn.GroupNorm | None, silu: bool, split: int): what a fused call does to its input first


def quantized_signs(layer: BinaryConv2d | BinaryLinear) -> tuple[torch.Tensor, torch.Tensor]:
    """(negative, α): where the quantized weight is −1 (weight-shaped bool) and its (C_out,) scale.

    Any 1-bit weight quantizer qualifies whose output is α_o·(±1) per output channel (sign with or
    without per-channel/per-layer scale, Libra-PB, HORQ order 1); anything else is refused.
    """
    quantizer = layer.weight_quantizer
    if quantizer is None:
        raise BinsrError("its weights are full precision (no weight quantizer)")
    if weight_bits(quantizer) != 1:
        raise BinsrError(f"its weights have {weight_bits(quantizer)} bit-planes; packing supports 1")
    with torch.no_grad():
        quantized = quantizer(layer.weight).float()
    magnitude = quantized.abs().flatten(1)
    alpha = magnitude.amax(1)
    if not torch.equal(magnitude, alpha[:, None].expand_as(magnitude)):
        raise BinsrError(f"{type(quantizer).__name__} does not give one ±α per output channel")
    return quantized < 0, alpha.contiguous()


def input_rule(layer: BinaryConv2d | BinaryLinear) -> tuple[torch.Tensor | None, bool]:
    """(threshold or None, per-pixel scale?): the packed form its activation quantizer declares."""
    quantizer = layer.input_quantizer
    if quantizer is None or not hasattr(quantizer, "packed_input"):
        what = type(quantizer).__name__ if quantizer is not None else "full-precision input"
        raise BinsrError(f"its input quantizer ({what}) has no 1-bit packed form")
    rule = quantizer.packed_input()
    threshold = rule.threshold.detach().float().clone() if rule.threshold is not None else None
    return threshold, rule.pixel_scale


# Packed counterparts by the ``packed_form`` a binary layer declares (BinaryConv2d: "conv2d", ...).
PACKED_FORMS: Registry[type] = Registry("packed layer form")


class _PackedBinaryLayer(nn.Module):
    """Shared state: ``weight_bits`` (uint64), ``weight_scale`` α (C_out,), optional ``input_threshold``
    (C_in,) and ``bias``; the FP parts as child modules. Holds no latent FP weight."""

    channel_dim: int

    def _init_state(self, bits_shape: tuple[int, ...], in_features: int, out_features: int, bias: bool,
                    threshold: bool, pixel_scale: bool, parts: dict[str, nn.Module | None]) -> None:
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_bits", torch.zeros(bits_shape, dtype=torch.uint64))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("input_threshold", torch.zeros(in_features) if threshold else None)
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self.pixel_scale = pixel_scale
        for name in PARTS:
            setattr(self, name, parts.get(name))
        self._cache: tuple[_Snapshot, PackedWeight] | None = None
        self._plans: dict[tuple, _Plan] = {}  # prepared fused calls (see fused())

    def _fill_from(self, layer: BinaryConv2d | BinaryLinear, threshold: torch.Tensor | None) -> None:
        negative, alpha = quantized_signs(layer)
        if negative.dim() == 4:
            negative = negative.permute(0, 2, 3, 1)  # (O, kh, kw, C): pack along input channels
        with torch.no_grad():
            self.weight_bits.copy_(pack_signs(negative.cpu()))
            self.weight_scale.copy_(alpha)
            if self.input_threshold is not None:
                self.input_threshold.copy_(threshold)
            if self.bias is not None:
                self.bias.copy_(layer.bias.detach())

    def packed_weight(self) -> PackedWeight:
        """The weights for the kernels (derived tables cached until the buffers change)."""
        if self._cache is None or not self._cache[0].current():
            self._cache = (_Snapshot((self,)),
                           PackedWeight(self.weight_bits, self.in_features, self.weight_scale))
        return self._cache[1]

    def check(self) -> None:
        """Raise if the bits cannot belong to this layer (wrong dtype, bits past the last channel)."""
        if self.weight_bits.dtype != torch.uint64:
            raise BinsrError(f"weight bits are {self.weight_bits.dtype}, not uint64 words")
        stray = stray_bits(self.weight_bits, self.in_features)
        if stray:
            raise BinsrError(f"{stray} weight bits are set past input channel {self.in_features} "
                             f"(packed for a wider layer?)")

    # --- the fused path: the whole layer in one native call ------------------------------------------------

    def fusion_problem(self) -> str | None:
        """Why this layer's FP parts cannot run inside the fused kernel (None: they can)."""
        if self.output_scale is not None:
            return f"output scale {type(self.output_scale).__name__} is not fused"
        if self.activation is not None and type(self.activation) is not GroupedRPReLU:
            return f"activation {type(self.activation).__name__} is not fused"
        if self.shortcut is not None and type(self.shortcut) is not IdentityShortcut:
            return f"shortcut {type(self.shortcut).__name__} is not fused"
        if self.pre_bias is not None and type(self.pre_bias) is not GroupedBias:
            return f"pre-bias {type(self.pre_bias).__name__} is not fused"
        return None

    def _prepare(self, shape: tuple[int, ...], lowrank: LowRankBranch | None, sparse: SparseBranch | None,
                 transform: Transform | None) -> FusedCall:
        act = self.activation
        epilogue = Epilogue(bias=_f32(self.bias), residual=self.shortcut is not None,
                            activation=tuple(_group_rows(act, p) for p in (act.shift, act.slope, act.bias))
                            if act is not None else None)
        if lowrank is not None and lowrank.rank:
            epilogue.down, epilogue.up = _f32(lowrank.down.weight.flatten(1)), _f32(lowrank.up.weight.flatten(1))
        if sparse is not None:
            epilogue.sparse = sparse_rows(sparse)
        native_transform = None
        if transform is not None:
            norm, silu, split = transform
            native_transform = InputTransform(silu=silu, split=split)
            if norm is not None:
                native_transform.norm_groups, native_transform.eps = norm.num_groups, norm.eps
                native_transform.norm_weight, native_transform.norm_bias = _f32(norm.weight), _f32(norm.bias)
        threshold = _f32(self.input_threshold)
        if self._bias_as_threshold():  # sign(x + b) is (x >= -b) exactly: TaR's add becomes the packing threshold
            threshold = -_group_rows(self.pre_bias, self.pre_bias.bias)[0]
        return FusedCall(shape, self.packed_weight(), epilogue, threshold=threshold, pixel_scale=self.pixel_scale,
                         transform=native_transform, **self._geometry())

    def _bias_as_threshold(self) -> bool:
        """Whether the pre-bias (ReActNet's LearnableBias, BI-DiffSR's TaR) can be packed as a threshold: one
        group for the whole batch and no threshold of its own. (The sign of a rounded sum is the sign of the
        exact one, so x + b >= 0 exactly when x >= -b: the same bits as adding first.)"""
        pre = self.pre_bias
        if pre is None or self.input_threshold is not None or self.pixel_scale:
            return False
        group = _group_key(pre)
        return all(g == group[0] for g in group)

    def fused(self, x: torch.Tensor, lowrank: LowRankBranch | None = None, sparse: SparseBranch | None = None, *,
              transform: Transform | None = None, x2: torch.Tensor | None = None, mul: torch.Tensor | None = None,
              shift: torch.Tensor | None = None, add: torch.Tensor | None = None) -> torch.Tensor | None:
        """This layer (+ LRMB + SMB of its three-branch layer) in one native call; None where it cannot run
        fused (PyTorch backend, not float32, an FP part the kernel does not have). The prepared call is
        cached per input shape, timestep groups and transform, and rebuilt when a parameter or a child module
        changes. ``transform`` = (GroupNorm or None, SiLU?, split): the layer's input is
        SiLU?(norm(cat(x, x2)) · mul + shift) (see :class:`~binsr.deploy.kernels.InputTransform`); ``add`` is
        added to the output."""
        if not fusable(x):
            return None
        act = self.activation
        group = act.group if act is not None else None
        pre = self.pre_bias
        key = (x.shape, group if type(group) is int else _group_key(act), id(lowrank), id(sparse),
               None if transform is None else (id(transform[0]), *transform[1:]),
               None if pre is None else _group_key(pre))
        plan = self._plans.get(key)
        if plan is None or not plan.current():
            if self.fusion_problem() is not None or (self.pre_bias is not None and self.pixel_scale):
                return None  # (β of a pre-biased input: not a case any method has)
            if transform is not None and (self.pre_bias is not None or self.input_threshold is not None):
                return None  # the transformed input is packed as it is
            if len(self._plans) > 16:  # many shapes (tiles, batch sizes): keep the cache small
                self._plans.clear()
            norm = transform[0] if transform is not None else None
            shape = tuple(x.shape) if x2 is None else (x.shape[0], x.shape[1] + x2.shape[1], *x.shape[2:])
            plan = self._plans[key] = _Plan(self, lowrank, sparse, self._prepare(shape, lowrank, sparse, transform), norm)
            plan.bias_as_threshold = self._bias_as_threshold()
        extra = {}
        for name, t in (("x2", x2), ("mul", mul), ("shift", shift), ("add", add)):
            if t is not None:
                if t.dtype != torch.float32 or not t.is_cpu:
                    return None
                extra[name] = t
        pre = self.pre_bias(x) if self.pre_bias is not None and not plan.bias_as_threshold else None
        return plan.call.run(x, pre if pre is None or pre.dtype == torch.float32 else pre.float(), extra)

    def _geometry(self) -> dict[str, tuple[int, int]]:
        return {}

    def _binary_op(self, h: torch.Tensor) -> torch.Tensor:
        """The unfused binary op on the pre-biased input (one native or PyTorch call)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _watched_inside(self):
            fused = self.fused(x)
            if fused is not None:
                return fused
        h = self.pre_bias(x) if self.pre_bias is not None else x
        return finish_binary_output(self, self._binary_op(h), x)

    def _input_scale(self, h: torch.Tensor) -> torch.Tensor | None:
        """BiMaCoSR's β = mean over channels of |h| per pixel/token (as ResidualSignActivation order 1)."""
        return h.abs().mean(dim=self.channel_dim) if self.pixel_scale else None


@PACKED_FORMS.decorator("conv2d", lambda cls: cls)
class PackedBinaryConv2d(_PackedBinaryLayer):
    """Bit-packed binary conv (zero padding, any stride; no dilation or groups)."""

    channel_dim = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], bias: bool = True, threshold: bool = False, pixel_scale: bool = False,
                 **parts: nn.Module | None) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = tuple(kernel_size), tuple(stride), tuple(padding)
        self._init_state((out_channels, *self.kernel_size, words(in_channels)), in_channels, out_channels, bias,
                         threshold, pixel_scale, parts)

    @classmethod
    def from_binary(cls, layer: BinaryConv2d, fill: bool = True) -> PackedBinaryConv2d:
        """The packed form of ``layer`` (``fill=False``: right shapes, zero bits — for loading a file)."""
        if layer.groups != 1 or tuple(layer.dilation) != (1, 1) or layer.padding_mode != "zeros":
            raise BinsrError(f"groups={layer.groups}, dilation={tuple(layer.dilation)}, padding_mode="
                             f"{layer.padding_mode!r}: packed convs support groups 1, dilation 1, zero padding")
        if isinstance(layer.padding, str):
            raise BinsrError(f"padding={layer.padding!r}: packed convs need explicit integer padding")
        threshold, pixel_scale = input_rule(layer)
        packed = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                     layer.bias is not None, threshold is not None, pixel_scale,
                     **{name: getattr(layer, name) for name in PARTS})
        if fill:
            packed._fill_from(layer, threshold)
        return packed

    def _geometry(self) -> dict[str, tuple[int, int]]:
        return {"stride": self.stride, "padding": self.padding}

    def _binary_op(self, h: torch.Tensor) -> torch.Tensor:
        return binary_conv2d(h, self.packed_weight(), self.stride, self.padding, self.input_threshold,
                             self._input_scale(h))

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, threshold={self.input_threshold is not None}, pixel_scale={self.pixel_scale}")


@PACKED_FORMS.decorator("linear", lambda cls: cls)
class PackedBinaryLinear(_PackedBinaryLayer):
    """Bit-packed binary linear (channels last)."""

    channel_dim = -1

    def __init__(self, in_features: int, out_features: int, bias: bool = True, threshold: bool = False,
                 pixel_scale: bool = False, **parts: nn.Module | None) -> None:
        super().__init__()
        self._init_state((out_features, words(in_features)), in_features, out_features, bias, threshold,
                         pixel_scale, parts)

    @classmethod
    def from_binary(cls, layer: BinaryLinear, fill: bool = True) -> PackedBinaryLinear:
        threshold, pixel_scale = input_rule(layer)
        packed = cls(layer.in_features, layer.out_features, layer.bias is not None, threshold is not None,
                     pixel_scale, **{name: getattr(layer, name) for name in PARTS})
        if fill:
            packed._fill_from(layer, threshold)
        return packed

    def _binary_op(self, h: torch.Tensor) -> torch.Tensor:
        return binary_linear(h, self.packed_weight(), self.input_threshold, self._input_scale(h))

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, threshold={self.input_threshold is not None}, "
                f"pixel_scale={self.pixel_scale}")


def _watched_inside(module: nn.Module) -> bool:
    """Whether a forward hook watches a module inside ``module`` (or every module: global hooks). A fused
    call skips those modules' own forward calls, which analyses and counting hook, so it must step aside.
    (The modules inside are listed once per structure: ``Module.modules()`` walks them in generator frames.)"""
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    token = _structure(module)
    listed = module.__dict__.get("_inside_modules")
    if listed is None or listed[0] != token:
        listed = module.__dict__["_inside_modules"] = token, [m for m in module.modules() if m is not module]
    for m in listed[1]:
        if m._forward_hooks or m._forward_pre_hooks:
            return True
    return False


def _structure(*modules: nn.Module | None) -> tuple[nn.Module | None, ...]:
    """The modules' children: a tuple that compares unequal once a child module is replaced."""
    children: tuple[nn.Module | None, ...] = ()
    for m in modules:
        if m is not None:
            children += tuple(m._modules.values())
    return children


class _Snapshot:
    """The modules' children, parameters and buffers as they were: ``current()`` is False once another module
    or tensor stands in a place, a tensor was edited in place (its version counter) or given other memory
    (``param.data = ...`` keeps the counter: compared with an alias of the memory it had). The identities
    compared are those of objects the snapshot keeps alive, so none can be reused. (Plain loops over the
    modules' own dicts: this runs before every fused call, and ``Module.__getattr__`` per tensor is a slow path.)"""

    __slots__ = ("modules", "places", "entries")

    def __init__(self, modules: tuple[nn.Module, ...]) -> None:
        self.modules = modules
        self.places = self._places()
        tensors = [t for m in modules for t in (*m._parameters.values(), *m._buffers.values()) if t is not None]
        self.entries = tuple((t, t._version, t.detach()) for t in tensors)

    def _places(self) -> tuple[int, ...]:
        ids: list[int] = []
        for m in self.modules:
            ids += map(id, m._modules.values())
            ids += map(id, m._parameters.values())
            ids += map(id, m._buffers.values())
        return tuple(ids)

    def current(self) -> bool:
        if self._places() != self.places:
            return False
        for t, version, alias in self.entries:
            if t._version != version or not t.is_set_to(alias):
                return False
        return True


class _Plan:
    """A prepared :class:`FusedCall` with what it was derived from: a :class:`_Snapshot` of the layer, its
    branches and the transform's norm with everything inside them. ``current()`` says whether all still hold
    (a load_state_dict, an in-place edit, a replaced parameter or module rebuilds the call)."""

    __slots__ = ("call", "sources", "bias_as_threshold")

    def __init__(self, layer: _PackedBinaryLayer, lowrank: LowRankBranch | None, sparse: SparseBranch | None,
                 call: FusedCall, norm: nn.GroupNorm | None = None) -> None:
        self.call = call
        self.bias_as_threshold = False
        modules = [m for root in (layer, lowrank, sparse, norm) if root is not None for m in root.modules()]
        self.sources = _Snapshot(tuple(dict.fromkeys(modules)))  # (each once, in order)

    def current(self) -> bool:
        return self.sources.current()


def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    return t.detach().float().contiguous() if t is not None else None


def _group_key(module: TimestepGrouped | None) -> tuple[int, ...] | None:
    if module is None:
        return None
    group = module.group
    return tuple(group.reshape(-1).tolist()) if isinstance(group, torch.Tensor) else (int(group),)


def _group_rows(module: TimestepGrouped, param: torch.Tensor) -> torch.Tensor:
    """(rows, C) float32: the rows of a (K, C) timestep-grouped parameter its current groups pick."""
    chosen = _group_key(module)
    if min(chosen) < 0 or max(chosen) >= module.num_groups:
        raise BinsrError(f"timestep group {list(chosen)} out of range for {module.num_groups} groups")
    return param.detach()[list(chosen)].float().contiguous()


def sparse_rows(sparse: SparseBranch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SMB's sorted flat (o·C_in + c) indices as CSR: row pointers (O+1,), columns (k,) int32, values (k,)."""
    out_features, in_features = sparse.shape
    index = sparse.index.long()
    if index.numel() and (index.min() < 0 or index.max() >= out_features * in_features or
                          bool((index[1:] < index[:-1]).any())):
        raise BinsrError("sparse branch indices must be sorted and inside its matrix")
    counts = torch.bincount(index // in_features, minlength=out_features)
    pointers = torch.zeros(out_features + 1, dtype=torch.int32)
    pointers[1:] = counts.cumsum(0)
    return pointers, (index % in_features).to(torch.int32), sparse.values.detach().float().contiguous()


class PackedThreeBranch(ThreeBranch):
    """BiMaCoSR's three-branch layer with a packed BMB: BMB, LRMB and SMB in one native call (the same
    children and state dict as :class:`~binsr.binary.branches.ThreeBranch`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.fused(x)
        return fused if fused is not None else super().forward(x)

    def fused(self, x: torch.Tensor, **inputs: Any) -> torch.Tensor | None:
        """All three branches in one native call, with :meth:`_PackedBinaryLayer.fused`'s input transform and
        added tensor; None where it cannot run so (a hook watches a branch, PyTorch backend, ...)."""
        return None if _watched_inside(self) else self.bmb.fused(x, self.lrmb, self.smb, **inputs)
