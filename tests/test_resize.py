"""MATLAB-compatible bicubic imresize: against an independent float64 NumPy reference and hand checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from binsr.image.resize import BandResize, cubic, imresize, imresize_window, output_length


# --- Independent reference: a direct transcription of the definition, one output pixel at a time ---
def ref_cubic(d: np.ndarray) -> np.ndarray:
    a = -0.5
    d = np.abs(d)
    return np.where(
        d <= 1, (a + 2) * d**3 - (a + 3) * d**2 + 1, np.where(d < 2, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a, 0.0)
    )


def ref_resize_1d(v: np.ndarray, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    shrink = scale < 1 and antialias
    width = 4 / scale if shrink else 4.0
    pad = int(math.ceil(width)) + 2
    padded = np.pad(v, pad, mode="symmetric")  # ... v1 v0 | v0 v1 ... (MATLAB's 'symmetric')
    out = np.empty(out_len)
    for i in range(out_len):
        centre = (i + 0.5) / scale - 0.5  # output pixel centre in 0-based input coordinates
        taps = np.arange(math.floor(centre - width / 2), math.ceil(centre + width / 2) + 1)
        dist = centre - taps
        w = scale * ref_cubic(scale * dist) if shrink else ref_cubic(dist)
        out[i] = np.sum(w * padded[taps + pad]) / np.sum(w)
    return out


def ref_imresize(img: np.ndarray, scale_h: float, scale_w: float, out_h: int, out_w: int) -> np.ndarray:
    """(H, W) float64. MATLAB resizes the dimension with the smaller scale first (H on a tie)."""
    def along_h(x):
        return np.stack([ref_resize_1d(x[:, j], out_h, scale_h) for j in range(x.shape[1])], axis=1)

    def along_w(x):
        return np.stack([ref_resize_1d(x[i, :], out_w, scale_w) for i in range(x.shape[0])], axis=0)

    return along_w(along_h(img)) if scale_h <= scale_w else along_h(along_w(img))


@pytest.mark.parametrize(
    "shape,scale",
    [((24, 20), 1 / 2), ((27, 33), 1 / 3), ((32, 28), 1 / 4), ((13, 11), 2), ((9, 14), 3), ((10, 7), 4), ((21, 17), 0.7), ((8, 12), 1.5)],
)
def test_matches_numpy_reference(shape, scale, rng):
    img = rng.random(shape)
    out_h, out_w = (math.ceil(n * scale - 1e-9) for n in shape)
    expected = ref_imresize(img, scale, scale, out_h, out_w)
    got = imresize(torch.from_numpy(img), scale)
    assert got.shape == (out_h, out_w)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    got32 = imresize(torch.from_numpy(img).float(), scale)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), expected, rtol=0, atol=2e-6)


def test_explicit_size_with_different_scales_per_dimension(rng):
    img = rng.random((20, 30))
    got = imresize(torch.from_numpy(img), size=(7, 45))  # H shrinks (antialiased), W grows
    expected = ref_imresize(img, 7 / 20, 45 / 30, 7, 45)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def test_hand_checked_upscale_of_a_row():
    # MATLAB: imresize([1 2 3 4], [1 8], 'bicubic'). First pixel by hand: taps at 0-based -1..2
    # (mirrored to 1, 0, 0, 1 → values 2, 1, 1, 2) with weights cubic(1.75, 0.75, -0.25, -1.25)
    # = -0.0234375, 0.2265625, 0.8671875, -0.0703125 → 0.90625. Interior pixels lie on the line.
    row = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    out = imresize(row, size=(1, 8))[0]
    assert out[0].item() == pytest.approx(0.90625, abs=1e-15)
    assert out[3].item() == pytest.approx(2.25, abs=1e-15)
    assert out[4].item() == pytest.approx(2.75, abs=1e-15)
    assert out[7].item() == pytest.approx(5 - 0.90625, abs=1e-15)  # mirror symmetry of the ramp


def test_hand_checked_antialiased_downscale():
    # imresize(0:3, 0.5): kernel 0.5·cubic(0.5·d), 8 taps around 0-based 0.5 over the mirrored ramp;
    # by hand the weighted sum is 0.921875 with weight sum 2 → 0.4609375. 2-D ramp = row + 4·col.
    ramp = torch.arange(16, dtype=torch.float64).reshape(4, 4)
    out = imresize(ramp, 0.5)
    assert out[0, 0].item() == pytest.approx(5 * 0.4609375, abs=1e-14)
    assert out[1, 1].item() == pytest.approx(5 * (3 - 0.4609375), abs=1e-14)


def test_cubic_kernel_values():
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5], dtype=torch.float64)
    # (a+2)|x|³-(a+3)|x|²+1 and a|x|³-5a|x|²+8a|x|-4a with a = -0.5
    assert cubic(x).tolist() == pytest.approx([1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625])


def test_constant_image_stays_constant_and_batch_dims_are_independent(rng):
    const = torch.full((2, 3, 17, 23), 0.37, dtype=torch.float64)
    for scale in (1 / 4, 1 / 3, 2, 3):
        out = imresize(const, scale)
        assert torch.allclose(out, torch.full_like(out, 0.37), atol=1e-14)
    batch = torch.from_numpy(rng.random((2, 3, 16, 12)))
    whole = imresize(batch, 0.5)
    for b in range(2):
        for c in range(3):
            assert torch.allclose(whole[b, c], imresize(batch[b, c], 0.5), rtol=0, atol=1e-13)


def test_output_size_is_ceil_and_robust_to_float_error():
    assert output_length(228, 1 / 3) == 76
    assert output_length(10, 0.25) == 3  # ceil(2.5)
    assert imresize(torch.zeros(1, 10, 10), 0.25).shape == (1, 3, 3)
    assert imresize(torch.zeros(1, 5, 7), 3).shape == (1, 15, 21)


def test_rejects_bad_input():
    with pytest.raises(TypeError, match="floating-point"):
        imresize(torch.zeros(4, 4, dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(torch.zeros(4, 4), 2, size=(8, 8))
    with pytest.raises(ValueError, match="positive"):
        imresize(torch.zeros(4, 4), -2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu(rng):
    img = torch.from_numpy(rng.random((3, 40, 36)))
    assert torch.allclose(imresize(img.cuda(), 0.25).cpu(), imresize(img, 0.25), atol=1e-12)


def test_dense_and_gather_paths_agree(rng, monkeypatch):
    """Small dimensions resample by a dense matmul, huge ones by gathering taps: same numbers."""
    import binsr.image.resize as resize_module

    img = torch.from_numpy(rng.random((2, 19, 23)))
    expected = np.stack([ref_imresize(img[c].numpy(), 1 / 3, 1 / 3, 7, 8) for c in range(2)])
    dense = imresize(img, 1 / 3)
    monkeypatch.setattr(resize_module, "DENSE_MAX_ENTRIES", 0)
    gathered = imresize(img, 1 / 3)
    for out in (dense, gathered):
        np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [4, 3, 2, 0.5, 1.5])
def test_a_window_is_the_crop_of_the_whole_result_from_the_pixels_it_needs(scale, rng):
    image = torch.from_numpy(rng.random((2, 3, 23, 31)))
    whole = imresize(image, scale)
    height, width = whole.shape[-2:]
    for rows, cols in (((0, height), (0, width)), ((3, 11), (5, width)), ((height - 1, height), (0, 1)),
                       ((height // 2, height // 2 + 5), (width // 3, width // 2))):
        window = imresize_window(image, scale, rows, cols)
        assert torch.allclose(window, whole[..., rows[0]:rows[1], cols[0]:cols[1]], atol=1e-12, rtol=0)
    # it reads only the input pixels the window needs: NaNs far from them do not reach it
    poisoned = image.clone()
    poisoned[..., 18:, :] = float("nan")
    assert torch.isfinite(imresize_window(poisoned, scale, (0, max(1, int(6 * scale))), (0, width))).all()
    with pytest.raises(ValueError, match="outside"):
        imresize_window(image, scale, (0, height + 1), (0, width))


@pytest.mark.parametrize("in_size,out_size,band", [((37, 29), (20, 15), 5), ((40, 31), (100, 77), 7),
                                                   ((64, 64), (48, 48), 64), ((13, 17), (52, 68), 1),
                                                   ((50, 40), (7, 9), 3), ((9, 9), (200, 3), 2)])
def test_band_resize_equals_the_numpy_reference_and_holds_only_the_rows_it_needs(in_size, out_size, band, rng):
    """Bands in, bands out: the whole image resized as MATLAB does (float64 NumPy reference), each output row
    once, top to bottom, with at most the kernel's reach of input rows held beyond the newest band."""
    image = rng.random((2, *in_size))
    (in_h, in_w), (out_h, out_w) = in_size, out_size
    expected = np.stack([ref_imresize(channel, out_h / in_h, out_w / in_w, out_h, out_w) for channel in image])
    resizer = BandResize(in_size, out_size)
    out, next_row, held = np.full((2, out_h, out_w), np.nan), 0, []
    for top in range(0, in_h, band):
        for first, rows in resizer.push(torch.from_numpy(image[:, top:top + band])):
            assert first == next_row
            out[:, first:first + rows.shape[-2]] = rows.numpy()
            next_row += rows.shape[-2]
        held.append(0 if resizer.buffer is None else resizer.buffer.shape[-2])
    assert next_row == out_h and resizer.buffer is None  # everything out, nothing kept
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    reach = math.ceil(4 * max(1.0, in_h / out_h)) + 2  # taps of one output row
    assert max(held) <= band + 2 * reach


def test_band_resize_refuses_a_band_that_does_not_continue_the_image():
    resizer = BandResize((10, 8), (20, 16))
    list(resizer.push(torch.zeros(1, 6, 8)))
    with pytest.raises(ValueError, match="does not continue a 10x8 image at row 6"):
        list(resizer.push(torch.zeros(1, 5, 8)))
    with pytest.raises(ValueError, match="does not continue"):
        list(resizer.push(torch.zeros(1, 2, 9)))
