"""Fast start: `binsr upscale` imports only what the model in hand needs (diffusers only for SR3 models,
matplotlib only for figures, kornia only for Real-ESRGAN degradations, tifffile only for 16-bit TIFFs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("diffusers", "matplotlib", "kornia", "scipy", "tifffile")
PROBE = """
import json, sys
from binsr.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def imported(args: list[str], cwd: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model,expected", [("bimacosr-x4", []), ("bidiffsr-x2", ["diffusers"])])
def test_upscale_imports_only_what_the_model_needs(model: str, expected: list[str], tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (20, 20), (90, 60, 30)).save(tmp_path / "in.png")
    seen = imported(["upscale", "in.png", "--model", model, "-o", "out", "--quiet"], tmp_path)
    assert seen == {"code": 0, "heavy": expected}
    assert (tmp_path / "out" / "in_x4.png").is_file() or (tmp_path / "out" / "in_x2.png").is_file()


def test_the_console_script_writes_everything_before_its_fast_exit(tmp_path: Path) -> None:
    """`binsr upscale` leaves with os._exit after writing: the files are complete, the codes are right."""
    import torch

    from binsr.cli import main
    from binsr.image import read_image, write_png

    write_png(tmp_path / "in.png", torch.rand(3, 24, 20, generator=torch.Generator().manual_seed(0)))
    command = [sys.executable, "-m", "binsr", "upscale", "in.png", "--model", "bicubic", "--scale", "3", "-o", "out"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "wrote 1 image(s)" in done.stdout  # stdout flushed before the exit
    assert main(["upscale", str(tmp_path / "in.png"), "--model", "bicubic", "--scale", "3", "-o",
                 str(tmp_path / "ref"), "--quiet"]) == 0
    assert torch.equal(read_image(tmp_path / "out" / "in_x3.png"), read_image(tmp_path / "ref" / "in_x3.png"))
    failed = subprocess.run(command[:4] + ["missing.png", "-o", "out"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert failed.returncode == 1 and failed.stderr.startswith("binsr: error:"), failed.stderr
