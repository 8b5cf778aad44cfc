"""The ``binsr`` command line.

Every failure the user can fix prints one line ``binsr: error: …`` and exits non-zero (1 for
runtime problems, 2 for usage errors); set ``BINSR_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Sequence

from binsr import __version__
from binsr.cli.ablate import add_ablate
from binsr.cli.analyze import add_analyze, add_report
from binsr.cli.common import PROG, Parser
from binsr.cli.degrade import add_degrade
from binsr.cli.infer import add_eval, add_models, add_upscale
from binsr.cli.tools import add_bench, add_complexity, add_export
from binsr.cli.train import add_train
from binsr.cli.demo import add_demo
from binsr.errors import BinsrError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="binsr: 1-bit (binarized) diffusion super-resolution — train, evaluate, deploy, analyze.",
        epilog="Run 'binsr COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"binsr {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    add_eval(commands)
    add_degrade(commands)
    add_upscale(commands)
    add_models(commands)
    add_train(commands)
    add_ablate(commands)
    add_complexity(commands)
    add_export(commands)
    add_bench(commands)
    add_analyze(commands)
    add_report(commands)
    add_demo(commands)
    return parser


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"{PROG}: warning: {message}", file=file or sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so partial outputs are cleaned up as for Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``binsr`` command line in this process; returns the exit code."""
    parser = build_parser()
    return _dispatch(parser, parser.parse_args(argv))


def run() -> None:
    """The ``binsr`` console script. Commands that only read and write files (upscale, eval) end with
    ``os._exit`` once their outputs are written and the streams flushed: the interpreter's teardown of
    PyTorch's modules takes about 0.4 s, a fifth of a small ``binsr upscale``, and has nothing to save."""
    signal.signal(signal.SIGTERM, _terminate)  # this process's policy: a kill cleans up like Ctrl-C
    parser = build_parser()
    args = parser.parse_args()
    try:
        code = _dispatch(parser, args)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (``binsr models | head``): stop quietly, as POSIX tools do
        sys.stderr.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        os._exit(128 + signal.SIGPIPE)
    if getattr(args, "fast_exit", False):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    debug = bool(os.environ.get("BINSR_DEBUG"))
    previous = warnings.showwarning
    if not debug:
        warnings.showwarning = _one_line_warnings
    try:
        return args.run(args)
    except BinsrError as err:
        if debug:
            raise
        for line in str(err).splitlines() or [""]:  # several problems found at once: one line each
            print(f"{PROG}: error: {line}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # not an error of this command: the console script's policy (run) handles it
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(f"{PROG}: {'terminated' if terminated else 'interrupted'}; outputs finished before it are kept",
              file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    except Exception as err:
        if debug:
            raise
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"{PROG}: error: {type(err).__name__}: {detail} (BINSR_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    run()


__all__ = ["build_parser", "main"]
