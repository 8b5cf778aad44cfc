"""Reading and writing images as tensors in [0, 1].

Every read returns an RGB tensor of shape (3, H, W). Grayscale is replicated to three channels,
an alpha channel is dropped with a :class:`~binsr.errors.BinsrWarning`, 16-bit files are divided
by 65535 (8-bit ones by 255). Pillow decodes everything except 16-bit RGB(A) PNG and TIFF, which
it silently reduces to 8 bits: those go through pypng / tifffile so no precision is lost.
Writes are PNG, atomic (temporary file + rename).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import png  # pypng
import torch
from PIL import Image, UnidentifiedImageError

from binsr.errors import BinsrWarning, ImageReadError
from binsr.utils.fs import atomic_write

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_BITS_PER_SAMPLE = 258


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files (by extension) under ``folder``, sorted by their path relative to it."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    files = [p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"})


def is_grayscale_file(path: str | os.PathLike[str]) -> bool:
    """True when the file stores one gray channel (alpha aside); reads the header only.

    SR benchmark code scores such images on their gray values instead of converting to YCbCr.
    """
    try:
        with Image.open(path) as im:
            return im.mode in _GRAY_MODES
    except (OSError, SyntaxError, ValueError):
        return False  # unreadable files get their clear error when decoded


def read_image_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 or uint16 array (bit depth of the file kept)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own warnings on corrupt metadata; we raise instead
            with Image.open(path) as im:
                im.load()
                channels = _high_depth_colour(path, im)
                if channels is None:
                    channels = _pil_channels(im, path)
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a readable image (unknown format or corrupt header)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageReadError(f"{path}: truncated or corrupt image ({err})") from None
    return _to_rgb(channels, path)


def read_image(path: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Read an image file as a (3, H, W) tensor with values in [0, 1]."""
    return array_to_tensor(read_image_array(path), dtype)


def array_to_tensor(array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, 3) uint8/uint16 array → (3, H, W) float tensor in [0, 1]."""
    peak = float(np.iinfo(array.dtype).max)
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)).astype(np.float64))
    return (tensor / peak).to(dtype)


def write_png(path: str | os.PathLike[str], image: torch.Tensor, bits: int = 8) -> None:
    """Write a (3, H, W), (1, H, W) or (H, W) tensor in [0, 1] as an 8- or 16-bit PNG, atomically.

    Values are clipped to [0, 1] and rounded to the nearest level.
    """
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    image = image.detach().to("cpu", torch.float64)
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (3, H, W), (1, H, W) or (H, W), got {tuple(image.shape)}")
    if torch.isnan(image).any():
        raise ValueError(f"refusing to write {path}: the image contains NaN values")
    peak = 2**bits - 1
    levels = (image.clamp(0, 1) * peak).round().numpy().astype(np.uint8 if bits == 8 else np.uint16)
    levels = levels.transpose(1, 2, 0)  # H, W, C
    height, width, channels = levels.shape
    with atomic_write(path, "wb") as handle:
        if bits == 8:
            Image.fromarray(levels[..., 0] if channels == 1 else levels).save(handle, format="PNG")
        else:
            writer = png.Writer(width, height, greyscale=channels == 1, bitdepth=16)
            writer.write(handle, levels.reshape(height, width * channels))


def _high_depth_colour(path: Path, im: Image.Image) -> np.ndarray | None:
    """Exact (H, W, C) uint16 decode of 16-bit colour PNG/TIFF files; None for anything else."""
    if im.format == "PNG" and im.mode in ("RGB", "RGBA"):
        with open(path, "rb") as handle:
            header = handle.read(26)
        # IHDR is always the first chunk: signature(8) length(4) type(4) width(4) height(4) depth(1)
        if header[:8] == _PNG_SIGNATURE and header[24] == 16:
            width, height, rows, info = png.Reader(filename=str(path)).asDirect()
            return np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(
                height, width, info["planes"]
            )
    if im.format == "TIFF" and im.mode in ("RGB", "RGBA"):
        bits = im.tag_v2.get(_TIFF_BITS_PER_SAMPLE, (8,))
        if max(bits if isinstance(bits, tuple) else (bits,)) == 16:
            import tifffile  # only for TIFF files: importing it costs a tenth of a second at every start

            array = tifffile.imread(path)
            if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
                array = array.transpose(1, 2, 0)  # planar TIFF
            return array.astype(np.uint16)
    return None


def _pil_channels(im: Image.Image, path: Path) -> np.ndarray:
    """Pillow image → (H, W, C) uint8/uint16 array with C in {1, 2, 3, 4} (2 and 4 carry alpha)."""
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)[..., None]
    if mode == "I":
        array = np.asarray(im)
        if array.min() < 0 or array.max() > 65535:
            raise ImageReadError(f"{path}: 32-bit integer images are not supported (values beyond 16 bits)")
        return array.astype(np.uint16)[..., None]
    if mode == "F":
        raise ImageReadError(f"{path}: floating-point images are not supported (use 8- or 16-bit files)")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("1", "L"):
        im = im.convert("L")
    elif mode not in ("LA", "RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in mode else "RGB")  # CMYK, YCbCr, LAB, La, RGBa, ...
    array = np.asarray(im)
    return array[..., None] if array.ndim == 2 else array


def _to_rgb(channels: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, C) → (H, W, 3): drop alpha (with a warning), replicate grayscale."""
    if channels.ndim != 3 or channels.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(f"{path}: unsupported channel layout {channels.shape}")
    if channels.shape[0] == 0 or channels.shape[1] == 0:
        raise ImageReadError(f"{path}: image has zero width or height")
    if channels.shape[-1] in (2, 4):
        warnings.warn(f"{path}: alpha channel dropped", BinsrWarning, stacklevel=3)
        channels = channels[..., :-1]
    if channels.shape[-1] == 1:
        channels = np.repeat(channels, 3, axis=-1)
    channels = np.ascontiguousarray(channels)
    return channels if channels.flags.writeable else channels.copy()  # Pillow's arrays are read-only
