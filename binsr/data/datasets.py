"""Super-resolution datasets built from folders of images.

* :class:`SREvalDataset` — whole images in sorted order, deterministic: the benchmark protocol.
* :class:`SRTrainDataset` — random aligned LR/HR patches with flips and 90° rotations, seeded per
  (seed, epoch, index), so a sample does not depend on worker count or on what was drawn before.

Both take an HR folder (searched recursively), mod-crop every HR image to the scale and make its
LR image with MATLAB-style bicubic rounded to the file's bit depth — or, in paired mode, read the
LR image of the same name from ``lr_dir`` (``name.*`` or ``name`` + ``x{scale}``, the DIV2K naming).
Samples are dicts ``{"name": str, "lr": (3, h, w), "hr": (3, h·s, w·s)}`` with values in [0, 1];
evaluation samples also carry ``"gray"``: the HR file has a single gray channel (scored on it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from binsr.data.degradations import bicubic_downscale
from binsr.data.transforms import paired_random_crop, random_dihedral
from binsr.errors import DataError
from binsr.image.io import array_to_tensor, image_extensions, is_grayscale_file, list_images, read_image_array

Sample = dict[str, object]


class _ImagePairs:
    """The (LR, HR) integer arrays of a folder, loaded lazily and optionally cached."""

    def __init__(
        self,
        hr_dir: str | os.PathLike[str],
        scale: int,
        lr_dir: str | os.PathLike[str] | None = None,
        cache: bool = True,
    ) -> None:
        if not isinstance(scale, int) or scale < 1:
            raise DataError(f"scale must be a positive integer, got {scale!r}")
        self.hr_dir = Path(hr_dir)
        if not self.hr_dir.is_dir():
            raise DataError(f"HR folder not found: {self.hr_dir}")
        self.scale = scale
        self.hr_paths = list_images(self.hr_dir)
        if not self.hr_paths:
            exts = ", ".join(sorted(image_extensions()))
            raise DataError(f"no images ({exts}) found in {self.hr_dir}")
        self.names = [p.relative_to(self.hr_dir).as_posix() for p in self.hr_paths]
        self.lr_paths = None if lr_dir is None else [self._lr_path(Path(lr_dir), p) for p in self.hr_paths]
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.hr_paths)

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(LR, HR) as (h, w, 3) and (h·s, w·s, 3) uint8/uint16 arrays."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        hr = read_image_array(self.hr_paths[index])
        height, width = hr.shape[:2]
        s = self.scale
        if height < s or width < s:
            raise DataError(f"{self.hr_paths[index]}: {width}x{height} image is smaller than the scale {s}")
        hr = hr[: height - height % s, : width - width % s]
        if self.lr_paths is None:
            lr = _bicubic_lr_array(hr, s)
        else:
            lr = read_image_array(self.lr_paths[index])
            if lr.shape[0] * s != hr.shape[0] or lr.shape[1] * s != hr.shape[1]:
                raise DataError(
                    f"{self.lr_paths[index]}: LR is {lr.shape[1]}x{lr.shape[0]} but its HR "
                    f"{self.hr_paths[index].name} is {hr.shape[1]}x{hr.shape[0]} after mod-crop (scale {s})"
                )
        if self._cache is not None:
            self._cache[index] = (lr, hr)
        return lr, hr

    def hr_size(self, index: int) -> tuple[int, int]:
        """(width, height) of an HR file from its header, without decoding it."""
        try:
            with Image.open(self.hr_paths[index]) as im:
                return im.size
        except Exception:  # noqa: BLE001 - unreadable files get their clear error on load
            return (0, 0)

    def _lr_path(self, lr_dir: Path, hr_path: Path) -> Path:
        if not lr_dir.is_dir():
            raise DataError(f"LR folder not found: {lr_dir}")
        relative = hr_path.relative_to(self.hr_dir)
        stems = (relative.with_suffix(""), relative.with_name(f"{relative.stem}x{self.scale}"))
        for stem in stems:
            for ext in sorted(image_extensions()):
                for candidate in (lr_dir / f"{stem.as_posix()}{ext}", lr_dir / f"{stem.as_posix()}{ext.upper()}"):
                    if candidate.is_file():
                        return candidate
        raise DataError(
            f"no LR image for {relative.as_posix()} in {lr_dir} "
            f"(looked for {stems[0].as_posix()}.* and {stems[1].as_posix()}.*)"
        )


class SREvalDataset(Dataset):
    """Whole mod-cropped images in sorted name order: ``{"name", "lr", "hr", "gray"}``."""

    def __init__(
        self,
        hr_dir: str | os.PathLike[str],
        scale: int,
        lr_dir: str | os.PathLike[str] | None = None,
        dtype: torch.dtype = torch.float32,
        cache: bool = False,
    ) -> None:
        self.pairs = _ImagePairs(hr_dir, scale, lr_dir, cache)
        self.scale = scale
        self.dtype = dtype
        self.name = self.pairs.hr_dir.resolve().name

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def names(self) -> list[str]:
        """The images' paths relative to the HR folder, in order."""
        return self.pairs.names

    def __getitem__(self, index: int) -> Sample:
        lr, hr = self.pairs.arrays(index)
        return {
            "name": self.pairs.names[index],
            "lr": array_to_tensor(lr, self.dtype),
            "hr": array_to_tensor(hr, self.dtype),
            "gray": is_grayscale_file(self.pairs.hr_paths[index]),
        }


class LRPhotoDataset(Dataset):
    """The LR images of a folder without HR (real photos), in sorted name order: ``{"name", "lr"}``; scored
    with no-reference metrics only."""

    def __init__(self, lr_dir: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> None:
        self.lr_dir = Path(lr_dir)
        if not self.lr_dir.is_dir():
            raise DataError(f"LR folder not found: {self.lr_dir}")
        self.paths = list_images(self.lr_dir)
        if not self.paths:
            raise DataError(f"no images ({', '.join(sorted(image_extensions()))}) found in {self.lr_dir}")
        self.dtype = dtype
        self.name = self.lr_dir.resolve().name
        self.names = [path.relative_to(self.lr_dir).as_posix() for path in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Sample:
        return {"name": self.names[index], "lr": array_to_tensor(read_image_array(self.paths[index]), self.dtype)}


class SRTrainDataset(Dataset):
    """Random aligned patches: LR ``patch_size/scale`` and HR ``patch_size`` squares, optionally
    flipped/rotated together. ``repeat`` walks the folder that many times per epoch; call
    :meth:`set_epoch` each epoch (as with ``DistributedSampler``) to draw new patches.
    With ``degradation`` (e.g. :class:`~binsr.data.realesrgan.RealESRGANDegradation`), LR is made from
    the HR patch by ``degradation(hr, generator)`` with the sample's own generator instead.
    """

    def __init__(
        self,
        hr_dir: str | os.PathLike[str],
        scale: int,
        patch_size: int,
        lr_dir: str | os.PathLike[str] | None = None,
        augment: bool = True,
        seed: int = 0,
        repeat: int = 1,
        dtype: torch.dtype = torch.float32,
        cache: bool = True,
        degradation: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ) -> None:
        if patch_size < scale or patch_size % scale:
            raise DataError(f"patch size {patch_size} must be a positive multiple of the scale {scale}")
        if repeat < 1:
            raise DataError(f"repeat must be at least 1, got {repeat}")
        self.pairs = _ImagePairs(hr_dir, scale, lr_dir, cache)
        self.scale, self.patch_size, self.augment = scale, patch_size, augment
        self.seed, self.repeat, self.dtype, self.degradation = seed, repeat, dtype, degradation
        self.epoch = 0
        for index in range(len(self.pairs)):
            width, height = self.pairs.hr_size(index)
            usable = min(width - width % scale, height - height % scale)
            if 0 < usable < patch_size:
                raise DataError(
                    f"{self.pairs.hr_paths[index]}: {width}x{height} image is smaller than the "
                    f"{patch_size}-pixel training patch"
                )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs) * self.repeat

    def __getitem__(self, index: int | tuple[int, int]) -> Sample:
        """Sample ``index`` of the current epoch, or of the epoch given as ``(epoch, index)`` (a data loader
        whose workers outlive an epoch passes it so)."""
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        image_index = index % len(self.pairs)
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index))
        lr_array, hr_array = self.pairs.arrays(image_index)
        lr, hr = paired_random_crop(
            torch.from_numpy(lr_array.transpose(2, 0, 1)),  # views, (3, h, w) integer tensors
            torch.from_numpy(hr_array.transpose(2, 0, 1)),
            self.patch_size // self.scale,
            self.scale,
            generator,
        )
        if self.augment:
            lr, hr = random_dihedral((lr, hr), generator)
        hr_tensor = array_to_tensor(hr.numpy().transpose(1, 2, 0), self.dtype)
        if self.degradation is not None:  # LR made from the HR patch, seeded by the same generator
            lr_tensor = self.degradation(hr_tensor, generator)
        else:
            lr_tensor = array_to_tensor(lr.numpy().transpose(1, 2, 0), self.dtype)
        return {"name": self.pairs.names[image_index], "lr": lr_tensor, "hr": hr_tensor}


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that mixes (seed, epoch, index) well (NumPy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0] >> 1)


def _bicubic_lr_array(hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-bicubic LR of an (H, W, 3) integer array, rounded to the same bit depth."""
    peak = np.iinfo(hr.dtype).max
    hr_tensor = array_to_tensor(hr, torch.float64)
    bits = 8 if hr.dtype == np.uint8 else 16
    lr = bicubic_downscale(hr_tensor, scale, quantize_bits=bits)
    return np.round(lr.numpy().transpose(1, 2, 0) * peak).astype(hr.dtype)
