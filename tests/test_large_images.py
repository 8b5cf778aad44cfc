"""Any image size in memory bounded by the tile: outputs stream in row bands, each tile computes its own bicubic
condition and noise, and the output file's buffer is the only full-size copy."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from binsr.image import Picture, imresize, imresize_window, read_picture
from binsr.pipelines import load
from binsr.pipelines.base import upscale_rows
from binsr.pipelines.diffusion import NOISE_BLOCK, noise_window
from binsr.pipelines.picture import upscale_picture, write_result, write_upscaled

from conftest import smooth_image


def bands_of(upscaler, lr: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    tops, rows = zip(*[(top, band.clone()) for top, band in upscale_rows(upscaler, lr)])  # (views of one buffer)
    return list(tops), torch.cat(rows, dim=-2)


@pytest.mark.parametrize("name,options", [("bimacosr-x4", {"tile": 128, "tile_overlap": 32}),
                                          ("bidiffsr-x4", {"tile": 32, "tile_overlap": 8, "steps": 1}),
                                          ("bicubic", {})])
def test_row_bands_tile_the_output_and_are_the_image_upscale_returns(name, options) -> None:
    upscaler = load(name, scale=4) if name == "bicubic" else load(name, **options)
    lr = torch.rand(1, 3, 45, 37, generator=torch.Generator().manual_seed(0))
    tops, stacked = bands_of(upscaler, lr)
    assert len(tops) > 1 and tops[0] == 0 and tops == sorted(set(tops))  # several bands, top to bottom
    assert stacked.shape == (1, 3, 180, 148)
    assert torch.equal(stacked, upscaler.upscale(lr))


def test_tiles_share_one_noise_field_and_one_bicubic_condition() -> None:
    whole = noise_window(7, 2, (0, 3 * NOISE_BLOCK), (0, 2 * NOISE_BLOCK + 5))
    assert torch.equal(noise_window(7, 2, (30, 150), (61, 133)), whole[..., 30:150, 61:133])
    assert abs(float(whole.mean())) < 0.02 and abs(float(whole.std()) - 1) < 0.02
    assert not torch.equal(noise_window(8, 2, (0, 64), (0, 64)), whole[..., :64, :64])  # the seed matters
    # a pixel-noise model tiled: each tile's noise and condition are the crops of the whole image's, so with
    # the seams blended away (overlap) it matches the untiled output closely
    untiled = load("bidiffsr-x4", steps=1, auto_tile=None)
    tiled = load("bidiffsr-x4", steps=1, tile=48, tile_overlap=16)
    lr = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(1))
    whole_sr, tiled_sr = untiled.upscale(lr), tiled.upscale(lr)
    error = (whole_sr - tiled_sr).abs()
    assert float(error.mean()) < 0.01


@pytest.mark.parametrize("name", ["bicubic", "bimacosr-x4"])
def test_a_streamed_file_is_the_file_the_whole_image_path_writes(name, tmp_path: Path) -> None:
    upscaler = load(name, scale=4) if name == "bicubic" else load(name, tile=128, tile_overlap=32)
    generator = torch.Generator().manual_seed(2)
    rgb, alpha = torch.rand(3, 40, 45, generator=generator), torch.rand(1, 40, 45, generator=generator)
    cases = [(False, None, "bicubic", 8), (True, alpha, "model", 16), (False, alpha, "bicubic", 16),
             (False, alpha, "model", 8), (True, None, "bicubic", 8)]
    for index, (gray, transparency, mode, bits) in enumerate(cases):
        picture = Picture(rgb=rgb.mean(0, keepdim=True).expand(3, -1, -1) if gray else rgb, alpha=transparency,
                          bits=bits, icc=None, gray=gray)
        streamed, whole = tmp_path / f"s{index}.png", tmp_path / f"w{index}.png"
        write_upscaled(streamed, upscaler, picture, mode)
        write_result(whole, picture, *upscale_picture(upscaler, picture, mode))
        a, b = read_picture(streamed), read_picture(whole)
        assert (a.bits, a.gray, a.alpha is None) == (bits, gray, transparency is None)
        assert torch.equal(a.rgb, b.rgb)
        assert transparency is None or torch.equal(a.alpha, b.alpha)


@pytest.mark.parametrize("name,outscale", [("bicubic", 2.5), ("bimacosr-x4", 5.3), ("bicubic", 0.7)])
def test_outscale_resamples_band_by_band_as_matlab_resizes_the_whole_output(name, outscale, tmp_path: Path) -> None:
    """--outscale streams too: the file equals MATLAB bicubic of the whole model-scale output (the old path),
    resized in float64, for RGB + alpha and gray 16-bit pictures (to the last level: float rounding only)."""
    upscaler = load(name, scale=4) if name == "bicubic" else load(name, tile=128, tile_overlap=32)
    generator = torch.Generator().manual_seed(4)
    rgb, alpha = torch.rand(3, 33, 41, generator=generator), torch.rand(1, 33, 41, generator=generator)
    size = (round(33 * outscale), round(41 * outscale))
    for index, (gray, bits) in enumerate([(False, 8), (True, 16)]):
        picture = Picture(rgb=rgb.mean(0, keepdim=True).expand(3, -1, -1) if gray else rgb, alpha=alpha, bits=bits,
                          icc=None, gray=gray)
        write_upscaled(tmp_path / f"s{index}.png", upscaler, picture, "bicubic", outscale)
        sr = upscale_picture(upscaler, picture, "bicubic")[0]
        sr_alpha = imresize(alpha.double(), 4.0)  # the alpha band's values before clipping
        whole = [imresize(image.double(), size=size).float() for image in (sr, sr_alpha)]
        write_result(tmp_path / f"w{index}.png", picture, whole[0], whole[1].clamp(0, 1))
        a, b = read_picture(tmp_path / f"s{index}.png"), read_picture(tmp_path / f"w{index}.png")
        assert a.rgb.shape[-2:] == size and (a.bits, a.gray) == (bits, gray)
        level = 1 / (2**bits - 1)
        assert float((a.rgb - b.rgb).abs().max()) <= level + 1e-7 and float((a.alpha - b.alpha).abs().max()) <= level + 1e-7
        assert float((a.rgb != b.rgb).float().mean()) < 1e-3  # a rounding flip here and there, no more


def _limit_address_space(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS as Linux counts it")
def test_a_2000_pixel_image_upscales_in_1_5_gb_plus_its_output(tmp_path: Path) -> None:
    """ulimit -v of 1.5 GB + the 8-bit output (8000² RGB: 192 MB): the whole-image path needed about 7 GB.
    With --outscale 3 the resampled output streams too (6000²: the whole-image resize needed about 3 GB)."""
    rng = np.random.default_rng(3)
    Image.fromarray(smooth_image(rng, 2000, 2000)).save(tmp_path / "big.png")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    command = [sys.executable, "-m", "binsr", "upscale", str(tmp_path / "big.png"), "--model", "bicubic", "--scale", "4",
               "--quiet", "--threads", "2"]
    limit = int(1.5 * 2**30) + 6000 * 6000 * 3
    done = subprocess.run([*command, "--outscale", "3", "-o", str(tmp_path / "three")], capture_output=True, text=True,
                          env=env, preexec_fn=lambda: _limit_address_space(limit))
    assert done.returncode == 0, done.stderr[-2000:]
    with Image.open(tmp_path / "three" / "big_x3.png") as image:
        assert image.size == (6000, 6000)
    limit = int(1.5 * 2**30) + 8000 * 8000 * 3
    done = subprocess.run([*command, "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, preexec_fn=lambda: _limit_address_space(limit))
    assert done.returncode == 0, done.stderr[-2000:]
    with Image.open(tmp_path / "out" / "big_x4.png") as image:
        assert image.size == (8000, 8000)
        window = np.asarray(image.crop((3990, 5000, 4100, 5070)), dtype=np.float64) / 255
    lr = read_picture(tmp_path / "big.png").rgb.double()
    expected = imresize_window(lr, 4.0, (5000, 5070), (3990, 4100)).clamp(0, 1).permute(1, 2, 0).numpy()
    assert np.abs(window - expected).max() <= 0.5 / 255 + 1e-6  # the nearest 8-bit level (float32 rounding)
