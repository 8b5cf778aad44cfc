"""Reading and writing images as tensors in [0, 1], the way image viewers show them.

:func:`read_picture` returns what an SR tool must keep: the RGB tensor (3, H, W), the alpha channel
(1, H, W) if any, the bit depth (8 or 16) and the ICC profile. :func:`read_image` returns the RGB tensor
only (grayscale replicated to three channels, alpha dropped with a :class:`~binsr.errors.BinsrWarning`).
Every read applies the EXIF orientation (a phone's portrait JPEG stored landscape comes out as shown),
refuses animated or multi-page files and images over Pillow's decompression-bomb limit with one line that
names the file, and reads float TIFFs with values in [0, 1] (as 16-bit). 16-bit files are divided by 65535
(8-bit ones by 255): Pillow decodes everything except 16-bit RGB(A) PNG and TIFF and float RGB TIFF, which it
reduces to 8 bits or cannot open; those go through pypng / tifffile so no precision is lost.
Writes (PNG 8/16-bit with optional alpha, JPEG, WebP) are atomic (temporary file + rename).
"""

from __future__ import annotations

import functools
import io
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import png  # pypng
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from binsr.errors import BinsrWarning, ImageReadError
from binsr.utils.fs import atomic_write

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_BITS_PER_SAMPLE = 258
_EXIF_ORIENTATION = 0x0112
_VECTOR_OR_EXTERNAL = frozenset({"EPS", "WMF", "MPEG"})  # need Ghostscript, Windows or a video decoder
WRITE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}  # --ext name → Pillow format
JPEG_QUALITY = 95
_CONVERT_ROWS = 64  # image rows converted between integer levels and float at a time
PNG_COMPRESSION = 1  # zlib level, as OpenCV's imwrite (Real-ESRGAN's CLI): much faster than Pillow's default 6
#                     for files a few percent larger


@functools.lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """Extensions (lower case, with the dot) of every raster format this Pillow opens, plus TIFF.

    Computed on first use: registering all of Pillow's plugins takes about 50 ms."""
    Image.init()
    readable = set()
    for extension, name in Image.registered_extensions().items():
        opener = Image.OPEN.get(name)
        if opener is None or name in _VECTOR_OR_EXTERNAL:
            continue
        if isinstance(opener[0], type) and issubclass(opener[0], ImageFile.StubImageFile):
            continue  # formats whose decoder is an external handler (GRIB, HDF5, BUFR)
        readable.add(extension.lower())
    return frozenset(readable | {".tif", ".tiff"})


@dataclass
class ImageScan:
    """What :func:`scan_images` found: ``files``, sorted by path relative to the folder, and ``skipped``, one
    ``PATH (reason)`` each for what was left out on purpose (hidden, a broken link, a folder read already)."""

    files: list[Path]
    skipped: list[str]


def scan_images(folder: str | os.PathLike[str], recursive: bool = True) -> ImageScan:
    """Image files (by extension, any format Pillow reads) under ``folder``. One rule for hidden entries:
    files and folders named ``.name`` (binsr's own temporaries among them) are left out. Links to folders
    are followed, each real folder read once; broken links are left out. Both are listed in ``skipped``."""
    folder = Path(folder)
    extensions = image_extensions()
    files: list[Path] = []
    skipped: list[str] = []
    seen: set[str] = set()
    pending = [folder]
    while pending:
        current = pending.pop()
        real = os.path.realpath(current)
        if real in seen:
            skipped.append(f"{current} (a link to a folder read already)")
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as err:
            skipped.append(f"{current} (unreadable folder: {err.strerror})")
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                if entry.is_dir() or path.suffix.lower() in extensions:
                    skipped.append(f"{path} (hidden)")
                continue
            if entry.is_symlink() and not path.exists():
                skipped.append(f"{path} (broken link)")
            elif entry.is_dir():
                if recursive:
                    pending.append(path)
            elif entry.is_file() and path.suffix.lower() in extensions:
                files.append(path)
    files.sort(key=lambda p: p.relative_to(folder).as_posix())
    return ImageScan(files, sorted(skipped))


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """The image files of :func:`scan_images` (what it skipped is not reported)."""
    return scan_images(folder, recursive).files


_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def is_grayscale_file(path: str | os.PathLike[str]) -> bool:
    """True when the file stores one gray channel (alpha aside); reads the header only.

    SR benchmark code scores such images on their gray values instead of converting to YCbCr.
    """
    try:
        with Image.open(path) as im:
            return im.mode in _GRAY_MODES
    except (OSError, SyntaxError, ValueError):
        return False  # unreadable files get their clear error when decoded


@dataclass
class Picture:
    """A decoded image file: ``rgb`` (3, H, W) and ``alpha`` (1, H, W) or None, in [0, 1] (float32);
    ``bits`` 8 or 16 (float TIFFs count as 16); ``gray`` when the file stores one colour channel;
    ``icc`` the embedded ICC profile (bytes) or None."""

    rgb: torch.Tensor
    alpha: torch.Tensor | None
    bits: int
    gray: bool
    icc: bytes | None


def read_picture(path: str | os.PathLike[str]) -> Picture:
    """Decode an image file with everything an upscaler should keep (see :class:`Picture`)."""
    channels, icc = _decode(Path(path))
    bits = 16 if channels.dtype == np.uint16 else 8
    colour = channels.shape[-1] in (3, 4)
    alpha = array_to_tensor(channels[..., -1:]) if channels.shape[-1] in (2, 4) else None
    body = channels[..., :3] if colour else np.repeat(channels[..., :1], 3, axis=-1)
    return Picture(array_to_tensor(body), alpha, bits, not colour, icc)


def read_image_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 or uint16 array (bit depth of the file kept)."""
    path = Path(path)
    return _to_rgb(_decode(path)[0], path)


def _decode(path: Path) -> tuple[np.ndarray, bytes | None]:
    """(H, W, C) uint8/uint16 array as shown (EXIF orientation applied), C in 1–4, and the ICC profile."""
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file" if not path.exists() else f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own warnings on corrupt metadata; we raise instead
            try:
                im = Image.open(path)
            except UnidentifiedImageError:
                channels = _float_tiff(path)
                if channels is None:
                    raise
                return _checked(channels, path), None
            with im:
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    raise ImageReadError(f"{path}: {'animated image' if im.format != 'TIFF' else 'multi-page TIFF'}"
                                         f" with {frames} frames; binsr upscales still images (save the frame "
                                         f"you want as PNG)")
                im.load()
                orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
                icc = im.info.get("icc_profile") or None
                channels = _high_depth_colour(path, im)
                if channels is None:
                    channels = _float_tiff(path) if im.mode == "F" else _pil_channels(im, path)
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"{path}: too large to decode safely ({err})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a readable image (unknown format or corrupt header)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageReadError(f"{path}: truncated or corrupt image ({err})") from None
    if channels is None:
        raise ImageReadError(f"{path}: floating-point image that is not a TIFF (use 8- or 16-bit files)")
    return _orient(_checked(channels, path), orientation), icc


def _checked(channels: np.ndarray, path: Path) -> np.ndarray:
    if channels.ndim != 3 or channels.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(f"{path}: unsupported channel layout {channels.shape}")
    if channels.shape[0] == 0 or channels.shape[1] == 0:
        raise ImageReadError(f"{path}: image has zero width or height")
    return channels


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) array as stored → as shown, for EXIF orientation 1–8 (as PIL.ImageOps.exif_transpose)."""
    if orientation in (5, 6, 7, 8):
        array = array.transpose(1, 0, 2)  # 5: transpose; 6, 7, 8 are it with a flip
    flips = {2: (slice(None), slice(None, None, -1)), 3: (slice(None, None, -1), slice(None, None, -1)),
             4: (slice(None, None, -1),), 6: (slice(None), slice(None, None, -1)),
             7: (slice(None, None, -1), slice(None, None, -1)), 8: (slice(None, None, -1),)}
    return np.ascontiguousarray(array[flips[orientation]]) if orientation in flips else array


def _float_tiff(path: Path) -> np.ndarray | None:
    """A float TIFF with values in [0, 1] as (H, W, C) uint16 levels; None if ``path`` is not a float TIFF."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile  # only for TIFF files: importing it would slow every start

    try:
        array = tifffile.imread(path)
    except (tifffile.TiffFileError, ValueError, OSError):
        return None
    if not np.issubdtype(array.dtype, np.floating):
        return None
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = array.transpose(1, 2, 0)  # planar TIFF
    array = array[..., None] if array.ndim == 2 else array
    low, high = (float(np.nanmin(array)), float(np.nanmax(array))) if array.size else (0.0, 0.0)
    if not np.isfinite(array).all() or low < 0.0 or high > 1.0:
        raise ImageReadError(f"{path}: float TIFF with values in [{low:g}, {high:g}] (or NaN/inf); binsr reads "
                             f"float images with values in [0, 1]")
    return np.round(array.astype(np.float64) * 65535).astype(np.uint16)


def read_image(path: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Read an image file as a (3, H, W) tensor with values in [0, 1] (alpha dropped with a warning)."""
    return array_to_tensor(read_image_array(path), dtype)


def array_to_tensor(array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, C) uint8/uint16 array → (C, H, W) float tensor in [0, 1]."""
    peak = float(np.iinfo(array.dtype).max)
    out = torch.empty(array.shape[2], *array.shape[:2], dtype=dtype)
    for top in range(0, array.shape[0], _CONVERT_ROWS):  # in float64 a band at a time: bounded memory
        band = torch.from_numpy(array[top:top + _CONVERT_ROWS].transpose(2, 0, 1).astype(np.float64))
        out[:, top:top + _CONVERT_ROWS] = band / peak
    return out


def write_png(path: str | os.PathLike[str], image: torch.Tensor, bits: int = 8) -> None:
    """Write a (3, H, W), (1, H, W) or (H, W) tensor in [0, 1] as an 8- or 16-bit PNG, atomically.

    Values are clipped to [0, 1] and rounded to the nearest level.
    """
    write_image(path, image, bits=bits)


def write_image(path: str | os.PathLike[str], image: torch.Tensor, alpha: torch.Tensor | None = None,
                bits: int = 8, icc: bytes | None = None, file_format: str = "png", exclusive: bool = False) -> None:
    """Write ``image`` (3, H, W), (1, H, W) or (H, W) in [0, 1], with optional ``alpha`` (1, H, W), as
    ``file_format`` (png, jpg, webp; 16 ``bits`` and alpha need png), with the ICC profile ``icc``, atomically
    (``exclusive``: never replacing a file; :class:`~binsr.utils.fs.OutputExists` if ``path`` exists by then).

    Values are clipped to [0, 1] and rounded to the nearest level.
    """
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (3, H, W), (1, H, W) or (H, W), got {tuple(image.shape)}")
    if alpha is not None and (alpha.dim() != 3 or tuple(alpha.shape) != (1, *image.shape[-2:])):
        raise ValueError(f"alpha of shape {tuple(alpha.shape)} does not match the image {tuple(image.shape)}")
    output = OutputImage(path, *image.shape[-2:], channels=image.shape[0], bits=bits, alpha=alpha is not None,
                         file_format=file_format)
    output.put(0, image)
    if alpha is not None:
        output.put_alpha(0, alpha)
    output.save(icc, exclusive)


class OutputImage:
    """An image file filled in row bands, then written atomically: the one full-size buffer of an upscaled
    output. 8-bit samples live in a Pillow image (what Pillow encodes from, so it is not copied again), 16-bit
    ones in a uint16 array that pypng writes row by row.

    ``put(top, rows)`` places ``rows`` (channels, r, W) in [0, 1] at row ``top``; ``put_alpha`` the alpha
    channel's (1, r, W); values are clipped and rounded to the nearest level as they arrive, and a NaN is
    refused naming ``path``. ``save(icc, exclusive)`` writes ``file_format`` (png, jpg, webp; 16 bits and alpha
    need png) atomically, with ``exclusive`` never over an existing file.
    """

    def __init__(self, path: str | os.PathLike[str], height: int, width: int, channels: int = 3, bits: int = 8,
                 alpha: bool = False, file_format: str = "png") -> None:
        if bits not in (8, 16):
            raise ValueError(f"bits must be 8 or 16, got {bits}")
        if file_format not in WRITE_FORMATS:
            raise ValueError(f"file_format must be one of {', '.join(WRITE_FORMATS)}, got {file_format!r}")
        if file_format != "png" and (bits == 16 or alpha):
            raise ValueError(f"{file_format} cannot hold {'16-bit samples' if bits == 16 else 'alpha'}; use png")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.path, self.height, self.width, self.channels = path, height, width, channels
        self.bits, self.has_alpha, self.file_format = bits, alpha, file_format
        if bits == 8:
            self.colour = Image.new("L" if channels == 1 else "RGB", (width, height))
            self.alpha = Image.new("L", (width, height)) if alpha else None
        else:
            self.samples = np.zeros((height, width, channels + alpha), np.uint16)

    def put(self, top: int, rows: torch.Tensor) -> None:
        self._place(top, rows, alpha=False)

    def put_alpha(self, top: int, rows: torch.Tensor) -> None:
        if not self.has_alpha:
            raise ValueError("this output has no alpha channel")
        self._place(top, rows, alpha=True)

    def _place(self, top: int, rows: torch.Tensor, alpha: bool) -> None:
        channels = 1 if alpha else self.channels
        if rows.dim() != 3 or rows.shape[0] != channels or rows.shape[-1] != self.width \
                or not 0 <= top <= self.height - rows.shape[-2]:
            raise ValueError(f"rows of shape {tuple(rows.shape)} at row {top} do not fit a "
                             f"{channels}x{self.height}x{self.width} image")
        for start in range(0, rows.shape[-2], _CONVERT_ROWS):  # (levels in float64 a few rows at a time)
            levels = _levels(rows[:, start:start + _CONVERT_ROWS], self.bits, self.path)
            if self.bits == 8:
                band = Image.fromarray(levels[..., 0] if channels == 1 else levels)
                (self.alpha if alpha else self.colour).paste(band, (0, top + start))
            else:
                first = self.channels if alpha else 0
                self.samples[top + start:top + start + levels.shape[0], :, first:first + channels] = levels

    def save(self, icc: bytes | None = None, exclusive: bool = False) -> None:
        with atomic_write(self.path, "wb", exclusive=exclusive) as handle:
            if self.bits == 8:
                picture = self.colour
                if self.alpha is not None:
                    picture.putalpha(self.alpha)  # RGB → RGBA, L → LA
                options: dict[str, object] = {"icc_profile": icc} if icc else {}
                if self.file_format == "png":
                    options["compress_level"] = PNG_COMPRESSION
                else:
                    options["quality"] = JPEG_QUALITY
                picture.save(handle, format=WRITE_FORMATS[self.file_format], **options)
            else:
                height, width, channels = self.samples.shape
                buffer = io.BytesIO()
                writer = png.Writer(width, height, greyscale=channels in (1, 2), alpha=channels in (2, 4),
                                    bitdepth=16)
                writer.write(buffer, self.samples.reshape(height, width * channels))
                handle.write(_with_icc(buffer.getvalue(), icc) if icc else buffer.getvalue())


def _levels(image: torch.Tensor, bits: int, path: str | os.PathLike[str]) -> np.ndarray:
    """(C, H, W) or (H, W) tensor in [0, 1] → (H, W, C) integer levels of ``bits`` bits."""
    image = image.detach().to("cpu", torch.float64, copy=True)
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (3, H, W), (1, H, W) or (H, W), got {tuple(image.shape)}")
    if torch.isnan(image).any():
        raise ValueError(f"refusing to write {path}: the image contains NaN values")
    peak = 2**bits - 1  # in place on the float64 copy: one buffer, PyTorch's threads
    levels = image.clamp_(0, 1).mul_(peak).round_().to(torch.uint8 if bits == 8 else torch.int32).numpy()
    return levels.astype(np.uint8 if bits == 8 else np.uint16, copy=False).transpose(1, 2, 0)


def _with_icc(data: bytes, icc: bytes) -> bytes:
    """A PNG file's bytes with an iCCP chunk (the ICC profile) after IHDR: pypng writes none itself."""
    chunks = list(png.Reader(bytes=data).chunks())
    profile = b"ICC Profile\x00\x00" + zlib.compress(icc)  # name, NUL, compression method 0 (zlib)
    out = io.BytesIO()
    png.write_chunks(out, [chunks[0], (b"iCCP", profile), *chunks[1:]])
    return out.getvalue()


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
            import tifffile  # only for TIFF files: importing it would slow every start

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
    if channels.shape[-1] in (2, 4):
        warnings.warn(f"{path}: alpha channel dropped", BinsrWarning, stacklevel=3)
        channels = channels[..., :-1]
    if channels.shape[-1] == 1:
        channels = np.repeat(channels, 3, axis=-1)
    channels = np.ascontiguousarray(channels)
    return channels if channels.flags.writeable else channels.copy()  # Pillow's arrays are read-only
