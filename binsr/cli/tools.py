"""``binsr complexity``, ``binsr export`` and ``binsr bench``: count, pack and time 1-bit models."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

import torch
from torch import nn

from binsr.cli.common import example_inputs, parse_option, parse_size, positive_int
from binsr.errors import BinsrError


def add_complexity(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "complexity",
        help="Params / OPs / storage of a model, optionally binarized, per layer and in total",
        description=(
            "Run one forward pass of a model on a zero image and count, per layer and in total, full-precision "
            "and binary parameters, storage, FLOPs (multiply-accumulates) and binary ops, by the papers' "
            "convention: Params = FP params + binary weights/32, OPs = FLOPs + BOPs/64. With --method the model "
            "is binarized first (binsr.binary.binarize)."
        ),
        epilog="example: binsr complexity --arch mypkg.nets:make_unet --size 256 --method xnor --keep-fp 'conv_first' "
               "--keep-fp 'conv_last'",
    )
    p.add_argument("--arch", required=True, help="architecture name, or package.module:factory returning an nn.Module")
    p.add_argument("--size", default="256", metavar="H[xW]", help="output image size in pixels [default: 256]")
    p.add_argument("--scale", type=int, default=None, help="SR scale, recorded with the counts (SR3-style UNets "
                   "work at output size, so it does not change them)")
    p.add_argument("--channels", type=int, default=3, help="input channels of models without example_inputs() "
                   "[default: 3]")
    p.add_argument("--method", help="binarize first with this method (see binsr.binary.METHODS)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, e.g. rank=8 or k=auto (repeatable)")
    p.add_argument("--keep-fp", action="append", default=[], metavar="PATTERN",
                   help="glob of layer names to keep full precision (repeatable)")
    p.add_argument("--compare", metavar="ARCH", help="also count ARCH and print the compression ratio (its "
                   "parameter bits / ours) and OPs speedup (its OPs / ours); with --method the default is the "
                   "same architecture unbinarized")
    p.add_argument("--json", metavar="PATH", help="also write the counts as JSON to PATH")
    p.set_defaults(run=_run_complexity)


def user_architecture(arch: str) -> nn.Module:
    """``--arch``: a registered name, or ``package.module:factory`` typed by the user on the command line
    (the only place binsr imports code by a path; model files name registered types only)."""
    from binsr.models import build

    if ":" not in arch:
        return build(arch)
    module_name, _, attr = arch.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise BinsrError(f"cannot import architecture {arch!r}: {err}") from None
    model = factory()
    if not isinstance(model, nn.Module):
        raise BinsrError(f"{arch!r} returned {type(model).__name__}, not an nn.Module")
    return model


def _run_complexity(args: argparse.Namespace) -> int:
    from binsr.binary import binarize
    from binsr.complexity import count_complexity
    from binsr.utils import write_json
    from binsr.utils.text import human_count

    height, width = parse_size(args.size)
    model = user_architecture(args.arch)
    reference = user_architecture(args.compare) if args.compare else (model if args.method else None)
    summary: dict = {"arch": args.arch, "size": [height, width], "scale": args.scale, "method": args.method}
    if args.method:
        model, report = binarize(model, args.method, keep_fp=args.keep_fp, inplace=False,
                                 **dict(parse_option(o) for o in args.option))
        summary["binarization"] = report.to_dict()
        print(f"binarized {len(report.replaced)} layers with {args.method}; kept FP: "
              f"{', '.join(report.kept_fp) or 'none'}; skipped: {len(report.skipped)}")
    elif args.option or args.keep_fp:
        raise BinsrError("--option and --keep-fp need --method")
    counts = count_complexity(model, *example_inputs(model, height, width, args.channels))
    print(counts.format_table())
    if reference is not None:
        base = count_complexity(reference, *example_inputs(reference, height, width, args.channels))
        ratios = counts.compared_to(base)
        summary["compared_to"] = {"arch": args.compare or f"{args.arch} (full precision)", **ratios,
                                  "reference_params": base.params, "reference_ops": base.ops}
        print(f"vs {summary['compared_to']['arch']} (Params {human_count(base.params)}, OPs {human_count(base.ops)}): "
              f"compression ratio {ratios['compression_ratio']:.2f}x (parameter bits), "
              f"OPs speedup {ratios['ops_speedup']:.2f}x, Params ratio {ratios['params_ratio']:.2f}x")
    if args.json:
        write_json(args.json, {**summary, **counts.to_dict()})
        print(f"wrote {args.json}")
    return 0


def add_export(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export",
        help="write a deployable bit-packed model file (1-bit weights as bits, 64 per word)",
        description=(
            "Pack a trained 1-bit model file for inference: every binary layer's weights are stored as bits "
            "(64 input channels per uint64 word) with one scale per output channel, instead of float latent "
            "weights; full-precision parts (first/last convs, norms, biases, RPReLU, LRMB/SMB, time MLP) stay "
            "float (--fp16 halves them). The file keeps the model config: 'binsr upscale --model FILE' and "
            "binsr.load(FILE) run it with the XNOR-popcount kernels."
        ),
        epilog="example: binsr export runs/bidiffsr/model.safetensors -o bidiffsr-x4.packed.safetensors",
    )
    p.add_argument("model", metavar="MODEL", help="model file written by 'binsr train' (a 1-bit model)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="packed file to write (atomically)")
    p.add_argument("--fp16", action="store_true", help="store the full-precision tensors as float16")
    p.add_argument("--card", nargs="+", metavar="EVAL.json", help="also write a model card FILE.json beside the "
                   "packed file, with these 'binsr eval --json' results of the model as its metrics")
    p.add_argument("--run-dir", metavar="DIR", help="training run with the log.csv for the card's training hours "
                   "[default: the model file's folder]")
    p.add_argument("--hardware", metavar="TEXT", help="what it was trained on, for the card [default: this machine]")
    p.add_argument("--steps", type=positive_int, help="models that sample with a step count (SR3 / BI-DiffSR): "
                   "the steps the packed file runs with by default (and the card's results used) [default: 50]")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from binsr.deploy import export_packed
    from binsr.utils import write_json
    from binsr.utils.text import human_count

    if os.path.abspath(args.model) == os.path.abspath(args.output):
        raise BinsrError("the packed file must not overwrite the model file (choose another -o)")
    if args.steps is not None:
        from binsr.pipelines import pipeline_type, read_model_spec

        kind = read_model_spec(args.model).kind
        if not pipeline_type(kind).takes_steps:
            raise BinsrError(f"--steps: {args.model} is a {kind} model, which takes no step count")
    card = None
    if args.card:  # built first: a bad result file stops before anything is written
        from binsr.analysis.report import load_results
        from binsr.model_card import model_card

        run_dir = args.run_dir or str(Path(args.model).parent)
        card = model_card(args.model, Path(args.output).stem, load_results(args.card), run_dir, args.hardware,
                          args.steps)
    report = export_packed(args.model, args.output, half=args.fp16, sampling_steps=args.steps)
    if card is not None:
        write_json(Path(args.output).with_suffix(".json"), {**card, "file_bytes": report.packed_bytes})
    layers = report.layers
    print(f"packed {len(layers.layers)} binary layers: {human_count(layers.binary_weights)} weights, "
          f"{human_count(layers.fp32_bytes, 'B')} as fp32 -> {human_count(layers.packed_bytes, 'B')} "
          f"({layers.ratio:.1f}x smaller)")
    print(f"wrote {args.output}: {human_count(report.packed_bytes, 'B')} vs {human_count(report.source_bytes, 'B')} "
          f"for the training file ({report.ratio:.2f}x smaller; the full-precision parts count)")
    return 0


def add_bench(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "bench",
        help="measure packed 1-bit inference: layer speed vs fp32, model latency, file sizes",
        description=(
            "Time PyTorch fp32 conv2d against the packed XNOR-popcount conv on the binary layer shapes of "
            "BI-DiffSR and BiMaCoSR (C in 64/128/256, 3x3 and 1x1, 32x32 to 256x256, batch 1); time one network "
            "call of a 1-bit model for a 256x256 output as full precision, simulated 1-bit (float) and packed "
            "1-bit; and compare its training file with its packed file. Medians of repeated runs after "
            "warm-up, contenders interleaved. For an AVX2-vs-AVX2 comparison on an AVX-512 machine run "
            "'ONEDNN_MAX_CPU_ISA=AVX2 binsr bench --isa avx2'."
        ),
        epilog="example: binsr bench --model bimacosr-unet --json bench.json",
    )
    p.add_argument("--model", default="bidiffsr-unet", metavar="NAME|FILE",
                   help="a 1-bit network preset (bidiffsr-unet, bimacosr-unet, their -small and -cpu forms: "
                        "untrained), a shipped model (binsr models), or a 1-bit model file, trained or packed "
                        "[default: bidiffsr-unet]")
    p.add_argument("--size", type=int, metavar="N", help="the network input's side [default: what a 256x256 output "
                   "needs: 64 for a 4x latent]")
    p.add_argument("--repeats", type=int, default=10, metavar="N", help="timed runs per layer [default: 10]")
    p.add_argument("--quick", action="store_true", help="two small layer shapes only (a smoke test)")
    p.add_argument("--isa", metavar="NAME", help="kernel instruction set: torch, native (default) or one the CPU "
                   "has (avx512-vpopcntdq, avx2, popcnt, portable)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for PyTorch and the kernels")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from binsr.deploy import set_backend
    from binsr.bench import format_bench, run_bench
    from binsr.pipelines import shipped_models
    from binsr.utils.memory import keep_freed_memory
    from binsr.utils import write_json

    if args.repeats < 1:
        raise BinsrError(f"--repeats must be at least 1, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            raise BinsrError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.isa:
        set_backend(args.isa)
    keep_freed_memory()  # as binsr upscale runs: freed maps stay in the process (both contenders gain)
    if args.size is not None and not 8 <= args.size <= 4096:
        raise BinsrError(f"--size must be 8 to 4096, got {args.size}")
    model = args.model
    shipped = shipped_models()
    if model in shipped and not Path(model).exists():
        model = str(shipped[model].path)
    result = run_bench(model, args.repeats, args.quick, progress=not args.quiet, size=args.size)
    print(format_bench(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
