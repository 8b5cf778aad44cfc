"""Params, storage and operation counts of any ``nn.Module`` for one forward pass.

Counting runs the model once under forward hooks. Each module contributes the operations it performs
itself (not those of its children) and its own parameters (``recurse=False``; shared parameters once).

A module declares binary parts through two optional methods (duck-typed, so this engine imports no
layer library):

* ``binary_parameter_bits() -> Mapping[str, int]``: its own parameters stored in binary, with the
  bits per entry (1 for plain sign weights, N for N-term residual binarization such as HORQ);
* ``complexity_ops(args, kwargs, output) -> tuple[int, int]``: (FP MACs, binary ops) of one call,
  replacing the rule for its type in :mod:`binsr.complexity.rules`.

Totals follow the papers' convention (BI-DiffSR Table 2, BBCU): Params = FP parameters + binary
weights / 32, OPs = FLOPs + BOPs / 64, where an N-bit binary weight counts N times. Storage counts FP
parameters and buffers at their dtype size and binary weights at their bits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from binsr.complexity.rules import rule_for
from binsr.utils.text import format_table, human_count

BINARY_PARAMS_PER_FP = 32  # a 1-bit weight counts as 1/32 of a 32-bit parameter
BOPS_PER_FLOP = 64  # 64 binary ops (XNOR + popcount on a 64-bit word) count as one FLOP


@dataclass
class LayerCost:
    """One module's share: its own parameters and the ops of all its calls."""

    name: str
    kind: str
    params_fp: int = 0
    params_binary: int = 0
    flops: int = 0
    bops: int = 0
    calls: int = 0


@dataclass
class ComplexityReport:
    """Per-layer costs and totals of one forward pass."""

    layers: list[LayerCost]
    storage_bytes: int
    uncounted: list[str] = field(default_factory=list)  # leaf module types with params but no rule

    @property
    def params_fp(self) -> int:
        return sum(layer.params_fp for layer in self.layers)

    @property
    def params_binary(self) -> int:
        return sum(layer.params_binary for layer in self.layers)

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    @property
    def bops(self) -> int:
        return sum(layer.bops for layer in self.layers)

    @property
    def params(self) -> float:
        """Papers' Params: FP parameters + binary weights / 32."""
        return self.params_fp + self.params_binary / BINARY_PARAMS_PER_FP

    @property
    def ops(self) -> float:
        """Papers' OPs: FLOPs (MACs) + binary ops / 64."""
        return self.flops + self.bops / BOPS_PER_FLOP

    @property
    def parameter_bits(self) -> int:
        """Bits of all parameters: FP ones at 32 bits, binary ones at their bits per entry."""
        return self.params_fp * BINARY_PARAMS_PER_FP + self.params_binary

    def compared_to(self, reference: ComplexityReport) -> dict[str, float]:
        """BiMaCoSR's accounting against a reference (usually the FP model): compression ratio =
        reference parameter bits / these bits; OPs speedup = reference OPs / these OPs."""
        return {"compression_ratio": reference.parameter_bits / self.parameter_bits,
                "ops_speedup": reference.ops / self.ops,
                "params_ratio": reference.params / self.params}

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "parameter_bits": self.parameter_bits,
            "params_fp": self.params_fp,
            "params_binary": self.params_binary,
            "ops": self.ops,
            "flops": self.flops,
            "bops": self.bops,
            "storage_bytes": self.storage_bytes,
            "uncounted": self.uncounted,
            "layers": [asdict(layer) for layer in self.layers],
        }

    def format_table(self) -> str:
        """Per-layer table followed by the totals, for terminals."""
        rows = [
            (layer.name or "(model)", layer.kind, layer.params_fp, layer.params_binary, human_count(layer.flops),
             human_count(layer.bops))
            for layer in self.layers
        ]
        table = format_table(["layer", "type", "FP params", "binary params", "FLOPs", "BOPs"], rows, "llrrrr")
        totals = (
            f"Params {human_count(self.params)} (FP {human_count(self.params_fp)} + binary "
            f"{human_count(self.params_binary)}/32)  OPs {human_count(self.ops)} (FLOPs {human_count(self.flops)} "
            f"+ BOPs {human_count(self.bops)}/64)  storage {self.storage_bytes / 2**20:.2f} MiB"
        )
        note = f"\nnot counted (no rule): {', '.join(self.uncounted)}" if self.uncounted else ""
        return f"{table}\n{totals}{note}"


def count_complexity(model: nn.Module, *args: Any, **kwargs: Any) -> ComplexityReport:
    """Run ``model(*args, **kwargs)`` once without gradients and count what it did."""
    costs: dict[str, LayerCost] = {}
    seen_params: set[int] = set()
    binary_params: dict[int, int] = {}  # id -> bits per entry
    uncounted: set[str] = set()
    handles = []
    for name, module in model.named_modules():
        cost = LayerCost(name=name, kind=type(module).__name__)
        binary_bits = dict(_call_optional(module, "binary_parameter_bits", {}))
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen_params:
                continue
            seen_params.add(id(param))
            if param_name in binary_bits:
                binary_params[id(param)] = binary_bits[param_name]
                cost.params_binary += param.numel() * binary_bits[param_name]
            else:
                cost.params_fp += param.numel()
        costs[name] = cost
        custom = getattr(module, "complexity_ops", None)
        rule = rule_for(module)
        is_leaf = next(module.children(), None) is None
        if custom is None and rule is None and cost.params_fp and is_leaf:
            uncounted.add(type(module).__name__)
        handles.append(module.register_forward_hook(_make_hook(cost, custom, rule), with_kwargs=True))

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    layers = [c for c in costs.values() if c.params_fp or c.params_binary or c.flops or c.bops]
    return ComplexityReport(layers, _storage_bytes(model, binary_params), sorted(uncounted))


def _make_hook(cost: LayerCost, custom: Any, rule: Any) -> Callable[..., None]:
    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        cost.calls += 1
        if custom is not None:
            flops, bops = custom(args, kwargs, output)
            cost.flops += int(flops)
            cost.bops += int(bops)
        elif rule is not None:
            cost.flops += int(rule(module, args, kwargs, output))

    return hook


def _storage_bytes(model: nn.Module, binary_params: dict[int, int]) -> int:
    """Bytes of everything the state dict stores (parameters and persistent buffers, shared ones
    once): FP tensors at their dtype size, binary weights at their bits per entry."""
    bits = 0
    seen: set[int] = set()
    for tensor in model.state_dict(keep_vars=True).values():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        per_entry = binary_params.get(id(tensor), 8 * tensor.element_size())
        bits += tensor.numel() * per_entry
    return math.ceil(bits / 8)


def _call_optional(module: nn.Module, method: str, default: Any) -> Any:
    fn = getattr(module, method, None)
    return fn() if callable(fn) else default
