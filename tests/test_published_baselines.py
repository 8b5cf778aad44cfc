"""The bicubic baseline on the real Set5 reproduces the published numbers (issue's acceptance test)."""

from __future__ import annotations

import json

import pytest

from binsr.cli import main


@pytest.mark.parametrize(
    "scale,psnr_range,ssim_range",
    [(2, (33.63, 33.69), (0.9299, 0.9306)), (4, (28.39, 28.45), (0.8104, 0.8115))],
)
def test_bicubic_set5_matches_published(shared_data, tmp_path, capsys, scale, psnr_range, ssim_range):
    out_json = tmp_path / "set5.json"
    code = main(["eval", "--model", "bicubic", "--data", str(shared_data / "Set5"), "--scale", str(scale),
                 "--json", str(out_json), "--no-lpips", "--quiet"])
    assert code == 0, capsys.readouterr().err
    mean = json.loads(out_json.read_text())["mean"]
    assert psnr_range[0] <= mean["psnr"] <= psnr_range[1]
    assert ssim_range[0] <= mean["ssim"] <= ssim_range[1]


@pytest.mark.parametrize(
    "scale,psnr_ref,ssim_ref",
    [(2, 30.24, 0.8688), (4, 26.00, 0.7027)],  # published bicubic Set14 (e.g. the EDSR/RCAN tables)
)
def test_bicubic_set14_matches_published(shared_data, tmp_path, scale, psnr_ref, ssim_ref):
    """Set14 holds a single-channel file (bridge.png): only scoring it on its gray values, as the
    MATLAB scripts behind the published numbers do, lands on them (Y would add +0.09 dB)."""
    out_json = tmp_path / "set14.json"
    assert main(["eval", "--data", str(shared_data / "Set14"), "--scale", str(scale), "--json", str(out_json),
                 "--no-lpips", "--quiet"]) == 0
    result = json.loads(out_json.read_text())
    assert result["mean"]["psnr"] == pytest.approx(psnr_ref, abs=0.03)
    assert result["mean"]["ssim"] == pytest.approx(ssim_ref, abs=0.001)
    gray = [r["name"] for r in result["per_image"] if r["channels"] == "gray"]
    assert gray == ["bridge.png"]


def test_dataset_name_resolves_under_the_data_root(shared_data, monkeypatch, capsys):
    monkeypatch.setenv("BINSR_DATA", str(shared_data))
    assert main(["eval", "--data", "Set5", "--scale", "3", "--no-lpips", "--quiet"]) == 0
    out = capsys.readouterr().out
    mean_psnr = float(out.splitlines()[-1].split()[1])
    assert 30.37 <= mean_psnr <= 30.42  # published bicubic Set5 x3: 30.39 dB
