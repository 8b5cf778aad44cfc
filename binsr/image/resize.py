"""MATLAB-compatible bicubic ``imresize`` in PyTorch.

Every SR benchmark makes its LR images with MATLAB's ``imresize(hr, 1/s, 'bicubic')``. OpenCV,
Pillow and ``torch.nn.functional.interpolate`` all differ from it (no antialiasing, another kernel
constant or other border rules), which moves PSNR by tenths of a dB, so this is written out here:

* cubic kernel with a = -0.5 (Keys);
* when downscaling, the kernel is stretched by 1/scale (antialiasing);
* borders are handled by symmetric reflection (index -1 maps to 0, n maps to n-1);
* output size is ceil(input · scale);
* the two dimensions are resized separately, the one with the smaller scale first (MATLAB's order;
  height first on a tie). Weights are computed in float64 and then cast to the input's dtype.
"""

from __future__ import annotations

from collections.abc import Iterator

import math

import torch

_KERNEL_WIDTH = 4.0  # support of the cubic kernel, in input pixels, at scale 1
# Up to this many (out × in) entries a dimension is resampled as one dense matmul (BLAS, faster
# than gathering taps at benchmark sizes); beyond it, by gathering the few taps of each output pixel.
DENSE_MAX_ENTRIES = 1 << 22
BAND_CHUNK = 64  # rows BandResize resamples at a time (its temporaries: this many rows of the image's width)


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5, as in MATLAB's imresize."""
    absx = x.abs()
    absx2 = absx * absx
    absx3 = absx2 * absx
    inner = 1.5 * absx3 - 2.5 * absx2 + 1.0
    outer = -0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0
    return inner * (absx <= 1) + outer * ((absx > 1) & (absx <= 2))


def resize_weights(
    in_len: int, out_len: int, scale: float, antialiasing: bool = True, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-pixel source indices and weights along one dimension.

    Returns ``(indices, weights)``, both of shape (out_len, P): output pixel i is
    ``sum_p weights[i, p] * input[indices[i, p]]``. Indices are 0-based and already reflected
    into [0, in_len); weights are float64 and each row sums to 1.
    """
    shrink = scale < 1 and antialiasing
    kernel_width = _KERNEL_WIDTH / scale if shrink else _KERNEL_WIDTH
    # Output pixel centres (1-based, as in MATLAB) mapped into input coordinates.
    x = torch.arange(1, out_len + 1, dtype=torch.float64, device=device)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64, device=device)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic(scale * distance) if shrink else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Symmetric border: reflect 1-based index i into [1, in_len] over a period of 2·in_len.
    period = 2 * in_len
    folded = torch.remainder(indices.long() - 1, period)
    indices = torch.where(folded < in_len, folded, period - 1 - folded)
    # Drop tap columns that are zero for every output pixel (MATLAB does the same).
    keep = (weights != 0).any(dim=0)
    return indices[:, keep], weights[:, keep]


def output_length(in_len: int, scale: float) -> int:
    """ceil(in_len · scale), robust to float error (e.g. 228 · (1/3) must give 76, not 77)."""
    exact = in_len * scale
    nearest = round(exact)
    return int(nearest) if abs(exact - nearest) < 1e-9 * max(1.0, exact) else math.ceil(exact)


def imresize(
    image: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    antialiasing: bool = True,
) -> torch.Tensor:
    """Resize the last two dimensions of ``image`` (..., H, W) like MATLAB's bicubic ``imresize``.

    Give either ``scale`` (the same factor for H and W, e.g. 1/4 to make ×4 LR images) or
    ``size`` = (out_h, out_w). Works on any device and floating dtype; leading dims are batch.
    Values are not clipped (bicubic overshoots slightly at edges, as in MATLAB before rounding).
    """
    if not torch.is_floating_point(image):
        raise TypeError(f"imresize needs a floating-point tensor, got {image.dtype}")
    if image.dim() < 2:
        raise ValueError(f"imresize needs a tensor of shape (..., H, W), got {tuple(image.shape)}")
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    in_h, in_w = image.shape[-2:]
    if size is not None:
        out_h, out_w = size
        scales = (out_h / in_h, out_w / in_w)
    else:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        scales = (scale, scale)
        out_h, out_w = output_length(in_h, scale), output_length(in_w, scale)
    if min(out_h, out_w) < 1:
        raise ValueError(f"resizing {in_h}x{in_w} by {scales} leaves no pixels")

    compute_dtype = image.dtype if image.dtype in (torch.float32, torch.float64) else torch.float32
    out = image.to(compute_dtype)
    # MATLAB resizes the dimension with the smaller scale first (stable sort: height on a tie).
    order = sorted(range(2), key=lambda d: scales[d])
    for dim in order:
        out_len = (out_h, out_w)[dim]
        out = _resize_last_dim(out.transpose(-1, -2) if dim == 0 else out, out_len, scales[dim], antialiasing)
        if dim == 0:
            out = out.transpose(-1, -2)
    return out.to(image.dtype)


def imresize_window(image: torch.Tensor, scale: float, rows: tuple[int, int], cols: tuple[int, int],
                    antialiasing: bool = True) -> torch.Tensor:
    """Rows [r0, r1) × columns [c0, c1) of ``imresize(image, scale)``, computed from only the input pixels
    they need: the crop of the whole result (up to float rounding), in time and memory proportional to the
    window. Tiled upscaling computes each tile's bicubic condition this way, so no whole-size image exists.
    """
    if not torch.is_floating_point(image):
        raise TypeError(f"imresize_window needs a floating-point tensor, got {image.dtype}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    windows = []
    for (start, stop), in_len in zip((rows, cols), image.shape[-2:]):
        out_len = output_length(in_len, scale)
        if not 0 <= start < stop <= out_len:
            raise ValueError(f"window [{start}, {stop}) is outside the {out_len} pixels of the result")
        indices, weights = resize_weights(in_len, out_len, scale, antialiasing, device=image.device)
        indices, weights = indices[start:stop], weights[start:stop]
        low = int(indices.min())
        windows.append((low, int(indices.max()) + 1, indices - low, weights))
    (row_low, row_high, row_taps, row_weights), (col_low, col_high, col_taps, col_weights) = windows
    compute_dtype = image.dtype if image.dtype in (torch.float32, torch.float64) else torch.float32
    out = image[..., row_low:row_high, col_low:col_high].to(compute_dtype)
    # one scale for both dimensions: MATLAB's order on a tie, height first
    out = _resample(out.transpose(-1, -2), row_taps, row_weights).transpose(-1, -2)
    return _resample(out, col_taps, col_weights).to(image.dtype)


class BandResize:
    """``imresize(image, size=out_size)`` of an image that arrives in row bands, top to bottom: :meth:`push`
    takes the next (..., rows, W) band and yields (first output row, (..., rows', out_w)) bands as soon as the
    input rows they need have arrived, holding only the input rows still needed (the kernel's reach), so the
    whole image never exists. Columns are resampled per band, then rows: the order differs from MATLAB's
    (smaller scale first), which changes results by float rounding only (1e-12 in float64)."""

    def __init__(self, in_size: tuple[int, int], out_size: tuple[int, int], antialiasing: bool = True,
                 dtype: torch.dtype = torch.float64) -> None:
        (in_h, in_w), (out_h, out_w) = in_size, out_size
        if min(in_h, in_w, out_h, out_w) < 1:
            raise ValueError(f"cannot resize {in_h}x{in_w} to {out_h}x{out_w}")
        self.in_h, self.in_w, self.out_h, self.dtype = in_h, in_w, out_h, dtype
        self.rows = resize_weights(in_h, out_h, out_h / in_h, antialiasing)
        self.cols = resize_weights(in_w, out_w, out_w / in_w, antialiasing)
        indices = self.rows[0]
        self.ready_after = indices.max(dim=1).values  # output row o needs input rows up to this one
        self.keep_from = indices.min(dim=1).values.flip(0).cummin(0).values.flip(0)  # smallest row still needed
        self.buffer: torch.Tensor | None = None
        self.buffer_top = self.received = self.next_out = 0

    def push(self, band: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """The output rows that ``band`` (..., rows, W), the next input rows, completes, in bands of at most
        :data:`BAND_CHUNK` rows; each yielded band is computed from at most ``BAND_CHUNK`` input rows plus the
        kernel's reach, so no temporary grows with the band."""
        if band.shape[-1] != self.in_w or self.received + band.shape[-2] > self.in_h:
            raise ValueError(f"band {tuple(band.shape)} does not continue a {self.in_h}x{self.in_w} image at row "
                             f"{self.received}")
        for start in range(0, band.shape[-2], BAND_CHUNK):
            yield from self._push_rows(band[..., start:start + BAND_CHUNK, :])

    def _push_rows(self, rows: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        resized = _resample(rows.to(self.dtype), *self.cols)
        self.buffer = resized if self.buffer is None else torch.cat([self.buffer, resized], dim=-2)
        self.received += rows.shape[-2]
        ready = self.next_out
        while ready < self.out_h and int(self.ready_after[ready]) < self.received:
            ready += 1
        while self.next_out < ready:
            stop = min(ready, self.next_out + BAND_CHUNK)
            indices = self.rows[0][self.next_out:stop]
            low, high = int(indices.min()) - self.buffer_top, int(indices.max()) + 1 - self.buffer_top
            window = self.buffer[..., low:high, :].transpose(-1, -2)
            out = _resample(window, indices - self.buffer_top - low, self.rows[1][self.next_out:stop])
            yield self.next_out, out.transpose(-1, -2)
            self.next_out = stop
        if self.next_out < self.out_h:  # drop the rows no later output reaches
            drop = int(self.keep_from[self.next_out]) - self.buffer_top
            if drop > 0:
                self.buffer, self.buffer_top = self.buffer[..., drop:, :], self.buffer_top + drop
        else:
            self.buffer = None


def _resize_last_dim(x: torch.Tensor, out_len: int, scale: float, antialiasing: bool) -> torch.Tensor:
    """Apply the 1-D bicubic resampling along the last dimension of x (..., L) → (..., out_len)."""
    indices, weights = resize_weights(x.shape[-1], out_len, scale, antialiasing, device=x.device)
    return _resample(x, indices, weights)


def _resample(x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """x (..., L) → (..., O): output o = Σ_p weights[o, p] · x[..., indices[o, p]] (indices into [0, L))."""
    out_len, in_len = indices.shape[0], x.shape[-1]
    if out_len * in_len <= DENSE_MAX_ENTRIES:
        matrix = torch.zeros(out_len, in_len, dtype=torch.float64, device=x.device)
        matrix.scatter_add_(1, indices, weights)  # reflected taps of one pixel add up
        return x @ matrix.T.to(x.dtype)
    gathered = x[..., indices]  # (..., out_len, taps)
    return torch.einsum("...ot,ot->...o", gathered, weights.to(x.dtype))
