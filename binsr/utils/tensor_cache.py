"""A cache of tensors by content key: the newest ``size`` in memory, and all of them on disk when given a
folder (one ``.safetensors`` file per key, written atomically, so runs that share the folder share entries
and an interrupted write leaves no half entry). Used for teacher outputs in distillation."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from binsr.utils.fs import atomic_write


def content_key(*tensors: torch.Tensor, prefix: str = "") -> str:
    """A 32-hex-digit digest of ``prefix`` and the tensors' float32 values (shape-blind, order-sensitive)."""
    digest = hashlib.blake2b(prefix.encode(), digest_size=16)
    for tensor in tensors:
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class TensorCache:
    """``get(key)`` → the stored tensor or None; ``put(key, tensor)`` stores a CPU copy."""

    def __init__(self, size: int = 0, folder: str | Path | None = None) -> None:
        self.size, self.folder = size, Path(folder) if folder else None
        self.memory: OrderedDict[str, torch.Tensor] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return bool(self.size or self.folder)

    def get_or_compute(self, count: int, key_of: Callable[[int], str],
                       compute: Callable[[list[int]], torch.Tensor]) -> tuple[list[torch.Tensor], int]:
        """``count`` items: item i from the cache under ``key_of(i)``, the rest from one ``compute(missing
        indices)`` (stacked along dim 0) and stored; with no cache, all computed. Returns (items, computed)."""
        keys = [key_of(i) for i in range(count)] if self.enabled else []
        found: list[torch.Tensor | None] = [self.get(key) for key in keys] if self.enabled else [None] * count
        missing = [i for i, out in enumerate(found) if out is None]
        if missing:
            for i, out in zip(missing, compute(missing)):
                found[i] = self.put(keys[i], out) if self.enabled else out
        return found, len(missing)  # type: ignore[return-value]

    def get(self, key: str) -> torch.Tensor | None:
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key]
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        out = load_file(path)["target"]
        self._remember(key, out)
        return out

    def put(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.detach().cpu().contiguous()
        self._remember(key, out)
        path = self._path(key)
        if path is not None:
            with atomic_write(path) as handle:
                handle.write(save({"target": out}))
        return out

    def _remember(self, key: str, out: torch.Tensor) -> None:
        if self.size:
            self.memory[key] = out
            while len(self.memory) > self.size:
                self.memory.popitem(last=False)

    def _path(self, key: str) -> Path | None:
        return self.folder / key[:2] / f"{key}.safetensors" if self.folder else None
