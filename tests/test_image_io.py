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
from binsr.image.io import (
    image_extensions,
    list_images,
    read_image,
    read_image_array,
    read_picture,
    write_image,
    write_png,
)
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


def test_float_tiffs_in_unit_range_read_as_16_bit_and_others_are_refused(tmp_path, rng):
    rgb = rng.random((5, 7, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")  # Pillow cannot open float RGB TIFFs
    picture = read_picture(tmp_path / "rgb.tif")
    assert picture.bits == 16 and not picture.gray
    expected = np.round(rgb.astype(np.float64) * 65535) / 65535
    assert np.array_equal(picture.rgb.double().numpy().transpose(1, 2, 0), expected.astype(np.float32).astype(np.float64))
    Image.fromarray(np.full((4, 4), 0.25, np.float32), mode="F").save(tmp_path / "gray.tif")
    assert torch.allclose(read_image(tmp_path / "gray.tif"), torch.full((3, 4, 4), 0.25), atol=1e-5)
    tifffile.imwrite(tmp_path / "hdr.tif", rgb * 4, photometric="rgb")
    with pytest.raises(ImageReadError, match=r"hdr.tif: float TIFF with values in \[0\.\d+, 3\.\d+\]"):
        read_image(tmp_path / "hdr.tif")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(tmp_path, rng, orientation):
    from PIL import ImageOps

    stored = Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "o.png", exif=exif)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    assert np.array_equal(read_image_array(tmp_path / "o.png"), shown)
    assert read_picture(tmp_path / "o.png").rgb.shape[1:] == shown.shape[:2]


def test_animated_and_multi_page_files_are_refused_by_name(tmp_path, rng):
    frames = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    with pytest.raises(ImageReadError, match=r"anim.gif: animated image with 3 frames"):
        read_image(tmp_path / "anim.gif")
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:2])
    with pytest.raises(ImageReadError, match=r"pages.tif: multi-page TIFF with 2 frames"):
        read_image(tmp_path / "pages.tif")


def test_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 pixels > 2 × the limit: Pillow refuses
    with pytest.raises(ImageReadError, match=r"bomb.png: too large to decode safely .*1600 pixels"):
        read_image(tmp_path / "bomb.png")


def test_every_pillow_format_is_listed_in_folders(tmp_path, rng):
    image = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    for name in ("a.webp", "b.gif", "c.tga", "d.ppm", "e.JPG"):
        image.save(tmp_path / name)
    (tmp_path / ".hidden.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.webp", "b.gif", "c.tga", "d.ppm", "e.JPG"]
    assert {".webp", ".gif", ".png", ".tif"} <= image_extensions() and ".eps" not in image_extensions()
    for path in list_images(tmp_path):
        assert read_image(path).shape == (3, 8, 8)


@pytest.mark.parametrize("bits", [8, 16])
def test_picture_keeps_alpha_depth_and_icc_through_write_image(tmp_path, rng, bits):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    peak = 2**bits - 1
    rgba = rng.integers(0, peak + 1, (5, 6, 4)).astype(np.uint16)
    rgb, alpha = torch.from_numpy(rgba[..., :3].transpose(2, 0, 1) / peak), torch.from_numpy(rgba[..., 3:].transpose(2, 0, 1) / peak)
    write_image(tmp_path / "out.png", rgb, alpha=alpha, bits=bits, icc=icc)
    picture = read_picture(tmp_path / "out.png")
    assert picture.bits == bits and picture.icc == icc and not picture.gray
    assert torch.equal(torch.round(picture.rgb.double() * peak), rgb * peak)
    assert torch.equal(torch.round(picture.alpha.double() * peak), torch.round(alpha * peak))
    assert Image.open(tmp_path / "out.png").info["icc_profile"] == icc


def test_write_image_jpeg_and_webp_and_refusals(tmp_path, rng):
    rgb = torch.from_numpy(rng.random((3, 16, 16)))
    for ext, fmt in (("jpg", "JPEG"), ("webp", "WEBP")):
        write_image(tmp_path / f"o.{ext}", rgb, file_format=ext)
        with Image.open(tmp_path / f"o.{ext}") as im:
            assert im.format == fmt and im.size == (16, 16)
    with pytest.raises(ValueError, match="jpg cannot hold alpha"):
        write_image(tmp_path / "a.jpg", rgb, alpha=rgb[:1], file_format="jpg")
    with pytest.raises(ValueError, match="jpg cannot hold 16-bit"):
        write_image(tmp_path / "b.jpg", rgb, bits=16, file_format="jpg")


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
