"""binsr: 1-bit (binarized) diffusion super-resolution.

Layers (imports flow downward only):

* ``errors``, ``utils``, ``image`` (files, MATLAB bicubic, colour), ``complexity`` (counting engine)
* ``metrics`` (PSNR/SSIM/LPIPS), ``data`` (datasets, degradations)
* ``deploy`` (bit-packed layers, XNOR-popcount kernels, packed model files)
* ``pipelines`` (upscalers by name), ``evaluation``
* ``cli``
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load(name_or_path: str, scale: int | None = None, device: str = "cpu", **options: Any):  # noqa: ANN201
    """A ready pipeline: ``binsr.load("model.safetensors").upscale(image)`` (see binsr.pipelines.load)."""
    from binsr.pipelines import load as load_pipeline  # imported lazily: `import binsr` stays light

    return load_pipeline(name_or_path, scale=scale, device=device, **options)
