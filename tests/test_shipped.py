"""Shipped models: the package's weights folder, `binsr models`, and `binsr upscale IMAGE` with no flags
(on a stand-in folder holding a tiny packed one-step model, so this does not depend on the real weights)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import binsr
from binsr.cli import main
from binsr.deploy import export_packed
from binsr.image import read_image
from binsr.model_card import earlier_stages, training_hours
from binsr.pipelines import shipped

sys.path.insert(0, str(Path(__file__).parent))
from test_deploy import tiny_onestep_spec, trained_file

CARD = {"name": "bimacosr-x4", "scale": 4, "method": "bimacosr", "bits": 1, "sampling": "1 network call",
        "training": {"steps": 3, "hardware": "test", "data": {"degradation": "realesrgan"}},
        "metrics": {"Set5": {"psnr": 10.0, "ssim": 0.1}, "RealSet65": {"niqe": 5.4321}}}


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    export_packed(trained_file(tmp_path, tiny_onestep_spec(), "onestep"), folder / "bimacosr-x4.safetensors", half=True)
    (folder / "bimacosr-x4.json").write_text(json.dumps(CARD))
    (folder / "orphan.safetensors").write_bytes(b"no card: not listed")
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", folder)
    return folder


def test_models_lists_cards_and_load_takes_names(weights: Path, capsys: pytest.CaptureFixture) -> None:
    assert list(shipped.shipped_models()) == ["bimacosr-x4"]
    assert "bimacosr-x4" in binsr.pipelines.available()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "bimacosr-x4 (default)" in out and "10.00 / 0.1000" in out and "1 network call" in out
    assert "real photos (noise, blur, JPEG)" in out  # which LR images it is for, from its training data
    assert "RealSet65 NIQE" in out and "5.43" in out  # LR photos without HR: NIQE alone
    assert main(["models", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert cards["bimacosr-x4"]["file_bytes"] == (weights / "bimacosr-x4.safetensors").stat().st_size
    upscaler = binsr.load("bimacosr-x4")
    assert upscaler.scale == 4 and upscaler.upscale(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


def test_upscale_with_no_flags_uses_the_default_and_writes_a_comparison(weights: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture) -> None:
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)).save(image)
    monkeypatch.chdir(tmp_path)
    assert main(["upscale", str(image), "--compare", "--quiet"]) == 0
    assert "model: bimacosr-x4" in capsys.readouterr().out  # named as shipped, not by its training recipe
    result = read_image(tmp_path / "photo_x4.png")
    assert result.shape == (3, 48, 80)
    compare = read_image(tmp_path / "photo_x4_compare.png")
    assert compare.shape[-1] == 2 * 80 + 8 and compare.shape[-2] > 48
    torch.testing.assert_close(compare[:, -48:, -80:], result, atol=1 / 255, rtol=0)  # the right panel is the result
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "none")
    assert main(["upscale", str(image)]) == 1
    assert "ships no default model" in capsys.readouterr().err


def test_upscale_sample_compares_with_the_original(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--sample: matplotlib's photo, made LR by bicubic, upscaled and compared with the original."""
    from binsr.data import sample_image_path
    from binsr.metrics.psnr_ssim import psnr

    assert main(["upscale", "--sample", "--model", "bicubic", "--scale", "4", "-o", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    original = read_image(sample_image_path())
    result = read_image(tmp_path / "grace_hopper_x4.png")
    assert result.shape == original.shape == (3, 600, 512)
    reported = float(out.split("bicubic ")[1].split(" dB")[0])
    assert reported == pytest.approx(float(psnr(result, original, crop_border=4)), abs=0.01)
    assert 20 < reported < 35
    compare = read_image(tmp_path / "grace_hopper_x4_compare.png")
    assert compare.shape[-1] == 3 * 512 + 2 * 8
    torch.testing.assert_close(compare[:, -600:, -512:], original, atol=1 / 255, rtol=0)  # right: the original
    assert main(["upscale", "-o", str(tmp_path)]) == 1
    assert "or --sample" in capsys.readouterr().err


def test_training_hours_add_up_resumed_segments(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("step,loss,lr,seconds,val_psnr\n1,1,1,100,\n2,1,1,3600,\n2,,,,20\n3,1,1,50,\n4,1,1,1800,\n")
    assert training_hours(log) == pytest.approx((3600 + 1800) / 3600)  # killed at 3600 s, resumed for 1800 s
    assert training_hours(tmp_path / "missing.csv") is None


def test_a_cards_made_from_names_the_teacher_and_initialisation_with_their_hours(tmp_path: Path) -> None:
    stage = tmp_path / "teacher-run"
    stage.mkdir()
    recipe = {"name": "teacher-recipe", "task": "resshift", "data": {"degradation": "realesrgan"}}
    teacher = trained_file(stage, {**tiny_onestep_spec(), "recipe": recipe, "trained_steps": 7}, "model")
    (stage / "log.csv").write_text("step,loss,lr,seconds,val_psnr\n7,1,1,5400,\n")
    stages = earlier_stages({"teacher": str(teacher), "init": str(tmp_path / "gone.safetensors")})
    assert stages == [{"role": "teacher", "recipe": "teacher-recipe", "task": "resshift", "degradation": "realesrgan",
                       "steps": 7, "hours": 1.5}]  # a file no longer there is left out


def test_export_writes_a_model_card_from_eval_results(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = trained_file(tmp_path, tiny_onestep_spec(), "onestep")
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / "a.png")
    result = tmp_path / "eval.json"
    assert main(["eval", "--model", str(model), "--data", str(images), "--scale", "4", "--json", str(result),
                 "--no-lpips", "--quiet"]) == 0
    (tmp_path / "log.csv").write_text("step,loss,lr,seconds,val_psnr\n1,1,1,7200,\n")
    out = tmp_path / "weights" / "bimacosr-x4.safetensors"
    assert main(["export", str(model), "-o", str(out), "--fp16", "--card", str(result), "--hardware", "2 test CPUs"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    mean = json.loads(result.read_text())["mean"]
    assert card["name"] == "bimacosr-x4" and card["scale"] == 4 and card["bits"] == 1
    assert card["method"] == "bimacosr" and card["sampling"] == "1 network call"
    assert card["metrics"] == {"images": mean} and card["file_bytes"] == out.stat().st_size
    assert card["training"]["hours"] == 2.0 and card["training"]["hardware"] == "2 test CPUs"
    assert card["architecture"]["params"] > 0
    bicubic = tmp_path / "bicubic.json"
    assert main(["eval", "--data", str(images), "--scale", "4", "--json", str(bicubic), "--no-lpips", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["export", str(model), "-o", str(tmp_path / "x.safetensors"), "--card", str(bicubic)]) == 1
    assert "scores model 'bicubic'" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()
