"""The binsr command line: eval output and JSON, help, and one-line errors with non-zero exits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from binsr.cli import main
from binsr.metrics.lpips import alexnet_features
from conftest import smooth_image


@pytest.fixture
def bench(tmp_path, rng):
    folder = tmp_path / "Bench"
    folder.mkdir()
    for name, (h, w) in {"one.png": (48, 52), "two.png": (37, 40)}.items():
        Image.fromarray(smooth_image(rng, h, w)).save(folder / name)
    return folder


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_prints_table_and_writes_json(bench, tmp_path, capsys):
    out_json = tmp_path / "res" / "bench.json"
    code, out, err = run(["eval", "--model", "bicubic", "--data", bench, "--scale", 2, "--json", out_json, "--no-lpips", "--quiet"], capsys)
    assert code == 0, err
    result = json.loads(out_json.read_text())
    assert result["model"] == "bicubic" and result["dataset"] == "Bench" and result["scale"] == 2
    assert [r["name"] for r in result["per_image"]] == ["one.png", "two.png"]
    assert set(result["mean"]) == {"psnr", "ssim"}
    assert result["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in result["per_image"]]))
    assert 20 < result["mean"]["psnr"] < 60 and 0 < result["mean"]["ssim"] < 1
    assert "one.png" in out and "mean" in out and f"{result['mean']['psnr']:.4f}" in out


def test_eval_with_lpips_weights_adds_the_column(bench, tmp_path, capsys):
    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in alexnet_features().state_dict().items()}, tmp_path / "alex.pth")
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))},
               tmp_path / "lin.pth")
    out_json = tmp_path / "r.json"
    code, out, err = run(["eval", "--data", bench, "--scale", 2, "--json", out_json, "--quiet",
                          "--lpips-alexnet", tmp_path / "alex.pth", "--lpips-lin", tmp_path / "lin.pth"], capsys)
    assert code == 0, err
    result = json.loads(out_json.read_text())
    assert result["mean"]["lpips"] > 0 and all("lpips" in r for r in result["per_image"])
    assert "LPIPS" in out


def test_lpips_unavailable_is_one_line_and_eval_goes_on(bench, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("BINSR_LPIPS_ALEXNET", raising=False)
    code, out, err = run(["eval", "--data", bench, "--scale", 2, "--quiet"], capsys)
    assert code == 0
    assert err.strip().count("\n") == 0 and err.startswith("binsr: LPIPS unavailable:")
    assert "LPIPS" not in out.splitlines()[1]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["eval", "--model", "nope", "--data", "{bench}", "--scale", "2"],
         "binsr: error: unknown model 'nope' (available: bicubic, bidiffsr-x2, bidiffsr-x4, bimacosr-real-x4, bimacosr-x4, "
         "realesr-animevideov3-x2, realesr-animevideov3-x3, realesr-animevideov3-x4, realesrgan-x4plus, "
         "realesrgan-x4plus-anime, or a .safetensors model file)"),
        (["eval", "--data", "{tmp}/missing", "--scale", "2"], "binsr: error: dataset folder not found"),
        (["eval", "--data", "{bench}", "--scale", "2", "--device", "cuda:0"], "binsr: error: device"),
        (["eval", "--data", "{bench}", "--scale", "2", "--lr-data", "{tmp}/nolr"], "binsr: error: LR folder not found"),
    ],
)
def test_runtime_errors_are_one_line_exit_1(argv, message, bench, tmp_path, capsys):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA present")
    argv = [a.format(bench=bench, tmp=tmp_path) for a in argv]
    code, out, err = run(argv + ["--quiet", "--no-lpips"], capsys)
    assert code == 1
    assert err.startswith(message) and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["eval", "--data", "x", "--scale", "1"], ["eval", "--data", "x", "--scale", "two"],
                                  ["eval", "--scale", "2"], ["frobnicate"]])
def test_usage_errors_are_one_line_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "--help" in err


def test_broken_image_in_dataset_fails_cleanly_without_json(bench, tmp_path, capsys):
    (bench / "zz_broken.png").write_bytes((bench / "one.png").read_bytes()[:200])
    out_json = tmp_path / "r.json"
    code, out, err = run(["eval", "--data", bench, "--scale", 2, "--json", out_json, "--quiet", "--no-lpips"], capsys)
    assert code == 1 and "zz_broken.png" in err and "truncated or corrupt" in err and err.count("\n") == 1
    assert not out_json.exists()


def test_warnings_are_one_line(bench, capsys):
    rgba = np.concatenate([smooth_image(np.random.default_rng(0), 20, 20), np.full((20, 20, 1), 9, np.uint8)], -1)
    Image.fromarray(rgba, mode="RGBA").save(bench / "alpha.png")
    code, out, err = run(["eval", "--data", bench, "--scale", 2, "--quiet", "--no-lpips"], capsys)
    assert code == 0
    assert "binsr: warning: " in err and "alpha.png: alpha channel dropped" in err


def test_console_script_help_and_version():
    exe = shutil.which("binsr")
    assert exe, "the binsr console script is not installed"
    top = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "eval" in top and "binsr COMMAND --help" in top
    sub = subprocess.run([exe, "eval", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--model", "--data", "--scale", "--json", "--lpips-alexnet", "$BINSR_DATA"):
        assert option in sub
    version = subprocess.run([sys.executable, "-m", "binsr", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("binsr ")
    bare = subprocess.run([exe], capture_output=True, text=True)
    assert bare.returncode == 2 and "usage" in bare.stdout


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    """``binsr ablate --list | head -1``: the reader closes the pipe before binsr writes; binsr stops with the
    shell's SIGPIPE status (128 + 13) and says nothing on stderr (it said 'error: BrokenPipeError' before)."""
    proc = subprocess.Popen([sys.executable, "-m", "binsr", "ablate", "--list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # gone before binsr has imported torch, so its first print meets a closed pipe
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err.decode()) == (141, "")


def test_complexity_command_counts_a_binarized_model(tmp_path, capsys, monkeypatch):
    (tmp_path / "arch_for_test.py").write_text(
        "from torch import nn\n"
        "def net():\n"
        "    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1),\n"
        "                         nn.Conv2d(16, 3, 3, padding=1))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out_json = tmp_path / "c.json"
    code, out, err = run(["complexity", "--arch", "arch_for_test:net", "--size", "32x16", "--method", "xnor",
                          "--keep-fp", "0", "--keep-fp", "2", "--json", out_json], capsys)
    assert code == 0, err
    result = json.loads(out_json.read_text())
    macs = 32 * 16 * 16 * 16 * 9
    assert result["size"] == [32, 16] and result["method"] == "xnor"
    assert result["params_binary"] == 16 * 16 * 9 and result["bops"] == macs
    assert result["flops"] == 32 * 16 * (16 * 27 + 3 * 144)
    assert result["ops"] == pytest.approx(result["flops"] + macs / 64)
    assert result["params"] == pytest.approx(result["params_fp"] + 16 * 16 * 9 / 32)
    assert "BinaryConv2d" in out and "not counted" not in out
    code, out, err = run(["complexity", "--arch", "arch_for_test:net", "--size", "32", "--method", "bimacosr",
                          "--option", "rank=99"], capsys)
    assert code == 1 and err.startswith("binsr: error: rank 99 is larger than min(C_in, C_out) = 3 of layer '0'")


@pytest.mark.parametrize("argv,message", [
    (["complexity", "--arch", "nope"], "unknown network preset 'nope' (known: bidiffsr-unet"),
    (["complexity", "--arch", "no_such_module:f"], "cannot import architecture"),
    (["complexity", "--arch", "torch.nn:Identity", "--size", "0"], "--size must be H or HxW"),
    (["complexity", "--arch", "torch.nn:Identity", "--option", "rank=2"], "--option and --keep-fp need --method"),
])
def test_complexity_errors(argv, message, capsys):
    code, out, err = run(argv, capsys)
    assert code == 1 and message in err and err.count("\n") == 1
