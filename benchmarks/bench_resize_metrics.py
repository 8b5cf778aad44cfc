"""Throughput of the MATLAB bicubic resize and of the metrics on Set14 (images/s), measured in one run.

For context the same images are also resized with torch's own bicubic (``F.interpolate``, antialiased
when shrinking), which is *not* MATLAB-compatible, so the price of compatibility is visible as a ratio.
Usage: python benchmarks/bench_resize_metrics.py [--data DIR] [--scale 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from binsr.data import SREvalDataset, resolve_data_dir
from binsr.errors import MetricUnavailable
from binsr.image import imresize
from binsr.metrics import LPIPS, load_lpips, psnr, ssim


def images_per_second(fn: Callable[[int], object], count: int, repeats: int) -> float:
    """Median over ``repeats`` passes (after one warm-up pass) of count / seconds."""
    for i in range(count):
        fn(i)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(count):
            fn(i)
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="Set14")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    dataset = SREvalDataset(resolve_data_dir(args.data), args.scale)
    samples = [dataset[i] for i in range(len(dataset))]
    hrs = [s["hr"].unsqueeze(0) for s in samples]
    lrs = [s["lr"].unsqueeze(0) for s in samples]
    srs = [imresize(lr, args.scale).clamp(0, 1) for lr in lrs]
    n, s = len(samples), args.scale
    megapixels = sum(h.shape[-1] * h.shape[-2] for h in hrs) / 1e6
    print(f"{args.data}: {n} images, {megapixels:.2f} HR megapixels, x{s}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")

    try:
        lpips_model, lpips_note = load_lpips(), "calibrated weights"
    except MetricUnavailable:
        lpips_model, lpips_note = LPIPS(), "random weights: cost only, weights unavailable"

    rows = [
        ("binsr imresize down 1/s (MATLAB, float32)", lambda i: imresize(hrs[i], 1 / s)),
        ("torch interpolate down (antialias, float32)",
         lambda i: F.interpolate(hrs[i], scale_factor=1 / s, mode="bicubic", antialias=True)),
        ("binsr imresize up xs (MATLAB, float32)", lambda i: imresize(lrs[i], s)),
        ("torch interpolate up (float32)", lambda i: F.interpolate(lrs[i], scale_factor=s, mode="bicubic")),
        ("binsr imresize down 1/s (float64)", lambda i: imresize(hrs[i].double(), 1 / s)),
        ("PSNR (Y, float64)", lambda i: psnr(srs[i], hrs[i], s)),
        ("SSIM (Y, float64)", lambda i: ssim(srs[i], hrs[i], s)),
        (f"LPIPS AlexNet ({lpips_note})", lambda i: lpips_model(srs[i], hrs[i])),
    ]
    results = {}
    with torch.no_grad():
        for name, fn in rows:
            results[name] = images_per_second(fn, n, args.repeats)
            print(f"{name:<58} {results[name]:8.1f} images/s  {results[name] * megapixels / n:7.2f} MP/s")
    down = results["binsr imresize down 1/s (MATLAB, float32)"] / results["torch interpolate down (antialias, float32)"]
    up = results["binsr imresize up xs (MATLAB, float32)"] / results["torch interpolate up (float32)"]
    print(f"ratio binsr/torch throughput: downscale {down:.2f}x, upscale {up:.2f}x")


if __name__ == "__main__":
    main()
