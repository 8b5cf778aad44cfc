"""Visual comparisons (the papers' Fig. 4/5): the same crop of HR, bicubic and each model's output,
beside the full image with the crop box drawn, each labelled with the image's PSNR / SSIM."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from tqdm.auto import tqdm

from binsr.analysis.figures import new_figure, save_png
from binsr.errors import BinsrError
from binsr.image.color import quantize, rgb_to_y
from binsr.metrics.psnr_ssim import psnr, ssim
from binsr.pipelines.base import Upscaler


@dataclass
class Crop:
    """A square window of the HR image: top-left corner and side, in HR pixels."""

    top: int
    left: int
    size: int

    @classmethod
    def parse(cls, text: str) -> Crop:
        """'TOP,LEFT,SIZE' → Crop."""
        try:
            top, left, size = (int(v) for v in text.split(","))
        except ValueError:
            raise BinsrError(f"--crop must be TOP,LEFT,SIZE in HR pixels, got {text!r}") from None
        if top < 0 or left < 0 or size < 1:
            raise BinsrError(f"--crop needs TOP, LEFT >= 0 and SIZE >= 1, got {text!r}")
        return cls(top, left, size)

    def check(self, height: int, width: int, name: str) -> None:
        if self.top + self.size > height or self.left + self.size > width:
            raise BinsrError(f"{name}: crop {self.size}x{self.size} at ({self.top}, {self.left}) leaves the "
                             f"{height}x{width} image")


def detail_crop(hr: torch.Tensor, size: int) -> Crop:
    """The size × size window of ``hr`` (C, H, W) in [0, 1] with the most high-frequency detail: the largest
    sum of the squared Laplacian of its luma, searched on a grid of stride size/8."""
    size = min(size, *hr.shape[-2:])
    luma = rgb_to_y(hr) if hr.shape[0] == 3 else hr.mean(0, keepdim=True)
    laplace = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=luma.dtype).view(1, 1, 3, 3)
    energy = F.conv2d(F.pad(luma[None], (1, 1, 1, 1), mode="replicate"), laplace).square()
    stride = max(1, size // 8)
    windows = F.avg_pool2d(energy, size, stride=stride)[0, 0]
    row, col = divmod(int(windows.flatten().argmax()), windows.shape[1])
    return Crop(row * stride, col * stride, size)


@dataclass
class Panel:
    """One image of the comparison and its scores against HR (None for HR itself)."""

    label: str
    image: torch.Tensor  # (3, H, W) in [0, 1]
    psnr: float | None = None
    ssim: float | None = None


def score_panel(label: str, sr: torch.Tensor, hr: torch.Tensor, scale: int, gray: bool) -> Panel:
    """Panel of an 8-bit-quantized output with PSNR/SSIM as ``binsr eval`` computes them."""
    sr = quantize(sr.clamp(0, 1))
    channels = "gray" if gray else "y"
    return Panel(label, sr, float(psnr(sr, hr, crop_border=scale, channels=channels)),
                 float(ssim(sr, hr, crop_border=scale, channels=channels)))


def comparison_figure(name: str, hr: torch.Tensor, panels: list[Panel], crop: Crop) -> Figure:
    """The full HR image with the crop box (left) and the crop of HR and every panel (right)."""
    count = len(panels) + 1
    rows = 1 if count <= 4 else 2
    cols = math.ceil(count / rows)
    height, width = hr.shape[-2:]
    full_ratio = rows * width / height
    figure = new_figure(2.3 * (full_ratio + cols), 2.6 * rows + 0.4)
    grid = figure.add_gridspec(rows, cols + 1, width_ratios=[full_ratio] + [1] * cols)
    full = figure.add_subplot(grid[:, 0])
    full.imshow(_pixels(hr))
    full.add_patch(Rectangle((crop.left - 0.5, crop.top - 0.5), crop.size, crop.size, fill=False,
                             edgecolor="red", linewidth=2))
    full.set_title(name, fontsize="medium")
    full.axis("off")
    window = (slice(None), slice(crop.top, crop.top + crop.size), slice(crop.left, crop.left + crop.size))
    for index, panel in enumerate([Panel("HR", hr)] + panels):
        axes = figure.add_subplot(grid[index // cols, 1 + index % cols])
        axes.imshow(_pixels(panel.image[window]), interpolation="nearest")
        score = "PSNR / SSIM" if panel.psnr is None else f"{panel.psnr:.2f} dB / {panel.ssim:.4f}"
        axes.set_xlabel(f"{panel.label}\n{score}", fontsize="small")
        axes.set_xticks([])
        axes.set_yticks([])
    return figure


def visual_comparisons(dataset, upscalers: list[Upscaler], out_dir: str | os.PathLike[str],  # noqa: ANN001
                       crop: Crop | None = None, crop_size: int = 64, names: list[str] | None = None,
                       progress: bool = True) -> list[Path]:
    """Write ``compare_<image>.png`` to ``out_dir`` for each image of ``dataset`` (an SREvalDataset;
    ``names`` selects images by file name or stem) and return the paths."""
    indices = _select(dataset, names)
    written = []
    for index in tqdm(indices, desc="visual comparison", unit="img", disable=not progress):
        sample = dataset[index]
        hr, stem = sample["hr"], Path(sample["name"]).stem
        window = crop or detail_crop(hr, crop_size)
        window.check(*hr.shape[-2:], sample["name"])
        panels = []
        for upscaler in upscalers:
            with torch.no_grad():
                sr = upscaler.upscale(sample["lr"][None])[0].cpu()
            panels.append(score_panel(upscaler.name, sr, hr, dataset.scale, bool(sample.get("gray"))))
        path = Path(out_dir) / f"compare_{stem}.png"
        save_png(comparison_figure(f"{sample['name']} (x{dataset.scale})", hr, panels, window), path)
        written.append(path)
    return written


def _select(dataset, names: list[str] | None) -> list[int]:  # noqa: ANN001
    if not names:
        return list(range(len(dataset)))
    known = {name: i for i, name in enumerate(dataset.pairs.names)}
    known.update({Path(name).stem: i for name, i in list(known.items())})
    missing = [n for n in names if n not in known]
    if missing:
        raise BinsrError(f"no image {missing[0]!r} in {dataset.name} (has: {', '.join(dataset.pairs.names)})")
    return [known[n] for n in names]


def _pixels(image: torch.Tensor):  # noqa: ANN202 - numpy (H, W, 3) for imshow
    return image.clamp(0, 1).permute(1, 2, 0).float().numpy()
