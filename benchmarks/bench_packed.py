"""Real 1-bit inference on this CPU: packed XNOR-popcount conv vs PyTorch fp32 conv2d on the binary
layer shapes of BI-DiffSR and BiMaCoSR, end-to-end latency of 1-bit models (FP / simulated / packed)
for a 256x256 output, and file sizes — all measured in this run (``binsr bench`` does one model).

Usage: python benchmarks/bench_packed.py [--models bidiffsr bimacosr] [--repeats 10] [--json out.json]
For AVX2 against AVX2 on an AVX-512 machine: ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_packed.py --isa avx2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from binsr.deploy import backend, set_backend
from binsr.bench import bench_layer, bench_model, format_bench, layer_shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["bidiffsr", "bimacosr", "bidiffsr-small", "bimacosr-small"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--isa", help="kernel instruction set (torch, native, avx512-vpopcntdq, avx2, popcnt, portable)")
    parser.add_argument("--json", help="write all results here")
    args = parser.parse_args()
    if args.isa:
        set_backend(args.isa)
    machine = {"threads": torch.get_num_threads(), "backend": backend(), "torch": torch.__version__}
    layers = [bench_layer(c, k, s, args.repeats) for c, k, s in tqdm(list(layer_shapes()), desc="layers")]
    results = {"machine": machine, "layers": layers, "models": {}}
    for index, name in enumerate(args.models):
        with tempfile.TemporaryDirectory() as tmp:
            model, size = bench_model(name, max(1, args.repeats // 3), Path(tmp))
        results["models"][name] = {"model": model, "size": size}
        shown = {"machine": machine, "layers": layers if index == 0 else [], "model": model, "size": size}
        print(format_bench(shown), end="\n\n", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
