"""BiMaCoSR's three-branch layer (BMB 1-bit + LRMB rank 8 + SMB, as shipped) against the FP conv it replaces,
at the layer shapes of the shipped bimacosr-x4 network for 64x64 and 256x256 LR inputs, measured side by side
in one run (round-robin, medians).

Each row takes a three-branch layer of the shipped packed model with the input it gets in a real network call,
and times: the packed layer (one native call), and PyTorch's fp32 conv2d of the same shape with a bias (what
the full-precision twin runs there). The packed layer's input transform is off here (plain layers); the
block-level folding is measured by benchmarks/bench_upscale.py and `binsr bench --model NAME`.

Usage: python benchmarks/bench_three_branch.py [--sizes 64 256] [--repeats 15] [--json F]
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

import torch
import torch.nn.functional as F

import binsr
from binsr.deploy import backend
from binsr.bench import round_robin_ms, write_results
from binsr.deploy.layers import PackedThreeBranch
from binsr.utils import format_table
from binsr.cli.process import configure_process


def layer_inputs(upscaler: object, size: int) -> list[tuple[str, PackedThreeBranch, torch.Tensor]]:
    """(name, layer, its input) for every 3x3 three-branch conv of the network at a size x size LR input."""
    network = upscaler.model
    names = {id(m): n for n, m in network.named_modules()}
    seen: list[tuple[str, PackedThreeBranch, torch.Tensor]] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append((names[id(m)], m, args[0])))
             for m in network.modules() if isinstance(m, PackedThreeBranch) and getattr(m.bmb, "kernel_size", None)
             == (3, 3) and m.bmb.stride == (1, 1)]
    lr = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad(), binsr.deploy.using_input_fusion(False):  # inputs as plain tensors
        upscaler.upscale(lr)
    for hook in hooks:
        hook.remove()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 256], help="LR input sides")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    configure_process()  # as binsr upscale runs: threads on the free cores, freed maps kept
    upscaler = binsr.load("bimacosr-x4")
    print(f"binary kernels: {backend()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    rows = []
    for size in args.sizes:
        shapes: dict[tuple, tuple[str, PackedThreeBranch, torch.Tensor]] = {}
        for name, layer, x in layer_inputs(upscaler, size):
            shapes.setdefault((tuple(x.shape), layer.bmb.out_features), (name, layer, x))
        for (shape, out), (name, layer, x) in shapes.items():
            weight, bias = torch.randn(out, shape[1], 3, 3), torch.randn(out)
            with torch.no_grad():
                times = round_robin_ms({"fp32": partial(F.conv2d, x, weight, bias, padding=1),
                                        "three-branch": partial(layer, x)}, args.repeats)
            fp, packed = statistics.median(times["fp32"]), statistics.median(times["three-branch"])
            rows.append({"input": size, "layer": name, "shape": f"{shape[1]}->{out} 3x3 @ {shape[2]}x{shape[3]}",
                         "fp32_ms": round(fp, 3), "three_branch_ms": round(packed, 3), "speedup": round(fp / packed, 2),
                         "spread_fp32": [round(min(times["fp32"]), 3), round(max(times["fp32"]), 3)],
                         "spread_three_branch": [round(min(times["three-branch"]), 3),
                                                 round(max(times["three-branch"]), 3)]})
            print(f"{size}: {rows[-1]['shape']}: fp32 {fp:.3f} ms, three-branch {packed:.3f} ms, "
                  f"{fp / packed:.2f}x", flush=True)
    print(format_table(["LR input", "layer", "shape", "fp32 conv ms", "three-branch ms", "speedup"],
                       [[r["input"], r["layer"], r["shape"], r["fp32_ms"], r["three_branch_ms"], f"{r['speedup']}x"]
                        for r in rows], "llrrrr"))
    if args.json:
        write_results(args.json, rows)


if __name__ == "__main__":
    main()
