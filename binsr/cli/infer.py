"""``binsr eval`` and ``binsr upscale``: run a model on images."""

from __future__ import annotations

import argparse
import errno
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from binsr.cli.common import (
    PROG,
    add_data_arguments,
    add_model_arguments,
    bounded_float,
    bounded_int,
    eval_dataset,
    load_upscaler,
    non_negative_int,
    pick_device,
    positive_int,
)
from binsr.errors import BinsrError
from binsr.pipelines.diffusion import AUTO_TILE

if TYPE_CHECKING:
    from binsr.cli.plan import Job
    from binsr.image import Picture
    from binsr.pipelines.base import Upscaler



def add_eval(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "eval",
        help="score a model on a benchmark folder (PSNR/SSIM on Y, LPIPS, NIQE)",
        description=(
            "Make LR images from the HR images of a folder with MATLAB-style bicubic (or read them with "
            "--lr-data), upscale them with a model, and score the result against HR the way SR papers do: "
            "8-bit images, Y channel of BT.601 YCbCr (single-channel gray files: their gray values), "
            "`scale` border pixels cropped; SSIM with an 11x11 "
            "Gaussian window; LPIPS (AlexNet v0.1) when its weights are available. With --lr-data the "
            "no-reference NIQE (BasicSR's, on Y, same border) is added; with --lr-data and no --data (real "
            "LR photos, no HR) NIQE is the only score."
        ),
        epilog="examples: binsr eval --model bicubic --data Set5 --scale 4 --json set5_x4.json; binsr eval --data "
               "Set14 --lr-data set14-real --scale 4 (LR made by 'binsr degrade'); binsr eval --lr-data RealSet65 "
               "--scale 4 (NIQE only)",
    )
    add_model_arguments(p, required=False)
    add_data_arguments(p, lr_data=True)
    p.add_argument("--scale", type=int, required=True, choices=range(2, 9), metavar="S", help="upscaling factor (2-8)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--rgb", action="store_true", help="compute PSNR/SSIM on RGB instead of the Y channel")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--niqe", action="store_true", help="add NIQE also when LR images are made by bicubic "
                   "(it is always computed with --lr-data)")
    p.add_argument("--no-complexity", action="store_true", help="do not count Params/OPs for the JSON (counting runs "
                   "the network once at a 256x256 output: seconds for small models, minutes for paper-size ones)")
    p.add_argument("--lpips-alexnet", metavar="PATH", help="torchvision AlexNet weights (alexnet-owt-7be5be79.pth)")
    p.add_argument("--lpips-lin", metavar="PATH", help="lpips v0.1 linear weights (default: from the lpips package)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from binsr.data.degraded_set import paired_name
    from binsr.errors import MetricUnavailable
    from binsr.evaluation import describe_model, evaluate
    from binsr.metrics.lpips import load_lpips
    from binsr.pipelines import check_steps
    from binsr.utils import format_table, write_json

    from binsr.cli.plan import writable_problem

    problem = writable_problem(Path(args.json)) if args.json else None
    if problem is not None:  # found before any image is upscaled
        raise BinsrError(f"--json {problem}")
    check_steps(args.model, args.steps)
    dataset, lr_dir = eval_dataset(args)
    dataset_name = dataset.name if lr_dir is None or args.data is None else paired_name(dataset.name, lr_dir)
    device = pick_device(args.device)
    upscaler = load_upscaler(args, device)
    lpips_model = None
    if not args.no_lpips and args.data is not None:
        try:
            lpips_model = load_lpips(args.lpips_alexnet, args.lpips_lin, device)
        except MetricUnavailable as err:
            print(f"{PROG}: {err}", file=sys.stderr)
    channels = "rgb" if args.rgb else "y"
    result = evaluate(upscaler, dataset, dataset_name, lpips_model, channels, device, progress=not args.quiet,
                      with_niqe=args.niqe or lr_dir is not None)
    result.info = describe_model(args.model, count=not args.no_complexity, steps=args.steps)

    columns = [(k, title) for k, title in (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("lpips", "LPIPS"),
                                           ("niqe", "NIQE")) if k in result.mean()]
    headers = ["image"] + [title for _, title in columns]

    def cells(name: str, values: dict) -> list[str]:
        return [name] + [f"{values[k]:.4f}" for k, _ in columns]

    rows = [cells(s.name + (" (gray)" if s.channels == "gray" else ""), s.metrics()) for s in result.per_image]
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
        description="Upscale every image given (files, or folders searched recursively, in any format Pillow "
                    "reads) and write NAME_SUFFIX.EXT files under OUTDIR, atomically. Folders keep their "
                    "subfolders under OUTDIR, so names never collide. Every output path is checked before the "
                    "model is loaded; existing outputs are skipped (--overwrite replaces them), and files under "
                    "OUTDIR are never inputs. Images are read as viewers show them (EXIF orientation); alpha, "
                    "16-bit depth, grayscale and the ICC profile are kept. Without --model it uses the shipped "
                    "default 1-bit model (see 'binsr models'). Options follow Real-ESRGAN's "
                    "inference_realesrgan.py where they mean the same: --suffix, --ext, --outscale, --tile.",
        epilog="examples: binsr upscale --sample -o demo; binsr upscale photo.png --compare; "
               "binsr upscale photos/ -o out --model bidiffsr-x4 --steps 20; binsr upscale a.jpg --outscale 3.5",
    )
    p.add_argument("inputs", nargs="*", metavar="IN", help="image files or folders of images")
    p.add_argument("--sample", action="store_true", help="also upscale a sample photo every install has (matplotlib's "
                   "Grace Hopper portrait, made LR with bicubic) and compare with the original")
    p.add_argument("-o", "--output", default=".", metavar="OUTDIR", help="folder for the results [default: .]")
    add_model_arguments(p, required=False, default=None)
    p.add_argument("--compare", action="store_true", help="also write NAME_SUFFIX_compare.png: bicubic | model")
    p.add_argument("--scale", type=bounded_int(2, 16), help="upscaling factor of the model (model files know theirs; "
                   "must agree); see --outscale for other output sizes")
    p.add_argument("--outscale", type=bounded_float(0.0, 16.0), metavar="F", help="final scale of the output "
                   "against the input: the model's output resized with MATLAB bicubic [default: the model's scale]")
    p.add_argument("--suffix", default="x{scale}", help="added to output names as NAME_SUFFIX; '' keeps the "
                   "input's name; {scale} is the output scale [default: x{scale}, e.g. photo_x4.png; "
                   "Real-ESRGAN's default is 'out': ours says the scale, so runs at two scales do not collide]")
    p.add_argument("--ext", choices=("auto", "png", "jpg", "webp"), default="auto", help="output format: auto "
                   "keeps PNG, JPEG and WebP inputs' format and writes PNG for others (Real-ESRGAN keeps any "
                   "extension; BMP, TIFF, GIF, ... are written losslessly as PNG here); images with alpha or 16 "
                   "bits are always PNG [default: auto]")
    p.add_argument("--alpha", choices=("bicubic", "model"), default="bicubic", help="how an alpha channel is "
                   "upscaled: MATLAB bicubic, or the model run on it as a gray image (Real-ESRGAN's "
                   "--alpha_upsampler, whose default is its model: a photo model invents texture on smooth or "
                   "hard-edged masks and doubles the time, so bicubic is ours) [default: bicubic]")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs instead of skipping them")
    p.add_argument("--tile", type=positive_int, help=f"process in tiles of N output pixels (bounded memory) "
                   f"[default: {AUTO_TILE} for outputs larger than {AUTO_TILE}x{AUTO_TILE}; x4 that for latent "
                   f"models]")
    p.add_argument("--tile-overlap", type=non_negative_int, default=32, help="overlap between tiles in output "
                   "pixels [default: 32]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_upscale)


def _run_upscale(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from binsr.cli.plan import plan_outputs
    from binsr.data import bicubic_downscale, mod_crop, sample_image_path
    from binsr.image import read_picture
    from binsr.pipelines import DEFAULT_MODEL, available, check_steps, load, model_scale
    from binsr.pipelines.picture import check_picture_size, write_upscaled
    from binsr.utils.fs import OutputExists

    if not args.inputs and not args.sample:
        raise BinsrError("give images or folders to upscale, or --sample")
    device = pick_device(args.device)
    if args.model is None:
        if DEFAULT_MODEL not in available():
            raise BinsrError(f"this install ships no default model ({DEFAULT_MODEL}); pass --model NAME|FILE")
        args.model = DEFAULT_MODEL
    scale = model_scale(args.model, args.scale)  # from the file's header: nothing is loaded yet
    check_steps(args.model, args.steps)
    outscale = args.outscale or scale
    suffix = _suffix(args.suffix, outscale)
    pictures: dict[Path, Picture] = {}
    originals: dict[Path, torch.Tensor] = {}
    sample = sample_image_path() if args.sample else None

    def needs_png(source: Path) -> bool:  # decodes every input before any model work
        picture = pictures[source] = read_picture(source)
        if source == sample:  # the sample photo, made LR by MATLAB bicubic: the original is the reference
            originals[source] = mod_crop(picture.rgb, scale)
            pictures[source] = replace(picture, rgb=bicubic_downscale(originals[source], scale), icc=None)
            return True
        return picture.alpha is not None or picture.bits == 16

    plan = plan_outputs(args.inputs, Path(args.output), suffix, args.ext, args.overwrite, needs_png,
                        compare=args.compare or args.sample, extra=(sample,) if sample else ())
    if plan.left_out:
        print(f"left out {len(plan.left_out)} item(s) of the input folders: {', '.join(plan.left_out[:3])}"
              f"{' …' if len(plan.left_out) > 3 else ''}")
    if plan.skipped:
        print(f"skipped {len(plan.skipped)} existing file(s); --overwrite replaces them")
    if not plan.jobs:
        return _report_unreadable(plan.unreadable)
    upscaler = load_upscaler(args, device, tile=args.tile, tile_overlap=args.tile_overlap)
    for job in plan.jobs:
        check_picture_size(upscaler, pictures[job.source], job.source)
    bicubic = load("bicubic", scale)
    exclusive = not args.overwrite  # a file another process made since planning is never replaced
    written: list[Path] = []
    appeared: list[Path] = []
    for job in tqdm(plan.jobs, desc=f"upscale x{outscale:g}", unit="img", disable=args.quiet):
        picture = pictures[job.source]
        try:
            if job.compare is None:  # band by band: memory bounded by the tile and the 8-bit output
                write_upscaled(job.target, upscaler, picture, args.alpha, outscale, device, job.file_format,
                               exclusive)
            else:
                _write_with_comparison(job, picture, upscaler, bicubic, originals.get(job.source), args.alpha,
                                       outscale, scale, device, exclusive)
        except OutputExists:
            appeared.append(job.target)
            continue
        except OSError as err:
            reason = _WRITE_FAILURES.get(err.errno)
            if reason is None:
                raise
            done = f"; the {len(written)} before it were written (the last: {written[-1]})" if written else \
                "; nothing was written"
            raise BinsrError(f"{job.target}: {reason}, so it was not written{done}") from None
        written.append(job.target)
    if appeared:
        print(f"skipped {len(appeared)} file(s) that appeared while this run was writing (another run?), left as "
              f"they are: {', '.join(map(str, appeared[:3]))}{' …' if len(appeared) > 3 else ''}")
    print(f"wrote {len(written)} image(s){' and comparisons' if args.compare or args.sample else ''} to "
          f"{args.output} (model: {upscaler.name})")
    return _report_unreadable(plan.unreadable)


_WRITE_FAILURES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                   errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                   errno.EPERM: "permission denied"}


def _report_unreadable(problems: list[str]) -> int:
    """The inputs that could not be read, one ``binsr: error:`` line each, after the good ones were written:
    exit status 1 if there were any, else 0."""
    for problem in problems:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
    if problems:
        print(f"{PROG}: error: {len(problems)} input(s) could not be read and were not upscaled", file=sys.stderr)
    return 1 if problems else 0


def _write_with_comparison(job: Job, picture: Picture, upscaler: Upscaler, bicubic: Upscaler,
                           original: torch.Tensor | None, alpha_mode: str, outscale: float, scale: int,
                           device: torch.device, exclusive: bool) -> None:
    """The upscaled picture and its side-by-side comparison (bicubic | model | original, where known)."""
    from binsr.image import side_by_side, write_image
    from binsr.metrics.psnr_ssim import psnr
    from binsr.pipelines.picture import upscale_picture, write_result
    from binsr.utils.fs import OutputExists

    sr, alpha = upscale_picture(upscaler, picture, alpha_mode, outscale, device)
    write_result(job.target, picture, sr, alpha, job.file_format, exclusive)
    panels, labels = [upscale_picture(bicubic, replace(picture, alpha=None), outscale=outscale)[0], sr], \
        ["bicubic", upscaler.name]
    if original is not None:
        scores = [f"{psnr(p, original, crop_border=scale):.2f} dB" for p in panels]
        labels = [f"{label} {score}" for label, score in zip(labels, scores)] + ["original"]
        panels.append(original)
        print(f"{job.source.stem}: PSNR (Y) against the original: bicubic {scores[0]}, "
              f"{upscaler.name} {scores[1]}")
    try:
        write_image(job.compare, side_by_side(panels, labels), exclusive=exclusive)
    except OutputExists as err:  # the result itself was written: say so, and keep its count
        print(f"{err} (its comparison)")


def _suffix(template: str, outscale: float) -> str:
    try:
        suffix = template.format(scale=f"{outscale:g}")
    except (KeyError, IndexError, ValueError):
        raise BinsrError(f"--suffix {template!r}: only {{scale}} may appear in braces") from None
    if "/" in suffix or "\\" in suffix or "\0" in suffix:
        raise BinsrError(f"--suffix {template!r}: must not contain path separators")
    return suffix


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


# what a model was trained on says which LR images it is for
_LR_KINDS = {"bicubic": "clean (bicubic)", "realesrgan": "real photos (noise, blur, JPEG)"}


def _has_psnr(mean: dict[str, float] | None) -> bool:
    """Whether a card's scores on a dataset were measured against HR (NIQE alone on LR photos without HR)."""
    return bool(mean) and mean.get("psnr") is not None


def _card_scores(mean: dict[str, float] | None) -> str:
    """A card's scores on one dataset: PSNR / SSIM, or NIQE alone on LR photos without HR."""
    if not mean:
        return "—"
    return f"{mean['psnr']:.2f} / {mean['ssim']:.4f}" if _has_psnr(mean) else f"{mean['niqe']:.2f}"


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
    names = {d: "PSNR/SSIM" if any(_has_psnr(m.card.get("metrics", {}).get(d)) for m in models.values()) else "NIQE"
             for d in datasets}  # of the scores in each dataset's column
    rows = []
    for name, model in models.items():
        card, metrics = model.card, model.card.get("metrics", {})
        training = card.get("training", {})
        row = [name + (" (default)" if name == DEFAULT_MODEL else ""), f"x{card.get('scale', '?')}",
               card.get("method", "?"), str(card.get("bits", "?")), card.get("sampling", "?"),
               human_count(model.file_bytes, "B")]
        row += [_card_scores(metrics.get(d)) for d in datasets]
        row.append(_LR_KINDS.get(training.get("data", {}).get("degradation", ""), "?"))
        hours = f", {training['hours']} h" if training.get("hours") else ""
        row.append(f"{training.get('steps', '?')} steps{hours}, {training.get('hardware', '?')}")
        rows.append(row)
    headers = ["model", "scale", "method", "bits", "sampling", "file", *(f"{d} {names[d]}" for d in datasets),
               "for LR", "trained"]
    print(format_table(headers, rows))
    print(_peers_table())
    print(_kinds_line())
    return 0


def _peers_table() -> str:
    """The peer models: what users pick instead of binsr, run by the same commands (the peers extra)."""
    from binsr.pipelines import PEERS, peers_installed
    from binsr.pipelines.peers import EXTRA, peer_files
    from binsr.utils import format_table, human_count

    installed = peers_installed()
    rows = [[name, f"x{peer.scale}", "peer, full precision, ncnn", peer.summary,
             human_count(peer_files(name)[1].stat().st_size, "B") if installed else "-"]
            for name, peer in ((n, PEERS.get(n)) for n in PEERS.names())]
    note = "" if installed else f" (not installed: {EXTRA})"
    return f"\npeers{note}:\n" + format_table(["model", "scale", "kind", "network", "file"], rows)


def _kinds_line() -> str:
    """What else has a name: the pipeline kinds of model files and the network presets (untrained)."""
    from binsr.models import PRESETS
    from binsr.pipelines import PIPELINES

    return (f"\nmodel file kinds (pipelines): {', '.join(PIPELINES.names())}\n"
            f"network presets (untrained; binsr complexity --arch, binsr bench --model, 'binsr train --list'): "
            f"{', '.join(PRESETS.names())}")
