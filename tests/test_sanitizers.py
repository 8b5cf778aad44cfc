"""The kernel tests again, against a build of the C sources with -fsanitize=address,undefined: an
out-of-bounds read or write, a use after free or undefined behaviour (a misaligned load, a signed
overflow, a shift past the width) in any ISA path aborts the run instead of passing by luck.

The sanitized module is built here with the machine's gcc (skipped, saying so, without one or without its
AddressSanitizer runtime) and loaded into a child pytest in place of the installed one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "binsr" / "deploy" / "csrc"

PLUGIN = '''
import importlib.machinery, importlib.util, os
import binsr.deploy.kernels as kernels
path = os.environ["BINSR_SANITIZED_MODULE"]
loader = importlib.machinery.ExtensionFileLoader("binsr.deploy._bitkernels", path)
spec = importlib.util.spec_from_file_location("binsr.deploy._bitkernels", path, loader=loader)
module = importlib.util.module_from_spec(spec)
loader.exec_module(module)
kernels._native = module
print("sanitized kernels:", module.__file__, module.isas())
'''


def sanitizer_runtime(gcc: str) -> str | None:
    path = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sanitizer build is made with gcc on Linux")
def test_kernel_tests_pass_under_address_and_undefined_behaviour_sanitizers(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc here to build the sanitized kernels")
    runtime = sanitizer_runtime(gcc)
    if runtime is None:
        pytest.skip("gcc has no AddressSanitizer runtime (libasan) here")
    module = tmp_path / f"_bitkernels{sysconfig.get_config_var('EXT_SUFFIX')}"
    build = [gcc, "-shared", "-fPIC", "-O1", "-g", "-std=gnu99", "-fopenmp", "-fno-omit-frame-pointer",
             "-fsanitize=address,undefined", "-fno-sanitize-recover=all", f"-I{sysconfig.get_paths()['include']}",
             *sorted(str(p) for p in CSRC.glob("*.c")), "-o", str(module), "-lm"]
    subprocess.run(build, check=True, capture_output=True, text=True)
    (tmp_path / "binsr_sanitized_plugin.py").write_text(PLUGIN)
    env = {**os.environ, "LD_PRELOAD": runtime, "BINSR_SANITIZED_MODULE": str(module),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1"}
    tests = [str(ROOT / "tests" / name) for name in ("test_native.py", "test_fused.py")]
    result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-s", "-p", "binsr_sanitized_plugin",
                             "-k", "not shipped", "-p", "no:cacheprovider", *tests],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert f"sanitized kernels: {module}" in output
    assert " passed" in output and "ERROR: AddressSanitizer" not in output and "runtime error" not in output
