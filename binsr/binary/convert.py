"""``binarize(model, method, keep_fp=[...], **options)``: swap a model's convs and linears for binary ones.

Targets are ``nn.Conv2d`` and ``nn.Linear`` modules (FP weights become the latent weights).
``keep_fp`` holds glob patterns matched against module names (``"conv_first"``, ``"out.*"``); each
must match something, so a typo cannot silently binarize a layer meant to stay FP. The linear
inside ``nn.MultiheadAttention`` is left alone and reported: that module reads its weights directly,
so replacing the submodule would change nothing.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from binsr.binary.layers import BinaryConv2d, BinaryLinear
from binsr.binary.methods import METHODS, Method
from binsr.errors import BinsrError
from binsr.utils.text import format_table


@dataclass
class LayerChange:
    """One replaced layer: its name, what it was, what it became, and per-layer options used."""

    name: str
    was: str
    now: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BinarizationReport:
    """What :func:`binarize` did."""

    method: str
    options: dict[str, Any]
    replaced: list[LayerChange] = field(default_factory=list)
    kept_fp: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)

    def layer_options(self) -> dict[str, dict[str, Any]]:
        """Per-layer options (e.g. BiMaCoSR's rank/k) to rebuild the same structure on a fresh model."""
        return {change.name: dict(change.options) for change in self.replaced if change.options}

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "options": self.options,
            "replaced": [vars(c) for c in self.replaced],
            "kept_fp": self.kept_fp,
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
        }

    def format(self) -> str:
        rows = [(c.name, c.was, c.now, ", ".join(f"{k}={v}" for k, v in c.options.items())) for c in self.replaced]
        rows += [(name, "-", "kept full precision", "") for name in self.kept_fp]
        rows += [(name, "-", "skipped", reason) for name, reason in self.skipped]
        return f"binarized with {self.method}\n" + format_table(["layer", "was", "now", "options"], rows, "llll")


def describe(layer: nn.Module) -> str:
    """'Conv2d(64→64, 3x3, s1)' / 'Linear(256→1024)'."""
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return f"Conv2d({layer.in_channels}->{layer.out_channels}, {kh}x{kw}, s{layer.stride[0]})"
    return f"Linear({layer.in_features}->{layer.out_features})"


def binarize(
    model: nn.Module,
    method: str,
    keep_fp: list[str] | tuple[str, ...] = (),
    inplace: bool = False,
    layer_options: dict[str, dict[str, Any]] | None = None,
    **options: Any,
) -> tuple[nn.Module, BinarizationReport]:
    """Replace every ``nn.Conv2d``/``nn.Linear`` not matched by ``keep_fp`` with ``method``'s binary layer.

    Returns ``(model, report)``; the model is a copy unless ``inplace``. ``layer_options`` overrides
    options per layer name (``report.layer_options()`` of an earlier run rebuilds the same shapes).
    """
    if method not in METHODS:
        raise BinsrError(f"unknown binarization method {method!r} (available: {', '.join(sorted(METHODS))})")
    spec = METHODS[method]
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        accepted = ", ".join(sorted(spec.options)) or "none"
        raise BinsrError(f"method {method!r} has no option {unknown[0]!r} (options: {accepted})")
    for key, value in options.items():
        check_option(spec, key, value)
    resolved = {**spec.options, **options}
    if not inplace:
        model = copy.deepcopy(model)

    report = BinarizationReport(method, resolved)
    targets = _targets(model, report)
    patterns = list(keep_fp)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in targets):
            raise BinsrError(f"keep_fp pattern {pattern!r} matches no conv/linear layer "
                             f"(layers: {', '.join(list(targets)[:8])}{', ...' if len(targets) > 8 else ''})")
    chosen = {}
    for name, layer in targets.items():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            report.kept_fp.append(name)
            continue
        problem = spec.problem(layer, resolved)
        if problem:
            raise BinsrError(f"layer {name!r} ({describe(layer)}) cannot be binarized with {method}: {problem}; "
                             f"keep it full precision with keep_fp=[{name!r}]")
        chosen[name] = layer

    given = layer_options or {}
    # A complete per-layer description (a model file's) needs no plan: nothing to measure on the weights.
    plan = spec.plan(chosen, resolved) if spec.plan and not all(name in given for name in chosen) else {}
    for name, layer in chosen.items():
        per_layer = {**plan.get(name, {}), **given.get(name, {})}
        replacement = spec.build(layer, {**resolved, **per_layer})
        set_submodule(model, name, replacement)
        report.replaced.append(LayerChange(name, describe(layer), type(replacement).__name__, per_layer))
    return model, report


def check_option(method: Method, key: str, value: Any) -> None:
    """An option's value must be of its default's kind (a flag, an integer, a number) or one of the words
    the method allows for it (BiMaCoSR's k: "2max" or "auto"); ranges are checked where they are used."""
    default, words = method.options[key], method.words.get(key, ())
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(value, str):
        ok = value in words
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        kinds = f"{type(default).__name__}{''.join(f' or {w!r}' for w in words)}"
        raise BinsrError(f"method {method.name!r} option {key!r} must be {kinds}, got {value!r}")


def _targets(model: nn.Module, report: BinarizationReport) -> dict[str, nn.Module]:
    """Conv2d/Linear modules to consider, by name; notes the ones that must be skipped."""
    inside_attention = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            inside_attention |= {f"{name}.{child}" if name else child for child, _ in module.named_modules() if child}
    targets = {}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or isinstance(module, (BinaryConv2d, BinaryLinear)):
            continue
        if name in inside_attention:
            report.skipped.append((name, "inside nn.MultiheadAttention, which uses its weights directly"))
            continue
        targets[name] = module
    return targets


_generation = [0]  # how many modules binsr's conversions have swapped in this process


def structure_generation() -> int:
    """A counter that changes whenever :func:`set_submodule` (every binsr conversion: ``binarize``,
    ``pack_model``) swaps a module: what caches of a network's module lists compare against."""
    return _generation[0]


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at dotted ``name`` inside ``model`` (replacing what is there)."""
    _generation[0] += 1
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
