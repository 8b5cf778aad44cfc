"""What the demo page does, without Gradio: read an upload as ``binsr upscale`` reads a file, upscale it with a
shipped model or an uploaded model file, write the result as ``binsr upscale`` writes it, and state the facts
(output size, time, bits, file size, packed or simulated, CPU kernel, PSNR/SSIM against an optional HR image).

Every file it writes is under its own ``workdir``. Errors are :class:`~binsr.errors.BinsrError` lines, the
same as the command line's.
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from binsr.errors import BinsrError
from binsr.image import Picture, read_picture, write_image
from binsr.metrics.psnr_ssim import psnr, ssim
from binsr.pipelines import (
    DEFAULT_MODEL,
    PEERS,
    is_peer,
    load,
    peers_installed,
    pipeline_type,
    read_model_spec,
    resolve,
    shipped_models,
)
from binsr.pipelines.peers import peer_files
from binsr.pipelines.base import Upscaler
from binsr.pipelines.bicubic import BicubicUpscaler
from binsr.pipelines.picture import check_picture_size, upscale_picture, write_result
from binsr.utils import human_count
from binsr.utils.threads import configure_threads

MAX_INPUT_PIXELS = 512 * 512  # LR pixels per upload: a 2048² output at x4, tiled, in bounded memory and time
MAX_OUTSCALE = 16.0
# START_SAMPLES: the demo keeps its thread count, so it looks at the cores for longer than one command does
# (10 windows of 30 ms): a neighbour busy for a moment as the server starts must not halve every request.
START_SAMPLES = 10
WARM_UP_SIDE = 256  # LR side of the start-up run: about a second, and the memory of uploads up to it stays mapped


@dataclass
class DemoResult:
    """Paths of the bicubic comparison (PNG) and of the result (PNG, as ``binsr upscale`` writes it), the
    facts as Markdown, and the seconds the model took."""

    bicubic: Path
    result: Path
    facts: str
    seconds: float


class DemoRunner:
    """The demo's work, in ``workdir`` (a folder the caller owns and removes), on ``threads`` CPU threads
    (default: the cores other processes leave free now, chosen once: during a request the browser showing
    the page is busy too, and would be counted as another process)."""

    def __init__(self, workdir: Path, threads: int | None = None) -> None:
        self.workdir, self.threads = Path(workdir), configure_threads(threads, START_SAMPLES)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._count = 0

    def warm_up(self, side: int = WARM_UP_SIDE) -> None:
        """Load the default model and run it once on a ``side``² input now, so that the first request pays
        neither the loading nor a first call's one-time costs (each layer's prepared kernel call for the
        new shape, and fresh memory page-faulted in: about a third of a first 256² upscale on 2 cores)."""
        if DEFAULT_MODEL in shipped_models():
            upscaler = _upscaler(DEFAULT_MODEL, None, None, 0)
            configure_threads(self.threads)
            with torch.no_grad():  # as upscale_picture runs it
                upscaler.upscale(torch.zeros(1, 3, side, side))

    def sample_input(self) -> Path:
        """The sample photo every install has, made LR (×4 smaller, MATLAB bicubic), as a PNG in ``workdir``."""
        from binsr.data import bicubic_downscale, mod_crop, sample_image_path

        path = self.workdir / "sample_lr.png"
        if not path.is_file():
            write_image(path, bicubic_downscale(mod_crop(read_picture(sample_image_path()).rgb, 4), 4))
        return path

    @staticmethod
    def model_names() -> list[str]:
        """The shipped models, the default first, then the peers where their extra is installed."""
        names = sorted(shipped_models(), key=lambda n: (n != DEFAULT_MODEL, n))
        return names + (PEERS.names() if peers_installed() else [])

    @staticmethod
    def takes_steps(model: str) -> bool:
        """Whether ``model`` (a name or file) samples with a step count the user may choose (SR3 / BI-DiffSR)."""
        if is_peer(model):
            return False
        return pipeline_type(read_model_spec(resolve(model)).kind).takes_steps

    def upscale(self, image: str | Path | None, model: str | None = None, model_file: str | Path | None = None,
                steps: int | None = None, tile: int | None = None, seed: int = 0, outscale: float | None = None,
                hr: str | Path | None = None) -> DemoResult:
        """Upscale the image file ``image`` with ``model_file`` if given, else the shipped ``model``."""
        if image is None:
            raise BinsrError("upload an image first")
        choice = str(model_file) if model_file else (model or DEFAULT_MODEL)
        _check_options(steps, tile, seed, outscale)
        picture = read_picture(image)
        height, width = picture.rgb.shape[-2:]
        if height * width > MAX_INPUT_PIXELS:
            raise BinsrError(f"{Path(image).name}: {width}x{height} is over the demo's limit of {MAX_INPUT_PIXELS} "
                             f"pixels (about 512x512); use 'binsr upscale' for larger images")
        upscaler = _upscaler(choice, steps, tile, seed)
        check_picture_size(upscaler, picture, Path(image).name)
        outscale = outscale or upscaler.scale
        configure_threads(self.threads)  # the count chosen at start (a request may follow other work)
        start = time.perf_counter()
        sr, alpha = upscale_picture(upscaler, picture, "bicubic", outscale)
        seconds = time.perf_counter() - start
        self._count += 1
        stem = f"{self._count:04d}-{Path(image).stem}"
        result, bicubic = self.workdir / f"{stem}_x{outscale:g}.png", self.workdir / f"{stem}_bicubic.png"
        with ThreadPoolExecutor(1) as pool:  # the comparison image is made and encoded beside the result: two
            shown = pool.submit(_write_bicubic, bicubic, upscaler.scale, picture, outscale)  # PNG encoders
            write_result(result, picture, sr, alpha)                                       # release the GIL
            bicubic_rgb = shown.result()
        facts = self._facts(choice, upscaler, sr, outscale, seconds, bicubic_rgb, hr)
        return DemoResult(bicubic, result, facts, seconds)

    def _facts(self, choice: str, upscaler: Upscaler, sr: torch.Tensor, outscale: float, seconds: float,
               bicubic: torch.Tensor, hr: str | Path | None) -> str:
        from binsr.deploy import backend

        rows = [("output", f"{sr.shape[-1]}×{sr.shape[-2]} (×{outscale:g})"),
                ("time", f"{seconds:.2f} s on {torch.get_num_threads()} CPU thread(s)")]
        if is_peer(choice):
            weights = peer_files(choice)[1]
            rows += [("model", f"{choice}: {PEERS.get(choice).summary}, ×{upscaler.scale}"),
                     ("weight bits", "16 (fp16 file), computed in fp32"),
                     ("file size", human_count(weights.stat().st_size, "B")), ("runs as", "peer, ncnn on the CPU")]
            return self._table(rows, hr, sr, bicubic, upscaler.scale)
        path = resolve(choice)
        spec = read_model_spec(path)
        card = shipped_models().get(choice)
        bits = card.card.get("bits", "?") if card else ("1" if spec.packed else "float")
        kind = f"packed 1-bit kernels, {backend()}" if spec.packed else "simulated in float (not packed)"
        rows += [("model", f"{card.name if card else path.name}: {spec.kind}, ×{spec.scale}"),
                 ("weight bits", str(bits)), ("file size", human_count(path.stat().st_size, "B")), ("runs as", kind)]
        return self._table(rows, hr, sr, bicubic, upscaler.scale)

    def _table(self, rows: list[tuple[str, str]], hr: str | Path | None, sr: torch.Tensor, bicubic: torch.Tensor,
               scale: int) -> str:
        """The facts of a run as a Markdown table, with the scores against ``hr`` when one was given."""
        if hr:
            rows = rows + self._scores(hr, sr, bicubic, scale)
        return "| this run | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)

    @staticmethod
    def _scores(hr: str | Path, sr: torch.Tensor, bicubic: torch.Tensor, scale: int) -> list[tuple[str, str]]:
        reference = read_picture(hr).rgb
        if tuple(reference.shape[-2:]) != tuple(sr.shape[-2:]):
            raise BinsrError(f"{Path(hr).name}: the HR image is {reference.shape[-1]}x{reference.shape[-2]}, the "
                             f"output {sr.shape[-1]}x{sr.shape[-2]}; upload the HR image of this input")
        cells = []
        for name, image in (("model", sr), ("bicubic", bicubic)):
            p = float(psnr(image, reference, crop_border=scale))
            s = float(ssim(image, reference, crop_border=scale))
            cells.append((f"PSNR / SSIM (Y), {name}", f"{p:.2f} dB / {s:.4f}"))
        return cells


def _write_bicubic(path: Path, scale: int, picture: Picture, outscale: float) -> torch.Tensor:
    """The bicubic comparison of ``picture`` at ``outscale``, written to ``path`` as PNG; returns it."""
    rgb = upscale_picture(BicubicUpscaler(scale), replace(picture, alpha=None), outscale=outscale)[0]
    write_image(path, rgb)
    return rgb


def _check_options(steps: int | None, tile: int | None, seed: int, outscale: float | None) -> None:
    """The command line's bounds, as one-line errors."""
    if steps is not None and steps < 1:
        raise BinsrError(f"steps must be at least 1, got {steps}")
    if tile is not None and tile < 1:
        raise BinsrError(f"tile must be a positive number of output pixels, got {tile}")
    if seed < 0:
        raise BinsrError(f"seed must be at least 0, got {seed}")
    if outscale is not None and not 0 < outscale <= MAX_OUTSCALE:
        raise BinsrError(f"outscale must be above 0 and at most {MAX_OUTSCALE:g}, got {outscale}")


@functools.lru_cache(maxsize=4)
def _upscaler(choice: str, steps: int | None, tile: int | None, seed: int) -> Upscaler:
    """A loaded upscaler, kept for the next request with the same settings."""
    return load(choice, steps=steps, tile=tile, seed=seed)  # one-step models ignore steps (the page hides it)
