"""The thread policy: free cores by default, never more than the process may use, overridable."""

from __future__ import annotations

import pytest
import torch

import binsr
from binsr.cli import main
from binsr.utils.threads import _cpu_times, allowed_cores, busy_cores, choose_threads, configure_threads

# two /proc/stat snapshots 100 jiffies apart: cpu0 90% busy, cpu1 10% busy (iowait counts as idle), cpu2 100%
BEFORE = """cpu  0 0 0 0 0 0 0 0 0 0
cpu0 100 0 50 1000 0 0 0 0 0 0
cpu1 100 0 50 1000 0 0 0 0 0 0
cpu2 10 0 0 0 0 0 0 0 0 0
intr 12345
"""
AFTER = """cpu  0 0 0 0 0 0 0 0 0 0
cpu0 180 0 60 1010 0 0 0 0 0 0
cpu1 105 0 55 1040 50 0 0 0 0 0
cpu2 110 0 0 0 0 0 0 0 0 0
intr 12399
"""


def snapshots(*texts: str):
    queue = list(texts)
    return lambda: queue.pop(0)


def test_proc_stat_lines_become_busy_and_total_jiffies_per_cpu() -> None:
    assert _cpu_times(BEFORE) == {0: (150, 1150), 1: (150, 1150), 2: (10, 10)}


def test_busy_cores_counts_the_cores_others_use_among_those_allowed() -> None:
    assert busy_cores([0, 1], 0, snapshots(BEFORE, AFTER)) == 1
    assert busy_cores([0, 1, 2], 0, snapshots(BEFORE, AFTER)) == 2
    assert busy_cores([1], 0, snapshots(BEFORE, AFTER)) == 0
    assert busy_cores([0, 1], 0, snapshots("garbage", AFTER)) == 0  # unreadable: assume free


def test_over_several_windows_a_core_is_taken_only_while_it_stays_taken() -> None:
    later = AFTER.replace("cpu0 180 0 60 1010", "cpu0 260 0 70 1020")  # cpu0 90% busy again
    assert busy_cores([0, 1, 2], 0, snapshots(BEFORE, AFTER, later.replace("cpu2 110 0 0 0", "cpu2 110 0 0 100")),
                      samples=2) == 1  # cpu2 idle in the second window: busy for a moment only
    assert busy_cores([0, 1, 2], 0, snapshots(BEFORE, AFTER, later.replace("cpu2 110", "cpu2 210")), samples=2) == 2


def test_thread_choice_is_bounded_and_overridable() -> None:
    assert 1 <= choose_threads() <= len(allowed_cores())
    assert choose_threads(most=1) == 1
    assert choose_threads(3) == 3  # asked for: as asked, even above the cores
    with pytest.raises(ValueError, match="at least 1"):
        choose_threads(0)


def test_the_cli_sets_the_thread_count_and_loading_leaves_it_alone(tmp_path, capsys) -> None:
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        binsr.load("bimacosr-x4")  # a library call: the process stays as its caller set it
        assert torch.get_num_threads() == 1
        assert main(["upscale", "--sample", "--model", "bicubic", "--scale", "2", "-o", str(tmp_path), "--threads",
                     "2", "--quiet"]) == 0  # a command: its policy
        assert torch.get_num_threads() == 2
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        with pytest.raises(SystemExit) as exit_:  # refused when parsed, before anything is read or loaded
            main(["upscale", "--sample", "--model", "bicubic", "--scale", "2", "-o", str(tmp_path / "b"),
                  "--threads", "0", "--quiet"])
        assert exit_.value.code == 2
        assert "argument --threads: must be a positive integer, got '0'" in capsys.readouterr().err
    finally:
        torch.set_num_threads(previous)
