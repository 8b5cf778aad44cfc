"""Image-quality metrics as SR papers compute them: PSNR, SSIM (Y channel, BasicSR/MATLAB) and LPIPS."""

from binsr.metrics.lpips import LPIPS, load_lpips, lpips_distance
from binsr.metrics.psnr_ssim import psnr, ssim

__all__ = ["LPIPS", "load_lpips", "lpips_distance", "psnr", "ssim"]
