"""Real-ESRGAN's two-stage degradation (blur → resize → noise → JPEG, twice, then resize + sinc + JPEG),
with the probabilities and ranges of the ResShift / BiMaCoSR training config as the default.

Every random choice comes from one ``torch.Generator`` per image, so an image's LR depends only on its
seed — not on the device, the batch it is in, or the number of data workers. The image may live on
the CPU or a GPU: filtering, resizing and noise run where it is (noise is drawn on the CPU and moved,
which keeps GPU and CPU results equal); JPEG runs through Pillow on the CPU.

Library use: kornia's ``filter2d`` applies the blur kernels (reflect borders, as Real-ESRGAN does);
PyTorch's ``interpolate`` resizes; Pillow encodes JPEG (the real libjpeg codec, not a differentiable
approximation). The kernel families themselves (anisotropic, generalised and plateau Gaussians, the
circular sinc low-pass) exist in no well-kept library, so they are written here from their formulas.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import filter2d
from PIL import Image

from binsr.config import ConfigError
from binsr.image.color import rgb_to_gray

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
_ALL = KERNEL_TYPES
_PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)


@dataclass
class RealESRGANConfig:
    """Degradation settings, named as in Real-ESRGAN / ResShift configs (suffix 2: the second stage).

    Ranges are (low, high); ``resize_prob`` is (up, down, keep); noise sigmas are in 8-bit levels. Fields
    (default; the second stage's in brackets): ``scale`` SR factor (4); ``blur_kernel_size`` blur kernel
    side in pixels, odd (21 [15]); ``kernel_list``, ``kernel_prob`` the kernel kinds and their
    probabilities (iso, aniso, generalized, plateau, each both ways); ``sinc_prob`` of a sinc kernel instead
    (0.1 [0.1]); ``blur_sigma`` Gaussian σ in pixels ((0.2, 3.0) [(0.2, 1.5)]); ``betag_range``,
    ``betap_range`` shape exponents of the generalized and plateau kernels ((0.5, 4.0), (1.0, 2.0));
    ``resize_prob`` ((0.2, 0.7, 0.1) [(0.3, 0.4, 0.3)]); ``resize_range`` scale factors ((0.15, 1.5)
    [(0.3, 1.2)]); ``gaussian_noise_prob`` (0.5 [0.5]), else Poisson; ``noise_range`` Gaussian σ ((1, 30)
    [(1, 25)]); ``poisson_scale_range`` ((0.05, 3.0) [(0.05, 2.5)]); ``gray_noise_prob`` of the same noise
    on all channels (0.4 [0.4]); ``jpeg_range`` JPEG quality ((30, 95) [(30, 95)]); ``second_order_prob``
    of a second stage (0.5); ``second_blur_prob`` of blurring in it (0.8); the second stage's, in brackets
    above: ``blur_kernel_size2``, ``kernel_list2``, ``kernel_prob2``, ``sinc_prob2``, ``blur_sigma2``,
    ``betag_range2``, ``betap_range2``, ``resize_prob2``, ``resize_range2``, ``gaussian_noise_prob2``,
    ``noise_range2``, ``poisson_scale_range2``, ``gray_noise_prob2``, ``jpeg_range2``; ``final_sinc_prob``
    of the final sinc filter (0.8).
    """

    scale: int = 4
    blur_kernel_size: int = 21
    kernel_list: tuple[str, ...] = _ALL
    kernel_prob: tuple[float, ...] = _PROBS
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    second_order_prob: float = 0.5
    second_blur_prob: float = 0.8
    blur_kernel_size2: int = 15
    kernel_list2: tuple[str, ...] = _ALL
    kernel_prob2: tuple[float, ...] = _PROBS
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    final_sinc_prob: float = 0.8

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                setattr(self, f.name, value := tuple(value))
            if f.name.endswith("_prob") or f.name.endswith("_prob2"):
                self._check_probability(f.name, value)
            elif f.name.endswith(("_range", "_range2", "blur_sigma", "blur_sigma2")):
                if len(value) != 2 or not 0 <= value[0] <= value[1]:
                    raise ConfigError(f"degradation {f.name} must be (low, high) with 0 <= low <= high, got {value}")
        if self.scale < 1:
            raise ConfigError(f"degradation scale must be at least 1, got {self.scale}")
        for name in ("blur_kernel_size", "blur_kernel_size2"):
            size = getattr(self, name)
            if size < 7 or size % 2 == 0:
                raise ConfigError(f"degradation {name} must be odd and at least 7, got {size}")
        for name in ("jpeg_range", "jpeg_range2"):
            if not 1 <= getattr(self, name)[0] <= getattr(self, name)[1] <= 100:
                raise ConfigError(f"degradation {name} must lie in [1, 100], got {getattr(self, name)}")
        for name in ("blur_sigma", "blur_sigma2"):
            if getattr(self, name)[0] <= 0:
                raise ConfigError(f"degradation {name} must be positive, got {getattr(self, name)}")
        if self.resize_range[0] <= 0 or self.resize_range2[0] <= 0:
            raise ConfigError("degradation resize ranges must start above 0")
        for kinds, probs in (("kernel_list", "kernel_prob"), ("kernel_list2", "kernel_prob2")):
            unknown = set(getattr(self, kinds)) - set(KERNEL_TYPES)
            if unknown:
                raise ConfigError(f"degradation {kinds} has unknown kernels {sorted(unknown)} (known: {KERNEL_TYPES})")
            if len(getattr(self, kinds)) != len(getattr(self, probs)):
                raise ConfigError(f"degradation {kinds} and {probs} must have the same length")

    @staticmethod
    def _check_probability(name: str, value: Any) -> None:
        values = value if isinstance(value, tuple) else (value,)
        if any(not 0 <= v <= 1 for v in values):
            raise ConfigError(f"degradation {name} must hold probabilities in [0, 1], got {value}")
        if isinstance(value, tuple) and abs(sum(values) - 1) > 1e-6:
            raise ConfigError(f"degradation {name} must sum to 1, got {value} (sum {sum(values):g})")


# --- kernels (float64, sum 1) -----------------------------------------------------------------------

def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    half = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return torch.meshgrid(half, half, indexing="ij")  # (row = y, column = x)


def anisotropic_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, kind: str = "gaussian",
                       beta: float = 1.0) -> torch.Tensor:
    """(size, size) kernel of the quadratic form q = [x y] Σ⁻¹ [x y]ᵀ, Σ = R diag(σx², σy²) Rᵀ:
    "gaussian" exp(−q/2), "generalized" exp(−(q)^β / 2), "plateau" 1 / (q^β + 1); normalised to sum 1."""
    rotation = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
                            dtype=torch.float64)
    covariance = rotation @ torch.diag(torch.tensor([sigma_x ** 2, sigma_y ** 2], dtype=torch.float64)) @ rotation.T
    inverse = torch.linalg.inv(covariance)
    y, x = _grid(size)
    q = inverse[0, 0] * x * x + (inverse[0, 1] + inverse[1, 0]) * x * y + inverse[1, 1] * y * y
    if kind == "gaussian":
        kernel = torch.exp(-0.5 * q)
    elif kind == "generalized":
        kernel = torch.exp(-0.5 * q.pow(beta))
    elif kind == "plateau":
        kernel = 1 / (q.pow(beta) + 1)
    else:
        raise ValueError(f"unknown kernel kind {kind!r}")
    return kernel / kernel.sum()


def sinc_kernel(size: int, cutoff: float) -> torch.Tensor:
    """Circular low-pass (2D sinc) kernel: ω_c · J₁(ω_c r) / (2π r), ω_c²/(4π) at r = 0; sum 1."""
    y, x = _grid(size)
    r = torch.sqrt(x * x + y * y)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    kernel = torch.where(r == 0, torch.full_like(r, cutoff ** 2 / (4 * math.pi)),
                         cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe))
    return kernel / kernel.sum()


def _pad_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    pad = (size - kernel.shape[-1]) // 2
    return F.pad(kernel, (pad, pad, pad, pad))


class _Draw:
    """Random values from one CPU generator, with a record of what was drawn."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator, self.record = generator, {}

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.generator, dtype=torch.float64))

    def chance(self, probability: float) -> bool:
        return float(torch.rand((), generator=self.generator, dtype=torch.float64)) < probability

    def choice(self, options: tuple, probs: tuple[float, ...] | None = None) -> Any:
        weights = torch.tensor(probs if probs is not None else [1.0] * len(options), dtype=torch.float64)
        return options[int(torch.multinomial(weights, 1, generator=self.generator))]

    def split(self, low: float, high: float) -> float:
        """Real-ESRGAN's β draw: half the time in [low, 1], half in [1, high]."""
        return self.uniform(low, 1.0) if self.chance(0.5) else self.uniform(1.0, high)


def random_blur_kernel(draw: _Draw, max_size: int, kinds: tuple[str, ...], probs: tuple[float, ...],
                       sinc_prob: float, sigma: tuple[float, float], betag: tuple[float, float],
                       betap: tuple[float, float], stage: str) -> torch.Tensor:
    """One stage's kernel (max_size × max_size, float64): sinc with ``sinc_prob``, else a mixed kernel."""
    size = draw.choice(tuple(range(7, max_size + 1, 2)))
    record = draw.record.setdefault(stage, {})
    record["kernel_size"] = size
    if draw.chance(sinc_prob):
        cutoff = draw.uniform(math.pi / 3, math.pi) if size < 13 else draw.uniform(math.pi / 5, math.pi)
        record.update(kernel="sinc", cutoff=cutoff)
        return _pad_kernel(sinc_kernel(size, cutoff), max_size)
    kind = draw.choice(kinds, probs)
    sigma_x = draw.uniform(*sigma)
    sigma_y, theta = (draw.uniform(*sigma), draw.uniform(-math.pi, math.pi)) if "aniso" in kind else (sigma_x, 0.0)
    family, beta = "gaussian", 1.0
    if kind.startswith("generalized"):
        family, beta = "generalized", draw.split(*betag)
    elif kind.startswith("plateau"):
        family, beta = "plateau", draw.split(*betap)
    record.update(kernel=kind, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta, beta=beta)
    return _pad_kernel(anisotropic_kernel(size, sigma_x, sigma_y, theta, family, beta), max_size)


# --- image operations on (3, H, W) in [0, 1] ----------------------------------------------------------

def blur(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Filter with reflected borders (Real-ESRGAN); images smaller than the kernel's half width
    (tiny patches after a strong downscale) replicate their borders instead."""
    border = "reflect" if min(image.shape[-2:]) > kernel.shape[-1] // 2 else "replicate"
    return filter2d(image[None], kernel[None].to(image), border_type=border)[0]


def resize(image: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    options = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(image[None], size=(max(1, height), max(1, width)), mode=mode, **options)[0]


def gaussian_noise(image: torch.Tensor, sigma: float, gray: bool, generator: torch.Generator) -> torch.Tensor:
    channels = 1 if gray else image.shape[0]
    noise = torch.randn((channels, *image.shape[1:]), generator=generator) * sigma
    return (image + noise.to(image)).clamp(0, 1)


def poisson_noise(image: torch.Tensor, scale: float, gray: bool, generator: torch.Generator) -> torch.Tensor:
    """Shot noise at 2^⌈log₂ n⌉ photon levels, n = distinct 8-bit values (Real-ESRGAN's rule), × scale."""
    source = rgb_to_gray(image) / 255 if gray else image  # rgb_to_gray is on the 0..255 scale
    source = (source.clamp(0, 1) * 255).round().cpu().double() / 255
    levels = 2 ** math.ceil(math.log2(max(2, len(torch.unique(source)))))
    noisy = torch.poisson(source * levels, generator=generator) / levels
    return (image + ((noisy - source) * scale).to(image)).clamp(0, 1)


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode with libjpeg through Pillow (4:2:0, the Pillow default, as DiffJPEG uses)."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1).to(image.device, image.dtype) / 255


class RealESRGANDegradation:
    """``degradation(hr, generator) -> lr``: (3, H, W) in [0, 1] → (3, H/scale, W/scale), 8-bit values.

    ``last_record`` holds what the last call drew (kernels, scales, noise, JPEG qualities), for tests
    and inspection.
    """

    def __init__(self, config: RealESRGANConfig | None = None) -> None:
        self.config = config or RealESRGANConfig()
        self.last_record: dict[str, Any] = {}

    def __call__(self, hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        c, draw = self.config, _Draw(generator)
        height, width = hr.shape[-2:]
        if height % c.scale or width % c.scale:
            raise ValueError(f"HR size {height}x{width} is not divisible by the scale {c.scale}")
        image = hr.float()
        stages = [("first", "", c.blur_kernel_size, 1.0)]
        if draw.chance(c.second_order_prob):
            stages.append(("second", "2", c.blur_kernel_size2, c.second_blur_prob))
        for stage, suffix, kernel_size, blur_prob in stages:
            def get(name: str, suffix: str = suffix) -> Any:  # the stage's own setting (suffix "" or "2")
                return getattr(c, name + suffix)

            if draw.chance(blur_prob):
                kernel = random_blur_kernel(draw, kernel_size, get("kernel_list"), get("kernel_prob"), get("sinc_prob"),
                                            get("blur_sigma"), get("betag_range"), get("betap_range"), stage)
                image = blur(image, kernel)
            record = draw.record.setdefault(stage, {})
            direction = draw.choice(("up", "down", "keep"), get("resize_prob"))
            low, high = get("resize_range")
            factor = draw.uniform(1, high) if direction == "up" else draw.uniform(low, 1) if direction == "down" else 1.0
            mode = draw.choice(RESIZE_MODES)
            base_h, base_w = (height, width) if stage == "first" else (height / c.scale, width / c.scale)
            image = resize(image, int(base_h * factor), int(base_w * factor), mode)
            record.update(resize=direction, resize_factor=factor, resize_mode=mode)
            gray = draw.chance(get("gray_noise_prob"))
            if draw.chance(get("gaussian_noise_prob")):
                sigma = draw.uniform(*get("noise_range")) / 255
                image = gaussian_noise(image, sigma, gray, generator)
                record.update(noise="gaussian", noise_sigma=sigma * 255, gray_noise=gray)
            else:
                scale = draw.uniform(*get("poisson_scale_range"))
                image = poisson_noise(image, scale, gray, generator)
                record.update(noise="poisson", poisson_scale=scale, gray_noise=gray)
            quality = round(draw.uniform(*get("jpeg_range")))
            record["jpeg_quality"] = quality
            if stage == "first":
                image = jpeg(image, quality)
        # Final stage: resize to the LR size with a sinc (or no) filter, and JPEG, in random order.
        final = draw.record.setdefault("final", {})
        # the second stage's JPEG is this one (Real-ESRGAN); without a second stage, draw it from jpeg_range2
        final_quality = (draw.record["second"]["jpeg_quality"] if "second" in draw.record
                         else round(draw.uniform(*c.jpeg_range2)))
        final.update(jpeg_quality=final_quality)
        if draw.chance(c.final_sinc_prob):
            size = draw.choice(tuple(range(7, c.blur_kernel_size + 1, 2)))
            cutoff = draw.uniform(math.pi / 3, math.pi)
            final.update(kernel="sinc", kernel_size=size, cutoff=cutoff)
            kernel = sinc_kernel(size, cutoff)
        else:
            final.update(kernel="none")
            kernel = None
        mode = draw.choice(RESIZE_MODES)
        jpeg_first = draw.chance(0.5)
        final.update(resize_mode=mode, jpeg_first=jpeg_first)
        if jpeg_first:
            image = jpeg(image, final_quality)
        image = resize(image, height // c.scale, width // c.scale, mode)
        if kernel is not None:
            image = blur(image, kernel)
        if not jpeg_first:
            image = jpeg(image, final_quality)
        self.last_record = draw.record
        return ((image.clamp(0, 1) * 255).round() / 255).to(hr.dtype)
