"""``binsr demo``: a local web page (Gradio) to try the 1-bit models on your own images.

:class:`DemoRunner` holds everything the page does (reading, upscaling, scoring, writing the download) and
knows nothing of Gradio; :func:`build_app` lays it out as a Gradio app. Install with ``pip install
"binsr[demo]"``.
"""

from binsr.demo.runner import MAX_INPUT_PIXELS, DemoResult, DemoRunner

__all__ = ["MAX_INPUT_PIXELS", "DemoResult", "DemoRunner", "build_app"]


def build_app(runner: DemoRunner):  # noqa: ANN201 - a gradio.Blocks; gradio is imported only here
    """The Gradio page for ``runner`` (see :mod:`binsr.demo.page`)."""
    from binsr.demo.page import build_app as build

    return build(runner)
