"""The native kernels called directly: the C boundary checks every buffer (dtype, shape, contiguity, alignment,
writability, overlap, the sparse index) and raises, never crashes; and every instruction-set path gives
exactly the portable path's numbers (integers and floats) on the machine that runs the tests.

tests/test_sanitizers.py runs this file again against a build with -fsanitize=address,undefined.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from binsr.deploy import instruction_sets, native_available, pack_signs
from binsr.deploy import kernels
from binsr.deploy.kernels import Epilogue, FusedCall, PackedWeight, binary_conv2d, binary_linear, using_backend
from binsr.deploy.layers import sparse_rows
from binsr.errors import BinsrError

pytestmark = pytest.mark.skipif(not native_available(), reason="the native kernels are not built here")
ISAS = instruction_sets()


def native():  # the extension module (tests/test_sanitizers.py swaps in a sanitized build)
    return kernels._native


def f32(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def u64(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.uint64)


def misaligned_f32(*shape: int) -> np.ndarray:
    raw = np.zeros(int(np.prod(shape)) * 4 + 4, dtype=np.uint8)
    return np.frombuffer(raw.data, dtype=np.float32, count=int(np.prod(shape)), offset=1).reshape(shape)


# --- the boundary: every wrong argument is an exception naming it -----------------------------------------


def test_pack_nchw_checks_every_buffer() -> None:
    nk = native()
    x, out = f32(1, 70, 5, 6), u64(1, 7, 2, 8)
    nk.pack_nchw(x, None, out, (1, 1), 1)  # the right call works
    cases = [
        ((x.astype(np.float64), None, out, (1, 1), 1), TypeError, "x: expected float32"),
        ((x, None, u64(1, 7, 2, 7), (1, 1), 1), ValueError, r"out: expected shape \(1, 7, 2, 8\)"),
        ((x, None, out.astype(np.int64), (1, 1), 1), TypeError, "out: expected uint64"),
        ((x[:, :, :, ::2], None, u64(1, 7, 2, 5), (1, 1), 1), ValueError, "x: expected a C-contiguous"),
        ((x, f32(69), out, (1, 1), 1), ValueError, r"threshold: expected shape \(70,\)"),
        ((x, None, out, (1, 1), 0), ValueError, "threads: expected 1 to"),
        ((x, None, out, (-1, 1), 1), ValueError, "padding"),
        (("not a buffer", None, out, (1, 1), 1), TypeError, "x: expected a buffer"),
        ((misaligned_f32(1, 70, 5, 6), None, out, (1, 1), 1), ValueError, "x: data is not aligned"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            nk.pack_nchw(*args)
    frozen = u64(1, 7, 2, 8)
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match="out: expected a writable buffer"):
        nk.pack_nchw(x, None, frozen, (1, 1), 1)


def test_pack_rows_checks_every_buffer() -> None:
    nk = native()
    nk.pack_rows(f32(9, 130), None, u64(3, 9), 2)
    with pytest.raises(ValueError, match=r"out: expected shape \(3, 9\)"):
        nk.pack_rows(f32(9, 130), None, u64(9, 3), 2)
    with pytest.raises(ValueError, match="x: expected shape"):
        nk.pack_rows(f32(9, 130, 1), None, u64(3, 9), 2)
    shared = np.zeros(64, dtype=np.uint64)
    with pytest.raises(ValueError, match="out: overlaps an input"):
        nk.pack_rows(shared.view(np.float32)[:64].reshape(1, 64), None, shared[:1].reshape(1, 1), 1)


def test_conv_checks_every_buffer() -> None:
    nk = native()
    act, wts, out = u64(1, 7, 2, 8), u64(4, 3, 3, 2), f32(1, 4, 5, 6)
    nk.conv(act, wts, 70, out, (1, 1), (1, 1), 1)
    cases = [
        (dict(alpha=f32(5)), ValueError, r"alpha: expected shape \(4,\)"),
        (dict(alpha=np.zeros(4, np.float64)), TypeError, "alpha: expected float32"),
        (dict(scale=f32(1, 7, 7)), ValueError, r"scale: expected shape \(1, 7, 8\)"),
    ]
    for extra, error, message in cases:
        with pytest.raises(error, match=message):
            nk.conv(act, wts, 70, out, (1, 1), (1, 1), 1, **extra)
    with pytest.raises(ValueError, match=r"weights: expected shape \(-1, -1, -1, 2\)"):
        nk.conv(act, u64(4, 3, 3, 1), 70, out, (1, 1), (1, 1), 1)
    with pytest.raises(ValueError, match=r"out: expected shape \(1, 4, 5, 6\)"):
        nk.conv(act, wts, 70, f32(1, 4, 6, 6), (1, 1), (1, 1), 1)
    with pytest.raises(ValueError, match="act: padded input"):
        nk.conv(u64(1, 2, 2, 8), wts, 70, out, (1, 1), (1, 1), 1)
    with pytest.raises(ValueError, match="stride"):
        nk.conv(act, wts, 70, out, (0, 1), (1, 1), 1)
    with pytest.raises(ValueError, match="2\\^24 or more terms"):
        nk.conv(u64(1, 7, 32768, 8), u64(4, 3, 3, 32768), 1 << 21, out, (1, 1), (1, 1), 1)


def fused_tables(o: int = 8, c: int = 70, k: int = 3) -> dict[str, np.ndarray]:
    return {"weights": u64(o, k, k, 2), "alpha": f32(o)}


def test_fused_layer_checks_its_tables_and_copies_them() -> None:
    nk = native()
    t = fused_tables()
    layer = nk.FusedLayer((2, 70, 6, 5), t["weights"], 70, alpha=t["alpha"], padding=(1, 1))
    assert layer.in_shape == (2, 70, 6, 5) and layer.out_shape == (2, 8, 6, 5)
    x, out = np.random.default_rng(0).standard_normal((2, 70, 6, 5)).astype(np.float32), f32(2, 8, 6, 5)
    t["weights"][:] = 1  # the layer holds its own copy: changing (or freeing) the caller's arrays changes nothing
    del t
    layer(x, None, out, 2)
    assert np.all(out == 0)  # alpha was all zeros when the layer was made
    t = fused_tables()
    base = dict(alpha=t["alpha"], padding=(1, 1))
    cases = [
        ((2, 70, 6), {}, ValueError, "input_shape: expected"),
        ((2, 71, 6, 5), {}, ValueError, "input_shape: has 71 channels"),
        ((2, 70, 6, 5), dict(bias=f32(7)), ValueError, r"bias: expected shape \(8,\)"),
        ((2, 70, 6, 5), dict(act_shift=f32(2, 8)), ValueError, "give all three or none"),
        ((2, 70, 6, 5), dict(act_shift=f32(3, 8), act_slope=f32(3, 8), act_bias=f32(3, 8)), ValueError,
         "divides the 2 samples"),
        ((2, 70, 6, 5), dict(down=f32(4, 70)), ValueError, "down, up"),
        ((2, 70, 6, 5), dict(down=f32(4, 70), up=f32(8, 3)), ValueError, "down, up"),
        ((2, 70, 6, 5), dict(residual=True), ValueError, "residual"),
        ((2, 70, 6, 5), dict(stride=(1, 0)), ValueError, "stride"),
        ((2, 70, 6, 5), dict(padding=(5000, 0)), ValueError, "padding"),
    ]
    for shape, extra, error, message in cases:
        with pytest.raises(error, match=message):
            nk.FusedLayer(shape, t["weights"], 70, **{**base, **extra})
    with pytest.raises(ValueError, match="more memory than any machine has"):
        nk.FusedLayer((1 << 20, 70, 1 << 20, 1 << 20), t["weights"], 70, **base)


def test_fused_layer_validates_the_sparse_index() -> None:
    nk = native()
    t = fused_tables()
    rows, cols, values = np.array([0, 1, 1, 2, 2, 2, 2, 2, 3], dtype=np.int32), np.array([0, 5, 69], np.int32), f32(3)
    kw = dict(alpha=t["alpha"], padding=(1, 1))
    nk.FusedLayer((1, 70, 4, 4), t["weights"], 70, sparse_rows=rows, sparse_cols=cols, sparse_values=values, **kw)
    bad = [(rows, np.array([0, 5, 70], np.int32), values, "sparse_cols: entry 2 is 70"),
           (rows, np.array([0, -1, 3], np.int32), values, "sparse_cols: entry 1 is -1"),
           (np.array([0, 2, 1, 2, 2, 2, 2, 2, 3], np.int32), cols, values, "sparse_rows: decreases at row 1"),
           (np.array([0, 1, 1, 2, 2, 2, 2, 2, 4], np.int32), cols, values, "end at the 3 entries"),
           (rows, cols, f32(2), "columns and values of one length"),
           (rows, None, values, "all three or none")]
    for r, c, v, message in bad:
        with pytest.raises(ValueError, match=message):
            nk.FusedLayer((1, 70, 4, 4), t["weights"], 70, sparse_rows=r, sparse_cols=c, sparse_values=v, **kw)


def test_fused_layer_checks_each_call() -> None:
    nk = native()
    t = fused_tables()
    layer = nk.FusedLayer((1, 70, 4, 4), t["weights"], 70, alpha=t["alpha"], padding=(1, 1))
    x = f32(1, 70, 4, 4)
    layer(x, x, f32(1, 8, 4, 4), 1)
    with pytest.raises(ValueError, match=r"x: expected shape \(1, 70, 4, 4\)"):
        layer(f32(1, 70, 4, 5), None, f32(1, 8, 4, 4), 1)
    with pytest.raises(ValueError, match=r"h: expected shape"):
        layer(x, f32(1, 70, 4), f32(1, 8, 4, 4), 1)
    with pytest.raises(ValueError, match="out: expected shape"):
        layer(x, None, f32(1, 8, 4, 3), 1)
    with pytest.raises(ValueError, match="x: expected a C-contiguous"):
        layer(np.zeros((1, 70, 4, 8), np.float32)[..., ::2], None, f32(1, 8, 4, 4), 1)
    shared = np.zeros(70 * 16, np.float32)
    with pytest.raises(ValueError, match="out: overlaps an input"):
        layer(shared.reshape(1, 70, 4, 4), None, shared[:128].reshape(1, 8, 4, 4), 1)
    with pytest.raises(ValueError, match="threads"):
        layer(x, None, f32(1, 8, 4, 4), 100000)
    with pytest.raises(TypeError, match="not initialised"):
        nk.FusedLayer.__new__(nk.FusedLayer)(x, None, f32(1, 8, 4, 4), 1)


def test_torch_tensors_reach_the_kernels_as_views_that_live_through_the_call() -> None:
    """A non-contiguous input is made contiguous in Python and that copy is what C reads (it used to be
    freed before C read it, through a raw pointer)."""
    generator = torch.Generator().manual_seed(5)
    negative = torch.rand(8, 70, 3, 3, generator=generator) < 0.5
    weight = PackedWeight(pack_signs(negative.permute(0, 2, 3, 1)), 70)
    x = torch.randn(1, 5, 6, 70, generator=generator).permute(0, 3, 1, 2)  # channels last: not contiguous
    threshold = torch.randn(140, generator=generator)[::2]  # a strided view
    expected = binary_conv2d(x.contiguous(), weight, (1, 1), (1, 1), threshold.contiguous())
    for _ in range(3):
        assert torch.equal(binary_conv2d(x, weight, (1, 1), (1, 1), threshold), expected)


# --- every instruction set gives the portable path's numbers exactly ----------------------------------------

# (N, C, O, H, W, k, stride, padding): word tails, strides, paddings, maps narrower and wider than the tiles
SHAPES = [(1, 64, 16, 8, 20, 3, 1, 1), (2, 70, 13, 9, 11, 3, 1, 1), (1, 130, 9, 17, 5, 1, 1, 0),
          (2, 5, 7, 10, 13, 3, 2, 1), (1, 200, 33, 6, 20, 3, 1, 2), (1, 64, 8, 16, 16, 3, 2, 1),
          (1, 256, 40, 9, 33, 3, 1, 1), (1, 2000, 8, 3, 9, 3, 1, 1), (1, 64, 24, 3, 70, 3, 2, 1),
          (1, 1, 3, 1, 1, 3, 1, 1), (1, 64, 16, 12, 40, 5, 1, 2), (1, 100, 12, 9, 21, 3, 3, 1),
          (1, 64, 8, 10, 12, 9, 1, 4), (2, 128, 20, 5, 130, 3, 2, 1)]


@pytest.mark.parametrize("isa", ISAS)
def test_every_path_equals_the_portable_one_exactly(isa: str) -> None:
    generator = torch.Generator().manual_seed(6)
    for n, c, o, h, w, k, s, p in SHAPES:
        x = torch.randn(n, c, h, w, generator=generator)
        negative = torch.rand(o, c, k, k, generator=generator) < 0.5
        weight = PackedWeight(pack_signs(negative.permute(0, 2, 3, 1)), c, torch.rand(o, generator=generator))
        scale = torch.rand(n, h, w, generator=generator)
        threshold = 0.2 * torch.randn(c, generator=generator)
        results = {}
        for which in (isa, "portable"):
            with using_backend(which):
                results[which] = (binary_conv2d(x, weight, (s, s), (p, p), threshold),
                                  binary_conv2d(x, weight, (s, s), (p, p), pixel_scale=scale))
        for got, want in zip(results[isa], results["portable"]):
            assert torch.equal(got, want), (isa, n, c, o, h, w, k, s, p)


@pytest.mark.parametrize("isa", ISAS)
def test_every_path_gives_the_same_fused_layers_and_linears(isa: str) -> None:
    generator = torch.Generator().manual_seed(7)

    class Sparse:
        def __init__(self, o: int, c: int) -> None:
            self.shape = (o, c)
            self.index = torch.randperm(o * c, generator=generator)[: 2 * max(o, c)].sort().values
            self.values = torch.randn(self.index.numel(), generator=generator)

    for n, c, o, h, w, k, s, p in SHAPES:
        x = torch.randn(n, c, h, w, generator=generator)
        negative = torch.rand(o, c, k, k, generator=generator) < 0.5
        weight = PackedWeight(pack_signs(negative.permute(0, 2, 3, 1)), c, torch.rand(o, generator=generator))
        epilogue = Epilogue(bias=torch.randn(o, generator=generator),
                            activation=tuple(torch.randn(n, o, generator=generator) for _ in range(3)),
                            down=torch.randn(4, c, generator=generator), up=torch.randn(o, 4, generator=generator),
                            sparse=sparse_rows(Sparse(o, c)))
        if p != k // 2:  # the 1x1 branches and the conv would give different output sizes
            with pytest.raises(BinsrError, match="padding must be kernel // 2"):
                FusedCall(tuple(x.shape), weight, epilogue, (s, s), (p, p), pixel_scale=True)
            epilogue.down = epilogue.up = epilogue.sparse = None
        results = {}
        for which in (isa, "portable"):
            with using_backend(which):
                results[which] = FusedCall(tuple(x.shape), weight, epilogue, (s, s), (p, p), pixel_scale=True)(x)
        assert torch.equal(results[isa], results["portable"]), (isa, n, c, o, h, w, k, s, p)
    for lead, c, o in [((5,), 64, 3), ((2, 37), 130, 17), ((300,), 192, 96)]:
        x = torch.randn(*lead, c, generator=generator)
        weight = PackedWeight(pack_signs(torch.rand(o, c, generator=generator) < 0.5), c, torch.rand(o))
        scale = torch.rand(*lead, generator=generator)
        results = {}
        for which in (isa, "portable"):
            with using_backend(which):
                results[which] = (binary_linear(x, weight, torch.randn(c, generator=torch.Generator().manual_seed(1))),
                                  binary_linear(x, weight, token_scale=scale))
        for got, want in zip(results[isa], results["portable"]):
            assert torch.equal(got, want), (isa, lead, c, o)


def test_fused_layer_checks_its_input_transform() -> None:
    nk = native()
    t = fused_tables(o=8, c=128)
    t["weights"] = u64(8, 3, 3, 2)
    norm = dict(norm_groups=8, norm_weight=f32(128), norm_bias=f32(128), silu=True, pixel_scale=True, padding=(1, 1))
    layer = nk.FusedLayer((1, 128, 6, 6), t["weights"], 128, split=64, **norm)
    x, x2, out = f32(1, 64, 6, 6), f32(1, 64, 6, 6), f32(1, 8, 6, 6)
    layer(x, None, out, 1, x2=x2, mul=f32(1, 128), shift=f32(1, 128), add=f32(1, 8, 6, 6))
    bad_init = [(dict(norm_groups=7), "groups that divide"), (dict(norm_bias=None), "both"),
                (dict(split=32), "multiple of 64"), (dict(eps=0.0), "eps")]
    for change, message in bad_init:
        with pytest.raises(ValueError, match=message):
            nk.FusedLayer((1, 128, 6, 6), t["weights"], 128, **{**norm, "split": 64, **change})
    with pytest.raises(ValueError, match="convs without a threshold"):
        nk.FusedLayer((1, 128, 6, 6), t["weights"], 128, threshold=f32(128), **norm)
    bad_call = [(dict(), "x2: required"), (dict(x2=f32(1, 32, 6, 6)), r"x2: expected shape \(1, 64, 6, 6\)"),
                (dict(x2=x2, mul=f32(2, 128)), r"mul: expected shape \(1, 128\)"),
                (dict(x2=x2, add=f32(1, 8, 6, 5)), r"add: expected shape \(1, 8, 6, 6\)")]
    for extra, message in bad_call:
        with pytest.raises(ValueError, match=message):
            layer(x, None, out, 1, **extra)
    with pytest.raises(ValueError, match="a layer with an input transform packs"):
        layer(x, x, out, 1, x2=x2)
    plain = nk.FusedLayer((1, 128, 6, 6), t["weights"], 128, pixel_scale=True, padding=(1, 1))
    with pytest.raises(ValueError, match="x2: this layer has one input"):
        plain(f32(1, 128, 6, 6), None, out, 1, x2=x2)
    with pytest.raises(ValueError, match="only after a GroupNorm"):
        plain(f32(1, 128, 6, 6), None, out, 1, mul=f32(1, 128))


def test_a_linear_reads_tokens_with_their_leading_extents() -> None:
    nk = native()
    layer = nk.FusedLayer((12, 70), u64(5, 2), 70)
    layer(f32(3, 4, 70), None, f32(3, 4, 5), 1)
    with pytest.raises(ValueError, match=r"x: expected \(\.\.\., 70\) with 12 rows"):
        layer(f32(3, 5, 70), None, f32(3, 4, 5), 1)
    with pytest.raises(ValueError, match="not for a linear layer"):
        layer(f32(12, 70), None, f32(12, 5), 1, add=f32(12, 5))


@pytest.mark.skipif(not any(i.startswith("avx512") for i in ISAS), reason="no AVX-512 here")
def test_both_avx512_packings_give_the_same_words() -> None:
    """Sign packing by GFNI bit-matrix transposes (where the CPU has them) and by ORing bits into words."""
    nk = native()
    generator = torch.Generator().manual_seed(9)
    for c, h, w in [(64, 3, 300), (70, 2, 17), (130, 1, 256), (200, 4, 9), (1, 2, 40)]:
        x = torch.randn(1, c, h, w, generator=generator)
        x[0, 0, 0, :3] = torch.tensor([0.0, -0.0, float("nan")])
        threshold = 0.1 * torch.randn(c, generator=generator)
        words = []
        for transpose in (True, False):
            try:
                nk.set_transpose_packing(transpose)
            except ValueError:
                continue  # no GFNI here: only the other packing
            try:
                out = np.zeros((1, h + 2, (c + 63) // 64, w + 2), np.uint64)
                with using_backend("avx512-vpopcntdq" if "avx512-vpopcntdq" in ISAS else "avx512bw"):
                    nk.pack_nchw(x.numpy(), threshold.numpy(), out, (1, 1), 2)
                words.append(out)
            finally:
                if len(words) == 2 or not transpose:
                    nk.set_transpose_packing(len(words) == 2)
        expected = kernels.pack_signs(~((x - threshold.view(1, -1, 1, 1)) >= 0).permute(0, 2, 3, 1))
        for got in words:
            assert np.array_equal(got[:, 1:-1, :, 1:-1], expected.permute(0, 1, 3, 2).numpy()), (c, h, w)


@pytest.mark.skipif(not {"avx2", "avx512-vpopcntdq"} <= set(ISAS), reason="needs AVX-512 and AVX2 here")
def test_outputs_large_enough_to_be_streamed_equal_the_cached_path() -> None:
    """Outputs of 8 MB and more are written with non-temporal stores on AVX-512 (whole lines): the same
    numbers as the AVX2 path's ordinary stores."""
    generator = torch.Generator().manual_seed(12)
    x = torch.randn(1, 64, 224, 224, generator=generator)
    weight = PackedWeight(pack_signs(torch.rand(48, 1, 1, 64, generator=generator) < 0.5), 64, torch.rand(48))
    bias, results = torch.randn(48, generator=generator), {}
    for isa in ("avx512-vpopcntdq", "avx2"):
        with using_backend(isa):
            results[isa] = FusedCall(tuple(x.shape), weight, Epilogue(bias=bias))(x)
    assert torch.equal(results["avx512-vpopcntdq"], results["avx2"])
