"""Model files: ``.safetensors`` weights with the model's description in the header, so a file alone
rebuilds its model (no flags). Written atomically. Reading never runs anything the file names, and a
file's tensors are compared with the structure its description implies before memory is allocated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save
from torch import nn

from binsr.binary.branches import SparseBranch
from binsr.errors import BinsrError
from binsr.models.legacy import upgrade_v1
from binsr.utils.fs import atomic_write

METADATA_KEY = "binsr"
FORMAT_VERSION = 2
# safetensors' dtype names of each torch dtype a binsr file may hold
DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
          torch.uint64: "U64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
FLOATS = {"F32", "F16", "BF16", "F64"}


def save_model_file(path: str | os.PathLike[str], model: nn.Module, header: dict[str, Any],
                    float_dtype: torch.dtype | None = None) -> None:
    """Write ``model``'s weights and its description ``header`` (JSON-able; format 2) atomically;
    ``float_dtype`` (e.g. float16) stores every floating-point tensor in that type."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if float_dtype is not None:
        state = {k: v.to(float_dtype) if v.is_floating_point() else v for k, v in state.items()}
    metadata = {METADATA_KEY: json.dumps({**header, "format": FORMAT_VERSION})}
    with atomic_write(path, "wb") as handle:
        handle.write(save(state, metadata=metadata))


MAX_HEADER_DEPTH = 32  # a model's description nests a few levels (network → config → lists)


def _depth(value: Any) -> int:
    """How deeply ``value`` (parsed JSON) nests dicts and lists, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                deepest = max(deepest, level + 1)
                stack.append((child, level + 1))
    return deepest


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The description stored in a model file as a format-2 dict (format 1 is upgraded), or one clear
    error if the file is not a binsr model. Only the header is read."""
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
    try:
        header = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise BinsrError(f"{path}: the binsr header is not valid JSON ({err})") from None
    except RecursionError:
        raise BinsrError(f"{path}: the binsr header is nested too deeply to be a model's description") from None
    if not isinstance(header, dict):
        raise BinsrError(f"{path}: the binsr header must be a JSON object")
    if _depth(header) > MAX_HEADER_DEPTH:
        raise BinsrError(f"{path}: the binsr header is nested more than {MAX_HEADER_DEPTH} levels deep; a model's "
                         f"description is not")
    version = header.get("format")
    try:
        if version == 1:
            return upgrade_v1(header)
    except BinsrError as err:
        raise BinsrError(f"{path}: {err}") from None
    if version != FORMAT_VERSION:
        raise BinsrError(f"{path}: model file format {version!r} is not one binsr reads (1 or {FORMAT_VERSION})")
    return header


def tensor_layout(path: str | os.PathLike[str]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each stored tensor's (shape, safetensors dtype name), read from the header alone."""
    with safe_open(str(path), framework="pt") as handle:
        return {key: (tuple(handle.get_slice(key).get_shape()), handle.get_slice(key).get_dtype())
                for key in handle.keys()}


def check_layout(expected: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Raise one error naming the file and the first tensor that does not fit ``expected`` (a state dict,
    typically of a structure on the meta device): missing, unexpected, other shape, or other dtype
    (floats may differ in width, nothing else may). Only shapes and dtypes are compared."""
    stored = tensor_layout(path)
    for key, tensor in expected.items():
        if key not in stored:
            raise BinsrError(f"{path} does not fit its described model: missing tensor {key} "
                             f"({len(set(expected) - set(stored))} missing)")
        shape, dtype = stored[key]
        if shape != tuple(tensor.shape):
            raise BinsrError(f"{path} does not fit its described model: {key} is {list(shape)}, "
                             f"the model needs {list(tensor.shape)}")
        wanted = DTYPES.get(tensor.dtype, str(tensor.dtype))
        if dtype != wanted and not (dtype in FLOATS and wanted in FLOATS):
            raise BinsrError(f"{path} does not fit its described model: {key} is {dtype}, the model needs {wanted}")
    unexpected = sorted(set(stored) - set(expected))
    if unexpected:
        raise BinsrError(f"{path} does not fit its described model: unexpected tensor {unexpected[0]} "
                         f"({len(unexpected)} unexpected)")


def load_into_skeleton(skeleton: nn.Module, path: str | os.PathLike[str],
                       device: str | torch.device = "cpu") -> nn.Module:
    """Check the file against ``skeleton`` (a structure on the meta device), then fill it: each stored
    tensor is read once onto ``device`` (floats cast to the structure's dtype) and becomes the module's
    parameter or buffer, so nothing is allocated twice."""
    expected = skeleton.state_dict()
    check_layout(expected, path)
    state = load_file(str(path), device=str(device))
    # What load_state_dict(assign=True) does, without its per-module hook and key-filtering passes (a
    # third of the load time of a packed network with ~1000 modules): each tensor replaces its meta twin.
    modules = dict(skeleton.named_modules())
    for key, tensor in state.items():
        if tensor.is_floating_point() and tensor.dtype != expected[key].dtype:
            tensor = tensor.to(expected[key].dtype)
        owner, _, name = key.rpartition(".")
        module = modules[owner]
        if name in module._parameters:
            module._parameters[name] = nn.Parameter(tensor, requires_grad=module._parameters[name].requires_grad)
        else:
            module._buffers[name] = tensor
    return skeleton


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
    check_values(model, path)


def check_values(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Raise, naming ``path`` and the tensor or layer, where loaded values cannot be a working model: a NaN or
    infinite weight (a damaged file would make every output NaN), a sparse branch's index outside its weight."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise BinsrError(f"{path}: tensor {name!r} holds NaN or infinite values (a damaged model file)")
    for name, module in model.named_modules():
        if isinstance(module, SparseBranch) and module.index.numel():
            size = module.shape[0] * module.shape[1]
            low, high = int(module.index.min()), int(module.index.max())
            if low < 0 or high >= size:
                raise BinsrError(f"{path}: layer {name!r}: sparse index {low if low < 0 else high} is outside its "
                                 f"{module.shape[0]}x{module.shape[1]} weight")
