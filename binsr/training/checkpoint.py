"""Training checkpoints: every file written atomically, the ``latest`` pointer last.

``checkpoints/step_00000100/`` holds ``model.safetensors`` (a complete model file, usable by
``binsr upscale``), ``ema.safetensors`` when EMA is on, and ``state.pt`` — optimizer, LR schedule,
step and the RNG state — read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from binsr.errors import BinsrError
from binsr.models.files import load_weights, save_model_file
from binsr.utils.fs import atomic_write

LATEST = "latest"


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, ema: nn.Module | None, spec: dict[str, Any],
                    state: dict[str, Any], keep: int) -> Path:
    folder = run_dir / "checkpoints" / f"step_{step:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    save_model_file(folder / "model.safetensors", model, spec)
    if ema is not None:
        save_model_file(folder / "ema.safetensors", ema, spec)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_write(folder / "state.pt", "wb") as handle:
        handle.write(buffer.getvalue())
    with atomic_write(run_dir / "checkpoints" / LATEST, "w") as handle:
        handle.write(folder.name)
    old = sorted(p for p in (run_dir / "checkpoints").glob("step_*") if p.is_dir())[:-keep]
    for stale in old:
        shutil.rmtree(stale, ignore_errors=True)
    return folder


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    folder = run_dir / "checkpoints" / pointer.read_text().strip()
    return folder if (folder / "state.pt").is_file() else None


def load_checkpoint(folder: Path, model: nn.Module, ema: nn.Module | None) -> dict[str, Any]:
    load_weights(model, folder / "model.safetensors")
    if ema is not None:
        if not (folder / "ema.safetensors").is_file():
            raise BinsrError(f"{folder} has no EMA weights but the config asks for EMA")
        load_weights(ema, folder / "ema.safetensors")
    return torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
