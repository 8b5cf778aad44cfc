"""``binsr analyze`` (rank, freq, curves, compare) and ``binsr report``: figures, CSVs and tables."""

from __future__ import annotations

import argparse
import os

from binsr.cli.common import (
    Parser,
    add_data_arguments,
    add_sampling_arguments,
    eval_dataset,
    parse_int_list,
    parse_key_value,
    pick_device,
)
from binsr.errors import BinsrError
from binsr.cli.process import configure_process


def add_analyze(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "analyze",
        help="figures and CSVs: branch ranks, branch frequencies, training curves, visual comparisons",
        description="Analyses of models, runs and outputs, each written as PNG figures and CSV tables into --out.",
        epilog="run 'binsr analyze WHAT --help' for each analysis",
    )
    analyses = p.add_subparsers(dest="analysis", metavar="WHAT", parser_class=Parser, required=True)

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
    add_data_arguments(freq)
    freq.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG and CSV files")
    freq.add_argument("--limit", type=int, metavar="N", help="use only the first N images")
    add_sampling_arguments(freq)
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
            "For each image of --data: make the LR image (MATLAB bicubic; or read it from --lr-data), upscale "
            "it with every --model, and draw the full HR image with the crop box next to the crop of HR and of "
            "each output, labelled with the whole image's PSNR / SSIM (Y channel, as binsr eval). With "
            "--lr-data and no --data (real LR photos), the full image is the bicubic one and each output is "
            "labelled with its NIQE. Bicubic comes first unless listed. The crop is --crop, or the "
            "--crop-size window with the most detail. Writes compare_IMAGE.png."
        ),
        epilog="examples: binsr analyze compare --data Set5 --scale 4 --model fp.safetensors --model "
               "bimacosr.safetensors --images butterfly --out figures/; binsr analyze compare --lr-data RealSet65 "
               "--scale 4 --model bimacosr-x4 --images 0014 --out figures/",
    )
    add_data_arguments(compare, lr_data=True)
    compare.add_argument("--scale", type=int, required=True, choices=range(2, 9), metavar="S", help="upscaling factor")
    compare.add_argument("--model", action="append", default=[], metavar="NAME|FILE",
                         help="a model to show (repeatable; bicubic or a model file)")
    compare.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files")
    compare.add_argument("--images", nargs="+", metavar="NAME", help="only these images (file name or stem)")
    compare.add_argument("--crop", metavar="TOP,LEFT,SIZE", help="crop window in HR pixels [default: most detail]")
    compare.add_argument("--crop-size", type=int, default=64, metavar="N", help="side of the automatic crop [default: 64]")
    add_sampling_arguments(compare)
    compare.set_defaults(run=_run_analyze_compare)


def _run_analyze_rank(args: argparse.Namespace) -> int:
    from pathlib import Path

    from binsr.analysis.rank import write_rank_analysis
    from binsr.pipelines import load_network

    sizes = [] if args.sign_sizes.lower() == "none" else parse_int_list(args.sign_sizes, "--sign-sizes")
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

    device = pick_device(args.device)
    configure_process()  # this command's policy: threads on the free cores, freed maps kept
    upscaler = pipelines.load(args.model, device=device, steps=args.steps, seed=args.seed)
    dataset = SREvalDataset(resolve_data_dir(args.data, args.data_root), upscaler.scale)
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

    dataset, _ = eval_dataset(args)
    device = pick_device(args.device)
    models = list(args.model) if "bicubic" in args.model else ["bicubic", *args.model]
    configure_process()  # this command's policy, as binsr upscale's
    upscalers = [pipelines.load(m, args.scale, device=device, steps=args.steps, seed=args.seed)
                 if m != "bicubic" else pipelines.load(m, args.scale) for m in models]
    names = [u.name for u in upscalers]
    for model, upscaler in zip(models, upscalers):
        if names.count(upscaler.name) > 1:  # e.g. a model and its packed export: tell them apart by file
            upscaler.name = f"{upscaler.name} ({os.path.basename(model)})"
    crop = Crop.parse(args.crop) if args.crop else None
    if args.crop_size < 1:
        raise BinsrError(f"--crop-size must be at least 1, got {args.crop_size}")
    written = visual_comparisons(dataset, upscalers, args.out, crop, args.crop_size, args.images,
                                 progress=not args.quiet)
    print(f"wrote {len(written)} figure(s) to {args.out}")
    return 0


def add_report(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "report",
        help="comparison tables (Markdown + CSV) from 'binsr eval --json' results",
        description=(
            "Collect 'binsr eval --json' results into BI-DiffSR-style tables: one per scale, a row per model "
            "and, per dataset, PSNR / SSIM / LPIPS / NIQE (those the results have), with Bits, Params and OPs "
            "(one network call, 256x256 output). The best value of each column among the 1-bit models is bold. --paper bidiffsr adds "
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
    from binsr.analysis.report import METRICS, build_tables, load_results, report_markdown
    from binsr.utils import atomic_write, write_csv

    labels = dict(parse_key_value(text, "--label") for text in args.label)
    results = load_results(args.results)
    published = [record for scale in (2, 4) for record in bidiffsr_table(scale)] if args.paper else []
    tables = build_tables(results, published, labels)
    text = report_markdown(tables, args.results, "BI-DiffSR" if args.paper else None)
    with atomic_write(args.output, "w") as handle:
        handle.write(text)
    csv_path = Path(args.csv) if args.csv else Path(args.output).with_suffix(".csv")
    write_csv(csv_path, [record for table in tables for record in table.records()],
              ["scale", "method", "source", "bits", "params", "ops", "dataset", *(key for key, *_ in METRICS)])
    print(text)
    print(f"wrote {args.output} and {csv_path}")
    return 0
