"""What the commands share: the parser class, model/sampling/data options, and small parsers of option
values that fail with one clear line."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from binsr.errors import BinsrError, BinsrWarning, DataError

if TYPE_CHECKING:
    from binsr.pipelines.base import Upscaler

PROG = "binsr"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def add_model_arguments(p: argparse.ArgumentParser, required: bool, default: str | None = "bicubic") -> None:
    """--model, --steps, --seed, --device, --threads: how eval and upscale pick and run a model (they add
    --quiet). Both leave the interpreter without its teardown once done (see :func:`binsr.cli.run`)."""
    shown = f" [default: {default}]" if default else " [default: the shipped default model]"
    p.add_argument("--model", required=required, default=None if required else default,
                   help="model name (bicubic, or a shipped model: see 'binsr models') or a .safetensors model file"
                        + ("" if required else shown))
    add_sampling_arguments(p, quiet=False)
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads, at most the cores this process may "
                   "use [default: those of them that other processes are not keeping busy]")
    p.set_defaults(fast_exit=True)


def add_sampling_arguments(p: argparse.ArgumentParser, quiet: bool = True) -> None:
    """--steps, --seed, --device (and --quiet): how a diffusion model is run."""
    p.add_argument("--steps", type=positive_int, help="DDIM steps for SR3-style models [default: the model file's own, "
                   "else 50]; ResShift "
                   "teachers run their own T steps and one-step students one network call")
    p.add_argument("--seed", type=bounded_int(0, SEED_MAX), default=0,
                   help=f"seed of the start noise, 0 to {SEED_MAX} [default: 0]")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto [default: auto]")
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_data_arguments(p: argparse.ArgumentParser, lr_data: bool = False) -> None:
    """--data and --data-root; with ``lr_data``, also --lr-data, and --data may be left out (LR photos, see
    :func:`eval_dataset`)."""
    p.add_argument("--data", required=not lr_data, metavar="DIR",
                   help="folder of HR images, or a dataset name under the data root ($BINSR_DATA, default "
                   "../shared/data)" + ("; may be left out with --lr-data (real LR photos)" if lr_data else ""))
    p.add_argument("--data-root", metavar="DIR", help="data root for dataset names (overrides $BINSR_DATA)")
    if lr_data:
        p.add_argument("--lr-data", metavar="DIR", help="folder (or dataset name) of LR images: matching the HR "
                       "ones by name (paired mode) instead of bicubic, or real LR photos without HR")
        p.set_defaults(usage_error=p.error)


def eval_dataset(args: argparse.Namespace) -> tuple[Any, Path | None]:
    """(dataset, LR folder or None) of --data / --lr-data: HR images with bicubic or paired LR images
    (``SREvalDataset``), or LR photos alone (``LRPhotoDataset``); neither is a usage error."""
    from binsr.data import LRPhotoDataset, SREvalDataset, resolve_data_dir

    if args.data is None and args.lr_data is None:
        args.usage_error("give --data (HR images), --lr-data (LR images) or both")
    try:
        lr_dir = resolve_data_dir(args.lr_data, args.data_root) if args.lr_data else None
    except DataError:
        raise DataError(f"LR folder not found: {args.lr_data} (--lr-data; also looked under the data root)") from None
    if args.data is None:
        return LRPhotoDataset(lr_dir), lr_dir
    return SREvalDataset(resolve_data_dir(args.data, args.data_root), args.scale, lr_dir=lr_dir), lr_dir


SEED_MAX = 2**63 - 1  # what every generator binsr seeds accepts


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        return _bounded(text, int, low, high, f"an integer from {low} to {high}")
    return parse


def capped_threads(threads: int | None) -> int | None:
    """--threads, at most the cores this process may use (with a warning): more threads than cores only make
    them wait for each other."""
    from binsr.utils.threads import allowed_cores

    cores = len(allowed_cores())
    if threads is not None and threads > cores:
        warnings.warn(f"--threads {threads}: this process may use {cores} core(s); using {cores}", BinsrWarning,
                      stacklevel=2)
        return cores
    return threads


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (one-line error otherwise)."""
    return _bounded(text, int, 1, None, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer ≥ 0."""
    return _bounded(text, int, 0, None, "an integer ≥ 0")


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    """argparse type: a number in (low, high]."""
    def parse(text: str) -> float:
        return _bounded(text, float, low, high, f"a number above {low:g} and at most {high:g}", open_low=True)
    return parse


def _bounded(text: str, cast: type, low: float | None, high: float | None, what: str,
             open_low: bool = False) -> Any:
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value != value or (low is not None and (value <= low if open_low else value < low)) or (
            high is not None and value > high):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def load_upscaler(args: argparse.Namespace, device: torch.device, **sampling: object) -> Upscaler:
    """The upscaler --model names; a warning where --steps does not apply to it."""
    from binsr import pipelines
    from binsr.cli.process import configure_process

    if device.type == "cpu" or args.model == "bicubic":
        configure_process(capped_threads(args.threads))  # this command's policy: threads on the free cores, freed maps kept
    if args.model == "bicubic":
        upscaler = pipelines.load("bicubic", args.scale)
    else:
        upscaler = pipelines.load(args.model, args.scale, device=device, steps=args.steps, seed=args.seed,
                                  **sampling)
    if args.steps is not None and not getattr(upscaler, "takes_steps", False):
        warnings.warn(f"--steps {args.steps} is ignored: {upscaler.name} does not sample with a step count "
                      f"(one-step students make one network call, ResShift teachers their own T steps)",
                      BinsrWarning, stacklevel=2)
    return upscaler


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BinsrError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BinsrError(f"device {name!r} requested but CUDA is not available here")
    return device


def parse_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise BinsrError(f"--size must be H or HxW in pixels, got {text!r}")
    return (parts[0], parts[-1])


def parse_option(text: str) -> tuple[str, object]:
    """'rank=8' → ('rank', 8): the same reading of values as recipes' ``--set``
    (:func:`binsr.config.parse_assignment`)."""
    from binsr.config import parse_assignment

    return parse_assignment(text, "--option")


def parse_key_value(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.rpartition("=")
    if not sep or not key or not value:
        raise BinsrError(f"{option} must be KEY=VALUE, got {text!r}")
    return key, value


def parse_int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise BinsrError(f"{option} must be positive integers separated by commas, got {text!r}")
    return values


def example_inputs(model: torch.nn.Module, height: int, width: int, channels: int) -> tuple:
    example = getattr(model, "example_inputs", None)
    return example(height, width) if callable(example) else (torch.zeros(1, channels, height, width),)
