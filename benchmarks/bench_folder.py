"""``binsr upscale`` of a folder of N small images against N single runs: the same files, and the time each takes.

Makes N (default 100) 48×48 crops of the sample photo in a temporary folder, in three subfolders and three
formats (PNG, JPEG, WebP), then runs ``binsr upscale FOLDER -o A`` once (its progress bar is checked to reach
N/N) and ``binsr upscale FILE -o B/SUBFOLDER`` once per image, and compares every output file byte for byte.

Usage: python benchmarks/bench_folder.py [--count 100] [--model NAME]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from binsr.data import sample_image_path

FORMATS = (".png", ".jpg", ".webp")


def make_images(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    with Image.open(sample_image_path()) as photo:
        pixels = np.asarray(photo.convert("RGB"))
    paths = []
    for index in range(count):
        top, left = rng.integers(0, pixels.shape[0] - 48), rng.integers(0, pixels.shape[1] - 48)
        path = folder / f"set{index % 3}" / f"img{index:03d}{FORMATS[index % 3]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[top:top + 48, left:left + 48]).save(path)
        paths.append(path)
    return paths


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--model", default=None, help="model name [default: the shipped default]")
    args = parser.parse_args()
    model = ["--model", args.model] if args.model else []
    upscale = [sys.executable, "-m", "binsr", "upscale", *model]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = make_images(root / "in", args.count)
        start = time.perf_counter()
        run = subprocess.run([*upscale, str(root / "in"), "-o", str(root / "folder")], capture_output=True,
                             text=True, check=True)
        folder_s = time.perf_counter() - start
        progress = f"{args.count}/{args.count}" in run.stderr
        start = time.perf_counter()
        for image in images:
            subprocess.run([*upscale, str(image), "-o", str(root / "single" / image.parent.name), "--quiet"],
                           check=True, capture_output=True)
        single_s = time.perf_counter() - start
        together, apart = files(root / "folder"), files(root / "single")
    same = together == apart and len(together) == args.count
    print(f"{args.count} images: one folder run {folder_s:.1f} s ({folder_s / args.count * 1e3:.0f} ms/image, "
          f"progress bar reached {args.count}/{args.count}: {progress}); {args.count} single runs {single_s:.1f} s "
          f"({single_s / args.count:.2f} s/image, {single_s / folder_s:.1f}x the folder run); "
          f"outputs identical byte for byte: {same} ({len(together)} files)")
    if not same or not progress:
        sys.exit(1)


if __name__ == "__main__":
    main()
