"""Training checkpoints: every file written atomically and read back, a checksum manifest, the ``latest``
pointer last.

``checkpoints/step_00000100/`` holds ``model.safetensors`` (a complete model file, usable by
``binsr upscale``), ``ema.safetensors`` when EMA is on, ``state.pt`` — optimizer, LR schedule, step and
the RNG state, and a critic's weights and optimizer when the task has one — read back with
``torch.load(weights_only=True)``, and ``manifest.json``, the SHA-256 of
each of them. A checkpoint whose files do not match their manifest (truncated, overwritten, bit rot) is
reported by name and :func:`resumable_checkpoints` offers the ones before it.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from binsr.errors import BinsrError
from binsr.models.files import load_weights, save_model_file
from binsr.utils.fs import atomic_write, write_json

LATEST = "latest"
MANIFEST = "manifest.json"


class CorruptCheckpoint(BinsrError):  # noqa: N818 - a state of a file, caught by name when resuming
    """A checkpoint file that cannot be read back or does not match its manifest."""


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, ema: nn.Module | None, spec: dict[str, Any],
                    state: dict[str, Any], keep: int) -> Path:
    """Write step ``step``'s checkpoint, verify every file by reading it back, then point ``latest`` at it
    and remove all but the newest ``keep``."""
    folder = run_dir / "checkpoints" / f"step_{step:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    save_model_file(folder / "model.safetensors", model, spec)
    if ema is not None:
        save_model_file(folder / "ema.safetensors", ema, spec)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_write(folder / "state.pt", "wb") as handle:
        handle.write(buffer.getvalue())
    if (folder / "state.pt").read_bytes() != buffer.getvalue():
        raise CorruptCheckpoint(f"{folder / 'state.pt'}: reads back different from what was written")
    names = ["model.safetensors", *(["ema.safetensors"] if ema is not None else []), "state.pt"]
    for name in names[:-1]:
        _readable(folder / name)
    write_json(folder / MANIFEST, {name: _sha256(folder / name) for name in names})
    with atomic_write(run_dir / "checkpoints" / LATEST, "w") as handle:
        handle.write(folder.name)
    old = sorted(p for p in (run_dir / "checkpoints").glob("step_*") if p.is_dir())[:-keep]
    for stale in old:
        shutil.rmtree(stale, ignore_errors=True)
    return folder


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder ``latest`` points at, if it has its state (no check of its contents)."""
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    folder = run_dir / "checkpoints" / pointer.read_text().strip()
    return folder if (folder / "state.pt").is_file() else None


def resumable_checkpoints(run_dir: Path) -> list[Path]:
    """Every checkpoint folder of the run, newest first (``latest``'s target first)."""
    folders = sorted((p for p in (run_dir / "checkpoints").glob("step_*") if p.is_dir()), reverse=True)
    first = latest_checkpoint(run_dir)
    return ([first] if first is not None else []) + [f for f in folders if f != first]


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be resumed from (a missing, unreadable or changed file), or None."""
    manifest = folder / MANIFEST
    if not (folder / "state.pt").is_file():
        return f"{folder / 'state.pt'}: missing"
    if not manifest.is_file():
        return None  # written before manifests existed: its files are still checked when loaded
    try:
        expected = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return f"{manifest}: unreadable ({err})"
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            return f"{path}: missing"
        if _sha256(path) != digest:
            return f"{path}: corrupt (its checksum differs from {MANIFEST})"
    return None


def load_checkpoint(folder: Path, model: nn.Module, ema: nn.Module | None) -> dict[str, Any]:
    """Load a checkpoint's weights into ``model`` (and ``ema``) and return its state; unreadable files raise
    :class:`CorruptCheckpoint`, weights of another architecture a :class:`BinsrError`."""
    problem = checkpoint_problem(folder)
    if problem is not None:
        raise CorruptCheckpoint(problem)
    for target, name in ((model, "model.safetensors"), (ema, "ema.safetensors")):
        if target is None:
            continue
        if not (folder / name).is_file():
            raise BinsrError(f"{folder} has no EMA weights but the config asks for EMA")
        try:
            load_weights(target, folder / name)
        except BinsrError:
            raise  # weights of another architecture: not a damaged file
        except Exception as err:  # noqa: BLE001 - safetensors' errors on a damaged file
            raise CorruptCheckpoint(f"{folder / name}: unreadable ({type(err).__name__})") from None
    try:
        return torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle, zip and EOF errors all mean the file is damaged
        raise CorruptCheckpoint(f"{folder / 'state.pt'}: unreadable ({type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else ''})") from None


def _readable(path: Path) -> None:
    try:
        load_file(str(path))
    except Exception as err:  # noqa: BLE001 - any safetensors failure means a damaged file
        raise CorruptCheckpoint(f"{path}: unreadable ({type(err).__name__})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
