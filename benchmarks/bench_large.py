"""Peak memory and time of ``binsr upscale`` on large images: memory must follow the tile, not the image.

For each input side (512, 1000, 2000, 4000 by default) and model (bicubic and the default model), a fresh
process runs the real command (``binsr upscale IMAGE --model M -o DIR``, 2 threads) on a synthetic photo-like
PNG, and reports its wall time and peak RSS (VmHWM, its own high-water mark) beside the size of its 8-bit output
and the target: peak ≤ 1.5 GB + the 8-bit output. With ``--outscale F`` each model also runs with that final
scale (the resampled output streams too). One run per cell (a 4000² input takes minutes); the models alternate
within each size.

Usage: python benchmarks/bench_large.py [--sides 512 1000 2000 4000] [--models bicubic bimacosr-x4] [--outscale F]
       [--json F]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from binsr.bench import write_results
from binsr.pipelines import DEFAULT_MODEL, model_scale
from binsr.utils import format_table

PROGRAM = """
import sys
from binsr.cli import main
code = main(sys.argv[1:])
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")), file=sys.stderr)
sys.exit(code)
"""
GB = 2**30


def photo_like(side: int, seed: int = 0) -> np.ndarray:
    """(side, side, 3) uint8: smooth colour fields with fine noise, so PNG and the models do real work."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (max(2, side // 16), max(2, side // 16), 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((side, side), Image.BICUBIC), dtype=np.int16)
    return np.clip(smooth + rng.integers(-6, 7, smooth.shape), 0, 255).astype(np.uint8)


def run(image: Path, model: str, out: Path, outscale: float | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of one ``binsr upscale`` process."""
    scale = ["--scale", "4"] if model == "bicubic" else []
    scale += ["--outscale", f"{outscale:g}"] if outscale else []
    command = [sys.executable, "-c", PROGRAM, "upscale", str(image), "--model", model, *scale, "-o", str(out),
               "--quiet", "--threads", "2", "--overwrite"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{model} on {image.name} failed: {done.stderr.strip()[-500:]}")
    return seconds, int(done.stderr.split()[-1]) * 1024 / GB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 1000, 2000, 4000])
    parser.add_argument("--models", nargs="+", default=["bicubic", DEFAULT_MODEL])
    parser.add_argument("--outscale", type=float, default=None, help="also run each model with this final scale")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows, table = [], []
    with tempfile.TemporaryDirectory() as folder:
        for side in args.sides:
            image = Path(folder) / f"photo_{side}.png"
            Image.fromarray(photo_like(side)).save(image)
            for model, outscale in [(m, None) for m in args.models] + [(m, args.outscale) for m in args.models
                                                                        if args.outscale]:
                scale = outscale or (4 if model == "bicubic" else model_scale(model))
                output = round(side * scale) ** 2 * 3 / GB
                seconds, peak = run(image, model, Path(folder) / "out", outscale)
                label = f"{model} --outscale {outscale:g}" if outscale else model
                row = {"model": label, "side": side, "seconds": round(seconds, 1), "peak_gb": round(peak, 3),
                       "output_gb": round(output, 3), "target_gb": round(1.5 + output, 3)}
                rows.append(row)
                table.append([label, f"{side}²", f"{seconds:.1f} s", f"{peak:.2f} GB", f"{output:.2f} GB",
                              f"{1.5 + output:.2f} GB", "yes" if peak <= 1.5 + output else "NO"])
                print(format_table(["model", "input", "time", "peak RSS", "8-bit output", "target", "met"],
                                   table[-1:]), flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"\n{cpu}, {torch.get_num_threads()} threads available, binsr upscale --threads 2; one run per cell")
    print(format_table(["model", "input", "time", "peak RSS", "8-bit output", "target", "met"], table))
    if args.json:
        write_results(args.json, rows)


if __name__ == "__main__":
    main()
