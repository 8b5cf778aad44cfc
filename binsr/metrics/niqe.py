"""NIQE, the no-reference "Naturalness Image Quality Evaluator" (Mittal, Soundararajan and Bovik, "Making a
'Completely Blind' Image Quality Analyzer", IEEE SPL 2013), computed as BasicSR's ``calculate_niqe`` and
the authors' MATLAB release: lower is more natural.

The luma (8-bit levels, rounded) is split into 96×96 blocks. At two scales (the second a MATLAB bicubic
half-size), each block's mean-subtracted contrast-normalised (MSCN) coefficients give 18 features: an
asymmetric generalised Gaussian fit (AGGD, by moment matching) of the coefficients and of their products
with the four neighbours. The score is the Mahalanobis-like distance between the multivariate Gaussian of
the image's block features and the one fitted on pristine natural images:
``sqrt((mu_p - mu_d) pinv((cov_p + cov_d) / 2) (mu_p - mu_d)^T)``.

The pristine model (mean, covariance, and the 7×7 Gaussian window) is the authors' MATLAB
``modelparameters.mat`` as BasicSR ships it (``niqe_pris_params.npz``; origin and licence in
``binsr/metrics/data/NOTICE``). It is read with ``numpy.load`` without pickles and its shapes are checked.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F

from binsr.image.color import rgb_to_y
from binsr.image.resize import imresize

BLOCK = 96  # block side at the first scale, pixels (the published setting; the second scale uses 48)
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # neighbour products: right, down, main and anti diagonal
_SHAPES = {"mu_pris_param": (1, 36), "cov_pris_param": (36, 36), "gaussian_window": (7, 7)}
# The AGGD shape is found on this grid, as in the MATLAB release and BasicSR (0.2 to 10 in steps of 0.001).
_ALPHA_GRID = torch.arange(200, 10001, dtype=torch.float64) / 1000
# rho(alpha) = Gamma(2/alpha)^2 / (Gamma(1/alpha) Gamma(3/alpha)) on that grid: what the moment ratio is matched to
_RHO_GRID = torch.exp(2 * torch.lgamma(2 / _ALPHA_GRID) - torch.lgamma(1 / _ALPHA_GRID) - torch.lgamma(3 / _ALPHA_GRID))


@functools.lru_cache(maxsize=1)
def pristine_model() -> dict[str, torch.Tensor]:
    """The pristine-image model: ``mu_pris_param`` (1, 36), ``cov_pris_param`` (36, 36) and the MSCN window
    ``gaussian_window`` (7, 7), float64."""
    with resources.files("binsr.metrics").joinpath("data/niqe_pris_params.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in _SHAPES}
    for name, shape in _SHAPES.items():
        if arrays[name].shape != shape or arrays[name].dtype != np.float64:
            raise ValueError(f"niqe_pris_params.npz: {name} is {arrays[name].dtype} {arrays[name].shape}, "
                             f"expected float64 {shape}")
    return {name: torch.from_numpy(array) for name, array in arrays.items()}


def niqe_fits(height: int, width: int, crop_border: int = 0) -> bool:
    """Whether an H×W image holds NIQE's two 96×96 blocks after cropping ``crop_border`` pixels a side."""
    return ((height - 2 * crop_border) // BLOCK) * ((width - 2 * crop_border) // BLOCK) >= 2


def niqe(image: torch.Tensor, crop_border: int = 0) -> float:
    """NIQE of one image: (3, H, W) RGB or (1, H, W) gray in [0, 1], scored on its BT.601 luma (gray
    images: their values) in 8-bit levels, after cropping ``crop_border`` pixels on each side. The
    image must hold two 96×96 blocks after cropping."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"niqe needs a (3, H, W) or (1, H, W) image, got {tuple(image.shape)}")
    image = image.to(torch.float64)
    luma = (rgb_to_y(image) if image.shape[0] == 3 else image * 255.0)[0]
    if crop_border:
        luma = luma[crop_border:-crop_border, crop_border:-crop_border]
    rows, cols = luma.shape[0] // BLOCK, luma.shape[1] // BLOCK
    if not niqe_fits(*luma.shape):  # the features' covariance needs two blocks
        raise ValueError(f"niqe needs two {BLOCK}x{BLOCK} blocks ({BLOCK}x{2 * BLOCK} pixels) after the border "
                         f"crop, got {luma.shape[1]}x{luma.shape[0]}")
    # rounded to levels, as the MATLAB release reads them; float32 from here, as BasicSR (see _mscn)
    luma = luma[: rows * BLOCK, : cols * BLOCK].round().to(torch.float32)
    model = pristine_model()
    features = []
    for scale in (1, 2):
        features.append(_block_features(_mscn(luma, model["gaussian_window"]), BLOCK // scale))
        if scale == 1:
            luma = imresize(luma / 255.0, scale=0.5) * 255.0
    feats = torch.cat(features, dim=1)  # (blocks, 36)
    return _distance(feats, model["mu_pris_param"], model["cov_pris_param"])


def _mscn(luma: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """(H, W) float32 → float32 MSCN coefficients (I - mu) / (sigma + 1), local moments under ``window`` with
    the border repeated (scipy's ``nearest``).

    BasicSR reads the image as float32, and scipy's convolution returns its input's type, so the moments
    are sums in double rounded to float32 and the rest is float32 arithmetic. That is reproduced here, not
    computed in float64: in flat regions I - mu is exactly 0 in double but float32 rounding noise in
    BasicSR, and the AGGD fits of such blocks see that noise (0.3 of NIQE on Set5's head.png)."""
    pad = window.shape[-1] // 2
    kernel = window.flip(0, 1)[None, None]  # a convolution, as scipy.ndimage.convolve (the window is symmetric)

    def blur(x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x.to(torch.float64)[None, None], (pad,) * 4, mode="replicate")
        return F.conv2d(x, kernel)[0, 0].to(torch.float32)

    mu = blur(luma)
    sigma = (blur(luma * luma) - mu * mu).abs().sqrt()
    return (luma - mu) / (sigma + 1)


def _block_features(mscn: torch.Tensor, side: int) -> torch.Tensor:
    """(H, W) MSCN → (blocks, 18) features of its ``side``² blocks, blocks in column-major order (as the
    release walks them): AGGD shape and mean scale of the coefficients, then shape, mean, left and right
    scale of each neighbour product (neighbours taken circularly within the block)."""
    rows, cols = mscn.shape[0] // side, mscn.shape[1] // side
    mscn = mscn.to(torch.float64)
    blocks = mscn[: rows * side, : cols * side].reshape(rows, side, cols, side).permute(2, 0, 1, 3)
    blocks = blocks.reshape(rows * cols, side, side)
    alpha, left, right = _aggd(blocks)
    feats = [alpha, (left + right) / 2]
    for shift in _SHIFTS:
        alpha, left, right = _aggd(blocks * torch.roll(blocks, shift, dims=(1, 2)))
        mean = (right - left) * torch.exp(torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha))
        feats += [alpha, mean, left, right]
    return torch.stack(feats, dim=1)


def _aggd(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Moment-matching AGGD fit of each block of (blocks, h, w) → shape alpha, left and right scale (each
    (blocks,))."""
    x = x.flatten(1)
    negative, positive = x < 0, x > 0
    left_std = ((x * x * negative).sum(1) / negative.sum(1)).sqrt()
    right_std = ((x * x * positive).sum(1) / positive.sum(1)).sqrt()
    gamma_hat = left_std / right_std
    r_hat = x.abs().mean(1) ** 2 / (x * x).mean(1)
    r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    # a block without negative or positive values has no fit: the grid's first shape, as MATLAB's min (and
    # numpy's argmin) return for all-NaN differences; its scales stay NaN
    alpha = _ALPHA_GRID[((_RHO_GRID[None] - r_hat_norm[:, None]) ** 2).nan_to_num(nan=0.0).argmin(1)]
    ratio = torch.exp(0.5 * (torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)))
    return alpha, left_std * ratio, right_std * ratio


def _distance(feats: torch.Tensor, mu_pristine: torch.Tensor, cov_pristine: torch.Tensor) -> float:
    """NIQE from (blocks, 36) features: mean over blocks ignoring NaN, covariance over complete blocks."""
    mu = feats.nanmean(0, keepdim=True)
    complete = feats[~feats.isnan().any(1)]
    cov = torch.cov(complete.T)  # unbiased (n - 1), as numpy.cov
    diff = mu_pristine - mu
    inverse = torch.linalg.pinv((cov_pristine + cov) / 2, rtol=1e-15)  # numpy.linalg.pinv's cut-off
    return float((diff @ inverse @ diff.T).sqrt())
