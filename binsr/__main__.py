"""``python -m binsr`` = the ``binsr`` command."""

from binsr.cli import run

run()
