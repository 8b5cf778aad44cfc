"""Keep freed activation memory in the process instead of handing it back to the OS after every layer.

glibc's ``malloc`` serves blocks over its mmap threshold (128 KiB, rising with use to at most 32 MiB)
with fresh ``mmap`` pages and trims the heap top when more than twice that is free. An SR network
allocates and frees feature maps of 1–12 MiB in every layer, so without this each new map's first write
page-faults and zero-fills every 4 KiB page, which at small inputs takes longer than the binary layers
themselves (``benchmarks/bench_memory.py``, ``tests/test_memory.py``). Raising both thresholds
(``mallopt``, glibc only) makes those blocks come from the heap and stay there; the full-precision twin
gains from it as much as the packed network does.

This is what allocators such as jemalloc and tcmalloc (which the PyTorch CPU tuning guide recommends
preloading) do by design; ``mallopt`` needs no extra library and no environment set before start-up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 << 20  # blocks under 128 MiB come from the heap (a 256-channel 256² map is 64 MiB)
TRIM_THRESHOLD = 256 << 20  # at most this much freed memory is kept at the top of the heap
ENV = "BINSR_KEEP_MEMORY"  # "0" leaves malloc as it is

_done: list[bool] = []


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process (no-op elsewhere, or with
    ``BINSR_KEEP_MEMORY=0``); True when they are set."""
    if _done:
        return _done[0]
    applied = False
    if os.environ.get(ENV, "1") != "0" and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        except (OSError, AttributeError):
            applied = False
    _done.append(applied)
    return applied
