"""binsr: 1-bit (binarized) diffusion super-resolution.

Layers, lowest first (a module imports only from lower layers; ``tests/test_project.py`` checks it):

0. ``errors`` (one-line user errors), ``configs`` (the shipped YAML recipes)
1. ``utils`` (atomic files, text tables, registries)
2. ``config`` (dataclass configs from YAML, strict), ``image`` (files, MATLAB bicubic, colour),
   ``complexity`` (Params / OPs counting)
3. ``binary`` (quantizers, binary layers, branches, registered methods, ``binarize``), ``metrics``
   (PSNR / SSIM / LPIPS), ``data`` (datasets, degradations)
4. ``models`` (the denoiser contract, registered networks and autoencoders, model descriptions and files)
5. ``diffusion`` (registered processes: SR3, ResShift; SinSR distillation), ``deploy`` (bit-packed
   layers, XNOR-popcount kernels, packed files)
6. ``pipelines`` (the model-file description ``ModelSpec``, loading, upscalers, shipped models)
7. ``evaluation``, ``bench`` (the ``binsr bench`` harness)
8. ``training``, ``analysis``
9. ``model_card``, ``ablation`` (the papers' ablation tables, run with seeds)
10. ``demo`` (the web demo: its work without Gradio, and the Gradio page)
11. ``cli``; 12. ``__main__`` and this package's ``load``

``weights/`` holds the shipped models (data, no code).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from binsr.pipelines.base import Upscaler

__version__ = "0.1.0"


def load(name_or_path: str, scale: int | None = None, device: str = "cpu", **options: Any) -> Upscaler:
    """A ready pipeline: ``binsr.load("model.safetensors").upscale(image)`` (see binsr.pipelines.load)."""
    from binsr.pipelines import load as load_pipeline  # imported lazily: `import binsr` stays light

    return load_pipeline(name_or_path, scale=scale, device=device, **options)
