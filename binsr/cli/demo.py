"""``binsr demo``: serve the web demo on this machine."""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

from binsr.cli.common import positive_int
from binsr.errors import BinsrError


def add_demo(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "demo",
        help="start a local web page to try the models (needs: pip install 'binsr[demo]')",
        description="Serve a Gradio page on HOST:PORT: upload an image, pick a shipped model or a model file, "
                    "and get the result beside bicubic, its facts (size, time, bits, kernel, PSNR/SSIM with an "
                    "HR image) and a PNG download, as 'binsr upscale' writes it. One request runs at a time; "
                    "every file it writes is in a temporary folder that is removed when it stops.",
        epilog="example: binsr demo --port 7860",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on [default: 127.0.0.1, this machine "
                   "only; 0.0.0.0 for the network]")
    p.add_argument("--port", type=positive_int, default=7860, help="port [default: 7860]")
    p.add_argument("--share", action="store_true", help="also ask Gradio for a public share link (off by default)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for the models [default: the "
                   "cores other processes leave free when the demo starts; chosen once, because during a request "
                   "the browser showing it is busy too, and would be counted as another process]")
    p.set_defaults(run=_run_demo)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port (another server holds it, no such address), or None:
    found before any model is loaded or any address is announced."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: only listeners block it
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return f"{host}:{port} is already in use (another server?); choose another with --port"
            return f"cannot listen on {host}:{port} ({err.strerror})"
    return None


def _run_demo(args: argparse.Namespace) -> int:
    problem = _port_problem(args.host, args.port)
    if problem is not None:
        raise BinsrError(f"--port {args.port}: {problem}")
    workdir = Path(tempfile.mkdtemp(prefix="binsr-demo-"))
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "uploads")  # Gradio's own copies of uploads stay in it too
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Gradio asks matplotlib for its backend around every event. Left to choose one itself, matplotlib imports
    # pyplot on that first call: 0.5 s on the server's event loop, during a user's first upload and beside the
    # model. A server draws no windows, so the backend is named now and matplotlib imported before serving.
    os.environ.setdefault("MPLBACKEND", "agg")
    try:
        try:
            import gradio  # noqa: F401 - only to give the install hint
        except ImportError:
            raise BinsrError("binsr demo needs Gradio: pip install 'binsr[demo]' (or -e \".[demo]\")") from None
        import matplotlib  # noqa: F401 - see MPLBACKEND above
        from binsr.demo import DemoRunner, build_app
        from binsr.utils.memory import keep_freed_memory
        keep_freed_memory()  # this command's policy, as binsr upscale's (the runner chooses its threads)
        runner = DemoRunner(workdir / "results", threads=args.threads)
        runner.warm_up()
        app = build_app(runner)
        app.queue(default_concurrency_limit=1, max_size=32)  # one request at a time: bounded memory
        for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl+C (even where a shell ignored it) and a plain
            signal.signal(signum, _interrupt)            # kill end the server and remove its files
        print(f"binsr demo: http://{args.host}:{args.port} (files in {workdir}; models on {runner.threads} CPU "
              f"thread(s); Ctrl+C stops it)", flush=True)
        app.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                   quiet=True, allowed_paths=[str(workdir)])
    except OSError as err:
        raise BinsrError(f"--port {args.port}: cannot serve on {args.host}:{args.port} ({err})") from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
