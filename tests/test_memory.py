"""Freed feature maps stay in the process (glibc mallopt): a network call re-uses them without page faults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, torch, binsr
from binsr.utils import memory
from binsr.utils.memory import keep_freed_memory
torch.set_num_threads(1)
upscaler = binsr.load("bimacosr-x4")
assert memory._done == []  # loading leaves malloc as it is: the command (here, this probe) chooses
keep_freed_memory()
lr = torch.rand(1, 3, 48, 48)
with torch.no_grad():
    for _ in range(3):
        upscaler.upscale(lr)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        upscaler.upscale(lr)
print(keep_freed_memory(), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
"""


def _faults_per_call(keep: str) -> tuple[bool, int]:
    env = {**os.environ, "BINSR_KEEP_MEMORY": keep}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_upscale_reuses_freed_feature_maps() -> None:
    kept, kept_faults = _faults_per_call("1")
    default, default_faults = _faults_per_call("0")
    assert kept and not default
    assert default_faults > 200  # glibc hands large freed maps back and zero-fills them again on the next call
    assert kept_faults * 10 < default_faults
