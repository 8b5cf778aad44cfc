"""Figures with matplotlib's object API (no pyplot, no global backend switch: safe in scripts, servers
and notebooks alike), written atomically as PNG."""

from __future__ import annotations

import io
import os

import torch
from matplotlib.figure import Figure

from binsr.utils.fs import atomic_write

# One palette for the three BiMaCoSR branches (and their sum) in every figure.
BRANCH_COLORS = {"bmb": "#4C72B0", "lrmb": "#DD8452", "smb": "#55A868", "lrmb+smb": "#8172B3"}
BRANCH_LABELS = {"bmb": "BMB (1-bit)", "lrmb": "LRMB (low rank)", "smb": "SMB (sparse)", "lrmb+smb": "LRMB + SMB"}


def nanmean(values: list[float]) -> float:
    """Mean of the values that are not NaN (NaN when none is): a bar height over layers, some without a branch."""
    return float(torch.tensor(values, dtype=torch.float64).nanmean())


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` × ``height`` inches with a constrained layout (labels never overlap)."""
    return Figure(figsize=(width, height), layout="constrained")


def save_png(figure: Figure, path: str | os.PathLike[str], dpi: int = 150) -> None:
    """Render ``figure`` to PNG and write it to ``path`` atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())


def shade_layers(axes, flags: list[bool], label: str | None = None) -> None:  # noqa: ANN001 - matplotlib Axes
    """Grey bands behind the layers (x = 1, 2, …) whose flag is set, e.g. the linear layers."""
    start = None
    for x, flag in enumerate(list(flags) + [False], start=1):
        if flag and start is None:
            start = x
        elif not flag and start is not None:
            axes.axvspan(start - 0.5, x - 0.5, color="0.9", zorder=0, label=label)
            start, label = None, None  # one legend entry
