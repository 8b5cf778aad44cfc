"""Packed model files: ``export_packed(model_file, out)`` and building their inference networks.

A packed file is a binsr model file (safetensors, description in the header) whose binary layers hold
``weight_bits`` (uint64 words) and ``weight_scale`` instead of latent FP weights; the header's
``packed`` entry says so. Everything else (FP layers, norms, biases, RPReLU, LRMB/SMB, time MLP) is
stored as in the source file, in float32 or — with ``half=True`` — float16.

Loading builds the inference network directly from the description: the structure on the meta
device (no latent FP weights, no SVD, nothing allocated), checked against the file's tensors, then
allocated once and filled from the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from binsr.deploy.convert import PackReport, pack_model, packed_layers
from binsr.errors import BinsrError
from binsr.models.description import NetworkSpec
from binsr.models.files import check_values, load_into_skeleton, read_header, save_model_file

PACKED_FORMAT = 1
FLOAT_TYPES = ("float32", "float16")


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


def packed_info(half: bool) -> dict[str, Any]:
    """The header's ``packed`` entry."""
    return {"format": PACKED_FORMAT, "floats": "float16" if half else "float32",
            "bits": "uint64 words of 64 input channels, bit 1 = -1"}


def export_packed(source: str | os.PathLike[str], target: str | os.PathLike[str], half: bool = False,
                  sampling_steps: int | None = None) -> ExportReport:
    """Write the packed, inference-only form of model file ``source`` to ``target`` (atomically).
    ``sampling_steps``: the steps a model whose pipeline takes a step count runs with by default from then
    on (the caller checks that it does)."""
    header = read_header(source)
    if header.get("packed"):
        raise BinsrError(f"{source} is already a packed model file")
    try:
        network = NetworkSpec.parse(header.get("network"))
    except BinsrError as err:
        raise BinsrError(f"{source}: {err}") from None
    model = load_into_skeleton(network.build("meta"), source)
    layers = pack_model(model)
    if not layers.layers:
        raise BinsrError(f"{source} has no binary layers to pack (a full-precision model)")
    packed_header = {**header, "packed": packed_info(half)}
    if sampling_steps is not None:
        packed_header["sampling_steps"] = int(sampling_steps)
    save_model_file(target, model, packed_header, torch.float16 if half else None)
    return ExportReport(Path(source).stat().st_size, Path(target).stat().st_size, layers)


def packed_skeleton(network: NetworkSpec) -> nn.Module:
    """The inference-only packed structure of ``network``, on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = network.build("meta")
        pack_model(model, fill=False)
    return model


def load_packed_network(path: str | os.PathLike[str], network: NetworkSpec, device: str | torch.device = "cpu") -> nn.Module:
    """The packed inference network of file ``path`` (whose description is ``network``), checked first:
    tensor shapes and dtypes against the structure, then the bits against each layer's channels."""
    model = load_into_skeleton(packed_skeleton(network), path, device)
    check_values(model, path)
    for name, layer in packed_layers(model).items():
        try:
            layer.check()
        except BinsrError as err:
            raise BinsrError(f"{path}: layer {name!r}: {err}") from None
    return model.eval().requires_grad_(False)
