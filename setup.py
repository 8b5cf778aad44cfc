"""Build script for the optional C extension; everything else is declared in pyproject.toml.

``binsr.deploy._bitkernels`` (binsr/deploy/csrc/, one file per concern: see bitkernels.h) holds the
XNOR-popcount CPU kernels. It is compiled for baseline x86-64 with OpenMP and picks AVX-512/AVX2/POPCNT
code at run time, so a wheel built on one machine runs on another. ``optional=True``: without a C compiler
the install still succeeds and binsr uses its PyTorch fallback (``binsr.deploy.kernels.backend()`` says
which is active).
"""

import sys
from pathlib import Path

from setuptools import Extension, setup

CSRC = Path("binsr/deploy/csrc")

if sys.platform == "win32":
    compile_args, link_args = ["/O2", "/openmp"], []
elif sys.platform == "darwin":  # Apple clang has no -fopenmp: the kernels run single-threaded there
    compile_args, link_args = ["-O3", "-std=gnu99", "-fvisibility=hidden"], []
else:
    compile_args, link_args = ["-O3", "-std=gnu99", "-fopenmp", "-fvisibility=hidden"], ["-fopenmp"]

setup(
    ext_modules=[
        Extension(
            "binsr.deploy._bitkernels",
            sources=sorted(str(p) for p in CSRC.glob("*.c")),
            depends=sorted(str(p) for p in CSRC.glob("*.[hi]*") if p.suffix in (".h", ".inc")),
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            libraries=[] if sys.platform == "win32" else ["m"],
            optional=True,
        )
    ]
)
