"""Model files: ``.safetensors`` weights with the architecture config in the header metadata, so a
file alone rebuilds its model (no flags). Written atomically; loading checks that the file fits."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_model, save
from torch import nn

from binsr.errors import BinsrError
from binsr.utils.fs import atomic_write

METADATA_KEY = "binsr"
FORMAT_VERSION = 1


def save_model_file(path: str | os.PathLike[str], model: nn.Module, spec: dict[str, Any],
                    float_dtype: torch.dtype | None = None) -> None:
    """Write ``model``'s weights and ``spec`` (JSON-able: kind, architecture, scale, ...) atomically;
    ``float_dtype`` (e.g. float16) stores every floating-point tensor in that type."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if float_dtype is not None:
        state = {k: v.to(float_dtype) if v.is_floating_point() else v for k, v in state.items()}
    metadata = {METADATA_KEY: json.dumps({"format": FORMAT_VERSION, **spec})}
    with atomic_write(path, "wb") as handle:
        handle.write(save(state, metadata=metadata))


def read_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The spec stored in a model file, or a clear error if the file is not a binsr model."""
    path = Path(path)
    if not path.is_file():
        raise BinsrError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as err:  # noqa: BLE001 - any header failure means "not a safetensors file"
        raise BinsrError(f"{path}: not a safetensors model file ({type(err).__name__})") from None
    if METADATA_KEY not in metadata:
        raise BinsrError(f"{path}: safetensors file without binsr metadata (not saved by binsr)")
    return json.loads(metadata[METADATA_KEY])


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load weights strictly; a file made for another architecture is one clear error."""
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except RuntimeError as err:  # shape mismatch
        detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err).splitlines()[0])
        raise BinsrError(f"{path} does not fit this architecture: {detail}") from None
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise BinsrError(f"{path} does not fit this architecture: {what} "
                         f"({len(missing)} missing, {len(unexpected)} unexpected tensors)")
