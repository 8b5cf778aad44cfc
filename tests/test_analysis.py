"""binsr.analysis: rank and frequency analyses with known answers, training curves from a real run,
visual comparisons, and the report tables; each CLI command writes real PNG/CSV files."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from binsr import pipelines
from binsr.analysis import (
    BranchRecorder,
    band_energy,
    binarized_layers,
    exact_expected_rank,
    frequency_analysis,
    layer_ranks,
    random_sign_ranks,
    sign_matrix,
)
from binsr.analysis.compare import Crop, comparison_figure, detail_crop, niqe_panel, score_panel
from binsr.analysis.curves import curves_figure, read_log, smooth
from binsr.analysis.frequency import low_frequency_mask, spatial_maps
from binsr.analysis.published import DATASETS, bidiffsr_table
from binsr.analysis.report import build_tables, load_results
from binsr.binary import ThreeBranch, binarize
from binsr.cli import main
from binsr.data import LRPhotoDataset, SREvalDataset
from binsr.deploy import export_packed
from binsr.errors import BinsrError
from binsr.evaluation import describe_model
from binsr.metrics.niqe import niqe
from binsr.training import Trainer, load_train_config

sys.path.insert(0, str(Path(__file__).parent))
from conftest import smooth_image
from test_deploy import tiny_onestep_spec, trained_file


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 200


@pytest.fixture(scope="module")
def onestep_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny BiMaCoSR one-step model file (x4), its packed export and a folder of small HR images."""
    folder = tmp_path_factory.mktemp("analysis")
    model = trained_file(folder, tiny_onestep_spec(), "onestep")
    packed = folder / "onestep.packed.safetensors"
    export_packed(model, packed)
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(5)
    for i in range(2):
        Image.fromarray(smooth_image(rng, 32, 48)).save(images / f"im{i}.png")
    return {"model": model, "packed": packed, "images": images, "folder": folder}


# --- rank ---------------------------------------------------------------------------------------


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(12, 20, 3, padding=1)
        self.fc = nn.Linear(24, 16)


def planted_weights(model: TwoLayers, k: int) -> None:
    """Small random weights plus k large entries on distinct rows and columns of the (window-averaged)
    matrix: the top-k sparse matrix is then a scaled partial permutation, of rank exactly k."""
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in (model.conv, model.fc):
            layer.weight.mul_(0.01)
            out_features, in_features = layer.weight.shape[:2]
            columns = torch.randperm(in_features)[:k]
            for row, column in enumerate(columns.tolist()):
                value = 5.0 + row
                if layer.weight.dim() == 4:
                    layer.weight[row, column] += value  # every tap: the window mean gets +value
                else:
                    layer.weight[row, column] += value


@pytest.mark.parametrize("rank,k", [(3, 6), (5, 2)])
def test_layer_ranks_have_the_planted_answers(rank: int, k: int) -> None:
    model = TwoLayers()
    planted_weights(model, k)
    binary, _ = binarize(model, "bimacosr", rank=rank, k=k)
    ranks = {r.name: r for r in layer_ranks(binary)}
    assert set(ranks) == {"conv", "fc"}
    for name, (c_in, c_out) in {"conv": (12, 20), "fc": (24, 16)}.items():
        entry = ranks[name]
        assert (entry.c_in, entry.c_out, entry.r_max) == (c_in, c_out, max(c_in, c_out))
        assert entry.lrmb == rank and entry.smb == k  # exactly r (SVD) and k (partial permutation)
        assert entry.combined == rank + k  # generic: the two subspaces do not overlap
        # BMB: the numerical rank of the ±1 matrix, recomputed with NumPy from the quantized weight
        layer = binary.get_submodule(name).bmb
        signs = np.sign(layer.weight_quantizer(layer.weight).detach().double().flatten(1).numpy())
        assert entry.bmb == np.linalg.matrix_rank(signs)
        assert entry.kind == ("conv" if name == "conv" else "linear")
        row = entry.to_row()
        assert float(row["ratio_lrmb"]) == pytest.approx(rank / max(c_in, c_out), abs=1e-6)  # 6 decimals


def test_plain_binary_layers_report_bmb_only_and_packed_equals_simulated(onestep_files: dict[str, Path]) -> None:
    model, _ = binarize(TwoLayers(), "xnor")
    ranks = layer_ranks(model)
    assert [r.lrmb for r in ranks] == [None, None] and all(r.bmb > 0 for r in ranks)
    simulated = pipelines.load_network(onestep_files["model"])
    packed = pipelines.load_network(onestep_files["packed"])
    a, b = layer_ranks(simulated), layer_ranks(packed)
    assert len(a) == len(list(binarized_layers(simulated))) > 20
    assert [r.to_row() for r in a] == [r.to_row() for r in b]
    first = next(iter(binarized_layers(packed)))
    torch.testing.assert_close(sign_matrix(first.binary),
                               sign_matrix(next(iter(binarized_layers(simulated))).binary), rtol=0, atol=0)


def test_exact_expected_rank_matches_the_closed_form_and_sampling() -> None:
    assert exact_expected_rank(1) == 1.0
    for p in (0.5, 0.1, 0.3):
        q = 1 - p  # 2x2: singular iff row 2 = ±row 1, P = (p²+q²)² + (2pq)²
        assert exact_expected_rank(2, p) == pytest.approx(2 - (p * p + q * q) ** 2 - (2 * p * q) ** 2, abs=1e-12)
    for n in (3, 4):
        exact = exact_expected_rank(n)
        sampled = random_sign_ranks(n, 4000, seed=1)
        assert abs(sampled.mean_rank - exact) < 4 * math.sqrt(n / 4000)  # rank spread ≤ n: a loose 4σ bound
    with pytest.raises(ValueError):
        exact_expected_rank(5)


def test_random_sign_matrices_are_nearly_full_rank() -> None:
    """Eq. 6: n − E[rank] = O(log n); measured, the deficit vanishes already at n = 64."""
    for n in (16, 64, 128):
        result = random_sign_ranks(n, 40, seed=n)
        assert result.mean_deficit <= math.log2(n)
    assert random_sign_ranks(64, 40).singular_fraction == 0
    degenerate = random_sign_ranks(8, 5, p=1.0)  # all entries −1: rank 1
    assert degenerate.mean_rank == 1 and degenerate.max_deficit == 7


def test_analyze_rank_command_writes_csv_and_png(onestep_files: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "rank"
    assert main(["analyze", "rank", str(onestep_files["model"]), "--out", str(out), "--sign-sizes", "2,8,32",
                 "--trials", "20", "--quiet"]) == 0
    rows = read_csv(out / "rank.csv")
    network = pipelines.load_network(onestep_files["model"])
    assert [r["layer"] for r in rows] == [layer.name for layer in binarized_layers(network)]
    assert all(int(r["rank_lrmb"]) == 4 for r in rows)  # the tiny model's LRMB rank
    assert [int(r["n"]) for r in read_csv(out / "sign_rank.csv")] == [2, 8, 32]
    for name in ("rank.png", "sign_rank.png"):
        assert_png(out / name)
    assert main(["analyze", "rank", str(onestep_files["folder"] / "missing.safetensors"), "--out", str(out)]) == 1
    assert "model file not found" in capsys.readouterr().err
    assert main(["analyze", "rank", str(onestep_files["model"]), "--out", str(out), "--sign-sizes", "8,x"]) == 1
    assert "--sign-sizes" in capsys.readouterr().err


# --- frequency ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (6, 5), (16, 12), (1, 6)])
def test_band_energy_equals_the_centred_mask_on_the_full_float64_spectrum(shape: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    spectrum = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1)).abs().square()
    mask = low_frequency_mask(*shape)
    assert int(mask.sum()) == math.ceil(shape[0] / 2) * math.ceil(shape[1] / 2)
    assert mask[shape[0] // 2, shape[1] // 2]  # the zero frequency is low
    low, high = band_energy(x)
    assert low == pytest.approx(float(spectrum[..., mask].sum()), rel=1e-12)
    assert high == pytest.approx(float(spectrum[..., ~mask].sum()), rel=1e-12)
    assert low + high == pytest.approx(shape[0] * shape[1] * float(x.square().sum()), rel=1e-12)  # Parseval


def test_band_energy_known_signals() -> None:
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    constant = torch.full((16, 16), 3.0)
    slow = torch.cos(2 * math.pi * cols / 16) + torch.sin(2 * math.pi * 2 * rows / 16)  # within ±4 of DC
    checker = (-1.0) ** (rows + cols)  # Nyquist
    fast = torch.cos(2 * math.pi * 6 * cols / 16)
    for signal, low_expected in ((constant, 1.0), (slow, 1.0), (checker, 0.0), (fast, 0.0)):
        low, high = band_energy(signal)
        assert low / (low + high) == pytest.approx(low_expected, abs=1e-9)


def test_spatial_maps_of_linear_tokens() -> None:
    maps = torch.arange(2 * 4 * 6 * 5.0).view(2, 4, 6, 5)  # (B, H, W, C) tokens
    assert torch.equal(spatial_maps(maps, "linear"), maps.permute(0, 3, 1, 2))
    windows = torch.randn(3, 16, 8)  # (B·nW, 4x4 tokens, C)
    assert torch.equal(spatial_maps(windows, "linear")[1, 2], windows[1, :, 2].view(4, 4))
    assert spatial_maps(torch.randn(2, 32), "linear") is None  # a time-embedding MLP
    assert spatial_maps(torch.randn(2, 10, 8), "linear") is None  # 10 tokens: no square layout


class OneThreeBranchConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Conv2d(8, 8, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def test_branch_recorder_reproduces_direct_band_energies() -> None:
    model, _ = binarize(OneThreeBranchConv(), "bimacosr", rank=2, k=8)
    layer = model.layer
    assert isinstance(layer, ThreeBranch)
    rows, cols = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    channels = torch.randn(1, 8, 1, 1, generator=torch.Generator().manual_seed(1))
    inputs = [channels * (-1.0) ** (rows + cols),  # only the Nyquist frequency
              channels + 0.3 * torch.randn(1, 8, 12, 12, generator=torch.Generator().manual_seed(2))]
    result = frequency_analysis(model, model, inputs, progress=False)
    assert result.images == 2 and [s.name for s in result.layers] == ["layer"]
    spectrum = result.layers[0]
    with torch.no_grad():
        for branch in ("bmb", "lrmb", "smb"):
            direct = [band_energy(getattr(layer, branch)(x)) for x in inputs]
            assert spectrum.energy[branch][0] == pytest.approx(sum(d[0] for d in direct), rel=1e-5)
            assert spectrum.energy[branch][1] == pytest.approx(sum(d[1] for d in direct), rel=1e-5)
        total = [band_energy(model(x)) for x in inputs]
        assert spectrum.energy["sum"][1] == pytest.approx(sum(t[1] for t in total), rel=1e-5)
        # the linear branches map a pure checkerboard to a pure checkerboard: no low-frequency energy
        for branch in ("lrmb", "smb"):
            low, high = band_energy(getattr(layer, branch)(inputs[0]))
            assert low <= 1e-9 * high
    for band in (0, 1):
        assert sum(spectrum.share(b, band) for b in ("bmb", "lrmb", "smb")) == pytest.approx(1.0)


def test_recorder_refuses_models_without_three_branch_layers() -> None:
    with pytest.raises(BinsrError, match="no three-branch"):
        BranchRecorder(binarize(TwoLayers(), "xnor")[0])


def test_analyze_freq_command_on_a_onestep_model(onestep_files: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    shares = {}
    for kind in ("model", "packed"):
        out = tmp_path / kind
        assert main(["analyze", "freq", str(onestep_files[kind]), "--data", str(onestep_files["images"]),
                     "--out", str(out), "--quiet"]) == 0
        assert "skipped" in capsys.readouterr().out  # the time-embedding linears
        rows = read_csv(out / "frequency.csv")
        groups = read_csv(out / "frequency_groups.csv")
        assert {g["type"] for g in groups} == {"conv", "linear"}
        for kind_ in ("conv", "linear"):
            for column in ("share_of_low", "share_of_high"):
                assert sum(float(g[column]) for g in groups if g["type"] == kind_) == pytest.approx(1.0, abs=1e-5)
        assert {r["branch"] for r in rows} == {"bmb", "lrmb", "smb", "sum"}
        assert_png(out / "frequency.png")
        shares[kind] = {(g["type"], g["branch"]): float(g["share_of_high"]) for g in groups}
    for key, value in shares["model"].items():  # the packed kernels compute the same branches
        assert shares["packed"][key] == pytest.approx(value, abs=1e-3)
    assert main(["analyze", "freq", str(onestep_files["model"]), "--data", str(tmp_path / "none"),
                 "--out", str(tmp_path)]) == 1
    assert "not found" in capsys.readouterr().err


# --- training curves -------------------------------------------------------------------------------


def test_smoothing_is_a_bias_corrected_moving_average() -> None:
    assert smooth([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    assert smooth([4.0] * 5, 0.9) == pytest.approx([4.0] * 5)  # no start-up bias
    w = 0.5  # by hand: a1 = 0.5, a2 = 0.5·0.5 + 0.5·3 = 1.75; corrected 0.5/0.5 = 1, 1.75/0.75
    assert smooth([1.0, 3.0], w) == pytest.approx([1.0, 1.75 / 0.75])
    with pytest.raises(BinsrError):
        smooth([1.0], 1.0)


def test_curves_from_real_training_logs(train_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = []
    for lr in ("1e-4", "4e-4"):
        sets = [f"name=run{lr}", f"out_dir={tmp_path}", f"data.train={train_folder}", f"data.val={train_folder}",
                "data.val_limit=1", "data.patch_size=32", "data.batch_size=2", "steps=6", "val_every=3",
                "log_every=1", "ckpt_every=0", f"optim.lr={lr}", "optim.warmup_steps=0", "model.inner_channel=16"]
        Trainer(load_train_config("bidiffsr-small-x4", sets), progress=False).train()
        runs.append(tmp_path / f"run{lr}")
    log = read_log(runs[0])
    logged = read_csv(runs[0] / "log.csv")
    assert log.name == "run1e-4" and [s for s, _ in log.loss] == list(range(1, 7))
    assert [v for _, v in log.loss] == [float(r["loss"]) for r in logged if r["loss"]]
    assert [s for s, _ in log.val_psnr] == [3, 6]
    figure = curves_figure([read_log(r) for r in runs])
    loss_axes, psnr_axes = figure.axes
    np.testing.assert_array_equal(loss_axes.lines[0].get_xydata(), np.array(log.loss))
    np.testing.assert_array_equal(psnr_axes.lines[0].get_xydata(), np.array(log.val_psnr))
    assert [t.get_text() for t in loss_axes.get_legend().get_texts()] == ["run1e-4", "run4e-4"]
    out = tmp_path / "curves"
    assert main(["analyze", "curves", *map(str, runs), "--out", str(out), "--smooth", "0.5"]) == 0
    assert_png(out / "curves.png")
    assert len(read_csv(out / "curves.csv")) == 2 * (6 + 2)
    assert "best validation PSNR" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["analyze", "curves", str(bad), "--out", str(out)]) == 1
    assert "not a binsr training log" in capsys.readouterr().err


# --- visual comparisons ------------------------------------------------------------------------------


def test_detail_crop_finds_the_textured_patch() -> None:
    image = torch.full((3, 96, 128), 0.5)
    texture = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0))
    image[:, 40:64, 72:96] = texture
    crop = detail_crop(image, 24)
    assert abs(crop.top - 40) <= 3 and abs(crop.left - 72) <= 3 and crop.size == 24
    assert detail_crop(image, 500).size == 96  # clipped to the image
    with pytest.raises(BinsrError, match="TOP,LEFT,SIZE"):
        Crop.parse("1,2")
    with pytest.raises(BinsrError, match="leaves"):
        Crop(90, 0, 10).check(96, 128, "x.png")


def test_comparison_figure_layout() -> None:
    hr = torch.rand(3, 40, 60, generator=torch.Generator().manual_seed(0))
    panels = [score_panel(f"m{i}", (hr + 0.02 * i).clamp(0, 1), hr, 2, False) for i in range(1, 5)]
    figure = comparison_figure("x.png", hr, panels, Crop(8, 10, 16))
    assert len(figure.axes) == 1 + 1 + len(panels)  # full image, HR crop, one per panel
    box = figure.axes[0].patches[0]
    assert (box.get_x(), box.get_y(), box.get_width()) == (9.5, 7.5, 16)
    labels = [axes.get_xlabel() for axes in figure.axes[1:]]
    assert labels[0].startswith("HR") and labels[1].startswith("m1\n") and "dB" in labels[1]
    assert panels[0].psnr > panels[-1].psnr  # the larger offset scores lower


def test_analyze_compare_command_scores_like_eval(onestep_files: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "figures"
    assert main(["analyze", "compare", "--data", str(onestep_files["images"]), "--scale", "4", "--model",
                 str(onestep_files["model"]), "--model", str(onestep_files["packed"]), "--images", "im1",
                 "--crop-size", "16", "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare_im1.png"]
    assert_png(out / "compare_im1.png")
    assert main(["eval", "--data", str(onestep_files["images"]), "--scale", "4", "--json", str(tmp_path / "e.json"),
                 "--no-lpips", "--quiet"]) == 0
    evaluated = json.loads((tmp_path / "e.json").read_text())["per_image"][1]
    sample = SREvalDataset(onestep_files["images"], 4)[1]
    panel = score_panel("bicubic", pipelines.load("bicubic", 4).upscale(sample["lr"][None])[0], sample["hr"], 4, False)
    assert (panel.psnr, panel.ssim) == pytest.approx((evaluated["psnr"], evaluated["ssim"]), abs=1e-9)
    assert main(["analyze", "compare", "--data", str(onestep_files["images"]), "--scale", "4", "--images", "im9",
                 "--out", str(out)]) == 1
    assert "no image 'im9'" in capsys.readouterr().err


def test_compare_on_real_lr_photos_labels_each_output_with_its_niqe(tmp_path: Path, rng) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(smooth_image(rng, 56, 40)).save(photos / "p.png")  # 224x160 at x4: two NIQE blocks
    out = tmp_path / "figures"
    assert main(["analyze", "compare", "--lr-data", str(photos), "--scale", "4", "--crop-size", "32",
                 "--out", str(out), "--quiet"]) == 0
    assert_png(out / "compare_p.png")
    lr = LRPhotoDataset(photos)[0]["lr"]
    panel = niqe_panel("bicubic", pipelines.load("bicubic", 4).upscale(lr[None])[0], 4)
    assert panel.niqe == pytest.approx(niqe(panel.image, crop_border=4), abs=0) and panel.psnr is None
    assert panel.score() == f"NIQE {panel.niqe:.2f}"
    figure = comparison_figure("p.png", panel.image, [panel], Crop(0, 0, 32), reference=None)
    assert len(figure.axes) == 2 and figure.axes[1].get_xlabel() == f"bicubic\nNIQE {panel.niqe:.2f}"
    assert niqe_panel("tiny", torch.rand(3, 100, 100), 4).score() == "PSNR / SSIM"  # too small: no NIQE


# --- report tables ---------------------------------------------------------------------------------


def record(model: str, dataset: str, scale: int, psnr: float, ssim: float, lpips: float | None = None,
           bits: int | None = 1, params: float | None = 1e6, ops: float | None = 1e9) -> dict:
    mean = {"psnr": psnr, "ssim": ssim, **({"lpips": lpips} if lpips is not None else {})}
    return {"model": model, "dataset": dataset, "scale": scale, "mean": mean,
            "model_info": {"bits": bits, "params": params, "ops": ops}}


def test_report_marks_the_best_one_bit_value_per_column() -> None:
    results = [
        record("bicubic", "Set5", 4, 28.43, 0.811, bits=None, params=0.0, ops=None),
        record("fp", "Set5", 4, 31.0, 0.88, 0.10, bits=32, params=50e6, ops=170e9),
        record("xnor", "Set5", 4, 27.0, 0.83, 0.20, params=4.78e6, ops=37.93e9),
        record("ours", "Set5", 4, 29.5, 0.83, 0.12, params=4.58e6, ops=36.67e9),
        record("ours", "Set14", 4, 26.5, 0.70),
        record("ours", "Set5", 2, 35.0, 0.94),
    ]
    tables = build_tables(results, bidiffsr_table(4))
    assert [t.scale for t in tables] == [2, 4]
    x4 = tables[1]
    assert x4.datasets == ["Set5", "Set14"]
    best = x4.best()
    assert ("ours", "Set5/psnr") in best and ("fp", "Set5/psnr") not in best  # FP is a reference, not ranked
    assert {("ours", "Set5/ssim"), ("xnor", "Set5/ssim")} <= best  # a tie marks both
    assert ("ours", "Set5/lpips") in best and ("ours", "params") in best and ("ours", "ops") in best
    text = x4.markdown()
    assert "| ours | 1 | **4.58 M** | **36.67 G** | **29.50** | **0.8300** | **0.1200** | **26.50** |" in text
    assert "| BI-DiffSR † | 1 | 4.58 M | 36.67 G | 29.63 | 0.8374 | 0.1109 | — |" in text  # published, unmarked
    assert "SR3 (FP) †" in text and "Urban100" not in text  # only the datasets we evaluated
    assert len(x4.records()) == 1 + 1 + 1 + 2 + 9  # ours: 5 (model, dataset) cells; paper: 9 rows on Set5
    with pytest.raises(BinsrError, match="appears twice"):
        build_tables([results[3], results[3]])


# Rows of BI-DiffSR's Table 1 (Chen et al., NeurIPS 2024), PSNR/SSIM/LPIPS on Set5, B100, Urban100, Manga109,
# typed from the paper: spot checks of the transcription in binsr.analysis.published.
PAPER_ROWS = {
    4: {"BI-DiffSR": ["29.63/0.8374/0.1109", "25.84/0.6779/0.2754", "24.11/0.7177/0.1823", "26.95/0.8548/0.0889"],
        "SR3 (FP)": ["31.03/0.8798/0.1127", "26.11/0.6933/0.2247", "25.52/0.7702/0.1438", "28.77/0.8854/0.0646"],
        "XNOR": ["28.06/0.8274/0.1381", "25.25/0.6552/0.3101", "23.13/0.6647/0.2564", "23.84/0.7839/0.1559"]},
}


def test_published_table_matches_the_paper() -> None:
    for scale, rows in PAPER_ROWS.items():
        ours = {(r["model"], r["dataset"]): r["mean"] for r in bidiffsr_table(scale)}
        assert {"Bicubic", "BNN", "DoReFa", "IRNet", "ReActNet", "BBCU"} | set(rows) == {m for m, _ in ours}
        for method, cells in rows.items():
            for dataset, cell in zip(DATASETS, cells):
                values = [float(v) for v in cell.split("/")]
                assert [ours[method, dataset][k] for k in ("psnr", "ssim", "lpips")] == values


def test_report_command_from_eval_json(onestep_files: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    files = []
    for name, model in (("bicubic", "bicubic"), ("onestep", str(onestep_files["model"])),
                        ("packed", str(onestep_files["packed"]))):
        path = tmp_path / f"{name}.json"
        assert main(["eval", "--model", model, "--data", str(onestep_files["images"]), "--scale", "4", "--json",
                     str(path), "--no-lpips", "--quiet"]) == 0
        files.append(str(path))
    info = json.loads(Path(files[1]).read_text())["model_info"]
    assert info == describe_model(str(onestep_files["model"])) == json.loads(Path(files[2]).read_text())["model_info"]
    assert info["bits"] == 1 and info["method"] == "bimacosr" and info["params"] > 0
    uncounted = describe_model(str(onestep_files["model"]), count=False)  # eval --no-complexity
    assert uncounted == {**info, "params": None, "ops": None, "ops_output_size": None}
    capsys.readouterr()
    assert main(["report", *files, "-o", str(tmp_path / "report.md")]) == 1
    assert "appears twice" in capsys.readouterr().err
    assert main(["report", *files, "-o", str(tmp_path / "report.md"), "--label", f"{files[2]}=packed"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| tiny-bimacosr | 1 |" in report and "| packed | 1 |" in report and "| bicubic | — | 0 | — |" in report
    rows = read_csv(tmp_path / "report.csv")
    assert [r["method"] for r in rows] == ["bicubic", "tiny-bimacosr", "packed"]
    scores = json.loads(Path(files[1]).read_text())["mean"]
    assert float(rows[1]["psnr"]) == scores["psnr"]
    (tmp_path / "bad.json").write_text('{"model": "x"}')
    assert main(["report", str(tmp_path / "bad.json"), "-o", str(tmp_path / "r.md")]) == 1
    assert "not a 'binsr eval --json' result" in capsys.readouterr().err
    assert load_results([files[0]])[0]["source_file"] == files[0]
