"""binsr against what users pick instead, side by side in one run: bicubic, Real-ESRGAN's ncnn models (the
peers extra) and every shipped x4 binsr model, on the same images, on this CPU.

Per model:
* ``64² ms`` / ``256² ms``: ``upscaler.upscale(lr)`` of a random LR image (median of ``--repeats``, the models
  round-robin; outputs over 512² are tiled by each model's own rule, as ``binsr upscale`` does);
* ``peak MB``: peak RSS of a fresh process that loads the model and upscales a 256² input (``--big``: also a
  1024² one), imports included;
* ``file``: the weights' size on disk;
* PSNR / SSIM (Y, border = scale) on Set5 and Set14 with MATLAB-bicubic LR and with realistic LR (Real-ESRGAN
  degradations, ``binsr degrade --seed 0``, made here in a temporary folder);
* NIQE on RealSet65 (real LR photos without HR): of the outputs of each photo's central ``--crop``² LR pixels
  (128 by default, as a fixed budget for the slow models; 0: whole photos).

Usage: python benchmarks/bench_peers.py [--data ../shared/data] [--models ...] [--repeats 3] [--crop 128]
       [--big] [--json F]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

import binsr
from binsr.bench import write_results
from binsr.data import LRPhotoDataset, SREvalDataset
from binsr.data.degraded_set import degrade_folder
from binsr.errors import BinsrWarning
from binsr.evaluation import evaluate
from binsr.pipelines import PEERS, peers_installed, shipped_models
from binsr.pipelines.peers import peer_files
from binsr.utils import format_table
from binsr.cli.process import configure_process

PEAK_PROGRAM = """
import sys, torch, binsr
from binsr.cli.process import configure_process
configure_process(2)
name, side = sys.argv[1], int(sys.argv[2])
upscaler = binsr.load(name, scale=4) if name == "bicubic" else binsr.load(name)
with torch.no_grad():
    upscaler.upscale(torch.rand(1, 3, side, side))
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""  # (VmHWM, the high-water mark of this process's own memory: ru_maxrss would start from the forking parent's)


def default_models() -> list[str]:
    shipped = [name for name, model in shipped_models().items() if model.card.get("scale") == 4]
    peers = [name for name in ("realesrgan-x4plus", "realesr-animevideov3-x4") if peers_installed()]
    return ["bicubic", *peers, *sorted(shipped)]


def load(name: str) -> object:
    return binsr.load(name, scale=4) if name == "bicubic" else binsr.load(name)


def file_bytes(name: str) -> int:
    if name == "bicubic":
        return 0
    if name in PEERS:
        return peer_files(name)[1].stat().st_size
    return shipped_models()[name].file_bytes


def peak_mb(name: str, side: int) -> float:
    """Peak RSS (MB) of a fresh process loading ``name`` and upscaling a side x side input."""
    out = subprocess.run([sys.executable, "-c", PEAK_PROGRAM, name, str(side)], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return int(out.stdout.split()[-1]) / 1024  # VmHWM is in KiB


def times_ms(upscalers: dict[str, object], side: int, repeats: int) -> dict[str, float]:
    """Median ms of each upscaler on one side x side input, round-robin after a warm-up call each."""
    lr = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
    spent: dict[str, list[float]] = {name: [] for name in upscalers}
    with torch.no_grad():
        for round_ in range(repeats + 1):
            for name, upscaler in upscalers.items():
                start = time.perf_counter()
                upscaler.upscale(lr)
                if round_:
                    spent[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in spent.items()}


class CentreCrops(LRPhotoDataset):
    """The photos' central crop² LR pixels (whole photos with crop 0 or where a photo is smaller)."""

    def __init__(self, lr_dir: Path, crop: int) -> None:
        super().__init__(lr_dir)
        self.crop = crop

    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        lr, c = sample["lr"], self.crop
        if c:
            top, left = max(0, (lr.shape[-2] - c) // 2), max(0, (lr.shape[-1] - c) // 2)
            sample["lr"] = lr[..., top:top + c, left:left + c]
        return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("BINSR_DATA", "../shared/data"))
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--big", action="store_true", help="also the peak memory of a 1024² input")
    parser.add_argument("--json")
    args = parser.parse_args()
    configure_process(2)
    warnings.simplefilter("ignore", BinsrWarning)  # (RealSet65's photos with alpha: dropped, as binsr eval says)
    data = Path(args.data)
    models = args.models or default_models()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    print(f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}; models: {', '.join(models)}",
          flush=True)
    upscalers = {name: load(name) for name in models}
    rows: dict[str, dict] = {name: {"file_bytes": file_bytes(name)} for name in models}
    for side in (64, 256):
        for name, ms in times_ms(upscalers, side, args.repeats).items():
            rows[name][f"ms_{side}"] = round(ms, 1)
        print(f"timed {side}²", flush=True)
    for name in models:
        rows[name]["peak_mb_256"] = round(peak_mb(name, 256), 1)
        if args.big:
            rows[name]["peak_mb_1024"] = round(peak_mb(name, 1024), 1)
    print("peak memory measured", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        sets = []
        for name in ("Set5", "Set14"):
            real = Path(tmp) / f"{name.lower()}-real"
            degrade_folder(data / name, real, scale=4, seed=0)
            sets += [(name, SREvalDataset(data / name, 4)), (f"{name}-real", SREvalDataset(data / name, 4, lr_dir=real))]
        photos = CentreCrops(data / "RealSet65", args.crop)
        for name, upscaler in upscalers.items():
            for label, dataset in sets:
                mean = evaluate(upscaler, dataset, label, progress=False).mean()
                rows[name][label] = [round(mean["psnr"], 2), round(mean["ssim"], 4)]
            rows[name]["RealSet65_niqe"] = round(evaluate(upscaler, photos, "RealSet65", progress=False,
                                                         with_niqe=True).mean()["niqe"], 2)
            print(f"scored {name}", flush=True)
    headers = ["model", "64² ms", "256² ms", "peak MB (256²)", *(["peak MB (1024²)"] if args.big else []), "file MB",
               "Set5", "Set5-real", "Set14", "Set14-real", f"RealSet65 NIQE ({args.crop or 'whole'})"]
    table = [[name, r["ms_64"], r["ms_256"], r["peak_mb_256"], *([r["peak_mb_1024"]] if args.big else []),
              round(r["file_bytes"] / 1e6, 2), *(f"{r[k][0]:.2f} / {r[k][1]:.4f}" for k in
                                                   ("Set5", "Set5-real", "Set14", "Set14-real")), r["RealSet65_niqe"]]
             for name, r in rows.items()]
    print(format_table(headers, table))
    if "realesrgan-x4plus" in rows:
        reference = rows["realesrgan-x4plus"]["ms_256"]
        for name, r in rows.items():
            if name != "realesrgan-x4plus" and name != "bicubic":
                print(f"{name}: {reference / r['ms_256']:.1f}x faster than realesrgan-x4plus at 256²")
    if args.json:
        write_results(args.json, {"cpu": cpu, "threads": torch.get_num_threads(), "crop": args.crop, "models": rows})
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
