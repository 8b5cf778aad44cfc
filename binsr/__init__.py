"""binsr: 1-bit (binarized) diffusion super-resolution.

Layers (imports flow downward only):

* ``errors``, ``utils``, ``image`` (files, MATLAB bicubic, colour), ``complexity`` (counting engine)
* ``metrics`` (PSNR/SSIM/LPIPS), ``data`` (datasets, degradations)
* ``pipelines`` (upscalers by name), ``evaluation``
* ``cli``
"""

__version__ = "0.1.0"
