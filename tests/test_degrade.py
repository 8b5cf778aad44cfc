"""``binsr degrade`` (a realistic benchmark re-created from its seed) and ``binsr eval`` on it: PSNR/SSIM with
NIQE when HR exists, NIQE alone for LR photos."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from binsr.cli import main
from binsr.data.degraded_set import MANIFEST, image_seed
from binsr.data.realesrgan import RealESRGANDegradation
from binsr.image.io import read_image
from binsr.metrics.niqe import niqe
from binsr.pipelines import load
from conftest import smooth_image


@pytest.fixture
def hr_folder(tmp_path, rng):
    folder = tmp_path / "hr"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(smooth_image(rng, 226, 129)).save(folder / "a.png")  # mod-cropped to 224x128 (NIQE: 2 blocks)
    Image.fromarray(smooth_image(rng, 112, 200)).save(folder / "sub" / "b.png")
    return folder


def test_the_set_is_recreated_bit_for_bit_from_its_seed(hr_folder, tmp_path, capsys) -> None:
    assert main(["degrade", str(hr_folder), "-o", str(tmp_path / "one"), "--seed", "0", "--quiet"]) == 0
    assert "wrote 2 LR image(s)" in capsys.readouterr().out
    subprocess.run([sys.executable, "-m", "binsr", "degrade", str(hr_folder), "-o", str(tmp_path / "two"), "--quiet"],
                   check=True, capture_output=True)  # another process, default seed 0
    assert main(["degrade", str(hr_folder), "-o", str(tmp_path / "seed1"), "--seed", "1", "--quiet"]) == 0
    for name in ("a.png", "sub/b.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
        assert (tmp_path / "one" / name).read_bytes() != (tmp_path / "seed1" / name).read_bytes()
    manifest = json.loads((tmp_path / "one" / MANIFEST).read_text())
    assert manifest["seed"] == 0 and manifest["scale"] == 4 and manifest["degradation"] == "realesrgan"
    a = manifest["images"]["a.png"]
    assert a["seed"] == image_seed(0, "a.png") and a["hr_size"] == [128, 224] and "first" in a["drawn"]
    # the file is the library's degradation of the mod-cropped HR under that seed, as an 8-bit PNG
    hr = read_image(hr_folder / "a.png")[:, :224, :128]
    expected = RealESRGANDegradation()(hr, torch.Generator().manual_seed(a["seed"]))
    assert torch.equal(read_image(tmp_path / "one" / "a.png"), expected)
    assert read_image(tmp_path / "one" / "sub" / "b.png").shape == (3, 28, 50)


def test_an_image_keeps_its_lr_when_others_are_added(hr_folder, tmp_path, rng) -> None:
    assert main(["degrade", str(hr_folder), "-o", str(tmp_path / "before"), "--quiet"]) == 0
    Image.fromarray(smooth_image(rng, 64, 64)).save(hr_folder / "0-first.png")  # sorts before the others
    assert main(["degrade", str(hr_folder), "-o", str(tmp_path / "after"), "--quiet"]) == 0
    assert (tmp_path / "before" / "a.png").read_bytes() == (tmp_path / "after" / "a.png").read_bytes()


def test_an_earlier_run_is_never_overwritten_unless_asked(hr_folder, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["degrade", str(hr_folder), "-o", str(out), "--quiet"]) == 0
    before = (out / "a.png").read_bytes()
    assert main(["degrade", str(hr_folder), "-o", str(out), "--seed", "3", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "binsr: error: --output" in err and "--overwrite" in err
    assert (out / "a.png").read_bytes() == before
    assert main(["degrade", str(hr_folder), "-o", str(out), "--seed", "3", "--overwrite", "--quiet"]) == 0
    assert (out / "a.png").read_bytes() != before
    assert main(["degrade", str(tmp_path / "missing"), "-o", str(tmp_path / "x"), "--quiet"]) == 1
    assert "missing" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_eval_adds_niqe_on_a_degraded_set_and_scores_lr_photos_with_niqe_alone(hr_folder, tmp_path) -> None:
    lr = tmp_path / "lr"
    assert main(["degrade", str(hr_folder), "-o", str(lr), "--quiet"]) == 0
    paired, photos = tmp_path / "paired.json", tmp_path / "photos.json"
    assert main(["eval", "--data", str(hr_folder), "--lr-data", str(lr), "--scale", "4", "--no-lpips",
                 "--no-complexity", "--json", str(paired), "--quiet"]) == 0
    assert main(["eval", "--lr-data", str(lr), "--scale", "4", "--no-complexity", "--json", str(photos),
                 "--quiet"]) == 0
    paired_result, photo_result = json.loads(paired.read_text()), json.loads(photos.read_text())
    assert set(paired_result["mean"]) == {"psnr", "ssim", "niqe"} and set(photo_result["mean"]) == {"niqe"}
    # NIQE of the saved 8-bit bicubic result with the scale's border, the same with or without HR
    sr = load("bicubic", 4).upscale(read_image(lr / "a.png")[None])[0]
    expected = niqe((sr.clamp(0, 1) * 255).round() / 255, crop_border=4)
    for result in (paired_result, photo_result):
        row = next(r for r in result["per_image"] if r["name"] == "a.png")
        assert row["niqe"] == pytest.approx(expected, abs=1e-9)
    assert np.isfinite(paired_result["mean"]["psnr"])
    assert paired_result["dataset"] == "hr-real (seed 0)" and photo_result["dataset"] == "lr"
    # the report puts both in one table, NIQE (lower is better) beside PSNR/SSIM
    assert main(["report", str(paired), str(photos), "-o", str(tmp_path / "table.md")]) == 0
    table = (tmp_path / "table.md").read_text()
    assert "hr-real (seed 0) PSNR↑" in table and "hr-real (seed 0) NIQE↓" in table and "lr NIQE↓" in table


def test_a_photo_too_small_for_niqe_is_named(tmp_path, rng, capsys) -> None:
    (tmp_path / "photos").mkdir()
    Image.fromarray(smooth_image(rng, 30, 30)).save(tmp_path / "photos" / "tiny.png")  # 120x120 at x4: one block
    assert main(["eval", "--lr-data", str(tmp_path / "photos"), "--scale", "4", "--no-complexity", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("binsr: error: tiny.png: niqe needs two 96x96 blocks") and err.count("\n") == 1
