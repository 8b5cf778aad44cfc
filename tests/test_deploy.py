"""Packed 1-bit deployment: bit layout, kernel exactness on every backend, packed layers of every
method, whole models, packed files (export, load, refusals) and the export/bench commands."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import binsr
from binsr import pipelines
from binsr.binary import BinaryConv2d, BinaryLinear, binarize
from binsr.cli import main
from binsr.config import to_dict
from binsr.deploy import (
    PackedBinaryConv2d,
    PackedBinaryLinear,
    PackedWeight,
    binary_conv2d,
    binary_linear,
    export_packed,
    instruction_sets,
    native_available,
    pack_model,
    pack_signs,
    unpack_signs,
    using_backend,
)
from binsr.deploy.kernels import stray_bits
from binsr.diffusion.resshift import ResShiftSchedule
from binsr.diffusion.sr3 import SR3Schedule
from binsr.errors import BinsrError
from binsr.models import NetworkSpec, apply_binarization, bind_timesteps
from binsr.models.files import save_model_file
from binsr.pipelines import read_model_spec
from binsr.models.presets import BIMACOSR_BINARIZATION
from binsr.models.resshift_unet import ResShiftUNet, ResShiftUNetConfig
from binsr.models.unet import UNetConfig

BACKENDS = ["torch", *instruction_sets()]


def pm1(negative: torch.Tensor) -> torch.Tensor:
    return 1.0 - 2.0 * negative.double()


def sign64(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0).double()


# --- bit layout ----------------------------------------------------------------------------------


def test_bit_layout_is_64_channels_per_word_lsb_first_and_roundtrips() -> None:
    negative = torch.rand(5, 130, generator=torch.Generator().manual_seed(0)) < 0.5
    packed = pack_signs(negative)
    assert packed.dtype == torch.uint64 and packed.shape == (5, 3)
    words = packed.view(torch.int64)
    for row in range(5):
        for channel in (0, 1, 63, 64, 127, 129):
            bit = (int(words[row, channel // 64]) >> (channel % 64)) & 1
            assert bit == int(negative[row, channel])
    assert torch.equal(unpack_signs(packed, 130), negative)
    assert stray_bits(packed, 130) == 0
    tampered = words.clone()
    tampered[0, 2] |= 1 << 5  # channel 133 of a 130-channel row
    assert stray_bits(tampered.view(torch.uint64), 130) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("cc") is None,
                    reason="the native kernels are built where a C compiler is")
def test_native_kernels_were_built_here() -> None:
    assert native_available() and instruction_sets()[-1] == "portable"


# --- kernels: bit-exact integers, on every backend -------------------------------------------------

CONV_CASES = [  # (N, C, O, H, W, k, stride, padding)
    (1, 64, 16, 8, 8, 3, 1, 1),
    (2, 70, 13, 9, 11, 3, 1, 1),
    (1, 130, 9, 17, 5, 1, 1, 0),
    (2, 5, 7, 10, 13, 3, 2, 1),
    (1, 200, 33, 6, 20, 3, 1, 2),
    (1, 1, 3, 1, 1, 3, 1, 1),  # a single pixel: every tap but the centre is padding
    (1, 65, 4, 2, 3, 3, 1, 1),
    (1, 64, 8, 7, 7, 3, 2, 0),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_kernel_gives_the_exact_integer_dot_products(backend: str) -> None:
    generator = torch.Generator().manual_seed(1)
    for n, c, o, h, w, k, stride, pad in CONV_CASES:
        x = torch.randn(n, c, h, w, generator=generator)
        x[0, 0, 0, 0] = 0.0  # sign(0) = +1
        negative = torch.rand(o, c, k, k, generator=generator) < 0.5
        weight = PackedWeight(pack_signs(negative.permute(0, 2, 3, 1)), c)
        for threshold in (None, 0.3 * torch.randn(c, generator=generator)):
            shifted = x - threshold.view(1, -1, 1, 1) if threshold is not None else x
            expected = F.conv2d(sign64(shifted), pm1(negative), stride=stride, padding=pad)
            with using_backend(backend):
                got = binary_conv2d(x, weight, (stride, stride), (pad, pad), threshold)
            assert got.shape == expected.shape
            assert torch.equal(got.double(), expected), (backend, n, c, o, h, w, k, stride, pad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_kernel_scales_match_float64(backend: str) -> None:
    generator = torch.Generator().manual_seed(2)
    for n, c, o, h, w, k, stride, pad in CONV_CASES:
        x = torch.randn(n, c, h, w, generator=generator)
        negative = torch.rand(o, c, k, k, generator=generator) < 0.5
        alpha = torch.rand(o, generator=generator)
        scale = torch.rand(n, h, w, generator=generator)  # BiMaCoSR's per-pixel β
        weight = PackedWeight(pack_signs(negative.permute(0, 2, 3, 1)), c, alpha)
        expected = F.conv2d(sign64(x) * scale.double().unsqueeze(1), pm1(negative), stride=stride, padding=pad)
        expected = expected * alpha.double().view(1, -1, 1, 1)
        with using_backend(backend):
            got = binary_conv2d(x, weight, (stride, stride), (pad, pad), pixel_scale=scale)
        assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-4), (backend, n, c, o, h, w, k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_kernel_exact_and_scaled(backend: str) -> None:
    generator = torch.Generator().manual_seed(3)
    for lead, c, o in [((5,), 64, 3), ((2, 37), 130, 17), ((3, 4), 1, 5), ((64,), 192, 96)]:
        x = torch.randn(*lead, c, generator=generator)
        negative = torch.rand(o, c, generator=generator) < 0.5
        threshold = torch.randn(c, generator=generator)
        with using_backend(backend):
            got = binary_linear(x, PackedWeight(pack_signs(negative), c), threshold)
        assert torch.equal(got.double(), sign64(x - threshold) @ pm1(negative).T)
        alpha, scale = torch.rand(o, generator=generator), torch.rand(*lead, generator=generator)
        with using_backend(backend):
            got = binary_linear(x, PackedWeight(pack_signs(negative), c, alpha), token_scale=scale)
        expected = (sign64(x) * scale.double().unsqueeze(-1)) @ pm1(negative).T * alpha.double()
        assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-4)


def test_kernel_refuses_a_wrong_channel_count() -> None:
    weight = PackedWeight(pack_signs(torch.zeros(4, 3, 3, 10, dtype=torch.bool)), 10)
    with pytest.raises(BinsrError, match="expects 10 input channels, got 12"):
        binary_conv2d(torch.zeros(1, 12, 5, 5), weight, (1, 1), (1, 1))


# --- packed layers of every method -------------------------------------------------------------------


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(24, 24, 3, padding=1)
        self.down = nn.Conv2d(24, 24, 3, stride=2, padding=1)
        self.point = nn.Conv2d(24, 40, 1)
        self.fc = nn.Linear(40, 40)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.point(self.down(self.conv(x)))
        return self.fc(y.permute(0, 2, 3, 1))


METHOD_OPTIONS = {"bnn": {}, "dorefa": {}, "xnor": {}, "irnet": {}, "reactnet": {}, "bbcu": {}, "reste": {},
                  "bidm": {}, "bidiffsr": {"timestep_groups": 3}, "bimacosr": {"rank": 4, "k": 8}, "horq": {"order": 1}}


@pytest.mark.parametrize("method", sorted(METHOD_OPTIONS))
def test_packed_layers_compute_what_the_simulated_ones_do(method: str) -> None:
    torch.manual_seed(0)
    model, _ = binarize(TwoLayers(), method, **METHOD_OPTIONS[method])
    with torch.no_grad():  # make thresholds, RPReLU, TaR and shortcuts non-trivial
        for name, param in model.named_parameters():
            if not name.endswith("weight"):
                param.add_(0.1 * torch.randn_like(param))
    simulated = {name: m for name, m in model.named_modules() if isinstance(m, (BinaryConv2d, BinaryLinear))}
    assert len(simulated) == 4
    inputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, n=n: inputs.__setitem__(n, args[0]))
             for n, m in simulated.items()]
    x = torch.randn(2, 24, 9, 9)
    with torch.no_grad():
        expected = model(x)
    for hook in hooks:
        hook.remove()
    packed = copy.deepcopy(model)
    report = pack_model(packed)
    assert sorted(report.layers) == sorted(simulated)
    layers = dict(packed.named_modules())
    for backend in ("torch", "native") if native_available() else ("torch",):
        with using_backend(backend), torch.no_grad():
            for name, layer in simulated.items():
                ours, reference = layers[name](inputs[name]), layer(inputs[name])
                assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-5), (method, name, backend)
            assert torch.allclose(packed(x), expected, rtol=1e-4, atol=1e-4)
    assert not any(p.requires_grad for p in packed.parameters())


def test_layers_without_a_packed_form_are_refused_by_name() -> None:
    model, _ = binarize(TwoLayers(), "horq", order=2)
    with pytest.raises(BinsrError, match="layer 'conv' cannot be packed: its input quantizer \\(ResidualSignActivation, order 2\\)"):
        pack_model(model)
    dilated = nn.Sequential(nn.Conv2d(8, 8, 3, padding=2, dilation=2))
    dilated, _ = binarize(dilated, "bnn")
    with pytest.raises(BinsrError, match=r"layer '0' cannot be packed: .*dilation=\(2, 2\)"):
        pack_model(dilated)


# --- whole models and files ----------------------------------------------------------------------------


def header(kind: str, network: NetworkSpec, process: dict, scale: int, name: str, autoencoder: dict | None = None) -> dict:
    """A complete format-2 model-file header."""
    return {"format": 2, "kind": kind, "scale": scale, "network": network.to_dict(), "process": process,
            "autoencoder": autoencoder, "packed": None, "sampling_steps": None, "name": name, "trained_steps": None,
            "recipe": None, "teacher": None}


def tiny_sr3_spec(binary: bool = True) -> dict:
    unet = UNetConfig(inner_channel=16, channel_mults=(1, 2), res_blocks=1, norm_groups=4, image_size=32, fp_res=(32,))
    network = NetworkSpec.of(unet)
    if binary:
        binarization = apply_binarization(network.build("meta"), {"method": "bidiffsr", "options": {"timestep_groups": 2}})
        network = NetworkSpec.of(unet, binarization)
    return header("sr3", network, {"type": "sr3", "config": to_dict(SR3Schedule())}, 2, "tiny")


def tiny_onestep_spec() -> dict:
    torch.manual_seed(0)
    network = ResShiftUNet(ResShiftUNetConfig(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, norm_groups=8,
                                              image_size=32, attn_res=(16,), swin_embed_dim=32, head_channels=16,
                                              window_size=4))
    binarization = apply_binarization(network, {**BIMACOSR_BINARIZATION, "options": {"rank": 4, "k": "2max"}})
    return header("onestep", NetworkSpec.of(network.config, binarization),
                  {"type": "resshift", "config": to_dict(ResShiftSchedule())}, 4, "tiny-bimacosr")


def build_from_header(spec: dict) -> nn.Module:
    """The (untrained) network a header describes, bound to its process's T."""
    process = spec["process"]["config"]
    steps = process.get("num_train_timesteps", process.get("num_timesteps"))
    return bind_timesteps(NetworkSpec.parse(spec["network"]).build(), steps)


def trained_file(tmp_path: Path, spec: dict, name: str) -> Path:
    """A model file as training writes it, with non-trivial weights everywhere."""
    torch.manual_seed(1)
    model = build_from_header(spec)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if not param_name.endswith("weight"):
                param.add_(0.05 * torch.randn_like(param))
    path = tmp_path / f"{name}.safetensors"
    save_model_file(path, model, spec)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("deploy")
    out = {"sr3": trained_file(folder, tiny_sr3_spec(), "sr3"), "onestep": trained_file(folder, tiny_onestep_spec(), "onestep")}
    for kind in ("sr3", "onestep"):
        out[f"{kind}_packed"] = folder / f"{kind}.packed.safetensors"
        export_packed(out[kind], out[f"{kind}_packed"])
    return out


@pytest.mark.parametrize("kind", ["sr3", "onestep"])
def test_packed_pipeline_reproduces_the_simulated_one(files: dict[str, Path], kind: str) -> None:
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    simulated = binsr.load(str(files[kind]), steps=3, seed=0)
    packed = binsr.load(str(files[f"{kind}_packed"]), steps=3, seed=0)
    assert any(isinstance(m, (PackedBinaryConv2d, PackedBinaryLinear)) for m in packed.model.modules())
    assert not any(isinstance(m, (BinaryConv2d, BinaryLinear)) for m in packed.model.modules())
    with torch.no_grad():
        expected, got = simulated.upscale(lr), packed.upscale(lr)
    assert torch.allclose(got, expected, atol=1e-4), float((got - expected).abs().max())


def test_packed_file_holds_bits_and_config_and_is_much_smaller(files: dict[str, Path], tmp_path: Path) -> None:
    with safe_open(str(files["onestep_packed"]), framework="pt") as handle:
        keys = set(handle.keys())
        metadata = json.loads(handle.metadata()["binsr"])
        bit_keys = [k for k in keys if k.endswith("weight_bits")]
        assert bit_keys and all(handle.get_slice(k).get_dtype() == "U64" for k in bit_keys)
    assert metadata["packed"]["format"] == 1 and metadata["network"]["binarize"]["method"] == "bimacosr"
    assert not any(k.replace("weight_bits", "weight") in keys for k in bit_keys)  # no latent FP weights
    simulated, packed = load_file(str(files["onestep"])), load_file(str(files["onestep_packed"]))
    for key in bit_keys:  # one bit per weight, each (output, tap) row padded to whole 64-bit words
        latent = simulated[key.replace("weight_bits", "weight")]
        rows, channels = latent.numel() // latent.shape[1], latent.shape[1]
        assert packed[key].numel() == rows * -(-channels // 64)
    half = tmp_path / "half.safetensors"
    report = export_packed(files["sr3"], half, half=True)
    stored = load_file(str(half))
    assert all(t.dtype in (torch.float16, torch.uint64, torch.int64, torch.int32) for t in stored.values())
    assert report.packed_bytes < files["sr3_packed"].stat().st_size < report.source_bytes


def test_broken_packed_files_are_refused(files: dict[str, Path], tmp_path: Path) -> None:
    source = files["sr3_packed"]
    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(source))
    key = next(k for k in tensors if k.endswith("weight_bits"))

    def write(name: str, changed: dict) -> str:
        path = tmp_path / name
        save_file({**tensors, **changed}, str(path), metadata=metadata)
        return str(path)

    words = tensors[key].view(torch.int64).clone()
    words.view(-1, words.shape[-1])[0, -1] |= 1 << 62  # one bit past this layer's last input channel
    with pytest.raises(BinsrError, match=f"layer '{key.removesuffix('.weight_bits')}': 1 weight bits are set past"):
        pipelines.load_network(write("stray.safetensors", {key: words.view(torch.uint64)}))
    with pytest.raises(BinsrError, match="does not fit its described model: .*weight_bits is"):
        pipelines.load_network(write("shape.safetensors", {key: tensors[key][:-1].clone()}))
    with pytest.raises(BinsrError, match="weight_bits is I64, the model needs U64"):
        pipelines.load_network(write("dtype.safetensors", {key: tensors[key].view(torch.int64).clone()}))
    with pytest.raises(BinsrError, match="already a packed model file"):
        export_packed(source, tmp_path / "again.safetensors")
    fp = tiny_sr3_spec(binary=False)
    with pytest.raises(BinsrError, match="no binary layers to pack"):
        export_packed(trained_file(tmp_path, fp, "fp"), tmp_path / "fp.packed.safetensors")


def test_export_and_upscale_commands(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    target = tmp_path / "cli.packed.safetensors"
    assert main(["export", str(files["onestep"]), "-o", str(target)]) == 0
    assert "packed" in capsys.readouterr().out and target.is_file()
    image = tmp_path / "in.png"
    Image.fromarray((torch.rand(16, 16, 3) * 255).byte().numpy()).save(image)
    assert main(["upscale", str(image), "--model", str(target), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    assert Image.open(tmp_path / "out" / "in_x4.png").size == (64, 64)
    assert main(["export", str(target), "-o", str(tmp_path / "x.safetensors")]) == 1
    assert "already a packed model file" in capsys.readouterr().err


def test_bench_command_measures_and_writes_the_documented_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--model", "bidiffsr-unet-small", "--repeats", "1", "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert {"shape", "fp32_ms", "binary_ms", "speedup"} <= set(result["layers"][0])
    for row in result["layers"]:
        assert row["speedup"] == pytest.approx(row["fp32_ms"] / row["binary_ms"], rel=1e-2)
    assert {"fp_ms", "simulated_ms", "packed_ms"} <= set(result["model"])
    size = result["size"]
    assert size["ratio"] == pytest.approx(size["fp_bytes"] / size["packed_bytes"], rel=1e-3)
    assert size["binary_ratio"] > 25  # 64-channel multiples: 32 bits -> 1 bit plus one scale per channel
    assert main(["bench", "--model", "nonsense", "--quick", "--quiet"]) == 1


def test_export_steps_become_the_packed_files_default_sampling(files: dict[str, Path], tmp_path: Path) -> None:
    """'binsr export --steps N': an SR3-style packed file samples with N DDIM steps unless told otherwise."""
    target = tmp_path / "steps.safetensors"
    assert main(["export", str(files["sr3"]), "-o", str(target), "--steps", "3"]) == 0
    assert read_model_spec(target).sampling_steps == 3
    assert binsr.load(str(target)).steps == 3 and binsr.load(str(target), steps=7).steps == 7
    assert binsr.load(str(files["sr3_packed"])).steps == 50  # exported without --steps: the usual default
    lr = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(binsr.load(str(target)).upscale(lr), binsr.load(str(target), steps=3).upscale(lr))


def test_auto_tile_tiles_only_outputs_larger_than_its_square(files: dict[str, Path]) -> None:
    """binsr upscale's bounded memory: auto_tile=N behaves as tile=N above N² output pixels, untiled below."""
    path = str(files["onestep_packed"])
    auto = binsr.load(path, auto_tile=32, tile_overlap=8)
    with torch.no_grad():
        for side in (4, 16):  # x4: 16x16 output (untiled) and 64x64 (tiled)
            lr = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
            fixed = binsr.load(path, tile=32, tile_overlap=8) if side == 16 else binsr.load(path)
            torch.testing.assert_close(auto.upscale(lr), fixed.upscale(lr), rtol=0, atol=0)
    whole = binsr.load(path).upscale(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(16)))
    assert not torch.equal(whole, binsr.load(path, tile=32, tile_overlap=8).upscale(
        torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(16))))  # tiling does change the blend
