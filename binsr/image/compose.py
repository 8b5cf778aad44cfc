"""Side-by-side comparison images (e.g. bicubic | model) with a caption above each panel."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def side_by_side(images: list[torch.Tensor], labels: list[str], gap: int = 8, caption: int = 24) -> torch.Tensor:
    """(3, H, W) images in [0, 1] of one size → one (3, caption + H, n·W + (n−1)·gap) image on white,
    each panel captioned with its label."""
    if not images or len(images) != len(labels):
        raise ValueError("side_by_side needs one label per image")
    height, width = images[0].shape[-2:]
    if any(tuple(image.shape[-2:]) != (height, width) for image in images):
        raise ValueError("side_by_side needs images of one size")
    canvas = Image.new("RGB", (len(images) * width + (len(images) - 1) * gap, caption + height), "white")
    draw = ImageDraw.Draw(canvas)
    longest = max(len(label) for label in labels)
    font = ImageFont.load_default(size=max(8, min(caption * 2 // 3, int(width / (0.62 * max(1, longest))))))
    for index, (image, label) in enumerate(zip(images, labels)):
        left = index * (width + gap)
        pixels = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        canvas.paste(Image.fromarray(pixels), (left, caption))
        draw.text((left + width // 2, caption // 2), label, fill="black", font=font, anchor="mm")
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255
