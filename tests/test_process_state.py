"""The library leaves the process as its caller set it: loading and running every shipped model changes no
thread count, allocator setting, torch.nn.init function or torch default (the commands choose those
policies at their entry points)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import REPO

PROGRAM = textwrap.dedent('''
    import ctypes, json
    calls = []
    real_cdll = ctypes.CDLL
    class RecordingCDLL(real_cdll):  # any mallopt the library makes is recorded
        def __getattr__(self, name):
            if name == "mallopt":
                calls.append(name)
            return super().__getattr__(name)
    ctypes.CDLL = RecordingCDLL

    import torch
    torch.set_num_threads(1)  # the caller's choice, not the default
    def state():
        return {"threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
                "init": {name: id(getattr(torch.nn.init, name)) for name in dir(torch.nn.init)
                         if name.endswith("_") and not name.startswith("_")},
                "dtype": str(torch.get_default_dtype()), "grad": torch.is_grad_enabled(),
                "deterministic": torch.are_deterministic_algorithms_enabled(),
                "flush_denormal": torch.set_flush_denormal(False)}
    before = state()
    torch.set_flush_denormal(False)

    import binsr
    from binsr.pipelines import shipped_models
    from binsr.utils import memory
    ran = []
    for name in shipped_models():
        upscaler = binsr.load(name)
        side = upscaler.multiple // upscaler.scale
        out = upscaler.upscale(torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)))
        ran.append((name, list(out.shape)))
    print(json.dumps({"before": before, "after": state(), "mallopt": calls, "kept": bool(memory._done), "ran": ran}))
''')


def test_loading_and_running_every_shipped_model_leaves_the_process_as_it_was() -> None:
    import json

    result = subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["ran"]) >= 4  # every shipped model loaded and ran
    assert report["after"] == report["before"]
    assert report["mallopt"] == [] and not report["kept"]
