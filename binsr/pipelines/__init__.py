"""Upscalers by name or model file: ``load("bicubic", scale=4)``, ``load("run/model.safetensors")``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


from binsr.errors import BinsrError
from binsr.pipelines.base import Upscaler
from binsr.pipelines.bicubic import BicubicUpscaler
from binsr.pipelines.diffusion import DiffusionUpscaler
from binsr.pipelines.model_file import LoadedModel, ModelSpec, load_model, load_network, read_model_spec
from binsr.pipelines.peers import PEERS, is_peer, load_peer, peers_installed
from binsr.pipelines.registry import PIPELINES, pipeline_type, register_pipeline
from binsr.pipelines.resshift import OneStepUpscaler, ResShiftFamily, ResShiftUpscaler
from binsr.pipelines.shipped import DEFAULT_MODEL, ShippedModel, shipped_models, shipped_path
from binsr.pipelines.sr3 import SR3Upscaler

NAMES = ("bicubic",)


def available() -> list[str]:
    """Model names that :func:`load` accepts besides model files: bicubic, the shipped models and the peers
    (these need the peers extra)."""
    return list(NAMES) + list(shipped_models()) + PEERS.names()


def resolve(name_or_path: str) -> Path:
    """The file of a shipped model name or a model file path (one error listing the names otherwise)."""
    path = shipped_path(name_or_path) or Path(name_or_path)
    if not path.exists() and (path.suffix or len(path.parts) > 1):  # meant as a file, not a name
        raise BinsrError(f"no such model file: {name_or_path}")
    if not path.exists():
        raise BinsrError(f"unknown model {name_or_path!r} (available: {', '.join(available())}, or a .safetensors "
                         f"model file)")
    return path


def model_scale(name_or_path: str, scale: int | None = None) -> int:
    """The scale ``load(name_or_path, scale)`` will have, from the model file's header alone (no weights
    read); a ``scale`` that disagrees with the file's, or bicubic without one, is an error."""
    if name_or_path == "bicubic":
        if scale is None:
            raise BinsrError("the bicubic model needs a scale (--scale)")
        return scale
    if is_peer(name_or_path):
        peer = PEERS.get(name_or_path)
        if scale is not None and scale != peer.scale:
            raise BinsrError(f"{name_or_path} is a x{peer.scale} model; x{scale} was requested")
        return peer.scale
    return _checked_spec(resolve(name_or_path), scale).scale


def check_steps(name_or_path: str, steps: int | None) -> None:
    """Raise (naming --steps) if a model cannot sample with ``steps`` DDIM steps, from its header alone: more
    steps than the diffusion steps it was trained with."""
    if steps is None or name_or_path == "bicubic" or is_peer(name_or_path):
        return
    spec = read_model_spec(resolve(name_or_path))
    most = getattr(spec.process.config, "num_train_timesteps", None)
    if pipeline_type(spec.kind).takes_steps and most is not None and steps > most:
        raise BinsrError(f"--steps {steps}: {name_or_path} was trained with {most} diffusion steps, so DDIM takes "
                         f"at most {most}")


def _checked_spec(path: Path, scale: int | None) -> ModelSpec:
    """The spec of model file ``path``, which must be a x``scale`` model when ``scale`` is given."""
    spec = read_model_spec(path)
    if scale is not None and scale != spec.scale:
        raise BinsrError(f"{path} is a x{spec.scale} model; x{scale} was requested")
    return spec


def load(name_or_path: str, scale: int | None = None, device: str = "cpu", **options: Any) -> Upscaler:
    """The upscaler called ``name_or_path``, or the one stored in that model file.

    ``options`` go to the pipeline (all diffusion models: seed, tile, tile_overlap; SR3: steps;
    ResShift: stochastic). A ``scale`` that differs from a model file's own scale is an error.
    Loading changes nothing in the process: the thread count and glibc's memory thresholds are the
    caller's (``binsr``'s commands set them with :func:`binsr.cli.process.configure_process`).
    """
    if name_or_path == "bicubic":
        return BicubicUpscaler(model_scale(name_or_path, scale))
    if is_peer(name_or_path):
        return load_peer(name_or_path, scale, device=device, **options)
    path = resolve(name_or_path)
    spec = _checked_spec(path, scale)  # the header, read once
    name = name_or_path if shipped_path(name_or_path) else spec.name or path.stem
    return upscaler_for(load_model(path, device, spec), name, **options)


def upscaler_for(model: LoadedModel, name: str, **options: Any) -> DiffusionUpscaler:
    """The pipeline that runs a loaded model file: the type its kind names."""
    return pipeline_type(model.spec.kind).from_model(model, name, **options)


__all__ = ["DEFAULT_MODEL", "PEERS", "PIPELINES", "BicubicUpscaler", "DiffusionUpscaler", "LoadedModel", "ModelSpec",
           "OneStepUpscaler", "ResShiftFamily", "ResShiftUpscaler", "SR3Upscaler", "ShippedModel", "Upscaler",
           "available", "check_steps", "is_peer", "load", "load_model", "load_network", "model_scale", "peers_installed", "pipeline_type",
           "read_model_spec",
           "register_pipeline", "resolve", "shipped_models", "upscaler_for"]
