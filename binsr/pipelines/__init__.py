"""Upscalers by name: ``load("bicubic", scale=4).upscale(lr)``."""

from __future__ import annotations

from collections.abc import Callable

from binsr.errors import BinsrError
from binsr.pipelines.base import Upscaler
from binsr.pipelines.bicubic import BicubicUpscaler

_BUILDERS: dict[str, Callable[[int], Upscaler]] = {"bicubic": BicubicUpscaler}


def available() -> list[str]:
    """Names that :func:`load` accepts."""
    return sorted(_BUILDERS)


def load(name: str, scale: int) -> Upscaler:
    """Build the upscaler called ``name`` for ``scale``."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise BinsrError(f"unknown model {name!r} (available: {', '.join(available())})") from None
    return builder(scale)


__all__ = ["BicubicUpscaler", "Upscaler", "available", "load"]
