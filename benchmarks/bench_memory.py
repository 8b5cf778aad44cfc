"""Peak memory of ``binsr eval`` on benchmark-sized images, for every shipped model (the goal: under 4 GB).

Makes two HR images the size of the largest benchmark images, an Urban100-sized 1024×1024 and a
Manga109-sized 1200×800 (the sample photo resized with bicubic), and runs ``binsr eval --model M --data DIR
--scale S`` on them in a fresh process per model. Peak RSS is the child's own ``VmHWM`` (``ru_maxrss`` would not
do: a vfork-started child inherits its parent's peak at exec); the
eval command bounds memory by tiling outputs over 512² (×4 for latent models), the same rule as
``binsr upscale``, the analyses, training validation and ``binsr.load``.

Usage: python benchmarks/bench_memory.py [--models bimacosr-x4 ...] [--json F]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from binsr.data import sample_image_path
from binsr.pipelines import shipped_models
from binsr.utils import format_table

SIZES = {"urban100-size": (1024, 1024), "manga109-size": (1200, 800)}  # (width, height)


def make_images(folder: Path) -> None:
    with Image.open(sample_image_path()) as photo:
        photo = photo.convert("RGB")
        for name, size in SIZES.items():
            photo.resize(size, Image.BICUBIC).save(folder / f"{name}.png")


CHILD = """
import sys
from binsr.cli import main
code = main(sys.argv[1:])
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
sys.stderr.write(f"VmHWM {int(status['VmHWM'].split()[0])}\\n")
sys.exit(code)
"""


def peak_rss(arguments: list[str]) -> tuple[float, float, int]:
    """(peak RSS in GiB, wall seconds, exit code) of ``binsr ARGUMENTS`` in a fresh process."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CHILD, *arguments], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    peak = [line for line in result.stderr.splitlines() if line.startswith("VmHWM ")]
    if result.returncode or not peak:
        sys.stderr.write(result.stderr)
    return (int(peak[-1].split()[1]) / 2**20 if peak else float("nan")), seconds, result.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(shipped_models()))
    parser.add_argument("--json", help="also write the rows as JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "large"
        data.mkdir()
        make_images(data)
        for name in args.models:
            scale = shipped_models()[name].card["scale"]
            command = ["eval", "--model", name, "--data", str(data), "--scale", str(scale), "--no-lpips",
                       "--no-complexity", "--quiet"]
            gib, seconds, code = peak_rss(command)
            rows.append({"model": name, "images": ", ".join(f"{w}x{h}" for w, h in SIZES.values()),
                         "peak_rss_gib": round(gib, 2), "seconds": round(seconds, 1), "exit": code})
            print(f"{name}: peak RSS {gib:.2f} GiB, {seconds:.1f} s, exit {code}", flush=True)
    print(format_table(["model", "HR images", "peak RSS (GiB)", "time (s)", "exit"],
                       [[r["model"], r["images"], f"{r['peak_rss_gib']:.2f}", f"{r['seconds']:.1f}", str(r["exit"])]
                        for r in rows]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
