"""The ``binsr`` command line.

Every failure the user can fix prints one line ``binsr: error: …`` and exits non-zero (1 for
runtime problems, 2 for usage errors); set ``BINSR_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

import torch

from binsr import __version__
from binsr.errors import BinsrError

PROG = "binsr"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="binsr: 1-bit (binarized) diffusion super-resolution — train, evaluate, deploy.",
        epilog="Run 'binsr COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"binsr {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_eval(commands)
    _add_upscale(commands)
    _add_train(commands)
    _add_complexity(commands)
    _add_export(commands)
    _add_bench(commands)
    _add_analyze(commands)
    _add_report(commands)
    return parser


def _add_eval(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "eval",
        help="score a model on a benchmark folder (PSNR/SSIM on Y, LPIPS)",
        description=(
            "Make LR images from the HR images of a folder with MATLAB-style bicubic (or read them with "
            "--lr-data), upscale them with a model, and score the result against HR the way SR papers do: "
            "8-bit images, Y channel of BT.601 YCbCr (single-channel gray files: their gray values), "
            "`scale` border pixels cropped; SSIM with an 11x11 "
            "Gaussian window; LPIPS (AlexNet v0.1) when its weights are available."
        ),
        epilog="example: binsr eval --model bicubic --data Set5 --scale 4 --json set5_x4.json",
    )
    _add_model_arguments(p, required=False)
    _add_data_arguments(p)
    p.add_argument("--lr-data", metavar="DIR", help="folder of matching LR images (paired mode) instead of bicubic")
    p.add_argument("--scale", type=int, required=True, choices=range(2, 9), metavar="S", help="upscaling factor (2-8)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--rgb", action="store_true", help="compute PSNR/SSIM on RGB instead of the Y channel")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--lpips-alexnet", metavar="PATH", help="torchvision AlexNet weights (alexnet-owt-7be5be79.pth)")
    p.add_argument("--lpips-lin", metavar="PATH", help="lpips v0.1 linear weights (default: from the lpips package)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from binsr.data import SREvalDataset, resolve_data_dir
    from binsr.errors import MetricUnavailable
    from binsr.evaluation import describe_model, evaluate
    from binsr.metrics.lpips import load_lpips
    from binsr.utils import format_table, write_json

    device = _device(args.device)
    upscaler = _load_upscaler(args, device)
    hr_dir = resolve_data_dir(args.data, args.data_root)
    dataset = SREvalDataset(hr_dir, args.scale, lr_dir=args.lr_data, dtype=torch.float32)
    lpips_model = None
    if not args.no_lpips:
        try:
            lpips_model = load_lpips(args.lpips_alexnet, args.lpips_lin, device)
        except MetricUnavailable as err:
            print(f"{PROG}: {err}", file=sys.stderr)
    channels = "rgb" if args.rgb else "y"
    result = evaluate(upscaler, dataset, dataset.name, lpips_model, channels, device, progress=not args.quiet)
    result.info = describe_model(args.model)

    has_lpips = "lpips" in result.mean()
    headers = ["image", "PSNR (dB)", "SSIM"] + (["LPIPS"] if has_lpips else [])

    def cells(name: str, values: dict) -> list[str]:
        row = [name, f"{values['psnr']:.4f}", f"{values['ssim']:.4f}"]
        return row + ([f"{values['lpips']:.4f}"] if has_lpips else [])

    rows = [cells(s.name + (" (gray)" if s.channels == "gray" else ""), vars(s)) for s in result.per_image]
    rows.append(cells("mean", result.mean()))
    print(f"{result.model} on {result.dataset} x{result.scale} ({len(result.per_image)} images, "
          f"{'RGB' if args.rgb else 'Y'} channel, border {result.crop_border})")
    print(format_table(headers, rows))
    if args.json:
        write_json(args.json, result.to_dict())
        print(f"wrote {args.json}")
    return 0


def _add_model_arguments(p: argparse.ArgumentParser, required: bool) -> None:
    """--model, --steps, --seed, --device: how eval and upscale pick and run a model (they add --quiet)."""
    p.add_argument("--model", required=required, default=None if required else "bicubic",
                   help="model name (bicubic) or a .safetensors model file" + ("" if required else " [default: bicubic]"))
    _add_sampling_arguments(p, quiet=False)


def _load_upscaler(args: argparse.Namespace, device: torch.device, **sampling: object):  # noqa: ANN202
    from binsr import pipelines

    if args.model == "bicubic":
        return pipelines.load("bicubic", args.scale)
    return pipelines.load(args.model, args.scale, device=device, steps=args.steps, seed=args.seed, **sampling)


def _add_upscale(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "upscale",
        help="upscale images or folders with a model",
        description="Upscale every image given (files or folders) and write PNGs to OUTDIR, atomically. "
                    "Diffusion models sample with DDIM; --tile bounds memory on large images.",
        epilog="example: binsr upscale photo.png -o out --model runs/bidiffsr-small-x4/model.safetensors --steps 20",
    )
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders of images")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the results")
    _add_model_arguments(p, required=True)
    p.add_argument("--scale", type=int, help="upscaling factor (model files know theirs; must agree)")
    p.add_argument("--tile", type=int, help="process in tiles of N output pixels (bounded memory)")
    p.add_argument("--tile-overlap", type=int, default=32, help="overlap between tiles in pixels [default: 32]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_upscale)


def _run_upscale(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm.auto import tqdm

    from binsr.image import list_images, read_image, write_png

    device = _device(args.device)
    upscaler = _load_upscaler(args, device, tile=args.tile, tile_overlap=args.tile_overlap)
    files = []
    for item in map(Path, args.inputs):
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise BinsrError(f"no images found in {item}")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise BinsrError(f"no such file or folder: {item}")
    images = [(path, read_image(path)) for path in files]  # read all first: a bad file stops before any write
    check = getattr(upscaler, "check_size", None)
    for path, image in images:
        if callable(check):
            try:
                check(*image.shape[-2:])
            except BinsrError as err:
                raise BinsrError(f"{path}: {err}") from None
    out_dir = Path(args.output)
    for path, image in tqdm(images, desc=f"upscale x{upscaler.scale}", unit="img", disable=args.quiet):
        with torch.no_grad():
            sr = upscaler.upscale(image[None].to(device))[0]
        write_png(out_dir / f"{path.stem}_x{upscaler.scale}.png", sr.cpu())
    print(f"wrote {len(images)} image(s) to {out_dir}")
    return 0


def _add_train(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="train a model from a YAML recipe or a named preset",
        description="Train with a recipe (a YAML file or a preset name). Checkpoints are written atomically to "
                    "OUT_DIR/NAME/checkpoints; --resume continues bit-exactly from the last one. Multi-GPU or "
                    "multi-node: start the same command with torchrun.",
        epilog="example: binsr train bidiffsr-small-x4 --set steps=2000 --set data.batch_size=4",
    )
    p.add_argument("config", help="recipe file (.yaml) or preset name")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of the run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key "
                   "(dotted, e.g. optim.lr=2e-4; repeatable)")
    p.add_argument("--data-root", metavar="DIR", help="data root for dataset names (overrides $BINSR_DATA)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from binsr.training import Trainer, load_train_config

    config = load_train_config(args.config, args.set)
    result = Trainer(config, resume=args.resume, data_root=args.data_root, progress=not args.quiet).train()
    val = f", validation PSNR {result.val_psnr:.3f} dB" if result.val_psnr is not None else ""
    print(f"trained {result.steps} steps (last loss {result.final_loss:.4f}{val}); model: {result.model_file}")
    return 0


def _add_complexity(commands: argparse._SubParsersAction) -> None:
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


def _run_complexity(args: argparse.Namespace) -> int:
    from binsr.binary import binarize
    from binsr.complexity import count_complexity
    from binsr.models import build
    from binsr.utils import write_json
    from binsr.utils.text import human_count

    height, width = _size(args.size)
    model = build(args.arch)
    reference = build(args.compare) if args.compare else (model if args.method else None)
    summary: dict = {"arch": args.arch, "size": [height, width], "scale": args.scale, "method": args.method}
    if args.method:
        model, report = binarize(model, args.method, keep_fp=args.keep_fp, inplace=False,
                                 **dict(_option(o) for o in args.option))
        summary["binarization"] = report.to_dict()
        print(f"binarized {len(report.replaced)} layers with {args.method}; kept FP: "
              f"{', '.join(report.kept_fp) or 'none'}; skipped: {len(report.skipped)}")
    elif args.option or args.keep_fp:
        raise BinsrError("--option and --keep-fp need --method")
    counts = count_complexity(model, *_example_inputs(model, height, width, args.channels))
    print(counts.format_table())
    if reference is not None:
        base = count_complexity(reference, *_example_inputs(reference, height, width, args.channels))
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


def _add_export(commands: argparse._SubParsersAction) -> None:
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
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from binsr.deploy import export_packed
    from binsr.utils.text import human_count

    if os.path.abspath(args.model) == os.path.abspath(args.output):
        raise BinsrError("the packed file must not overwrite the model file (choose another -o)")
    report = export_packed(args.model, args.output, half=args.fp16)
    layers = report.layers
    print(f"packed {len(layers.layers)} binary layers: {human_count(layers.binary_weights)} weights, "
          f"{human_count(layers.fp32_bytes, 'B')} as fp32 -> {human_count(layers.packed_bytes, 'B')} "
          f"({layers.ratio:.1f}x smaller)")
    print(f"wrote {args.output}: {human_count(report.packed_bytes, 'B')} vs {human_count(report.source_bytes, 'B')} "
          f"for the training file ({report.ratio:.2f}x smaller; the full-precision parts count)")
    return 0


def _add_bench(commands: argparse._SubParsersAction) -> None:
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
        epilog="example: binsr bench --model bimacosr --json bench.json",
    )
    p.add_argument("--model", default="bidiffsr", metavar="NAME|FILE",
                   help="bidiffsr, bidiffsr-small, bimacosr, bimacosr-small, or a 1-bit model file "
                        "[default: bidiffsr]")
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
    from binsr.deploy.bench import format_bench, run_bench
    from binsr.utils import write_json

    if args.repeats < 1:
        raise BinsrError(f"--repeats must be at least 1, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            raise BinsrError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.isa:
        set_backend(args.isa)
    result = run_bench(args.model, args.repeats, args.quick, progress=not args.quiet)
    print(format_bench(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def _add_analyze(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "analyze",
        help="figures and CSVs: branch ranks, branch frequencies, training curves, visual comparisons",
        description="Analyses of models, runs and outputs, each written as PNG figures and CSV tables into --out.",
        epilog="run 'binsr analyze WHAT --help' for each analysis",
    )
    analyses = p.add_subparsers(dest="analysis", metavar="WHAT", parser_class=_Parser, required=True)

    rank = analyses.add_parser(
        "rank",
        help="rank of each binarized layer's branch matrices (BiMaCoSR Fig. 1)",
        description=(
            "For every binarized layer of a 1-bit model file: the rank r of the LRMB matrix (up·down), of the "
            "SMB sparse matrix, of their sum, and of the 1-bit BMB weight matrix (C_out x C_in·kh·kw), each "
            "as r / r_max with r_max = max(C_in, C_out), computed in float64. Also the experiment behind "
            "BiMaCoSR's eq. 6: random n x n ±1 matrices have rank n - O(log n). Writes rank.csv, rank.png, "
            "sign_rank.csv and sign_rank.png."
        ),
        epilog="example: binsr analyze rank runs/bimacosr-small-x4/model.safetensors --out analysis/",
    )
    rank.add_argument("model", metavar="MODEL", help="a 1-bit model file (BiMaCoSR for LRMB/SMB; packed files work)")
    rank.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG and CSV files")
    rank.add_argument("--sign-sizes", default="2,4,8,16,32,64,128,256", metavar="N,N,...",
                      help="matrix sizes of the random ±1 experiment; 'none' skips it [default: 2,4,...,256]")
    rank.add_argument("--trials", type=int, default=100, help="random matrices per size [default: 100]")
    rank.add_argument("--p", type=float, default=0.5, help="probability of a -1 entry [default: 0.5]")
    rank.add_argument("--quiet", action="store_true", help="no progress bar")
    rank.set_defaults(run=_run_analyze_rank)

    freq = analyses.add_parser(
        "freq",
        help="low/high frequency energy share of BMB, LRMB and SMB per layer (BiMaCoSR Fig. 2)",
        description=(
            "Upscale real images (LR made from the HR images of --data with MATLAB bicubic) with a BiMaCoSR "
            "model and record, in every three-branch layer, the outputs of BMB, LRMB and SMB. Each is "
            "transformed with a 2-D FFT and shifted; the central quarter of the spectrum (half the height "
            "and half the width) is low frequency, the rest high. A branch's share of a band is its energy in "
            "that band over the three branches' energy in it. Conv layers and linear layers (tokens laid out "
            "as images or windows) are grouped. Writes frequency.csv, frequency_groups.csv and frequency.png."
        ),
        epilog="example: binsr analyze freq runs/bimacosr-small-x4/model.safetensors --data Set5 --out analysis/",
    )
    freq.add_argument("model", metavar="MODEL", help="a BiMaCoSR (three-branch) model file")
    _add_data_arguments(freq)
    freq.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG and CSV files")
    freq.add_argument("--limit", type=int, metavar="N", help="use only the first N images")
    _add_sampling_arguments(freq)
    freq.set_defaults(run=_run_analyze_freq)

    curves = analyses.add_parser(
        "curves",
        help="training loss and validation PSNR against the step, several runs in one figure",
        description="Plot the log.csv that 'binsr train' writes into each run folder: training loss (left) and "
                    "validation PSNR (right) per step, one colour per run. Writes curves.png and curves.csv.",
        epilog="example: binsr analyze curves runs/bimacosr-small-x4 runs/xnor-small-x4 --out analysis/ --smooth 0.6",
    )
    curves.add_argument("runs", nargs="+", metavar="RUN", help="run folders (with log.csv) or log CSV files")
    curves.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG and CSV files")
    curves.add_argument("--smooth", type=float, default=0.0, metavar="W",
                        help="moving-average weight for the loss in [0, 1); the raw loss is drawn faint [default: 0]")
    curves.add_argument("--linear", action="store_true", help="always a linear loss axis (default: logarithmic when "
                        "the loss spans more than a decade)")
    curves.set_defaults(run=_run_analyze_curves)

    compare = analyses.add_parser(
        "compare",
        help="the same crop of HR, bicubic and each model's output, beside the full image (Fig. 4/5 style)",
        description=(
            "For each image of --data: make the LR image (MATLAB bicubic), upscale it with every --model, and "
            "draw the full HR image with the crop box next to the crop of HR and of each output, labelled with "
            "the whole image's PSNR / SSIM (Y channel, as binsr eval). Bicubic comes first unless listed. The "
            "crop is --crop, or the --crop-size window with the most detail. Writes compare_IMAGE.png."
        ),
        epilog="example: binsr analyze compare --data Set5 --scale 4 --model fp.safetensors --model bimacosr.safetensors "
               "--images butterfly --out figures/",
    )
    _add_data_arguments(compare)
    compare.add_argument("--scale", type=int, required=True, choices=range(2, 9), metavar="S", help="upscaling factor")
    compare.add_argument("--model", action="append", default=[], metavar="NAME|FILE",
                         help="a model to show (repeatable; bicubic or a model file)")
    compare.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files")
    compare.add_argument("--images", nargs="+", metavar="NAME", help="only these images (file name or stem)")
    compare.add_argument("--crop", metavar="TOP,LEFT,SIZE", help="crop window in HR pixels [default: most detail]")
    compare.add_argument("--crop-size", type=int, default=64, metavar="N", help="side of the automatic crop [default: 64]")
    _add_sampling_arguments(compare)
    compare.set_defaults(run=_run_analyze_compare)


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR",
                   help="folder of HR images, or a dataset name under the data root ($BINSR_DATA, default ../shared/data)")
    p.add_argument("--data-root", metavar="DIR", help="data root for dataset names (overrides $BINSR_DATA)")


def _add_sampling_arguments(p: argparse.ArgumentParser, quiet: bool = True) -> None:
    """--steps, --seed, --device (and --quiet): how a diffusion model is run."""
    p.add_argument("--steps", type=int, default=50, help="DDIM steps for SR3-style models [default: 50]; ResShift "
                   "teachers run their own T steps and one-step students one network call")
    p.add_argument("--seed", type=int, default=0, help="seed of the start noise [default: 0]")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto [default: auto]")
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_analyze_rank(args: argparse.Namespace) -> int:
    from pathlib import Path

    from binsr.analysis.rank import write_rank_analysis
    from binsr.pipelines import load_network

    sizes = [] if args.sign_sizes.lower() == "none" else _int_list(args.sign_sizes, "--sign-sizes")
    if args.trials < 1 or not 0 <= args.p <= 1:
        raise BinsrError("--trials must be at least 1 and --p in [0, 1]")
    network = load_network(args.model)
    written = write_rank_analysis(network, args.out, Path(args.model).stem, sizes, args.trials, args.p,
                                  progress=not args.quiet)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _run_analyze_freq(args: argparse.Namespace) -> int:
    from pathlib import Path

    from binsr import pipelines
    from binsr.analysis.frequency import frequency_analysis, write_frequency_analysis
    from binsr.data import SREvalDataset, resolve_data_dir
    from binsr.models.files import read_spec

    device = _device(args.device)
    scale = read_spec(args.model)["scale"]
    upscaler = pipelines.load(args.model, device=device, steps=args.steps, seed=args.seed)
    dataset = SREvalDataset(resolve_data_dir(args.data, args.data_root), scale)
    count = len(dataset) if args.limit is None else max(0, min(args.limit, len(dataset)))
    if count == 0:
        raise BinsrError("--limit must leave at least one image")
    inputs = (dataset[i]["lr"][None].to(device) for i in range(count))
    result = frequency_analysis(upscaler.model, upscaler.upscale, inputs, progress=not args.quiet, total=count)
    written = write_frequency_analysis(result, args.out, f"{Path(args.model).stem} on {dataset.name}")
    for kind, shares in result.group_shares().items():
        print(f"{kind} layers: " + ", ".join(f"{b.upper()} {low:.0%} of low / {high:.0%} of high"
                                             for b, (low, high) in shares.items()))
    if result.skipped:
        print(f"skipped {len(result.skipped)} layer(s) without a spatial layout (e.g. {result.skipped[0]})")
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _run_analyze_curves(args: argparse.Namespace) -> int:
    from pathlib import Path

    from binsr.analysis.curves import curve_rows, curves_figure, read_log
    from binsr.analysis.figures import save_png
    from binsr.utils import write_csv

    runs = [read_log(path) for path in args.runs]
    out = Path(args.out)
    save_png(curves_figure(runs, args.smooth, log_loss=not args.linear), out / "curves.png")
    write_csv(out / "curves.csv", curve_rows(runs), ["run", "step", "series", "value"])
    for run in runs:
        last = f"last loss {run.loss[-1][1]:.4g} at step {run.loss[-1][0]}" if run.loss else "no loss rows"
        best = f", best validation PSNR {max(v for _, v in run.val_psnr):.3f} dB" if run.val_psnr else ""
        print(f"{run.name}: {last}{best}")
    print(f"wrote {out / 'curves.png'}, {out / 'curves.csv'}")
    return 0


def _run_analyze_compare(args: argparse.Namespace) -> int:
    from binsr import pipelines
    from binsr.analysis.compare import Crop, visual_comparisons
    from binsr.data import SREvalDataset, resolve_data_dir

    device = _device(args.device)
    models = list(args.model) if "bicubic" in args.model else ["bicubic", *args.model]
    upscalers = [pipelines.load(m, args.scale, device=device, steps=args.steps, seed=args.seed)
                 if m != "bicubic" else pipelines.load(m, args.scale) for m in models]
    names = [u.name for u in upscalers]
    for model, upscaler in zip(models, upscalers):
        if names.count(upscaler.name) > 1:  # e.g. a model and its packed export: tell them apart by file
            upscaler.name = f"{upscaler.name} ({os.path.basename(model)})"
    dataset = SREvalDataset(resolve_data_dir(args.data, args.data_root), args.scale)
    crop = Crop.parse(args.crop) if args.crop else None
    if args.crop_size < 1:
        raise BinsrError(f"--crop-size must be at least 1, got {args.crop_size}")
    written = visual_comparisons(dataset, upscalers, args.out, crop, args.crop_size, args.images,
                                 progress=not args.quiet)
    print(f"wrote {len(written)} figure(s) to {args.out}")
    return 0


def _add_report(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "report",
        help="comparison tables (Markdown + CSV) from 'binsr eval --json' results",
        description=(
            "Collect 'binsr eval --json' results into BI-DiffSR-style tables: one per scale, a row per model "
            "and, per dataset, PSNR / SSIM / LPIPS, with Bits, Params and OPs (one network call, 256x256 "
            "output). The best value of each column among the 1-bit models is bold. --paper bidiffsr adds "
            "the published rows of BI-DiffSR's Table 2 for the datasets you evaluated (marked †, not ranked). "
            "Writes the Markdown file and a long-form CSV beside it, and prints the Markdown."
        ),
        epilog="example: binsr report results/*.json -o report.md --paper bidiffsr --label bimacosr-small-x4=BiMaCoSR",
    )
    p.add_argument("results", nargs="+", metavar="EVAL.json", help="files written by 'binsr eval --json'")
    p.add_argument("-o", "--output", required=True, metavar="FILE.md", help="Markdown report to write (atomically)")
    p.add_argument("--csv", metavar="FILE", help="CSV to write [default: the report's name with .csv]")
    p.add_argument("--paper", choices=["bidiffsr"], help="add the published rows of this paper")
    p.add_argument("--label", action="append", default=[], metavar="NAME=LABEL", help="row label for a model name "
                   "or for one result file, e.g. model.json=packed (repeatable)")
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from binsr.analysis.published import bidiffsr_table
    from binsr.analysis.report import build_tables, load_results, report_markdown
    from binsr.utils import atomic_write, write_csv

    labels = dict(_key_value(text, "--label") for text in args.label)
    results = load_results(args.results)
    published = [record for scale in (2, 4) for record in bidiffsr_table(scale)] if args.paper else []
    tables = build_tables(results, published, labels)
    text = report_markdown(tables, args.results, "BI-DiffSR" if args.paper else None)
    with atomic_write(args.output, "w") as handle:
        handle.write(text)
    csv_path = Path(args.csv) if args.csv else Path(args.output).with_suffix(".csv")
    write_csv(csv_path, [record for table in tables for record in table.records()],
              ["scale", "method", "source", "bits", "params", "ops", "dataset", "psnr", "ssim", "lpips"])
    print(text)
    print(f"wrote {args.output} and {csv_path}")
    return 0


def _key_value(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.rpartition("=")
    if not sep or not key or not value:
        raise BinsrError(f"{option} must be KEY=VALUE, got {text!r}")
    return key, value


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise BinsrError(f"{option} must be positive integers separated by commas, got {text!r}")
    return values


def _example_inputs(model: torch.nn.Module, height: int, width: int, channels: int) -> tuple:
    example = getattr(model, "example_inputs", None)
    return example(height, width) if callable(example) else (torch.zeros(1, channels, height, width),)


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise BinsrError(f"--size must be H or HxW in pixels, got {text!r}")
    return (parts[0], parts[-1])


def _option(text: str) -> tuple[str, object]:
    """'rank=8' → ('rank', 8); values are parsed as int, float, true/false, or kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise BinsrError(f"--option must be KEY=VALUE, got {text!r}")
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BinsrError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BinsrError(f"device {name!r} requested but CUDA is not available here")
    return device


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"{PROG}: warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``binsr`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    debug = bool(os.environ.get("BINSR_DEBUG"))
    previous = warnings.showwarning
    if not debug:
        warnings.showwarning = _one_line_warnings
    try:
        return args.run(args)
    except BinsrError as err:
        if debug:
            raise
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI promise: one line, never a torch traceback
        if debug:
            raise
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"{PROG}: error: {type(err).__name__}: {detail} (BINSR_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
