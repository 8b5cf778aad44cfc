"""Visual comparisons (the papers' Fig. 4/5): the same crop of HR, bicubic and each model's output,
beside the full image with the crop box drawn, each labelled with the image's PSNR / SSIM. For real LR
photos without HR (BiMaCoSR's RealSR figures): the crops of bicubic and each output beside the full
bicubic image, each labelled with the output's NIQE."""

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
from binsr.metrics.niqe import niqe
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
    niqe: float | None = None

    def score(self) -> str:
        if self.psnr is not None:
            return f"{self.psnr:.2f} dB / {self.ssim:.4f}"
        if self.niqe is not None:
            return f"NIQE {self.niqe:.2f}"
        return "PSNR / SSIM"


def score_panel(label: str, sr: torch.Tensor, hr: torch.Tensor, scale: int, gray: bool) -> Panel:
    """Panel of an 8-bit-quantized output with PSNR/SSIM as ``binsr eval`` computes them."""
    sr = quantize(sr.clamp(0, 1))
    channels = "gray" if gray else "y"
    return Panel(label, sr, float(psnr(sr, hr, crop_border=scale, channels=channels)),
                 float(ssim(sr, hr, crop_border=scale, channels=channels)))


def niqe_panel(label: str, sr: torch.Tensor, scale: int) -> Panel:
    """Panel of an 8-bit-quantized output of an LR photo, with its NIQE as ``binsr eval`` computes it (None
    when the output is too small for NIQE's blocks)."""
    sr = quantize(sr.clamp(0, 1))
    try:
        return Panel(label, sr, niqe=niqe(sr, crop_border=scale))
    except ValueError:
        return Panel(label, sr)


def comparison_figure(name: str, hr: torch.Tensor, panels: list[Panel], crop: Crop,
                      reference: str | None = "HR") -> Figure:
    """The full image ``hr`` with the crop box (left) and the crop of every panel (right), after the crop of
    ``hr`` itself labelled ``reference`` (None: ``hr`` is one of the panels, not shown twice)."""
    panels = ([Panel(reference, hr)] if reference else []) + panels
    count = len(panels)
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
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(grid[index // cols, 1 + index % cols])
        axes.imshow(_pixels(panel.image[window]), interpolation="nearest")
        axes.set_xlabel(f"{panel.label}\n{panel.score()}", fontsize="small")
        axes.set_xticks([])
        axes.set_yticks([])
    return figure


def visual_comparisons(dataset, upscalers: list[Upscaler], out_dir: str | os.PathLike[str],  # noqa: ANN001
                       crop: Crop | None = None, crop_size: int = 64, names: list[str] | None = None,
                       progress: bool = True) -> list[Path]:
    """Write ``compare_<image>.png`` to ``out_dir`` for each image of ``dataset`` and return the paths.
    ``dataset``: an SREvalDataset (PSNR / SSIM against HR) or an LRPhotoDataset (real photos, NIQE; the
    first upscaler, bicubic, is the full image and the crop is chosen on it); ``names`` selects images by
    file name or stem. A given ``crop`` is checked against each image before its models run."""
    indices = _select(dataset, names)
    scale = upscalers[0].scale
    written = []
    for index in tqdm(indices, desc="visual comparison", unit="img", disable=not progress):
        sample = dataset[index]
        hr, stem = sample.get("hr"), Path(sample["name"]).stem
        if crop is not None:
            crop.check(*(hr.shape[-2:] if hr is not None else [n * scale for n in sample["lr"].shape[-2:]]),
                       sample["name"])
        outputs = []
        for upscaler in upscalers:
            with torch.no_grad():
                outputs.append(upscaler.upscale(sample["lr"][None])[0].cpu())
        if hr is None:
            panels = [niqe_panel(u.name, sr, scale) for u, sr in zip(upscalers, outputs)]
            full = panels[0].image
        else:
            panels = [score_panel(u.name, sr, hr, scale, bool(sample.get("gray"))) for u, sr in zip(upscalers, outputs)]
            full = hr
        window = crop or detail_crop(full, crop_size)
        title = f"{sample['name']} (x{scale})" if hr is not None else f"{sample['name']} (x{scale}, {panels[0].label})"
        path = Path(out_dir) / f"compare_{stem}.png"
        save_png(comparison_figure(title, full, panels, window, "HR" if hr is not None else None), path)
        written.append(path)
    return written


def _select(dataset, names: list[str] | None) -> list[int]:  # noqa: ANN001
    if not names:
        return list(range(len(dataset)))
    known = {name: i for i, name in enumerate(dataset.names)}
    known.update({Path(name).stem: i for name, i in list(known.items())})
    missing = [n for n in names if n not in known]
    if missing:
        raise BinsrError(f"no image {missing[0]!r} in {dataset.name} (has: {', '.join(dataset.names)})")
    return [known[n] for n in names]


def _pixels(image: torch.Tensor):  # noqa: ANN202 - numpy (H, W, 3) for imshow
    return image.clamp(0, 1).permute(1, 2, 0).float().numpy()
