"""BiMaCoSR on this CPU: wall time per 256×256 output of the ResShift teacher (15 steps), the FP one-step
student and the 1-bit student, and training step times (teacher step, FP distillation step, 1-bit
distillation step), measured in one run — with the counted compression ratio and OPs speedup beside them.

Sizes: ``small`` is the CPU preset in pixel space (the state is the 256² image); ``paper`` is the paper's
UNet at a 64² latent (what a 256² output costs in the VQ-f4 latent; the autoencoder is not timed).
Training steps: batch 4 of 64-pixel states (small), batch 1 of 64² latents (paper); Adam; the
distillation step includes the teacher's 15 no-grad calls (SinSR computes them on the fly).
Usage: python benchmarks/bench_bimacosr.py [--sizes small,paper] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from binsr.complexity import count_complexity
from binsr.diffusion import DistillConfig, ResShift, SinSRDistillation
from binsr.models import ResShiftUNet, network_preset
from binsr.models.description import apply_binarization
from binsr.models.presets import BIMACOSR_BINARIZATION

SIZES = {"small": ("resshift-unet-small", 256, 64, 4), "paper": ("resshift-unet", 64, 64, 1)}  # preset, infer, train, batch


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(size: str, repeats: int) -> dict[str, float]:
    preset, side, train_side, batch = SIZES[size]
    torch.manual_seed(0)
    teacher = ResShiftUNet(network_preset(preset).config).eval().requires_grad_(False)
    student = copy.deepcopy(teacher).requires_grad_(True)
    binary = copy.deepcopy(student)
    apply_binarization(binary, BIMACOSR_BINARIZATION)
    process = ResShift()
    y = torch.rand(1, 3, side, side) * 2 - 1
    x_T = process.prior_sample(y, torch.randn(y.shape))
    out: dict[str, float] = {}
    with torch.no_grad():
        out["teacher_15"] = timed(lambda: process.teacher_map(teacher, x_T, y), max(1, repeats // 2))
        for name, net in (("fp_onestep", student.eval()), ("binary_onestep", binary.eval())):
            out[name] = timed(lambda net=net: process.one_step(net, x_T, y), repeats)

    y = torch.rand(batch, 3, train_side, train_side) * 2 - 1
    x0 = torch.rand_like(y) * 2 - 1
    generators = lambda: [torch.Generator().manual_seed(i) for i in range(batch)]  # noqa: E731

    def step(net: torch.nn.Module, loss_fn) -> float:
        net.train()
        optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], 1e-5)

        def once() -> None:
            loss = loss_fn(net)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return timed(once, repeats)

    distill = SinSRDistillation(process, teacher, DistillConfig())
    out["train_teacher"] = step(copy.deepcopy(student), lambda net: process.loss(net, x0, y, generators()))
    out["train_fp_distill"] = step(student, lambda net: distill.loss(net, x0, y, generators())[0])
    out["train_binary_distill"] = step(binary, lambda net: distill.loss(net, x0, y, generators())[0])
    fp_counts = count_complexity(teacher, *teacher.example_inputs(side, side))
    bin_counts = count_complexity(binary, *binary.example_inputs(side, side))
    out.update(bin_counts.compared_to(fp_counts))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,paper")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for size in args.sizes.split(","):
        r = run(size, args.repeats)
        side = SIZES[size][1]
        print(f"\n[{size}] per 256x256 output (state {side}x{side}), seconds:")
        print(f"  teacher 15 steps   {r['teacher_15']:8.3f}  ({r['teacher_15'] / r['binary_onestep']:.1f}x the 1-bit student)")
        print(f"  FP one-step        {r['fp_onestep']:8.3f}  ({r['teacher_15'] / r['fp_onestep']:.1f}x faster than the teacher)")
        print(f"  1-bit one-step     {r['binary_onestep']:8.3f}  ({r['binary_onestep'] / r['fp_onestep']:.2f}x the FP student's "
              f"time: simulated binary layers, not packed kernels)")
        print(f"  training step, teacher (x0 MSE)     {r['train_teacher']:8.3f}")
        print(f"  training step, FP distillation      {r['train_fp_distill']:8.3f}  "
              f"({r['train_fp_distill'] / r['train_teacher']:.1f}x the teacher step)")
        print(f"  training step, 1-bit distillation   {r['train_binary_distill']:8.3f}  "
              f"({r['train_binary_distill'] / r['train_fp_distill']:.2f}x the FP distillation step)")
        print(f"  counted: compression ratio {r['compression_ratio']:.2f}x, OPs speedup {r['ops_speedup']:.2f}x "
              f"(paper: 23.8x, 27.4x)")


if __name__ == "__main__":
    main()
