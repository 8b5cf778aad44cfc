"""``binsr eval`` and ``binsr upscale``: run a model on images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from binsr.cli.common import PROG, add_data_arguments, add_model_arguments, load_upscaler, pick_device
from binsr.errors import BinsrError

AUTO_TILE = 512  # binsr upscale tiles outputs larger than this squared (about 3 GB for bidiffsr-x4)


def add_eval(commands: argparse._SubParsersAction) -> None:
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
    add_model_arguments(p, required=False)
    add_data_arguments(p)
    p.add_argument("--lr-data", metavar="DIR", help="folder of matching LR images (paired mode) instead of bicubic")
    p.add_argument("--scale", type=int, required=True, choices=range(2, 9), metavar="S", help="upscaling factor (2-8)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--rgb", action="store_true", help="compute PSNR/SSIM on RGB instead of the Y channel")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--no-complexity", action="store_true", help="do not count Params/OPs for the JSON (counting runs "
                   "the network once at a 256x256 output: seconds for small models, minutes for paper-size ones)")
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

    device = pick_device(args.device)
    upscaler = load_upscaler(args, device)
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
    result.info = describe_model(args.model, count=not args.no_complexity, steps=args.steps)

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


def add_upscale(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "upscale",
        help="upscale images or folders with a model",
        description="Upscale every image given (files or folders) and write NAME_xS.png files to OUTDIR, atomically. "
                    "Without --model it uses the shipped default 1-bit model (see 'binsr models'). Diffusion "
                    "models sample with DDIM; --tile bounds memory on large images.",
        epilog="examples: binsr upscale --sample -o demo; binsr upscale photo.png --compare; "
               "binsr upscale photos/ -o out --model bidiffsr-x4 --steps 20",
    )
    p.add_argument("inputs", nargs="*", metavar="IN", help="image files or folders of images")
    p.add_argument("--sample", action="store_true", help="also upscale a sample photo every install has (matplotlib's "
                   "Grace Hopper portrait, made LR with bicubic) and compare with the original")
    p.add_argument("-o", "--output", default=".", metavar="OUTDIR", help="folder for the results [default: .]")
    add_model_arguments(p, required=False, default=None)
    p.add_argument("--compare", action="store_true", help="also write NAME_xS_compare.png: bicubic | model, side by side")
    p.add_argument("--scale", type=int, help="upscaling factor (model files know theirs; must agree)")
    p.add_argument("--tile", type=int, help=f"process in tiles of N output pixels (bounded memory) [default: "
                   f"{AUTO_TILE} for outputs larger than {AUTO_TILE}x{AUTO_TILE}; x4 that for latent models]")
    p.add_argument("--tile-overlap", type=int, default=32, help="overlap between tiles in pixels [default: 32]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_upscale)


def _run_upscale(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from binsr.data import bicubic_downscale, mod_crop, sample_image_path
    from binsr.image import read_image, side_by_side, write_png
    from binsr.metrics.psnr_ssim import psnr
    from binsr.pipelines import DEFAULT_MODEL, available, load

    if not args.inputs and not args.sample:
        raise BinsrError("give images or folders to upscale, or --sample")
    device = pick_device(args.device)
    if args.model is None:
        if DEFAULT_MODEL not in available():
            raise BinsrError(f"this install ships no default model ({DEFAULT_MODEL}); pass --model NAME|FILE")
        args.model = DEFAULT_MODEL
    upscaler = load_upscaler(args, device, tile=args.tile, tile_overlap=args.tile_overlap, auto_tile=AUTO_TILE)
    scale = upscaler.scale
    jobs = [(path.stem, read_image(path), None) for path in _image_files(args.inputs)]  # all read before any write
    if args.sample:  # the sample photo, made LR by MATLAB bicubic: the original is the reference
        original = mod_crop(read_image(sample_image_path()), scale)
        jobs.append((sample_image_path().stem, bicubic_downscale(original, scale), original))
    check = getattr(upscaler, "check_size", None)
    for stem, image, _ in jobs:
        if callable(check):
            try:
                check(*image.shape[-2:])
            except BinsrError as err:
                raise BinsrError(f"{stem}: {err}") from None
    out_dir, bicubic = Path(args.output), load("bicubic", scale)
    for stem, image, original in tqdm(jobs, desc=f"upscale x{scale}", unit="img", disable=args.quiet):
        with torch.no_grad():
            sr = upscaler.upscale(image[None].to(device))[0].cpu()
        write_png(out_dir / f"{stem}_x{scale}.png", sr)
        if args.compare or original is not None:
            panels, labels = [bicubic.upscale(image[None])[0], sr], ["bicubic", upscaler.name]
            if original is not None:
                scores = [f"{psnr(p, original, crop_border=scale):.2f} dB" for p in panels]
                labels = [f"{label} {score}" for label, score in zip(labels, scores)] + ["original"]
                panels.append(original)
                print(f"{stem}: PSNR (Y) against the original: bicubic {scores[0]}, {upscaler.name} {scores[1]}")
            write_png(out_dir / f"{stem}_x{scale}_compare.png", side_by_side(panels, labels))
    print(f"wrote {len(jobs)} image(s){' and comparisons' if args.compare or args.sample else ''} to {out_dir} "
          f"(model: {upscaler.name})")
    return 0


def _image_files(inputs: list[str]) -> list[Path]:
    """The image files named by ``inputs`` (files, or folders searched recursively)."""
    from binsr.image import list_images

    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise BinsrError(f"no images found in {item}")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise BinsrError(f"no such file or folder: {item}")
    return files


def add_models(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "models",
        help="list the pretrained 1-bit models shipped with binsr",
        description="List the models inside the package (no download needed): scale, method, weight bits, how it "
                    "samples, file size, training and the measured PSNR/SSIM from its model card. Use a name with "
                    "'binsr upscale --model NAME' or binsr.load(NAME).",
        epilog="example: binsr models --json",
    )
    p.add_argument("--json", action="store_true", help="print the full model cards as JSON")
    p.set_defaults(run=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    import json

    from binsr.analysis.report import dataset_key
    from binsr.pipelines import DEFAULT_MODEL, shipped_models
    from binsr.utils import format_table, human_count

    models = shipped_models()
    if args.json:
        print(json.dumps({name: {**m.card, "file": str(m.path), "file_bytes": m.file_bytes}
                          for name, m in models.items()}, indent=2))
        return 0
    if not models:
        print("no pretrained models are shipped in this install")
        return 0
    datasets = sorted({d for m in models.values() for d in m.card.get("metrics", {})}, key=dataset_key)
    rows = []
    for name, model in models.items():
        card, metrics = model.card, model.card.get("metrics", {})
        training = card.get("training", {})
        row = [name + (" (default)" if name == DEFAULT_MODEL else ""), f"x{card.get('scale', '?')}",
               card.get("method", "?"), str(card.get("bits", "?")), card.get("sampling", "?"),
               human_count(model.file_bytes, "B")]
        row += [f"{metrics[d]['psnr']:.2f} / {metrics[d]['ssim']:.4f}" if d in metrics else "—" for d in datasets]
        hours = f", {training['hours']} h" if training.get("hours") else ""
        row.append(f"{training.get('steps', '?')} steps{hours}, {training.get('hardware', '?')}")
        rows.append(row)
    headers = ["model", "scale", "method", "bits", "sampling", "file"] + [f"{d} PSNR/SSIM" for d in datasets] + ["trained"]
    print(format_table(headers, rows))
    return 0
