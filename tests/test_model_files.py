"""Model files: one description, safe by construction (nothing named in a file runs, nothing is allocated
before the file's tensors fit its description), round trips of every network type × method, the shipped
files and cards, timestep groups on both UNets, and packed files built without SVD or a float model."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import binsr
from binsr.binary import METHODS
from binsr.binary.layers import TimestepGrouped
from binsr.config import to_dict
from binsr.deploy import export_packed, pack_model, packed_layers
from binsr.diffusion import ResShiftSchedule, SR3Schedule
from binsr.errors import BinsrError
from binsr.models import NETWORKS, NetworkSpec, ResShiftUNetConfig, UNetConfig, apply_binarization, bind_timesteps
from binsr.models.files import save_model_file
from binsr.pipelines import load_network, read_model_spec, shipped_models

from conftest import REPO

SHIPPED = shipped_models()
SMALL = {
    "sr_unet": UNetConfig(inner_channel=16, channel_mults=(1, 2), res_blocks=1, norm_groups=4, image_size=16,
                          fp_res=(16,)),
    "resshift_unet": ResShiftUNetConfig(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, norm_groups=8,
                                        image_size=16, attn_res=(8,), swin_embed_dim=32, head_channels=16, window_size=4),
}
PROCESSES = {"sr_unet": {"type": "sr3", "config": to_dict(SR3Schedule())},
             "resshift_unet": {"type": "resshift", "config": to_dict(ResShiftSchedule())}}
KINDS = {"sr_unet": "sr3", "resshift_unet": "onestep"}


def header_of(network: NetworkSpec, **changes: object) -> dict:
    kind = KINDS[network.type]
    return {"format": 2, "kind": kind, "scale": 2, "network": network.to_dict(), "process": PROCESSES[network.type],
            "autoencoder": None, "packed": None, "sampling_steps": None, "name": "t", "trained_steps": None,
            "recipe": None, "teacher": None, **changes}


def stored(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, json.loads(handle.metadata()["binsr"])


def write(path: Path, tensors: dict[str, torch.Tensor], header: dict) -> Path:
    save_file(tensors, str(path), metadata={"binsr": json.dumps(header)})
    return path


def one_line_error(call: object) -> str:
    with pytest.raises(BinsrError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# --- security: nothing a file names is imported or called ----------------------------------------------


EVIL_MODULE = """
from pathlib import Path
Path("imported.marker").write_text("module code ran")
def make(*args, **kwargs):
    Path("called.marker").write_text("factory ran")
    return 0
"""


@pytest.fixture
def crafted(tmp_path: Path) -> dict[str, Path]:
    """Files whose headers name code (format 1 and 2), beside a module that would leave marker files."""
    (tmp_path / "evilmod.py").write_text(EVIL_MODULE)
    from PIL import Image

    Image.new("RGB", (8, 8), (120, 80, 40)).save(tmp_path / "in.png")
    tensors, header = stored(SHIPPED["bimacosr-x4"].path)
    v1 = json.loads((REPO / "tests" / "data" / "format1" / "bimacosr-x4.json").read_text())
    files = {}
    for target in ("os:abort", "os:getpid", "evilmod:make"):
        stem = target.replace(":", "_")
        files[f"v1-{stem}"] = write(tmp_path / f"v1-{stem}.safetensors", tensors, {**v1, "autoencoder": target})
        files[f"ae-{stem}"] = write(tmp_path / f"ae-{stem}.safetensors", tensors,
                                    {**header, "autoencoder": {"type": target, "config": {}}})
        files[f"net-{stem}"] = write(tmp_path / f"net-{stem}.safetensors", tensors,
                                     {**header, "network": {**header["network"], "type": target}})
        files[f"method-{stem}"] = write(tmp_path / f"method-{stem}.safetensors", tensors, {**header, "network": {
            **header["network"], "binarize": {**header["network"]["binarize"], "method": target}}})
        files[f"process-{stem}"] = write(tmp_path / f"process-{stem}.safetensors", tensors,
                                         {**header, "process": {**header["process"], "type": target}})
    return files


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "BINSR_DEBUG"}
    return subprocess.run([sys.executable, "-m", "binsr", *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


IN_A_FRESH_PROCESS = ("v1-evilmod_make", "ae-evilmod_make", "net-os_abort", "v1-os_getpid")


def test_headers_naming_code_never_import_or_call_it(crafted: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """python -m binsr puts the working directory first on sys.path: a module there must still never run.
    A few files go through a real ``python -m binsr``; the rest through the same CLI in this process,
    with the folder on sys.path as ``-m`` puts it."""
    from binsr.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, path in crafted.items():
        args = ["upscale", "in.png", "--model", path.name, "-o", "out", "--quiet"]
        if name in IN_A_FRESH_PROCESS:
            result = run_cli(args, tmp_path)
            code, err = result.returncode, result.stderr
        else:
            code, err = main(args), capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 1, (name, code, err)  # not -6 (abort)
        assert len(lines) == 1 and lines[0].startswith("binsr: error: ") and path.name in lines[0], (name, lines)
        assert "returned" not in lines[0]
        assert not (tmp_path / "imported.marker").exists() and not (tmp_path / "called.marker").exists(), name
        assert not (tmp_path / "out").exists()
        assert "evilmod" not in sys.modules
    main(["upscale", "in.png", "--model", crafted["net-evilmod_make"].name, "-o", "out"])
    assert "unknown network type 'evilmod:make' (known: resshift_unet, sr_unet)" in capsys.readouterr().err


# The child's own peak: VmHWM of its address space. (ru_maxrss is not: a child started with vfork, as Python's
# subprocess does, inherits its parent's peak at exec, so a large pytest process would show as the child's.)
PEAK_RSS = """
import sys
from binsr.cli import main
code = main(sys.argv[1:])
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(status["VmHWM"].split()[0]))
sys.exit(code)
"""


def test_a_tiny_file_asking_for_huge_memory_is_refused_before_allocation(tmp_path: Path) -> None:
    tensors = {"head.weight": torch.zeros(4)}
    big = NetworkSpec.of(UNetConfig(inner_channel=4096, channel_mults=(1, 2, 4, 8, 16), norm_groups=16), None)
    path = write(tmp_path / "huge.safetensors", tensors, header_of(big, scale=4))
    assert path.stat().st_size < 2048
    over = header_of(NetworkSpec.of(UNetConfig(), None))
    over["network"]["config"]["inner_channel"] = 100_000
    write(tmp_path / "over.safetensors", tensors, over)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "lr.png")
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, "upscale", "lr.png", "--model", "huge.safetensors",
                             "-o", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "huge.safetensors does not fit its described model: head.weight is [4], the model needs [4096, 6, 3, 3]" \
        in result.stderr
    peak_kib = int(result.stdout.split()[-1])
    assert peak_kib < 1024 * 1024, f"peak RSS {peak_kib} KiB"  # the described network would need about 100 GB
    from binsr.cli import main

    assert main(["upscale", str(tmp_path / "lr.png"), "--model", str(tmp_path / "over.safetensors"), "-o",
                 str(tmp_path / "out")]) == 1
    message = one_line_error(lambda: read_model_spec(tmp_path / "over.safetensors"))
    assert "over.safetensors" in message and "inner_channel = 100000 is outside [1, 4096]" in message


def _drop(data: dict, path: tuple[str, ...]) -> dict:
    data = json.loads(json.dumps(data))
    node = data
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return data


def _add(data: dict, path: tuple[str, ...]) -> dict:
    data = json.loads(json.dumps(data))
    node = data
    for key in path:
        node = node[key]
    node["surprise"] = 1
    return data


SHIPPED_HEADER = stored(SHIPPED["bimacosr-x4"].path)[1]
NESTED = [("network",), ("network", "config"), ("network", "binarize"), ("network", "binarize", "options"),
          ("process",), ("process", "config"), ("autoencoder",), ("autoencoder", "config")]


def _get(data: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        data = data[key]
    return data


MISSING = [(key,) for key in SHIPPED_HEADER] + [(*place, key) for place in NESTED for key in _get(SHIPPED_HEADER, place)]


@pytest.mark.parametrize("path", MISSING, ids=".".join)
def test_every_missing_key_is_one_line_naming_the_file(path: tuple[str, ...], tmp_path: Path) -> None:
    tensors = {"x": torch.zeros(1)}
    file = write(tmp_path / "m.safetensors", tensors, _drop(SHIPPED_HEADER, path))
    message = one_line_error(lambda: read_model_spec(file))
    assert message.startswith(str(file)) and path[-1] in message


@pytest.mark.parametrize("path", [(), *NESTED], ids=lambda p: ".".join(p) or "header")
def test_every_extra_key_is_one_line_naming_the_file(path: tuple[str, ...], tmp_path: Path) -> None:
    file = write(tmp_path / "m.safetensors", {"x": torch.zeros(1)}, _add(SHIPPED_HEADER, path))
    message = one_line_error(lambda: read_model_spec(file))
    assert message.startswith(str(file)) and "surprise" in message


@pytest.mark.parametrize("change,words", [
    ({"scale": 0}, "'scale' must be an integer from 1 to 16"),
    ({"kind": "sr3"}, "a sr3 model needs process 'sr3'"),
    ({"sampling_steps": -1}, "'sampling_steps' must be int from 1"),
    ({"packed": {"format": 9, "floats": "float16", "bits": ""}}, "'packed' must be format 1"),
])
def test_bad_values_are_one_line_naming_the_file(change: dict, words: str, tmp_path: Path) -> None:
    file = write(tmp_path / "m.safetensors", {"x": torch.zeros(1)}, {**SHIPPED_HEADER, **change})
    message = one_line_error(lambda: read_model_spec(file))
    assert message.startswith(str(file)) and words in message


def test_a_tensor_that_does_not_fit_is_named_before_loading(tmp_path: Path) -> None:
    tensors, header = stored(SHIPPED["bidiffsr-x4"].path)
    key = "head.weight"
    wrong = write(tmp_path / "shape.safetensors", {**tensors, key: tensors[key][:-1].clone()}, header)
    assert f"{key} is [31, 6, 3, 3], the model needs [32, 6, 3, 3]" in one_line_error(lambda: load_network(wrong))
    missing = write(tmp_path / "missing.safetensors", {k: v for k, v in tensors.items() if k != key}, header)
    assert f"missing tensor {key}" in one_line_error(lambda: load_network(missing))
    extra = write(tmp_path / "extra.safetensors", {**tensors, "spare": torch.zeros(1)}, header)
    assert "unexpected tensor spare" in one_line_error(lambda: load_network(extra))


# --- round trips ---------------------------------------------------------------------------------------------


def randomised(network: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in network.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return network


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("network_type", sorted(NETWORKS))
def test_every_network_type_and_method_round_trips(network_type: str, method: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = NetworkSpec.of(SMALL[network_type]).build()
    binarization = apply_binarization(network, {"method": method})
    assert set(binarization.options) == set(METHODS[method].options)  # every option stored, defaults included
    header = header_of(NetworkSpec.of(SMALL[network_type], binarization))
    process_steps = 2000 if network_type == "sr_unet" else 15
    bind_timesteps(randomised(network, 1), process_steps).eval()
    path = tmp_path / "model.safetensors"
    save_model_file(path, network, header)
    spec = read_model_spec(path)
    assert spec.network == NetworkSpec.parse(header["network"])
    loaded = load_network(path, spec).eval()
    x = torch.randn(2, 6, 16, 16, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([3, process_steps - 1])
    with torch.no_grad():
        expected = network(x, t)
        assert torch.equal(loaded(x, t), expected)
    if method == "horq":  # order-2 inputs have no 1-bit packed form: export says so
        assert "has no 1-bit packed form" in one_line_error(lambda: export_packed(path, tmp_path / "p.safetensors"))
        return
    export_packed(path, tmp_path / "packed.safetensors")
    packed = load_network(tmp_path / "packed.safetensors")
    assert not any(getattr(type(m), "packed_form", None) for m in packed.modules())  # no simulated layer left
    in_memory = copy.deepcopy(network)
    pack_model(in_memory)
    with torch.no_grad():  # the file rebuilds exactly the packed model it was exported from
        assert torch.equal(packed(x, t), in_memory(x, t))


FORMAT1 = sorted(path.stem for path in (REPO / "tests" / "data" / "format1").glob("*.json"))  # shipped before format 2


@pytest.mark.parametrize("name", FORMAT1)
def test_format1_files_load_exactly_like_their_format2_reexport(name: str, tmp_path: Path) -> None:
    """The files shipped before this format: the same tensors under the old header give the same model."""
    tensors, _ = stored(SHIPPED[name].path)
    v1 = json.loads((REPO / "tests" / "data" / "format1" / f"{name}.json").read_text())
    old = write(tmp_path / f"{name}.safetensors", tensors, v1)
    assert read_model_spec(old) == read_model_spec(SHIPPED[name].path)
    lr = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(binsr.load(str(old)).upscale(lr), binsr.load(name).upscale(lr))


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_cards_rebuild_the_shipped_networks(name: str) -> None:
    card, spec = SHIPPED[name].card, read_model_spec(SHIPPED[name].path)
    described = NetworkSpec.parse(card["architecture"]["network"])
    assert described == spec.network and card["architecture"]["process"] == spec.process.to_dict()
    rebuilt = described.build("meta")
    binary = [n for n, m in rebuilt.named_modules() if getattr(type(m), "packed_form", None)]
    packed = list(packed_layers(load_network(SHIPPED[name].path)))
    assert binary == packed and len(binary) >= 20


# --- timestep groups on both UNets -----------------------------------------------------------------------


@pytest.mark.parametrize("network_type,method,groups,steps", [("sr_unet", "bidiffsr", 5, 2000),
                                                               ("resshift_unet", "bimacosr", 3, 15),
                                                               ("resshift_unet", "bidiffsr", 5, 15)])
def test_timestep_groups_follow_each_samples_t(network_type: str, method: str, groups: int, steps: int) -> None:
    torch.manual_seed(0)
    network = NetworkSpec.of(SMALL[network_type]).build()
    apply_binarization(network, {"method": method, "options": {"timestep_groups": groups}})
    grouped = [m for m in network.modules() if isinstance(m, TimestepGrouped)]
    assert grouped and all(m.num_groups == groups for m in grouped)
    with torch.no_grad():
        for module in grouped:
            for param in module.parameters():
                param.normal_()
    x = torch.randn(2, 6, 16, 16)
    with pytest.raises(BinsrError, match="no process T"):  # T never defaults silently
        network(x, torch.tensor([0, 1]))
    bind_timesteps(network.eval(), steps)
    t = torch.tensor([steps - 1, steps // 3])
    seen = []  # each part's groups while the network runs (taken from the call's context, not stored)
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append(m.group.tolist())) for m in grouped]
    with torch.no_grad():
        both = network(x, t)
        assert seen and all(g == [groups - 1, (steps // 3) * groups // steps] for g in seen)
        assert all(m.group == 0 for m in grouped)  # after the call: nothing left on the modules
        for hook in hooks:
            hook.remove()
        first, second = network(x[:1], t[:1]), network(x[1:], t[1:])
        at_zero = network(x[:1], torch.tensor([0]))
    torch.testing.assert_close(both, torch.cat([first, second]), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(first, at_zero, atol=1e-3)  # the last group is not group 0


# --- packed files are built directly ------------------------------------------------------------------------


def test_loading_a_packed_file_runs_no_svd_and_draws_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("called while loading a packed file")

    for name in ("svd", "svdvals"):
        monkeypatch.setattr(torch.linalg, name, forbidden)
    monkeypatch.setattr(torch, "svd", forbidden)
    state = torch.random.get_rng_state()
    upscaler = binsr.load("bimacosr-x4")
    assert torch.equal(torch.random.get_rng_state(), state)  # built on the meta device: no value was drawn
    names = {type(m).__name__ for m in upscaler.model.modules()}
    assert "PackedBinaryConv2d" in names and not names & {"BinaryConv2d", "BinaryLinear"}
    assert all(p.device.type == "cpu" for p in upscaler.model.state_dict().values())
    with torch.no_grad():
        assert upscaler.upscale(torch.rand(1, 3, 20, 20)).shape == (1, 3, 80, 80)


def test_a_new_architecture_is_one_registration(tmp_path: Path) -> None:
    """Register a network type: files may name it; before that they could not."""
    from dataclasses import dataclass

    from binsr.models import Denoiser, register_network

    @dataclass
    class TinyConfig:
        in_channels: int = 6
        out_channels: int = 3
        multiple: int = 1

    class Tiny(Denoiser):
        def __init__(self, config: TinyConfig) -> None:
            super().__init__()
            self.config, self.conv = config, nn.Conv2d(config.in_channels, config.out_channels, 3, padding=1)

        def full_precision_patterns(self) -> list[str]:
            return []

        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with self.timesteps(x, t):
                return self.conv(x)

    header = header_of(NetworkSpec("sr_unet", SMALL["sr_unet"]))
    header["network"] = {"type": "tiny_test_net", "config": {"in_channels": 6, "out_channels": 3, "multiple": 1},
                         "binarize": None}
    network = Tiny(TinyConfig())
    path = tmp_path / "tiny.safetensors"
    save_model_file(path, network, header)
    assert "unknown network type 'tiny_test_net'" in one_line_error(lambda: read_model_spec(path))
    register_network("tiny_test_net", TinyConfig)(Tiny)
    x = torch.randn(1, 6, 4, 4)
    with torch.no_grad():
        assert torch.equal(load_network(path)(x, torch.zeros(1)), network(x, torch.zeros(1)))


def test_plugins_register_through_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package's entry point is loaded once, the first time a name is missing; it registers."""
    from binsr.utils import registry as module

    things = module.Registry("thing", "binsr.things")
    loaded = []

    class Point:
        def load(self) -> None:
            loaded.append(True)
            things.register("plugged", "from a plugin")

    monkeypatch.setattr(module, "entry_points", lambda group: [Point()] if group == "binsr.things" else [])
    assert things.get("plugged") == "from a plugin" and loaded == [True]
    with pytest.raises(BinsrError, match=r"unknown thing 'nope' \(known: plugged\)"):
        things.get("nope")
    with pytest.raises(BinsrError, match="unknown thing 3"):
        things.get(3)
    assert loaded == [True]
