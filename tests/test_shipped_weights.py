"""The pretrained models really shipped in binsr/weights: packed 1-bit files, small, with honest cards.

The cards' numbers are re-measured here: the default model's Set5 scores are reproduced by the evaluation
code, and every shipped model beats bicubic on a real benchmark image at its scale: made by MATLAB bicubic
for the models trained on bicubic LR, by binsr's Real-ESRGAN degradation (as 'binsr degrade --seed 0'
makes it) for the model trained on realistic LR.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

import binsr
from binsr.data import SREvalDataset
from binsr.data.degraded_set import degrade_folder
from binsr.deploy import PackedBinaryConv2d, PackedBinaryLinear
from binsr.evaluation import evaluate
from binsr.metrics.psnr_ssim import psnr, ssim
from binsr.pipelines import DEFAULT_MODEL, load, shipped_models

SHIPPED = shipped_models()
EXPECTED = {"bimacosr-x4": (4, "bimacosr"), "bidiffsr-x4": (4, "bidiffsr"), "bidiffsr-x2": (2, "bidiffsr"),
            "bimacosr-real-x4": (4, "bimacosr")}
REALISTIC = {"bimacosr-real-x4"}  # trained on Real-ESRGAN degradations


def test_the_expected_models_are_shipped_packed_and_small() -> None:
    assert set(SHIPPED) == set(EXPECTED) and DEFAULT_MODEL in SHIPPED
    assert sum(model.file_bytes for model in SHIPPED.values()) < 20 * 2 ** 20  # all weights under 20 MB
    for name, model in SHIPPED.items():
        scale, method = EXPECTED[name]
        card = model.card
        assert (card["name"], card["scale"], card["method"], card["bits"]) == (name, scale, method, 1)
        assert card["file_bytes"] == model.file_bytes
        assert card["training"]["steps"] > 0 and card["training"]["hours"] > 0
        assert {"Set5", "Set14"} <= set(card["metrics"])
        degradation = "realesrgan" if name in REALISTIC else "bicubic"
        assert card["training"]["data"]["degradation"] == degradation
        if name in REALISTIC:
            assert {"Set5-real (seed 0)", "Set14-real (seed 0)", "RealSet65"} <= set(card["metrics"])
        with safe_open(str(model.path), framework="pt") as handle:
            spec = json.loads(handle.metadata()["binsr"])
            assert spec["packed"]["floats"] == "float16"
            assert any(handle.get_slice(key).get_dtype() == "U64" for key in handle.keys())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_shipped_model_runs_packed_and_beats_bicubic_on_a_real_image(name: str, shared_data, tmp_path) -> None:
    upscaler = load(name)
    assert any(isinstance(m, (PackedBinaryConv2d, PackedBinaryLinear)) for m in upscaler.model.modules())
    (tmp_path / "hr").mkdir()
    shutil.copy(shared_data / "Set5" / "baby.png", tmp_path / "hr")
    lr_dir = None
    if name in REALISTIC:  # baby's LR as 'binsr degrade Set5 --seed 0' writes it (the seed follows the name)
        degrade_folder(tmp_path / "hr", tmp_path / "lr", upscaler.scale, seed=0)
        lr_dir = tmp_path / "lr"
    sample = SREvalDataset(tmp_path / "hr", upscaler.scale, lr_dir=lr_dir)[0]
    with torch.no_grad():
        sr = upscaler.upscale(sample["lr"])
    bicubic = load("bicubic", upscaler.scale).upscale(sample["lr"][None])[0]
    border = upscaler.scale
    assert psnr(sr, sample["hr"], crop_border=border) > psnr(bicubic, sample["hr"], crop_border=border)
    assert ssim(sr, sample["hr"], crop_border=border) > ssim(bicubic, sample["hr"], crop_border=border)


def test_the_default_models_card_is_reproduced_and_beats_bicubic(shared_data) -> None:
    """Set5 x4 with the packed default model, through the same evaluation as 'binsr eval'."""
    card = SHIPPED[DEFAULT_MODEL].card
    dataset = SREvalDataset(shared_data / "Set5", card["scale"])
    result = evaluate(binsr.load(DEFAULT_MODEL), dataset, "Set5", None, "y", torch.device("cpu"), progress=False)
    mean = result.mean()
    assert mean["psnr"] == pytest.approx(card["metrics"]["Set5"]["psnr"], abs=0.01)
    assert mean["ssim"] == pytest.approx(card["metrics"]["Set5"]["ssim"], abs=1e-4)
    bicubic = evaluate(load("bicubic", 4), dataset, "Set5", None, "y", torch.device("cpu"), progress=False).mean()
    assert mean["psnr"] > bicubic["psnr"] and mean["ssim"] > bicubic["ssim"]
