"""`binsr upscale` with another process keeping a core busy, against the same command on an idle machine.

Starts its own busy process (a Python loop that spins until stopped), then runs, round-robin:
* ``idle``: ``binsr upscale IMG -o DIR`` with nothing else running (the busy process paused with SIGSTOP);
* ``busy``: the same command while the busy process runs (binsr's default thread choice);
* ``busy, --threads N``: the same with every core in use anyway (N = the cores this process may use),
  what a fixed thread count does under contention.
Each contender runs ``--repeats`` times in a fresh process; the script prints the medians, the spread
(min–max) and busy / idle, and stops the busy process at the end (also on errors or Ctrl-C).

Usage: python benchmarks/bench_contention.py [--model bimacosr-x4] [--size 64] [--repeats 5] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from binsr.image import write_png
from binsr.utils import format_table
from binsr.utils.threads import allowed_cores

SPIN = "while True:\n    pass\n"


def upscale_seconds(image: Path, out: Path, model: str, extra: list[str]) -> float:
    command = [sys.executable, "-m", "binsr", "upscale", str(image), "--model", model, "-o", str(out), "--quiet",
               *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bimacosr-x4")
    parser.add_argument("--size", type=int, default=64, help="LR input side")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    cores = len(allowed_cores())
    contenders = {"idle": [], "busy": [], f"busy, --threads {cores}": []}
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "lr.png"
        write_png(image, torch.rand(3, args.size, args.size, generator=torch.Generator().manual_seed(0)))
        upscale_seconds(image, Path(tmp) / "warm", args.model, [])  # page cache, .pyc files
        busy = subprocess.Popen([sys.executable, "-c", SPIN])
        try:
            for index in range(args.repeats):
                for name in contenders:
                    os.kill(busy.pid, signal.SIGSTOP if name == "idle" else signal.SIGCONT)
                    time.sleep(0.3)  # let the scheduler and /proc/stat see the change
                    extra = ["--threads", str(cores)] if "--threads" in name else []
                    out = Path(tmp) / f"{index}-{len(contenders[name])}-{name.split(',')[0]}"
                    contenders[name].append(upscale_seconds(image, out, args.model, extra))
        finally:
            os.kill(busy.pid, signal.SIGCONT)
            busy.terminate()
            busy.wait()
    idle = statistics.median(contenders["idle"])
    rows = [[name, f"{statistics.median(t):.2f}", f"{min(t):.2f}-{max(t):.2f}", f"{statistics.median(t) / idle:.2f}x"]
            for name, t in contenders.items()]
    print(f"binsr upscale, {args.model}, {args.size}x{args.size} input, {cores} cores, {args.repeats} runs each")
    print(format_table(["machine", "median (s)", "range (s)", "vs idle"], rows, "lrrr"))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "size": args.size, "cores": cores,
                                               "seconds": contenders}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
