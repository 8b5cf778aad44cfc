"""Networks from a JSON-able description, so a model file rebuilds its network without flags.

A description is ``{"type": "resshift_unet" | "sr_unet", "config": {...}, "binarize": {...} | None}``;
``binarize`` holds ``method``, ``options``, ``keep_fp`` (default: the network's own
``full_precision_patterns()``) and ``layer_options`` (per-layer shapes such as BiMaCoSR's r and k).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from binsr.binary import binarize
from binsr.config import from_dict, to_dict
from binsr.errors import BinsrError
from binsr.models.resshift_unet import ResShiftUNet, ResShiftUNetConfig
from binsr.models.unet import SRUNet, UNetConfig, build_unet

NETWORK_TYPES: dict[str, tuple[type, type]] = {
    "resshift_unet": (ResShiftUNetConfig, ResShiftUNet),
    "sr_unet": (UNetConfig, SRUNet),
}


def describe_network(config: Any, binarization: dict[str, Any] | None = None) -> dict[str, Any]:
    """The description of a network built from ``config`` (a network config dataclass)."""
    kind = next((name for name, (cls, _) in NETWORK_TYPES.items() if isinstance(config, cls)), None)
    if kind is None:
        raise BinsrError(f"no network type for config {type(config).__name__}")
    return {"type": kind, "config": to_dict(config), "binarize": binarization}


def build_network(description: dict[str, Any]) -> nn.Module:
    """Build (and binarize, when described) the network of ``description``."""
    kind = description.get("type")
    if kind not in NETWORK_TYPES:
        raise BinsrError(f"unknown network type {kind!r} (known: {', '.join(NETWORK_TYPES)})")
    config_cls, network_cls = NETWORK_TYPES[kind]
    model = network_cls(from_dict(config_cls, description.get("config") or {}, "network."))
    return apply_binarization(model, description.get("binarize"))[0]


def apply_binarization(model: nn.Module, binarization: dict[str, Any] | None) -> tuple[nn.Module, dict | None]:
    """Binarize ``model`` in place as ``binarization`` says; returns it with the completed description
    (keep_fp and per-layer options filled in, so the result rebuilds exactly)."""
    if not binarization:
        return model, None
    unknown = set(binarization) - {"method", "options", "keep_fp", "layer_options"}
    if unknown or "method" not in binarization:
        raise BinsrError(f"binarize needs 'method' and may have options, keep_fp, layer_options; got {sorted(binarization)}")
    keep_fp = binarization.get("keep_fp")
    if keep_fp is None:
        keep_fp = model.full_precision_patterns() if hasattr(model, "full_precision_patterns") else []
    _, report = binarize(model, binarization["method"], keep_fp=list(keep_fp), inplace=True,
                         layer_options=binarization.get("layer_options"), **(binarization.get("options") or {}))
    complete = {"method": binarization["method"], "options": dict(binarization.get("options") or {}),
                "keep_fp": list(keep_fp), "layer_options": report.layer_options()}
    return model, complete


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """The (untrained) network a model file's spec describes: kind "sr3" (``unet``) or "resshift" /
    "onestep" (``network``)."""
    kind = spec.get("kind")
    if kind == "sr3":
        return build_unet(from_dict(UNetConfig, spec["unet"]))
    if kind in ("resshift", "onestep"):
        return build_network(spec["network"])
    raise BinsrError(f"unsupported model kind {kind!r}")
