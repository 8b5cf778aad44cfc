"""Upscalers by name or model file: ``load("bicubic", scale=4)``, ``load("run/model.safetensors")``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from binsr.config import from_dict
from binsr.deploy.files import load_packed_network
from binsr.diffusion.resshift import ResShift, ResShiftSchedule
from binsr.diffusion.sr3 import SR3, SR3Schedule
from binsr.errors import BinsrError
from binsr.models.autoencoder import load_autoencoder
from binsr.models.files import load_weights, read_spec
from binsr.models.networks import build_from_spec
from binsr.pipelines.base import Upscaler
from binsr.pipelines.bicubic import BicubicUpscaler
from binsr.pipelines.diffusion import DiffusionUpscaler, OneStepUpscaler, ResShiftUpscaler, SR3Upscaler
from binsr.pipelines.shipped import DEFAULT_MODEL, ShippedModel, shipped_models, shipped_path

NAMES = ("bicubic",)
DEFAULT_SR3_STEPS = 50


def sampling_steps(spec: dict[str, Any]) -> int:
    """The DDIM steps an SR3-style model file runs with by default (set by 'binsr export --steps'), else 50."""
    return int(spec.get("sampling_steps", DEFAULT_SR3_STEPS))


def available() -> list[str]:
    """Model names that :func:`load` accepts besides model files: bicubic and the shipped models."""
    return list(NAMES) + list(shipped_models())


def load(name_or_path: str, scale: int | None = None, device: str = "cpu", **options: Any) -> Upscaler:
    """The upscaler called ``name_or_path``, or the one stored in that model file.

    ``options`` go to the pipeline (all diffusion models: seed, tile, tile_overlap; SR3: steps;
    ResShift: stochastic). A ``scale`` that differs from a model file's own scale is an error.
    """
    if name_or_path == "bicubic":
        if scale is None:
            raise BinsrError("the bicubic model needs a scale (--scale)")
        return BicubicUpscaler(scale)
    shipped = shipped_path(name_or_path)
    path = shipped or Path(name_or_path)
    if not path.exists():
        raise BinsrError(f"unknown model {name_or_path!r} (available: {', '.join(available())}, or a .safetensors "
                         f"model file)")
    spec = read_spec(path)
    if scale is not None and scale != spec["scale"]:
        raise BinsrError(f"{path} is a x{spec['scale']} model; x{scale} was requested")
    kind, name = spec.get("kind"), name_or_path if shipped else spec.get("name", path.stem)
    if kind == "sr3":
        if options.get("steps") is None:
            options["steps"] = sampling_steps(spec)
        model = load_network(path, spec)
        diffusion = SR3(from_dict(SR3Schedule, spec["diffusion"]))
        return SR3Upscaler(model.to(device), diffusion, spec["scale"], name=name, multiple=model.config.multiple,
                           **options)
    if kind in ("resshift", "onestep"):
        model, process = load_resshift_model(path, spec)
        autoencoder = load_autoencoder(spec["autoencoder"]).to(device) if spec.get("autoencoder") else None
        multiple = model.config.multiple * (autoencoder.factor if autoencoder is not None else 1)
        options.pop("steps", None)  # ResShift runs its own T steps; a one-step student one network call
        upscaler = ResShiftUpscaler if kind == "resshift" else OneStepUpscaler
        return upscaler(model.to(device), process, spec["scale"], name=name, multiple=multiple,
                        autoencoder=autoencoder, **options)
    raise BinsrError(f"{path}: unsupported model kind {kind!r}")


def load_resshift_model(path: str | Path, spec: dict[str, Any] | None = None) -> tuple[nn.Module, ResShift]:
    """The network and ResShift process of a ResShift teacher or one-step student model file."""
    spec = spec or read_spec(path)
    if spec.get("kind") not in ("resshift", "onestep"):
        raise BinsrError(f"{path} is not a ResShift model (kind {spec.get('kind')!r}); a ResShift teacher "
                         f"or one-step student is needed")
    return load_network(path, spec), ResShift(from_dict(ResShiftSchedule, spec["diffusion"]))


def load_network(path: str | Path, spec: dict[str, Any] | None = None) -> nn.Module:
    """The network stored in model file ``path``: trained weights, or — for a file made by
    ``binsr export`` — the inference-only bit-packed form."""
    spec = spec or read_spec(path)
    if spec.get("packed"):
        return load_packed_network(path, spec)
    model = build_from_spec(spec)
    load_weights(model, path)
    return model


__all__ = ["DEFAULT_MODEL", "BicubicUpscaler", "DiffusionUpscaler", "OneStepUpscaler", "ResShiftUpscaler",
           "SR3Upscaler", "ShippedModel", "Upscaler", "available", "load", "load_network", "load_resshift_model",
           "shipped_models"]
