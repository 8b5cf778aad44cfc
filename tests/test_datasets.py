"""SR datasets: mod-crop, bicubic LR, aligned seeded patches with augmentation, paired mode, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from binsr.data import (
    SREvalDataset,
    SRTrainDataset,
    bicubic_downscale,
    data_root,
    dihedral,
    mod_crop,
    resolve_data_dir,
)
from binsr.errors import DataError
from binsr.image import read_image
from conftest import smooth_image


@pytest.fixture
def hr_folder(tmp_path, rng):
    folder = tmp_path / "hr"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(smooth_image(rng, 50, 61)).save(folder / "b.png")
    Image.fromarray(smooth_image(rng, 40, 44)).save(folder / "a.png")
    Image.fromarray(smooth_image(rng, 45, 38)[..., 0]).save(folder / "sub" / "c.png")  # grayscale
    return folder


def test_eval_dataset_is_sorted_mod_cropped_and_bicubic(hr_folder):
    dataset = SREvalDataset(hr_folder, scale=4)
    assert [dataset[i]["name"] for i in range(len(dataset))] == ["a.png", "b.png", "sub/c.png"]
    sample = dataset[1]
    assert sample["hr"].shape == (3, 48, 60) and sample["lr"].shape == (3, 12, 15)
    hr = mod_crop(read_image(hr_folder / "b.png", torch.float64), 4)
    assert torch.equal(sample["hr"], hr.float())
    expected_lr = bicubic_downscale(hr, 4)  # MATLAB bicubic, rounded to 8-bit levels
    assert torch.allclose(sample["lr"].double(), expected_lr, atol=1e-7)
    assert torch.equal(torch.round(sample["lr"].double() * 255), torch.round(expected_lr * 255))
    assert dataset[2]["lr"].shape[0] == 3  # grayscale made RGB
    assert dataset.name == "hr"


def test_sixteen_bit_hr_gives_sixteen_bit_lr(tmp_path, rng):
    values = rng.integers(0, 65536, (16, 16), dtype=np.uint16)
    (tmp_path / "hr").mkdir()
    Image.fromarray(values).save(tmp_path / "hr" / "g.png")
    lr = SREvalDataset(tmp_path / "hr", 2, dtype=torch.float64)[0]["lr"]
    levels = lr * 65535
    assert torch.allclose(levels, levels.round(), atol=1e-6)
    assert not torch.allclose(lr * 255, (lr * 255).round(), atol=1e-3)  # finer than 8-bit levels


def test_paired_mode_reads_lr_by_name_or_div2k_suffix(tmp_path, rng):
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
    hr_dir.mkdir(), lr_dir.mkdir()
    for name in ("x", "y"):
        Image.fromarray(smooth_image(rng, 24, 32)).save(hr_dir / f"{name}.png")
    Image.fromarray(smooth_image(rng, 12, 16)).save(lr_dir / "x.png")
    Image.fromarray(smooth_image(rng, 12, 16)).save(lr_dir / "yx2.bmp")
    dataset = SREvalDataset(hr_dir, 2, lr_dir=lr_dir)
    assert torch.equal(dataset[0]["lr"], read_image(lr_dir / "x.png"))
    assert torch.equal(dataset[1]["lr"], read_image(lr_dir / "yx2.bmp"))
    Image.fromarray(smooth_image(rng, 12, 16)).save(hr_dir / "z.png")
    with pytest.raises(DataError, match="no LR image for z.png"):
        SREvalDataset(hr_dir, 2, lr_dir=lr_dir)


def test_paired_mode_size_mismatch(tmp_path, rng):
    (tmp_path / "HR").mkdir(), (tmp_path / "LR").mkdir()
    Image.fromarray(smooth_image(rng, 24, 32)).save(tmp_path / "HR" / "x.png")
    Image.fromarray(smooth_image(rng, 10, 16)).save(tmp_path / "LR" / "x.png")
    with pytest.raises(DataError, match="LR is 16x10 but its HR x.png is 32x24"):
        SREvalDataset(tmp_path / "HR", 2, lr_dir=tmp_path / "LR")[0]


def _find_placement(patch: torch.Tensor, full: torch.Tensor) -> set[tuple[int, int, int]]:
    """All (transform, y, x) where dihedral(full[y:y+p, x:x+p], transform) == patch."""
    p = patch.shape[-1]
    found = set()
    for y in range(full.shape[-2] - p + 1):
        for x in range(full.shape[-1] - p + 1):
            window = full[:, y : y + p, x : x + p]
            for t in range(8):
                if torch.equal(dihedral(window, t), patch):
                    found.add((t, y, x))
    return found


def test_train_patches_are_aligned_and_augmented_together(hr_folder):
    dataset = SRTrainDataset(hr_folder, scale=2, patch_size=16, seed=7)
    full = SREvalDataset(hr_folder, scale=2)
    transforms_seen = set()
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["lr"].shape == (3, 8, 8) and sample["hr"].shape == (3, 16, 16)
        reference = full[index]
        lr_places = _find_placement(sample["lr"], reference["lr"])
        hr_places = _find_placement(sample["hr"], reference["hr"])
        # the HR patch sits at twice the LR position, under the same flip/rotation
        assert {(t, 2 * y, 2 * x) for t, y, x in lr_places} & hr_places
        transforms_seen |= {t for t, _, _ in lr_places}
    assert len(transforms_seen) > 1


def test_train_sampling_is_seeded_per_epoch_and_index(hr_folder):
    a = SRTrainDataset(hr_folder, 2, 16, seed=1, repeat=2)
    b = SRTrainDataset(hr_folder, 2, 16, seed=1, repeat=2)
    assert len(a) == 6
    order = [5, 0, 3]
    first = {i: a[i]["hr"] for i in order}
    for i in reversed(order):  # a different access order gives the same samples
        assert torch.equal(b[i]["hr"], first[i])
    b.set_epoch(1)
    assert not all(torch.equal(b[i]["hr"], first[i]) for i in order)
    c = SRTrainDataset(hr_folder, 2, 16, seed=2, repeat=2)
    assert not all(torch.equal(c[i]["hr"], first[i]) for i in order)
    plain = SRTrainDataset(hr_folder, 2, 16, seed=1, augment=False)
    sample = plain[0]
    assert _find_placement(sample["hr"], SREvalDataset(hr_folder, 2)[0]["hr"])


def test_dataset_errors(tmp_path, hr_folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        SREvalDataset(tmp_path / "empty", 2)
    with pytest.raises(DataError, match="HR folder not found"):
        SREvalDataset(tmp_path / "nope", 2)
    with pytest.raises(DataError, match="multiple of the scale"):
        SRTrainDataset(hr_folder, 3, 16)
    with pytest.raises(DataError, match="smaller than the 48-pixel training patch"):
        SRTrainDataset(hr_folder, 4, 48)


def test_data_root_option_env_and_default(tmp_path, monkeypatch):
    (tmp_path / "Set5").mkdir()
    monkeypatch.delenv("BINSR_DATA", raising=False)
    assert data_root() == data_root(None) and str(data_root()).endswith("shared/data")
    monkeypatch.setenv("BINSR_DATA", str(tmp_path))
    assert resolve_data_dir("Set5") == tmp_path / "Set5"
    assert resolve_data_dir("Set5", root=tmp_path) == tmp_path / "Set5"
    assert resolve_data_dir(tmp_path / "Set5") == tmp_path / "Set5"
    with pytest.raises(DataError, match="dataset folder not found: Set99"):
        resolve_data_dir("Set99")


def test_mod_crop_and_downscale_checks():
    x = torch.zeros(3, 13, 10)
    assert mod_crop(x, 4).shape == (3, 12, 8)
    with pytest.raises(ValueError, match="not divisible"):
        bicubic_downscale(x, 4)
