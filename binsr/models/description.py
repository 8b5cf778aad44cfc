"""One description for every network a model file or card holds, parsed strictly before anything is built.

    {"type": "resshift_unet",                 # a registered network type
     "config": {...every field...},           # its config dataclass, bounds checked
     "binarize": {"method": "bimacosr",       # a registered method, or null for full precision
                  "options": {...every option, defaults filled in...},
                  "keep_fp": ["head", "tail.2"],
                  "layer_options": {"down.0.block.conv1": {"rank": 8, "k": 128}, ...}}}

Autoencoders are ``{"type": "space_to_depth", "config": {"factor": 4}}``. Nothing named here is imported:
types and methods are looked up in registries. :meth:`NetworkSpec.build` on the ``meta`` device gives
every parameter's shape without allocating memory, so a file's tensors are checked against its
description before any real memory is used.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from binsr.binary import METHODS, binarize
from binsr.binary.convert import check_option
from binsr.config import ComponentSpec, ConfigError, exact_keys, from_dict, to_dict
from binsr.errors import BinsrError
from binsr.models.registry import AUTOENCODERS, NETWORKS

# The most layers / characters a description may name: far above any real network, far below harm.
MAX_NAMES = 100_000
MAX_NAME_LENGTH = 512


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_NAMES or not all(
            isinstance(v, str) and len(v) <= MAX_NAME_LENGTH for v in value):
        raise ConfigError(f"'{where}' must be a list of layer names or patterns")
    return list(value)


@dataclass(frozen=True)
class BinarizationSpec:
    """A registered method with all its options, the FP layers and per-layer options (BiMaCoSR's r, k)."""

    method: str
    options: dict[str, Any]
    keep_fp: tuple[str, ...]
    layer_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: Any, where: str = "binarize") -> BinarizationSpec:
        data = exact_keys(data, where, ("method", "options", "keep_fp", "layer_options"))
        method = METHODS.get(data["method"])
        given = data["options"]
        if isinstance(given, dict):  # an option added after the file was written: its default, as the file meant
            given = {**{key: method.options[key] for key in method.added}, **given}
        options = exact_keys(given, f"{where}.options", tuple(method.options))
        for key, value in options.items():
            check_option(method, key, value)
        layers = data["layer_options"]
        if not isinstance(layers, dict) or len(layers) > MAX_NAMES:
            raise ConfigError(f"'{where}.layer_options' must map layer names to options")
        for name, per_layer in layers.items():
            if not isinstance(per_layer, dict) or len(name) > MAX_NAME_LENGTH:
                raise ConfigError(f"'{where}.layer_options.{name}' must be a mapping of options")
            for key, value in per_layer.items():
                if key not in method.options:
                    raise ConfigError(f"'{where}.layer_options.{name}' has unknown option '{key}'")
                check_option(method, key, value)
        return cls(method.name, dict(options), tuple(_names(data["keep_fp"], f"{where}.keep_fp")),
                   {name: dict(v) for name, v in layers.items()})

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "options": dict(self.options), "keep_fp": list(self.keep_fp),
                "layer_options": {name: dict(v) for name, v in self.layer_options.items()}}


@dataclass(frozen=True)
class NetworkSpec:
    """A registered network type, its complete config and how it is binarized (None: full precision)."""

    type: str
    config: Any
    binarize: BinarizationSpec | None = None

    @classmethod
    def parse(cls, data: Any, where: str = "network") -> NetworkSpec:
        data = exact_keys(data, where, ("type", "config", "binarize"))
        kind = NETWORKS.get(data["type"])
        config = from_dict(kind.config, data["config"], f"{where}.config.", complete=True)
        binarization = None if data["binarize"] is None else BinarizationSpec.parse(data["binarize"], f"{where}.binarize")
        return cls(kind.name, config, binarization)

    @classmethod
    def of(cls, config: Any, binarize: BinarizationSpec | None = None) -> NetworkSpec:
        """The description of a network with ``config`` (an instance of a registered config class)."""
        return cls(NETWORKS.type_of(config).name, config, binarize)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "config": to_dict(self.config),
                "binarize": None if self.binarize is None else self.binarize.to_dict()}

    def full_precision(self) -> NetworkSpec:
        """The FP twin: the same architecture, not binarized."""
        return NetworkSpec(self.type, self.config, None)

    def build(self, device: str | torch.device | None = None) -> nn.Module:
        """The network (binarized as described). On ``device="meta"`` nothing is allocated or computed
        (no SVD): the structure only, to check a file's tensors against or to load them into."""
        # (on the meta device PyTorch's initialisers run on shapes alone: nothing is drawn, nothing patched)
        with torch.device(device) if device is not None else nullcontext():
            try:
                network = NETWORKS.get(self.type).cls(self.config)
            except (ValueError, RuntimeError) as err:  # e.g. GroupNorm groups that do not divide channels
                raise BinsrError(f"network {self.type!r} cannot be built from its config: {err}") from None
            if self.binarize is not None:
                apply_binarization(network, self.binarize)
        return network


def apply_binarization(network: nn.Module, binarization: BinarizationSpec | dict[str, Any]) -> BinarizationSpec:
    """Binarize ``network`` in place; returns the complete description (every option, keep_fp and the
    per-layer options the method decided), which rebuilds exactly the same structure. A dict may leave
    out options (their defaults are filled in), keep_fp (the network's own FP parts) and layer_options."""
    if isinstance(binarization, dict):
        unknown = set(binarization) - {"method", "options", "keep_fp", "layer_options"}
        if unknown or "method" not in binarization:
            raise BinsrError(f"binarize needs 'method' and may have options, keep_fp, layer_options; "
                             f"got {sorted(binarization)}")
        keep_fp = binarization.get("keep_fp")
        method, options = binarization["method"], dict(binarization.get("options") or {})
        layer_options = binarization.get("layer_options") or {}
    else:
        method, options, keep_fp, layer_options = (binarization.method, dict(binarization.options),
                                                   binarization.keep_fp, binarization.layer_options)
    if keep_fp is None:
        keep_fp = network.full_precision_patterns() if hasattr(network, "full_precision_patterns") else []
    _, report = binarize(network, method, keep_fp=list(keep_fp), inplace=True, layer_options=layer_options,
                         **options)
    return BinarizationSpec(method, dict(report.options), tuple(keep_fp), report.layer_options())


class AutoencoderSpec(ComponentSpec):
    """A registered autoencoder and its complete config."""

    registry = AUTOENCODERS
    where = "autoencoder"

    def build(self) -> nn.Module:
        """The autoencoder, frozen in eval mode."""
        return super().build().eval().requires_grad_(False)
