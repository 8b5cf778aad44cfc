"""Packed model files: ``export_packed(model_file, out)`` and loading them back (inference only).

A packed file is a binsr model file (safetensors, spec in the header) whose binary layers hold
``weight_bits`` (uint64 words) and ``weight_scale`` instead of latent FP weights; the spec gains a
``packed`` entry. Everything else (FP layers, norms, biases, RPReLU, LRMB/SMB, time MLP) is stored as
in the source file, in float32 or — with ``half=True`` — float16.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from binsr.deploy.convert import PackReport, pack_model, packed_layers
from binsr.errors import BinsrError
from binsr.models.files import load_weights, read_spec, save_model_file
from binsr.models.networks import build_from_spec

PACKED_FORMAT = 1


@dataclass
class ExportReport:
    """Sizes of one export, in bytes."""

    source_bytes: int
    packed_bytes: int
    layers: PackReport

    @property
    def ratio(self) -> float:
        """Whole file: source (FP latent weights) / packed."""
        return self.source_bytes / self.packed_bytes


def export_packed(source: str | os.PathLike[str], target: str | os.PathLike[str], half: bool = False,
                  sampling_steps: int | None = None) -> ExportReport:
    """Write the packed, inference-only form of model file ``source`` to ``target`` (atomically).
    ``sampling_steps``: the DDIM steps an SR3-style model runs with by default from then on."""
    spec = read_spec(source)
    if spec.get("packed"):
        raise BinsrError(f"{source} is already a packed model file")
    model = build_from_spec(spec)
    load_weights(model, source)
    layers = pack_model(model)
    if not layers.layers:
        raise BinsrError(f"{source} has no binary layers to pack (a full-precision model)")
    packed_spec = {**spec, "packed": {"format": PACKED_FORMAT, "floats": "float16" if half else "float32",
                                      "bits": "uint64 words of 64 input channels, bit 1 = -1"}}
    if sampling_steps is not None and spec.get("kind") == "sr3":
        packed_spec["sampling_steps"] = int(sampling_steps)
    save_model_file(target, model, packed_spec, torch.float16 if half else None)
    return ExportReport(Path(source).stat().st_size, Path(target).stat().st_size, layers)


def load_packed_network(path: str | os.PathLike[str], spec: dict[str, Any] | None = None) -> nn.Module:
    """The inference-only network of packed file ``path``; a file whose bits do not fit is one error."""
    spec = spec or read_spec(path)
    packed = spec.get("packed")
    if not isinstance(packed, dict) or packed.get("format") != PACKED_FORMAT:
        raise BinsrError(f"{path} is not a packed model file of format {PACKED_FORMAT} (made by 'binsr export')")
    model = build_from_spec(spec)
    pack_model(model, fill=False)
    layers = packed_layers(model)
    with safe_open(str(path), framework="pt") as handle:
        for name in layers:
            key = f"{name}.weight_bits"
            if key in handle.keys() and handle.get_slice(key).get_dtype() != "U64":
                raise BinsrError(f"{path}: {key} is {handle.get_slice(key).get_dtype()}, not uint64 bit words")
    load_weights(model, path)
    for name, layer in layers.items():
        try:
            layer.check()
        except BinsrError as err:
            raise BinsrError(f"{path}: layer {name!r}: {err}") from None
    return model.eval().requires_grad_(False)
