"""A realistic benchmark anyone can re-create: the LR images of an HR folder made by the Real-ESRGAN
degradation (:mod:`binsr.data.realesrgan`, the ResShift / BiMaCoSR training settings), one seed per image.

Each image's seed is derived from the set's seed and the image's name (not its position), so adding a file
to the folder changes no other image. The seeds, what each degradation drew and the settings are written
to ``degradation.json`` beside the images; the same seed gives the same files bit for bit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from binsr import __version__
from binsr.data.datasets import _ImagePairs
from binsr.data.realesrgan import RealESRGANConfig, RealESRGANDegradation
from binsr.errors import DataError
from binsr.image.io import array_to_tensor, write_image
from binsr.utils.fs import write_json

MANIFEST = "degradation.json"


def image_seed(seed: int, name: str) -> int:
    """The seed of image ``name`` (its path relative to the HR folder) in the set made with ``seed``."""
    digest = hashlib.sha256(f"binsr-degrade/{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def paired_name(hr_name: str, lr_dir: str | os.PathLike[str]) -> str:
    """The name of a benchmark whose LR images come from ``lr_dir``: "Set14-real (seed 0)" for a set made
    by :func:`degrade_folder`, else "Set14 (LR: folder name)"."""
    try:
        manifest = json.loads((Path(lr_dir) / MANIFEST).read_text())
        return f"{hr_name}-real (seed {int(manifest['seed'])})"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{hr_name} (LR: {Path(lr_dir).resolve().name})"


def lr_path(out_dir: str | os.PathLike[str], name: str) -> Path:
    """Where the LR image of HR image ``name`` goes: ``out_dir/<name without extension>.png``."""
    return Path(out_dir) / Path(name).with_suffix(".png")


def degraded_paths(hr_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """(name, LR file) for every HR image of ``hr_dir``."""
    return [(name, lr_path(out_dir, name)) for name in _ImagePairs(hr_dir, 1, cache=False).names]


def degrade_folder(hr_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], scale: int = 4,
                   seed: int = 0, config: RealESRGANConfig | None = None,
                   progress: Callable[[Iterable[Any]], Iterable[Any]] = iter) -> dict[str, Any]:
    """Write the degraded LR image of every HR image of ``hr_dir`` (mod-cropped to ``scale``) to ``out_dir``
    as 8-bit PNG, and the manifest ``degradation.json``; returns the manifest. ``progress`` wraps the
    loop (e.g. ``tqdm``)."""
    config = config or RealESRGANConfig(scale=scale)
    if config.scale != scale:
        raise DataError(f"the degradation's scale {config.scale} differs from scale {scale}")
    pairs = _ImagePairs(hr_dir, scale, cache=False)
    degradation = RealESRGANDegradation(config)
    images: dict[str, Any] = {}
    for index in progress(range(len(pairs))):
        name = pairs.names[index]
        _, hr = pairs.arrays(index)  # mod-cropped HR, as the evaluation reads it
        image = array_to_tensor(hr, torch.float32)
        own_seed = image_seed(seed, name)
        lr = degradation(image, torch.Generator().manual_seed(own_seed))
        target = lr_path(out_dir, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_image(target, lr)
        images[name] = {"seed": own_seed, "hr_size": [hr.shape[1], hr.shape[0]],
                        "lr": target.relative_to(out_dir).as_posix(), "drawn": degradation.last_record}
    manifest = {"degradation": "realesrgan", "scale": scale, "seed": seed,
                "hr_folder": Path(hr_dir).resolve().name, "settings": dataclasses.asdict(config),
                "binsr_version": __version__, "torch_version": torch.__version__, "images": images}
    write_json(Path(out_dir) / MANIFEST, manifest)
    return manifest
