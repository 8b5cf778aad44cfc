"""Shared fixtures: the real benchmark images (../shared/data) and small synthetic images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's image data (CI has ../shared beside the clone)."""
    root = Path(os.environ.get("BINSR_DATA", REPO.parent / "shared" / "data"))
    if not (root / "Set5").is_dir():
        pytest.skip(f"benchmark data not found at {root}")
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A natural-ish (H, W, 3) uint8 image: smooth gradients plus noise (so bicubic is not trivial)."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(6 * x + 1), np.cos(5 * y), np.sin(4 * (x + y))], axis=-1) * 0.35 + 0.5
    noisy = base + rng.normal(0, 0.05, base.shape)
    return np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def train_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five small synthetic training images."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(3)
    for i in range(5):
        Image.fromarray(smooth_image(rng, 48, 56)).save(folder / f"img{i}.png")
    return folder
