"""Loading the shipped packed models: the old path (build the float training model, SVD per three-branch
layer, pack, then load) against today's (the packed structure on the meta device, checked against the
file, each tensor read once), side by side in one process, after imports.

    python benchmarks/bench_load.py [--repeats 5]

Prints the median and range of ``binsr.load(NAME)``-equivalent load times for each path, run round-robin,
and how many SVDs each path computed. Both paths must give the same network outputs (checked).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import binsr
from binsr.deploy import pack_model
from binsr.models import bind_timesteps
from binsr.models.files import load_weights
from binsr.pipelines import load_network, read_model_spec, shipped_models
from binsr.utils import format_table

SVD_CALLS = [0]
_svd = torch.linalg.svd


def counting_svd(*args, **kwargs):
    SVD_CALLS[0] += 1
    return _svd(*args, **kwargs)


torch.linalg.svd = counting_svd


def old_path(name: str) -> torch.nn.Module:
    """What loading a packed file did before: the float training network (initialised, binarized with an
    SVD per three-branch layer), packed with zero bits, then the file's tensors copied in."""
    path = shipped_models()[name].path
    spec = read_model_spec(path)
    network = spec.network.build()
    pack_model(network, fill=False)
    load_weights(network, path)
    return bind_timesteps(network, spec.process.num_timesteps).eval().requires_grad_(False)


def new_path(name: str) -> torch.nn.Module:
    return load_network(shipped_models()[name].path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=["bimacosr-x4", "bidiffsr-x4"])
    args = parser.parse_args()
    paths = {"old": old_path, "new": new_path}
    times = {(m, p): [] for m in args.models for p in paths}
    svds = {}
    for model in args.models:  # warm-up, the outputs check and the SVD count
        x = None
        outputs = {}
        for label, load in paths.items():
            SVD_CALLS[0] = 0
            network = load(model)
            svds[model, label] = SVD_CALLS[0]
            if x is None:
                x = torch.randn(1, network.in_channels, 32, 32, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                outputs[label] = network(x, torch.tensor([1]))
        assert torch.equal(outputs["old"], outputs["new"]), model
    for _ in range(args.repeats):
        for model in args.models:
            for label, load in paths.items():
                start = time.perf_counter()
                load(model)
                times[model, label].append(time.perf_counter() - start)
    rows = []
    for model in args.models:
        old, new = (statistics.median(times[model, p]) for p in paths)
        for label in paths:
            values = times[model, label]
            rows.append((model, label, f"{statistics.median(values):.3f}", f"{min(values):.3f}–{max(values):.3f}",
                         svds[model, label], f"{old / new:.1f}x" if label == "new" else ""))
    print(f"binsr {binsr.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {args.repeats}, round-robin")
    print(format_table(["model", "path", "median s", "range s", "SVDs", "speedup"], rows, "llrrrr"))


if __name__ == "__main__":
    main()
