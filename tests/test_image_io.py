"""Reading and writing images: formats, bit depths, channel layouts, bad files, atomic writes."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import png
import pytest
import tifffile
import torch
from PIL import Image

from binsr.errors import BinsrWarning, ImageReadError
from binsr.image.io import list_images, read_image, read_image_array, write_png
from conftest import smooth_image


@pytest.mark.parametrize("fmt,ext", [("PNG", ".png"), ("BMP", ".bmp"), ("TIFF", ".tif")])
def test_lossless_formats_round_trip_exactly(tmp_path, rng, fmt, ext):
    array = smooth_image(rng, 21, 34)
    path = tmp_path / f"img{ext}"
    Image.fromarray(array).save(path, format=fmt)
    tensor = read_image(path)
    assert tensor.shape == (3, 21, 34) and tensor.dtype == torch.float32
    assert torch.equal(tensor, torch.from_numpy(array).permute(2, 0, 1).float() / 255)


def test_jpeg_equals_the_reference_decoder(tmp_path, rng):
    path = tmp_path / "img.JPG"  # upper-case extension too
    Image.fromarray(smooth_image(rng, 32, 32)).save(path, format="JPEG", quality=90)
    with Image.open(path) as im:
        decoded = np.asarray(im.convert("RGB"))
    tensor = read_image(path, torch.float64)
    assert tensor.dtype == torch.float64
    assert torch.equal(tensor, torch.from_numpy(decoded.transpose(2, 0, 1) / 255.0))


def test_grayscale_becomes_three_equal_channels(tmp_path, rng):
    gray = smooth_image(rng, 10, 12)[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    tensor = read_image(tmp_path / "g.png")
    assert tensor.shape == (3, 10, 12)
    assert torch.equal(tensor[0], tensor[1]) and torch.equal(tensor[1], tensor[2])
    assert torch.equal(tensor[0], torch.from_numpy(gray).float() / 255)


def test_palette_image_is_converted(tmp_path, rng):
    Image.fromarray(smooth_image(rng, 8, 8)).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (3, 8, 8)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_dropped_with_a_warning(tmp_path, rng, mode):
    rgb = smooth_image(rng, 6, 9)
    alpha = np.full((6, 9, 1), 7, np.uint8)
    data = np.concatenate([rgb, alpha], -1) if mode == "RGBA" else np.concatenate([rgb[..., :1], alpha], -1)
    Image.fromarray(data, mode=mode).save(tmp_path / "a.png")
    with pytest.warns(BinsrWarning, match="alpha channel dropped"):
        tensor = read_image(tmp_path / "a.png")
    expected = rgb if mode == "RGBA" else np.repeat(rgb[..., :1], 3, -1)
    assert torch.equal(tensor, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)


def test_16bit_gray_png_scaled_by_65535(tmp_path):
    values = np.array([[0, 1, 256, 65535], [1000, 30000, 40000, 65534]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    tensor = read_image(tmp_path / "g16.png", torch.float64)
    assert torch.equal(tensor[1], torch.from_numpy(values.astype(np.float64) / 65535))


def test_16bit_rgb_png_keeps_full_precision(tmp_path, rng):
    values = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    png.from_array(values.reshape(5, -1), "RGB;16").save(str(tmp_path / "rgb16.png"))
    array = read_image_array(tmp_path / "rgb16.png")
    assert array.dtype == np.uint16 and np.array_equal(array, values)  # Pillow alone gives 8 bits here
    assert torch.equal(read_image(tmp_path / "rgb16.png", torch.float64),
                       torch.from_numpy(values.transpose(2, 0, 1) / 65535.0))


def test_16bit_rgba_png_drops_alpha(tmp_path, rng):
    values = rng.integers(0, 65536, (4, 4, 4), dtype=np.uint16)
    png.from_array(values.reshape(4, -1), "RGBA;16").save(str(tmp_path / "rgba16.png"))
    with pytest.warns(BinsrWarning):
        assert np.array_equal(read_image_array(tmp_path / "rgba16.png"), values[..., :3])


def test_16bit_rgb_tiff_keeps_full_precision(tmp_path, rng):
    values = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tiff", values, photometric="rgb")
    assert np.array_equal(read_image_array(tmp_path / "rgb16.tiff"), values)


def _encoded(fmt: str, rng) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(smooth_image(rng, 40, 40)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF"])
def test_truncated_files_raise_one_line_error_naming_the_file(tmp_path, rng, fmt):
    data = _encoded(fmt, rng)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "truncated" in message or "corrupt" in message


def test_empty_missing_and_non_image_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png: file is empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="no such image file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("this is not an image")
    with pytest.raises(ImageReadError, match="text.png: not a readable image"):
        read_image(tmp_path / "text.png")


def test_float_images_are_rejected(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match="floating-point images are not supported"):
        read_image(tmp_path / "f.tif")


def test_write_png_round_trip_8_and_16_bit(tmp_path, rng):
    image = torch.from_numpy(rng.random((3, 9, 11)))
    write_png(tmp_path / "o8.png", image)
    assert torch.equal(read_image(tmp_path / "o8.png", torch.float64), torch.round(image * 255) / 255)
    write_png(tmp_path / "o16.png", image, bits=16)
    assert torch.equal(read_image(tmp_path / "o16.png", torch.float64), torch.round(image * 65535) / 65535)
    write_png(tmp_path / "gray.png", image[0])
    assert read_image(tmp_path / "gray.png").shape == (3, 9, 11)


def test_write_png_clips_and_refuses_nan(tmp_path):
    write_png(tmp_path / "c.png", torch.tensor([[[-1.0, 2.0]]]).expand(3, 1, 2))
    assert read_image(tmp_path / "c.png")[0, 0].tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="NaN"):
        write_png(tmp_path / "n.png", torch.full((3, 2, 2), float("nan")))
    assert not (tmp_path / "n.png").exists()


def test_write_is_atomic_old_file_survives_a_failed_write(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    write_png(target, torch.zeros(3, 4, 4))
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        write_png(target, torch.ones(3, 4, 4))
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.png"]  # no temporary file left behind


def test_list_images_recursive_sorted_and_filtered(tmp_path, rng):
    (tmp_path / "b").mkdir()
    for rel in ["z.png", "a.JPG", "b/c.bmp", "b/notes.txt", "b/d.tiff"]:
        (tmp_path / rel).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["a.JPG", "b/c.bmp", "b/d.tiff", "z.png"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.JPG", "z.png"]


def test_no_pillow_warnings_leak_on_corrupt_files(tmp_path, rng):
    data = _encoded("TIFF", rng)
    (tmp_path / "t.tif").write_bytes(data[:20])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageReadError):
            read_image(tmp_path / "t.tif")


def test_is_grayscale_file_reads_the_header(tmp_path, rng):
    from binsr.image import is_grayscale_file

    Image.fromarray(smooth_image(rng, 8, 8)[..., 0]).save(tmp_path / "g.png")
    Image.fromarray(smooth_image(rng, 8, 8)).save(tmp_path / "c.png")
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(tmp_path / "g16.png")
    gray_as_rgb = np.repeat(smooth_image(rng, 8, 8)[..., :1], 3, -1)  # equal channels, stored as RGB
    Image.fromarray(gray_as_rgb).save(tmp_path / "rgb_gray.png")
    assert is_grayscale_file(tmp_path / "g.png") and is_grayscale_file(tmp_path / "g16.png")
    assert not is_grayscale_file(tmp_path / "c.png") and not is_grayscale_file(tmp_path / "rgb_gray.png")


def test_written_files_get_the_usual_permissions(tmp_path):
    write_png(tmp_path / "p.png", torch.zeros(3, 2, 2))
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o666 & ~mask
