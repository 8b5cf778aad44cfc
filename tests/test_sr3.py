"""SR3 diffusion end to end on CPU: a small model overfits one image far above bicubic; tiled
upscaling matches untiled; the upscale command and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from binsr.cli import main
from binsr.data import SREvalDataset
from binsr.errors import BinsrError
from binsr.image import imresize, read_image, write_png
from binsr.metrics import psnr
from binsr.pipelines import load
from binsr.training import Trainer, load_train_config

STEPS = 200


@pytest.fixture(scope="module")
def overfit(tmp_path_factory, shared_data):
    """A small BI-DiffSR model trained on one 32×32 crop of Set5's butterfly (x0-prediction)."""
    root = tmp_path_factory.mktemp("overfit")
    (root / "hr").mkdir()
    crop = read_image(shared_data / "Set5" / "butterfly.png")[:, 112:144, 112:144]
    write_png(root / "hr" / "crop.png", crop)
    sets = ["name=one", f"out_dir={root}", f"steps={STEPS}", "ckpt_every=0", "log_every=50",
            f"data.train={root / 'hr'}", "data.val=null", "data.batch_size=4", "data.patch_size=32",
            "data.augment=false", "optim.lr=2e-3", "optim.warmup_steps=20", "optim.ema_decay=null",
            "diffusion.prediction_type=sample"]
    result = Trainer(load_train_config("bidiffsr-small-x4", sets), progress=False).train()
    return root, result.model_file


def test_small_model_overfits_one_image_far_above_bicubic(overfit):
    root, model_file = overfit
    sample = SREvalDataset(root / "hr", 4)[0]
    sr = load(str(model_file), steps=20).upscale(sample["lr"][None])[0]
    model_psnr = psnr(sr, sample["hr"], 4).item()
    bicubic_psnr = psnr(imresize(sample["lr"], 4.0).clamp(0, 1), sample["hr"], 4).item()
    assert model_psnr > bicubic_psnr + 5, f"{model_psnr:.2f} dB vs bicubic {bicubic_psnr:.2f} dB after {STEPS} steps"


def test_sampling_is_seeded_and_deterministic(overfit):
    _, model_file = overfit
    lr = torch.rand(1, 3, 8, 8)
    a = load(str(model_file), steps=5, seed=1).upscale(lr)
    b = load(str(model_file), steps=5, seed=1).upscale(lr)
    c = load(str(model_file), steps=5, seed=2).upscale(lr)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_tiled_upscale_matches_untiled(overfit, shared_data):
    _, model_file = overfit
    lr = imresize(read_image(shared_data / "Set5" / "butterfly.png")[:, 96:160, 96:176], 0.25).clamp(0, 1)[None]
    whole = load(str(model_file), steps=10).upscale(lr)
    tiled = load(str(model_file), steps=10, tile=48, tile_overlap=16).upscale(lr)
    assert tiled.shape == whole.shape == (1, 3, 64, 80)
    agreement = psnr(tiled[0], whole[0], crop_border=0, channels="rgb").item()
    assert agreement > 30, f"tiled vs untiled: {agreement:.1f} dB"


def test_upscale_command_writes_pngs_and_refuses_bad_requests(overfit, tmp_path, capsys):
    _, model_file = overfit
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(np.full((10, 12, 3), 120, np.uint8)).save(images / "a.png")
    Image.fromarray(np.full((1, 1, 3), 120, np.uint8)).save(tmp_path / "dot.png")
    out = tmp_path / "out"
    assert main(["upscale", str(images), "-o", str(out), "--model", str(model_file), "--steps", "3", "--quiet"]) == 0
    assert read_image(out / "a_x4.png").shape == (3, 40, 48)
    code = main(["upscale", str(images), "-o", str(tmp_path / "o2"), "--model", str(model_file), "--scale", "2"])
    err = capsys.readouterr().err
    assert code == 1 and "is a x4 model; x2 was requested" in err and not (tmp_path / "o2").exists()
    code = main(["upscale", str(tmp_path / "dot.png"), "-o", str(tmp_path / "o3"), "--model", "bicubic", "--scale", "4"])
    assert code == 0  # bicubic has no size limit


def test_images_smaller_than_the_networks_multiple_are_padded_by_repeated_reflection(overfit):
    from binsr.pipelines import SR3Upscaler
    from binsr.pipelines.diffusion import _reflect_pad

    loaded = load(str(overfit[1]))
    upscaler = SR3Upscaler(loaded.model, loaded.diffusion, scale=2, multiple=8, auto_tile=None)
    for side in (1, 2, 3):  # outputs of 2, 4 and 6 pixels padded to 8
        assert upscaler.upscale(torch.rand(1, 3, side, side + 1)).shape == (1, 3, 2 * side, 2 * side + 2)
    with pytest.raises(BinsrError, match=r"a 0x1 image has no pixels"):
        upscaler.check_size(1, 0)
    # repeated reflection: the symmetric extension a b c b a b c … (each step one reflection of what is there)
    row = torch.tensor([[[[1.0, 2.0, 3.0]]]])
    assert _reflect_pad(row, 0, 7).flatten().tolist() == [1, 2, 3, 2, 1, 2, 3, 2, 1, 2]
    assert _reflect_pad(torch.tensor([[[[5.0]]]]), 2, 3).flatten().tolist() == [5.0] * 12  # 1 px: repeated


def test_python_api_and_eval_command_with_a_model_file(overfit, tmp_path):
    import json

    import binsr

    root, model_file = overfit
    pipeline = binsr.load(str(model_file), steps=5)
    image = torch.rand(3, 8, 8)
    assert pipeline.upscale(image).shape == (3, 32, 32)  # one image in, one image out
    out_json = tmp_path / "eval.json"
    assert main(["eval", "--model", str(model_file), "--data", str(root / "hr"), "--scale", "4", "--steps", "10",
                 "--no-lpips", "--quiet", "--json", str(out_json)]) == 0
    result = json.loads(out_json.read_text())
    assert result["model"] == "one" and result["scale"] == 4 and result["mean"]["psnr"] > 25


@pytest.mark.parametrize("target", ["image", "residual"])
def test_ddim_with_an_oracle_returns_the_target_image(target):
    """An x₀-predicting oracle: DDIM must end exactly on its x₀ (the residual is added back to the condition)."""
    from binsr.diffusion.sr3 import SR3, SR3Schedule

    generator = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 8, 8, generator=generator)
    condition = (hr + 0.1 * torch.randn(2, 3, 8, 8, generator=generator)).clamp(0, 1)
    x0 = hr - condition if target == "residual" else hr
    diffusion = SR3(SR3Schedule(prediction_type="sample", target=target))
    out = diffusion.sample(lambda inputs, t: x0, condition, steps=5)
    torch.testing.assert_close(out, hr, atol=1e-6, rtol=0)
    loss = diffusion.loss(lambda inputs, t: x0, hr, condition, [torch.Generator().manual_seed(i) for i in range(2)])
    assert float(loss) == pytest.approx(0.0, abs=1e-7)  # the oracle's loss on its own target
    with pytest.raises(ValueError, match="target"):
        SR3Schedule(target="latent")
