"""``binsr degrade``: a realistic LR benchmark from an HR folder (Real-ESRGAN degradations, seeded)."""

from __future__ import annotations

import argparse
from pathlib import Path

from binsr.cli.common import non_negative_int
from binsr.errors import BinsrError


def add_degrade(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "degrade",
        help="make realistic LR images from HR images (Real-ESRGAN degradations, one seed per image)",
        description=(
            "Degrade every HR image of DATA (mod-cropped to the scale) with binsr's Real-ESRGAN pipeline: blur, "
            "resize, noise and JPEG, twice, then resize, sinc filter and JPEG, with the ResShift / BiMaCoSR "
            "training settings. Each image's seed comes from --seed and its name; the seeds and what each "
            "degradation drew are written to OUT/degradation.json. The same seed gives the same files, bit for "
            "bit. Score models on the result with 'binsr eval --data DATA --lr-data OUT'."
        ),
        epilog="example: binsr degrade Set14 -o set14-real --seed 0",
    )
    p.add_argument("data", metavar="DATA", help="folder of HR images, or a dataset name under the data root "
                   "($BINSR_DATA, default ../shared/data)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="folder for the LR images (PNG)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the set [default: 0]")
    p.add_argument("--scale", type=int, default=4, choices=range(2, 9), metavar="S", help="downscaling factor "
                   "(2-8) [default: 4]")
    p.add_argument("--data-root", metavar="DIR", help="data root for dataset names (overrides $BINSR_DATA)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_degrade)


def _run_degrade(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from binsr.cli.plan import writable_problem
    from binsr.data import resolve_data_dir
    from binsr.data.degraded_set import MANIFEST, degrade_folder, degraded_paths

    hr_dir = resolve_data_dir(args.data, args.data_root)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise BinsrError(f"--output {out_dir}: is a file, not a folder")
    targets = [out_dir / MANIFEST] + [path for _, path in degraded_paths(hr_dir, out_dir)]
    existing = [path for path in targets if path.exists()]
    if existing and not args.overwrite:  # found before any image is degraded
        raise BinsrError(f"--output {out_dir}: already holds {existing[0].name} (and {len(existing) - 1} more) of "
                         f"an earlier run; choose another folder or pass --overwrite")
    problem = writable_problem(out_dir / MANIFEST)
    if problem is not None:
        raise BinsrError(f"--output {problem}")
    manifest = degrade_folder(hr_dir, out_dir, args.scale, args.seed,
                              progress=lambda it: tqdm(it, desc=f"degrade x{args.scale}", unit="img",
                                                       disable=args.quiet))
    print(f"wrote {len(manifest['images'])} LR image(s) and {MANIFEST} to {out_dir} (seed {args.seed}); score "
          f"them with: binsr eval --data {args.data} --lr-data {out_dir} --scale {args.scale}")
    return 0
