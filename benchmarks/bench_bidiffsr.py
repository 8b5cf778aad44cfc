"""BI-DiffSR on this CPU: training step time (forward, L1 loss, backward, Adam; batch 1) at 128² and 256²,
one denoising forward and DDIM-50 sampling per 256×256 output, and peak memory — for the paper's
UNet, the FP SR3 baseline and the CPU preset. Each model runs in its own process, so peak RSS is its own.

Reference (the issue, released BI-DiffSR code on this machine, 2 cores, fp32): training step 2.9 s at
128² and 10.5 s at 256²; one denoising forward at 256² 3.8 s.
Usage: python benchmarks/bench_bidiffsr.py [--archs bidiffsr,bidiffsr-small,sr3] [--ddim-steps 50]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

RELEASED = {"train_128": 2.9, "train_256": 10.5, "forward_256": 3.8}


def measure(arch: str, ddim_steps: int) -> dict[str, float]:
    from binsr.diffusion import SR3
    from binsr.models import build

    torch.manual_seed(0)
    model = build(arch)
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    result: dict[str, float] = {}
    for size in (128, 256):
        x, t, target = torch.randn(1, 6, size, size), torch.tensor([500]), torch.randn(1, 3, size, size)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            loss = (model(x, t) - target).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        result[f"train_{size}"] = min(times[1:])
    model.eval()
    x = torch.randn(1, 6, 256, 256)
    with torch.no_grad():
        times = []
        for _ in range(3):
            start = time.perf_counter()
            model(x, torch.tensor([500]))
            times.append(time.perf_counter() - start)
        result["forward_256"] = min(times[1:])
        start = time.perf_counter()
        SR3().sample(model, torch.rand(1, 3, 256, 256), steps=ddim_steps)
        result["ddim_256"] = time.perf_counter() - start
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="bidiffsr,bidiffsr-small,sr3")
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.ddim_steps)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, batch 1; DDIM-{args.ddim_steps}")
    header = f"{'arch':<16}{'train 128²':>12}{'train 256²':>12}{'fwd 256²':>10}{'DDIM 256²':>11}{'peak RSS':>10}"
    print(header)
    rows = {}
    for arch in args.archs.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", arch, "--ddim-steps", str(args.ddim_steps)],
                             check=True, capture_output=True, text=True).stdout
        r = rows[arch] = json.loads(out.strip().splitlines()[-1])
        print(f"{arch:<16}{r['train_128']:>11.2f}s{r['train_256']:>11.2f}s{r['forward_256']:>9.2f}s"
              f"{r['ddim_256']:>10.1f}s{r['peak_rss_gib']:>8.2f}GiB")
    if "bidiffsr" in rows:
        r = rows["bidiffsr"]
        print("\nbidiffsr vs the released implementation on this machine (speed-up = released / binsr):")
        for key, label in (("train_128", "training step 128²"), ("train_256", "training step 256²"),
                           ("forward_256", "denoising forward 256²")):
            print(f"  {label:<24} released {RELEASED[key]:5.2f}s  binsr {r[key]:5.2f}s  -> {RELEASED[key] / r[key]:.2f}x")


if __name__ == "__main__":
    main()
