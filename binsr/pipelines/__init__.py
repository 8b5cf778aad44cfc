"""Upscalers by name or model file: ``load("bicubic", scale=4)``, ``load("run/model.safetensors")``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from binsr.config import from_dict
from binsr.diffusion.sr3 import SR3, SR3Schedule
from binsr.errors import BinsrError
from binsr.models.files import load_weights, read_spec
from binsr.models.unet import UNetConfig, build_unet
from binsr.pipelines.base import Upscaler
from binsr.pipelines.bicubic import BicubicUpscaler
from binsr.pipelines.sr3 import SR3Upscaler

NAMES = ("bicubic",)


def available() -> list[str]:
    """Model names that :func:`load` accepts besides model files."""
    return list(NAMES)


def load(name_or_path: str, scale: int | None = None, device: str = "cpu", **options: Any) -> Upscaler:
    """The upscaler called ``name_or_path``, or the one stored in that model file.

    ``options`` go to the pipeline (SR3 models: steps, seed, tile, tile_overlap). A ``scale`` that
    differs from a model file's own scale is an error.
    """
    if name_or_path == "bicubic":
        if scale is None:
            raise BinsrError("the bicubic model needs a scale (--scale)")
        return BicubicUpscaler(scale)
    path = Path(name_or_path)
    if not path.exists():
        raise BinsrError(f"unknown model {name_or_path!r} (available: {', '.join(available())}, or a .safetensors "
                         f"model file)")
    spec = read_spec(path)
    if scale is not None and scale != spec["scale"]:
        raise BinsrError(f"{path} is a x{spec['scale']} model; x{scale} was requested")
    if spec.get("kind") != "sr3":
        raise BinsrError(f"{path}: unsupported model kind {spec.get('kind')!r}")
    unet = from_dict(UNetConfig, spec["unet"])
    model = build_unet(unet)
    load_weights(model, path)
    diffusion = SR3(from_dict(SR3Schedule, spec["diffusion"]))
    return SR3Upscaler(model.to(device), diffusion, spec["scale"], name=spec.get("name", path.stem),
                       multiple=max(unet.multiple, 1), **options)


__all__ = ["BicubicUpscaler", "SR3Upscaler", "Upscaler", "available", "load"]
