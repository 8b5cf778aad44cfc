"""How many CPU threads inference uses: no more than the cores this process may run on and that are
free right now.

PyTorch's OpenMP pool (and binsr's kernels, which share it) spin-waits between parallel regions, and a
parallel region finishes only when its slowest thread does. When another process keeps one of two
cores busy, a second thread gets half a core and every layer waits for it, so ``binsr`` counts the
cores that other processes are using (two reads of ``/proc/stat`` 30 ms apart, Linux) and leaves them
out. ``--threads N`` / ``configure_process(threads=N)`` override the choice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

BUSY_FRACTION = 0.5  # a core counts as taken when other processes used more than half of it
SAMPLE_SECONDS = 0.03


def allowed_cores() -> list[int]:
    """The CPUs this process may run on (its affinity mask; all CPUs where that is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def _cpu_times(stat: str) -> dict[int, tuple[int, int]]:
    """/proc/stat text → {cpu: (busy jiffies, total jiffies)}; idle and iowait count as not busy."""
    times = {}
    for line in stat.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or len(fields) < 4:
            continue
        values = [int(v) for v in fields[:8]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        times[int(name[3:])] = (sum(values) - idle, sum(values))
    return times


def _proc_stat() -> str:
    return Path("/proc/stat").read_text()


def busy_cores(cpus: list[int], seconds: float = SAMPLE_SECONDS, read: Callable[[], str] = _proc_stat,
               samples: int = 1) -> int:
    """How many of ``cpus`` other processes keep busy over ``seconds`` (0 where /proc/stat cannot be read);
    with ``samples`` > 1, the fewest over that many windows in a row: a core counts as taken only when it
    stays taken, not when another process is busy for a moment."""
    try:
        snapshot = _cpu_times(read())
        counts = []
        for _ in range(samples):
            time.sleep(seconds)
            before, snapshot = snapshot, _cpu_times(read())
            counts.append(_busy(cpus, before, snapshot))
    except (OSError, ValueError):
        return 0
    return min(counts)


def _busy(cpus: list[int], before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> int:
    busy = 0
    for cpu in cpus:
        if cpu in before and cpu in after:
            work, total = (a - b for a, b in zip(after[cpu], before[cpu]))
            busy += total > 0 and work / total > BUSY_FRACTION
    return busy


def choose_threads(requested: int | None = None, most: int | None = None, samples: int = 1) -> int:
    """``requested`` if given, else the free cores among those allowed (:func:`busy_cores` over ``samples``
    windows), at most ``most`` (≥ 1)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be at least 1, got {requested}")
        return requested
    cpus = allowed_cores()
    free = max(1, len(cpus) - busy_cores(cpus, samples=samples))
    return min(free, most) if most else free


_first_count: list[int] = []  # PyTorch's thread count before binsr first set it (its default: physical cores)


def configure_threads(requested: int | None = None, samples: int = 1) -> int:
    """Set PyTorch's (and so the packed kernels') thread count by :func:`choose_threads`, never above
    PyTorch's own default unless requested; returns it."""
    import torch

    if not _first_count:
        _first_count.append(torch.get_num_threads())
    threads = choose_threads(requested, _first_count[0], samples)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads
