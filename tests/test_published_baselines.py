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


def test_dataset_name_resolves_under_the_data_root(shared_data, monkeypatch, capsys):
    monkeypatch.setenv("BINSR_DATA", str(shared_data))
    assert main(["eval", "--data", "Set5", "--scale", "3", "--no-lpips", "--quiet"]) == 0
    out = capsys.readouterr().out
    mean_psnr = float(out.splitlines()[-1].split()[1])
    assert 30.37 <= mean_psnr <= 30.42  # published bicubic Set5 x3: 30.39 dB
