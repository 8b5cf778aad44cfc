"""What binsr's commands set for the whole process before they run a model: the entry points' policy, kept
with the entry points (``binsr.load`` and the library below change nothing in the process).

A program that embeds binsr and wants the same behaviour calls :func:`configure_process` itself, as the
benchmark scripts do.
"""

from __future__ import annotations

from binsr.utils.memory import keep_freed_memory
from binsr.utils.threads import configure_threads


def configure_process(threads: int | None = None, samples: int = 1) -> int:
    """PyTorch's thread count (``threads``, or the free cores: :func:`~binsr.utils.threads.configure_threads`)
    and freed feature maps kept in the process (:func:`~binsr.utils.memory.keep_freed_memory`); returns the
    thread count."""
    chosen = configure_threads(threads, samples)
    keep_freed_memory()
    return chosen
