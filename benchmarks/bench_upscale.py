"""End-to-end `binsr upscale` on this CPU with the shipped models: packed 1-bit kernels vs the same network
simulated in float (1-bit values, float convs) vs its full-precision twin, measured side by side in one run.

For each shipped model (default: all) and each LR input size (default 64 and 256):
* ``cli_s``: wall time of the command a user types, ``binsr upscale IMG.png --model NAME -o DIR`` in a fresh
  process (Python start, imports, loading the packed file, reading, upscaling, writing the PNG);
  (median of ``--cli-repeats`` runs);
* ``packed_s`` / ``simulated_s`` / ``fp_s``: median in-process ``upscaler.upscale(lr)`` time (bicubic condition,
  padding, every network call, decoding; outputs over 512² in 512-pixel tiles, as ``binsr upscale`` does)
  with the packed network, the simulated 1-bit network and the FP network of the same architecture. The
  simulated and FP networks are built from the packed file's description with untrained weights: their time
  does not depend on the weight values, and no float copy of the shipped weights exists in the package;
* ``bound``: the most the packed network could gain over the FP one if its binary layers took no time at all,
  FP network time / time of its other parts (norms, activations, attention, the FP head and tail, ...), from
  hooks that time the FP network's layers that are binary in the packed one (one network call, medians).

Usage: python benchmarks/bench_upscale.py [--models bimacosr-x4 ...] [--sizes 64 256] [--repeats 3]
       [--cli-repeats 3] [--json F]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import binsr
from binsr.cli.infer import AUTO_TILE
from binsr.deploy import backend
from binsr.bench import fp_twin, median_ms, write_results
from binsr.deploy.layers import PackedThreeBranch, _PackedBinaryLayer
from binsr.image import write_png
from binsr.models import bind_timesteps
from binsr.pipelines import DEFAULT_MODEL, read_model_spec, shipped_models
from binsr.utils import format_table
from binsr.cli.process import configure_process


def float_twins(path: Path) -> dict[str, torch.nn.Module]:
    """The simulated 1-bit network and the FP network described by the packed file ``path``."""
    spec = read_model_spec(path)
    simulated = bind_timesteps(spec.network.build(), spec.process.num_timesteps)
    return {"simulated": simulated.eval(), "fp": fp_twin(spec.network).eval()}


def upscaler_with(upscaler: object, network: torch.nn.Module, lr: torch.Tensor) -> Callable[[], torch.Tensor]:
    """upscaler.upscale(lr) with ``network`` in place of the upscaler's own."""
    twin = copy.copy(upscaler)
    twin.model = network
    return lambda: twin.upscale(lr)


def cli_seconds(name: str, image: Path, out: Path, repeats: int) -> float:
    """Median wall time of the ``binsr upscale`` command in a fresh process."""
    command = [sys.executable, "-m", "binsr", "upscale", str(image), "--model", name, "-o", str(out), "--quiet"]
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        subprocess.run(command + ["-o", str(out / str(index))], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def network_input(upscaler: object, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (x, t) of the first network call an upscale of ``lr`` makes."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = upscaler.model.register_forward_pre_hook(lambda m, args: calls.append(args) if not calls else None)
    with torch.no_grad():
        upscaler.upscale(lr)
    hook.remove()
    return calls[0]


def fp_parts_bound(packed: torch.nn.Module, fp: torch.nn.Module, x: torch.Tensor, t: torch.Tensor,
                   repeats: int) -> float:
    """FP network time / the time of its parts that stay FP in the packed network (one call, medians)."""
    binary = [name for name, module in packed.named_modules() if isinstance(module, (PackedThreeBranch,
                                                                                   _PackedBinaryLayer))]
    outermost = [n for n in binary if not any(n.startswith(f"{other}.") for other in binary)]
    spent: list[float] = []
    starts: dict[str, float] = {}
    modules = dict(fp.named_modules())
    hooks = [modules[n].register_forward_pre_hook(lambda m, a, n=n: starts.__setitem__(n, time.perf_counter()))
             for n in outermost]
    hooks += [modules[n].register_forward_hook(lambda m, a, o, n=n: spent.append(time.perf_counter() - starts[n]))
              for n in outermost]
    totals, layers = [], []
    with torch.no_grad():
        for index in range(repeats + 1):
            spent.clear()
            start = time.perf_counter()
            fp(x, t)
            if index:  # after one warm-up call
                totals.append(time.perf_counter() - start)
                layers.append(sum(spent))
    for hook in hooks:
        hook.remove()
    total, layer_time = statistics.median(totals), statistics.median(layers)
    return total / (total - layer_time)


def bench(name: str, sizes: list[int], repeats: int, cli_repeats: int, workdir: Path) -> list[dict[str, object]]:
    model = shipped_models()[name]
    upscaler = binsr.load(name, auto_tile=AUTO_TILE)  # as binsr upscale: large outputs in tiles, own DDIM steps
    networks = {"packed": upscaler.model, **float_twins(model.path)}
    rows = []
    for size in sizes:
        lr = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
        image = workdir / f"lr{size}.png"
        write_png(image, lr[0])
        row: dict[str, object] = {"model": name, "input": f"{size}x{size}",
                                  "output": f"{size * upscaler.scale}x{size * upscaler.scale}",
                                  "cli_s": round(cli_seconds(name, image, workdir, cli_repeats), 3)}
        contenders = {kind: upscaler_with(upscaler, network, lr) for kind, network in networks.items()}
        with torch.no_grad():  # round-robin, after one warm-up call each
            for kind, ms in median_ms(contenders, repeats, warmup=1).items():
                row[f"{kind}_s"] = round(ms / 1e3, 3)
        row["packed_vs_simulated"] = round(row["simulated_s"] / row["packed_s"], 2)
        row["packed_vs_fp"] = round(row["fp_s"] / row["packed_s"], 2)
        row["bound"] = round(fp_parts_bound(upscaler.model, networks["fp"], *network_input(upscaler, lr), repeats), 2)
        rows.append(row)
        print(f"{name} {row['input']}: cli {row['cli_s']} s, packed {row['packed_s']} s, "
              f"simulated {row['simulated_s']} s, fp {row['fp_s']} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="shipped model names [default: all, the default model first]")
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 256], help="LR input sides")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cli-repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    configure_process()  # as binsr upscale runs: threads on the free cores, freed maps kept
    available = shipped_models()
    names = args.models or sorted(available, key=lambda n: (n != DEFAULT_MODEL, n))
    unknown = [n for n in names if n not in available]
    if unknown:
        parser.error(f"not shipped: {', '.join(unknown)} (shipped: {', '.join(available) or 'none'})")
    print(f"binary kernels: {backend()}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows += bench(name, args.sizes, args.repeats, args.cli_repeats, Path(tmp))
    headers = ["model", "input", "output", "binsr upscale (s)", "packed (s)", "simulated (s)", "FP (s)",
               "packed vs simulated", "packed vs FP", "bound"]
    print(format_table(headers, [[r["model"], r["input"], r["output"], r["cli_s"], r["packed_s"], r["simulated_s"],
                                  r["fp_s"], f"{r['packed_vs_simulated']}x", f"{r['packed_vs_fp']}x", f"{r['bound']}x"]
                                 for r in rows]))
    if args.json:
        write_results(args.json, rows)


if __name__ == "__main__":
    main()
