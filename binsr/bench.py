"""``binsr bench``: measured speed and size of real 1-bit inference on this CPU (the harness; the kernels it
times are :mod:`binsr.deploy`'s).

Three parts, each measured side by side in one run:

* layers — PyTorch fp32 ``conv2d`` (oneDNN) against the packed binary layer (one fused native call:
  sign packing, XNOR-popcount, α) on the binary layer shapes of BI-DiffSR and BiMaCoSR (C ∈ {64, 128,
  256}, 3×3 and 1×1, 32²–256², batch 1), with the CPU's arithmetic limit (fp32 and 1-bit
  multiply-accumulates per second its vector units sustain, measured) and the fraction of it reached;
* model — one network call of a 1-bit model for a 256×256 output (or a given input size): the FP network,
  the simulated binary network (float ±1 arithmetic, what training uses) and the packed one, and where
  the packed network's and the FP network's time goes: native binary layers, each kind of PyTorch op,
  Python and dispatch;
* size — the model file as training writes it (FP latent weights) against ``binsr export``'s file.

Timings are medians of repeated runs after warm-up; the contenders run round-robin, so a slow
moment of the machine hits all of them alike.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import product
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from binsr.deploy.convert import pack_model
from binsr.deploy.files import export_packed, load_packed_network
from binsr.deploy.kernels import (
    Epilogue,
    FusedCall,
    PackedWeight,
    backend,
    binary_conv2d,
    native_available,
    native_peak,
    pack_signs,
    profiling,
)
from binsr.errors import BinsrError
from binsr.models.denoiser import bind_timesteps
from binsr.models.description import AutoencoderSpec, NetworkSpec
from binsr.models.files import load_into_skeleton, read_header, save_model_file
from binsr.models.presets import PRESETS, RENAMED, SR3_TIMESTEPS, network_preset
from binsr.utils.text import format_table

CHANNELS = (64, 128, 256)
KERNELS = (3, 1)
SIZES = (32, 64, 128, 256)
OUTPUT_SIZE = 256


def round_robin_ms(contenders: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Wall times in ms of each callable, run round-robin ``warmup + repeats`` times (so a busy moment of the
    machine hits every contender); the ``repeats`` times after the warm-up rounds."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for index in range(warmup + repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            if index >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def median_ms(contenders: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median wall time in ms of each callable, run round-robin ``warmup + repeats`` times."""
    return {name: statistics.median(values) for name, values in round_robin_ms(contenders, repeats, warmup).items()}


def write_results(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """A benchmark script's rows as JSON, with the kernels and thread count they were measured with."""
    Path(path).write_text(json.dumps({"backend": backend(), "threads": torch.get_num_threads(), "results": rows},
                                     indent=2))
    print(f"wrote {path}")


def layer_shapes(quick: bool = False) -> Iterator[tuple[int, int, int]]:
    """(channels, kernel, size) of the benchmark grid; ``quick`` keeps two small shapes."""
    if quick:
        yield from ((64, 3, 32), (128, 1, 32))
        return
    for size, channels, kernel in product(SIZES, CHANNELS, KERNELS):
        yield channels, kernel, size


def arithmetic_limit(iterations: int = 20_000_000) -> dict[str, float]:
    """What one thread of this CPU sustains in tight loops (the kernels' ISA): fp32 and 1-bit
    multiply-accumulates per second, and their ratio — the most a binary conv can gain over fp32."""
    fp32, binary = native_peak(iterations)
    return {"fp32_gmacs": round(fp32 / 1e9, 1), "binary_gmacs": round(binary / 1e9, 1),
            "ratio": round(binary / fp32, 2)}


def bench_layer(channels: int, kernel: int, size: int, repeats: int, seed: int = 0,
                limit: float | None = None) -> dict[str, Any]:
    """fp32 conv2d vs the packed binary layer (one fused call: sign packing, XNOR-popcount, α) on one
    (1, C, S, S) input, C → C channels, stride 1; ``limit``: the CPU's binary/fp32 ratio, for the
    fraction of it the speedup reaches."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, size, size, generator=generator)
    weight = torch.randn(channels, channels, kernel, kernel, generator=generator)
    packed = PackedWeight(pack_signs((weight < 0).permute(0, 2, 3, 1)), channels, weight.abs().mean((1, 2, 3)))
    pad = kernel // 2
    binary: Callable[[], torch.Tensor] = (
        partial(FusedCall(tuple(x.shape), packed, Epilogue(), padding=(pad, pad)), x) if native_available()
        else partial(binary_conv2d, x, packed, (1, 1), (pad, pad)))
    with torch.no_grad():
        ms = median_ms({"fp32": lambda: F.conv2d(x, weight, padding=pad), "binary": binary}, repeats)
    speedup = ms["fp32"] / ms["binary"]
    macs = channels * channels * kernel * kernel * size * size
    return {"shape": f"{channels}x{channels} {kernel}x{kernel} @ {size}x{size}", "channels": channels,
            "kernel": kernel, "size": size, "fp32_ms": round(ms["fp32"], 4), "binary_ms": round(ms["binary"], 4),
            "speedup": round(speedup, 3), "binary_gmacs": round(macs / ms["binary"] / 1e6, 1),
            "of_limit": round(speedup / limit, 3) if limit else None}


# --- models ------------------------------------------------------------------------------------------


TIMESTEPS = SR3_TIMESTEPS  # networks without a T of their own are timed at t = 500 of BI-DiffSR's 2000 steps


def fp_twin(network: NetworkSpec, timesteps: int = 0) -> nn.Module:
    """The full-precision network of the same architecture (BI-DiffSR without binary, ResShift), its timestep
    groups counted against ``timesteps`` (default: BI-DiffSR's T)."""
    return bind_timesteps(network.full_precision().build(), timesteps or TIMESTEPS)


def _network_input(model: nn.Module, size: int, seed: int, timestep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, in_channels, size, size) input and a mid-chain timestep."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, model.config.in_channels, size, size, generator=generator), torch.tensor([timestep])


# --- where one network call's time goes ----------------------------------------------------------------

# PyTorch's leaf ops (what a profile's self times belong to) by the kind of work they do
OP_KINDS: dict[str, tuple[str, ...]] = {
    "convolution (FP)": ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution", "aten::conv2d",
                         "aten::_slow_conv2d_forward", "aten::thnn_conv2d"),
    "linear / matmul (FP)": ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear"),
    "group norm": ("aten::native_group_norm",),
    "layer norm": ("aten::native_layer_norm",),
    "activations (SiLU, GELU, PReLU)": ("aten::silu", "aten::gelu", "aten::prelu", "aten::_prelu_kernel",
                                        "aten::sigmoid", "aten::relu"),
    "elementwise (add, mul, ...)": ("aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::sub", "aten::div",
                                    "aten::where", "aten::rsub", "aten::neg", "aten::abs", "aten::mean", "aten::sum"),
    "memory (copy, cat, pad, upsample)": ("aten::copy_", "aten::cat", "aten::clone", "aten::contiguous",
                                           "aten::index", "aten::roll", "aten::constant_pad_nd",
                                           "aten::upsample_nearest2d", "aten::_upsample_nearest_exact2d",
                                           "aten::repeat_interleave", "aten::pixel_shuffle", "aten::pixel_unshuffle",
                                           "aten::fill_", "aten::zero_"),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_attention_math",
                  "aten::_softmax", "aten::softmax"),
}
NATIVE = "binary layers (native)"
OTHER = "other PyTorch ops"
PYTHON = "Python and dispatch"
_KIND_OF = {op: kind for kind, ops in OP_KINDS.items() for op in ops}


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 silenced for the block: PyTorch's profiler prints its start and stop from C++."""
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to silence
        yield
        return
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def time_split(call: Callable[[], Any], repeats: int) -> dict[str, float]:
    """ms of one ``call()`` per kind of work, medians over ``repeats`` calls: the packed layers' native calls
    (timed by :func:`~binsr.deploy.kernels.profiling` in unprofiled calls), each kind of PyTorch op (self
    times in ``torch.profiler`` runs) and the rest (Python and dispatch: the unprofiled time minus both)."""
    from torch.profiler import ProfilerActivity, profile

    totals, natives, runs = [], [], []
    with torch.no_grad():
        call()  # warm-up
        for _ in range(repeats):
            with profiling() as spent:
                start = time.perf_counter()
                call()
                totals.append((time.perf_counter() - start) * 1e3)
            natives.append(sum(spent.values()) * 1e3)
            with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
                call()
            ops: dict[str, float] = {}
            for event in prof.key_averages():
                kind = _KIND_OF.get(event.key, OTHER)
                ops[kind] = ops.get(kind, 0.0) + event.self_cpu_time_total / 1e3
            runs.append(ops)
    split = {NATIVE: statistics.median(natives)}
    split.update({kind: statistics.median(run.get(kind, 0.0) for run in runs) for kind in [*OP_KINDS, OTHER]})
    total = statistics.median(totals)
    split[PYTHON] = max(0.0, total - sum(split.values()))
    split["total"] = total
    return {kind: round(ms, 2) for kind, ms in split.items()}


def _timesteps(header: dict[str, Any]) -> int:
    """The process's T from a model file's header (what its timestep groups are counted against)."""
    process = header.get("process") or {}
    steps = (process.get("config") or {}).get("num_timesteps") if isinstance(process, dict) else None
    return int(steps) if isinstance(steps, int) and steps > 0 else TIMESTEPS


def _networks(model_ref: str, workdir: Path) -> dict[str, Any]:
    """The simulated and packed networks of a bench name, a training file or a packed file, with what the
    model part of the benchmark reports about them."""
    path = Path(model_ref)
    if path.is_file():
        header = read_header(path)
        try:
            network = NetworkSpec.parse(header.get("network"))
            autoencoder = header.get("autoencoder")
            factor = AutoencoderSpec.parse(autoencoder).config.factor if autoencoder else 1
        except BinsrError as err:
            raise BinsrError(f"{path}: {err}") from None
        name, steps = header.get("name") or path.stem, _timesteps(header)
        if header.get("packed"):  # the packed file itself; its training file is rebuilt with untrained weights
            packed = load_packed_network(path, network)
            source = workdir / "training.safetensors"
            save_model_file(source, network.build(), {**header, "packed": None})
            return {"name": name, "network": network, "factor": factor, "steps": steps, "source": source,
                    "packed": packed, "simulated": network.build(), "trained": False, "target": path}
        source = path
    elif model_ref in PRESETS or model_ref in RENAMED:
        preset = network_preset(model_ref)
        if preset.binarize is None:
            raise BinsrError(f"{preset.name} is a full-precision preset: bench a 1-bit one "
                             f"({', '.join(n for n in PRESETS.names() if PRESETS.get(n).binarize)})")
        network, factor = preset.spec(), preset.latent
        name, source, steps = preset.name, workdir / f"{preset.name}.safetensors", preset.timesteps or TIMESTEPS
        save_model_file(source, network.build(), {"kind": "bench", "network": network.to_dict(), "name": name})
    else:
        raise BinsrError(f"unknown model {model_ref!r} (network presets: {', '.join(PRESETS.names())}; a shipped "
                         f"model, a model file or a packed file)")
    simulated = load_into_skeleton(network.build("meta"), source)
    target = workdir / "packed.safetensors"
    export_packed(source, target)
    return {"name": name, "network": network, "factor": factor, "steps": steps, "source": source,
            "packed": load_packed_network(target, network), "simulated": simulated, "trained": True, "target": target}


def bench_model(model_ref: str, repeats: int, workdir: Path, seed: int = 0,
                size: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Latency (FP / simulated / packed, one network call), where that time goes, and file sizes of a bench
    name or a model file (training or packed). ``size``: the network input's side (default: what a 256×256
    output needs)."""
    nets = _networks(model_ref, workdir)
    steps = nets["steps"]
    simulated = bind_timesteps(nets["simulated"], steps).eval()
    packed = bind_timesteps(nets["packed"], steps).eval()
    layers = pack_model(copy.deepcopy(simulated).requires_grad_(False))
    if not layers.layers:
        raise BinsrError(f"{model_ref} has no binary layers to pack")
    fp = fp_twin(nets["network"], steps).eval()
    size = size or OUTPUT_SIZE // nets["factor"]
    x, t = _network_input(simulated, size, seed, min(500, steps // 4))
    with torch.no_grad():
        ms = median_ms({"fp": lambda: fp(x, t), "simulated": lambda: simulated(x, t), "packed": lambda: packed(x, t)},
                       repeats, warmup=1)
        reference, output = simulated(x, t), packed(x, t)
    split = {"packed": time_split(lambda: packed(x, t), repeats), "fp": time_split(lambda: fp(x, t), repeats)}
    model = {"name": nets["name"], "input": list(x.shape), "output": [size * nets["factor"]] * 2,
             "binary_layers": len(layers.layers), "fp_ms": round(ms["fp"], 2),
             "simulated_ms": round(ms["simulated"], 2), "packed_ms": round(ms["packed"], 2),
             "packed_vs_simulated": round(ms["simulated"] / ms["packed"], 3),
             "packed_vs_fp": round(ms["fp"] / ms["packed"], 3),
             # a packed file's simulated twin has untrained weights: nothing to compare
             "max_abs_difference": float((output - reference).abs().max()) if nets["trained"] else None,
             "time_split_ms": split}
    source_bytes, packed_bytes = nets["source"].stat().st_size, Path(nets["target"]).stat().st_size
    sizes = {"fp_bytes": source_bytes, "packed_bytes": packed_bytes, "ratio": round(source_bytes / packed_bytes, 3),
             "binary_fp32_bytes": layers.fp32_bytes, "binary_packed_bytes": layers.packed_bytes,
             "binary_ratio": round(layers.ratio, 3)}
    return model, sizes


def run_bench(model: str = "bidiffsr-unet", repeats: int = 10, quick: bool = False, progress: bool = True,
              size: int | None = None) -> dict[str, Any]:
    """The whole benchmark as a JSON-able dict (see the module doc)."""
    shapes = list(layer_shapes(quick))
    limit = arithmetic_limit(2_000_000 if quick else 20_000_000) if native_available() else None
    rows = [bench_layer(c, k, s, repeats, limit=limit["ratio"] if limit else None)
            for c, k, s in tqdm(shapes, desc="layers", disable=not progress)]
    with tempfile.TemporaryDirectory() as tmp:
        model_result, sizes = bench_model(model, max(1, repeats // 3), Path(tmp), size=size)
    return {"machine": {"threads": torch.get_num_threads(), "backend": backend(), "torch": torch.__version__,
                        "limit": limit}, "layers": rows, "model": model_result, "size": sizes}


def format_time_split(split: dict[str, dict[str, float]]) -> str:
    """The packed network's and its FP twin's time per kind of work, side by side (from :func:`time_split`)."""
    kinds = [k for k in split["packed"] if k != "total"]
    rows = [(kind, f"{split['packed'][kind]:.1f}", f"{split['fp'][kind]:.1f}") for kind in kinds
            if split["packed"][kind] >= 0.05 or split["fp"][kind] >= 0.05]
    rows.append(("total (unprofiled median)", f"{split['packed']['total']:.1f}", f"{split['fp']['total']:.1f}"))
    return ("where one network call's time goes (ms; op self times from torch.profiler, medians)\n"
            + format_table(["work", "1-bit packed", "full precision"], rows, "lrr"))


def format_bench(result: dict[str, Any]) -> str:
    """Human-readable tables of :func:`run_bench`'s result."""
    machine = result["machine"]
    lines = [f"binary kernels: {machine['backend']}, {machine['threads']} threads, torch {machine['torch']}"]
    limit = machine.get("limit")
    if limit:
        lines.append(f"arithmetic limit of one thread: fp32 {limit['fp32_gmacs']} GMAC/s, 1-bit {limit['binary_gmacs']} "
                     f"GMAC/s: a binary conv can be at most {limit['ratio']:.1f}x faster than fp32 here")
    lines.append("")
    rows = [(r["shape"], f"{r['fp32_ms']:.3f}", f"{r['binary_ms']:.3f}", f"{r['speedup']:.2f}x",
             f"{r['of_limit']:.0%}" if r.get("of_limit") is not None else "-") for r in result["layers"]]
    if rows:
        lines += [format_table(["layer (batch 1)", "fp32 conv2d ms", "packed 1-bit ms", "speedup", "of limit"], rows,
                               "lrrrr"), ""]
    m = result["model"]
    lines += [f"model {m['name']}: one network call, input {'x'.join(map(str, m['input']))} "
              f"for a {m['output'][0]}x{m['output'][1]} output, {m['binary_layers']} binary layers",
              format_table(["network", "ms", "packed speedup"],
                           [("full precision", f"{m['fp_ms']:.1f}", f"{m['packed_vs_fp']:.2f}x"),
                            ("1-bit simulated (float)", f"{m['simulated_ms']:.1f}", f"{m['packed_vs_simulated']:.2f}x"),
                            ("1-bit packed", f"{m['packed_ms']:.1f}", "1.00x")], "lrr")]
    if m["max_abs_difference"] is not None:
        lines.append(f"max |packed - simulated| on the output: {m['max_abs_difference']:.3g}")
    lines += ["", format_time_split(m["time_split_ms"]), ""]
    s = result["size"]
    lines += [format_table(["file / part", "fp32 bytes", "packed bytes", "ratio"],
                           [("whole model file", s["fp_bytes"], s["packed_bytes"], f"{s['ratio']:.2f}x"),
                            ("binary layer weights", s["binary_fp32_bytes"], s["binary_packed_bytes"],
                             f"{s['binary_ratio']:.2f}x")], "lrrr")]
    return "\n".join(lines)
