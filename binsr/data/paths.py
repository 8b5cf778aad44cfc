"""Where the image data lives: ``--data`` option > ``$BINSR_DATA`` > ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

from binsr.errors import DataError

DATA_ENV = "BINSR_DATA"
DEFAULT_DATA_ROOT = Path("..") / "shared" / "data"


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``root`` if given, else ``$BINSR_DATA``, else ``../shared/data`` (from the CWD)."""
    if root is not None:
        return Path(root)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else DEFAULT_DATA_ROOT


def resolve_data_dir(name_or_path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """A dataset folder: an existing path as given, else a folder of that name under the data root."""
    direct = Path(name_or_path)
    if direct.is_dir():
        return direct
    if direct.is_absolute():
        raise DataError(f"dataset folder not found: {direct}")
    under_root = data_root(root) / direct
    if under_root.is_dir():
        return under_root
    raise DataError(
        f"dataset folder not found: {name_or_path} (also looked in {under_root}; "
        f"set ${DATA_ENV} or pass a path)"
    )
