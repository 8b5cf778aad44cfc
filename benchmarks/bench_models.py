"""Shipped models side by side: in-process ``upscaler.upscale(lr)`` time of each packed model on the same
inputs, run round-robin (one warm-up call each, then ``--repeats`` rounds), medians and the spread between
rounds, and each model's time over the first one's. Made to show that two models of one architecture and
kernels (bimacosr-x4 and bimacosr-real-x4) run at the same speed: only their weights differ.

Usage: python benchmarks/bench_models.py [--models bimacosr-x4 bimacosr-real-x4] [--sizes 64 128] [--repeats 9]
       [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
from functools import partial

import torch

import binsr
from binsr.cli.infer import AUTO_TILE
from binsr.bench import round_robin_ms
from binsr.utils import format_table
from binsr.cli.process import configure_process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["bimacosr-x4", "bimacosr-real-x4"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128], help="LR input sides")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    configure_process()  # as binsr upscale runs: threads on the free cores, freed maps kept
    upscalers = {name: binsr.load(name, auto_tile=AUTO_TILE) for name in args.models}
    rows, results = [], []
    for size in args.sizes:
        lr = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            times = round_robin_ms({name: partial(up.upscale, lr) for name, up in upscalers.items()},
                                   args.repeats, warmup=1)
        first = statistics.median(times[args.models[0]])
        for name, values in times.items():
            median = statistics.median(values)
            result = {"model": name, "input": f"{size}x{size}", "median_s": round(median / 1e3, 4),
                      "min_s": round(min(values) / 1e3, 4), "max_s": round(max(values) / 1e3, 4),
                      "vs_first": round(median / first, 3), "threads": torch.get_num_threads()}
            results.append(result)
            rows.append([name, result["input"], f"{result['median_s']:.3f}",
                         f"{result['min_s']:.3f}–{result['max_s']:.3f}", f"{result['vs_first']:.3f}"])
    print(format_table(["model", "LR input", "median s", "min–max s", f"time / {args.models[0]}"], rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
