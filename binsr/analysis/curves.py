"""Training curves from the ``log.csv`` that ``binsr train`` writes into each run folder
(columns step, loss, lr, seconds, val_psnr; validation rows carry only step and val_psnr)."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from binsr.analysis.figures import new_figure
from binsr.errors import BinsrError


@dataclass
class RunLog:
    """One run's logged series: training loss and validation PSNR (dB) against the step."""

    name: str
    loss: list[tuple[int, float]] = field(default_factory=list)
    val_psnr: list[tuple[int, float]] = field(default_factory=list)


def read_log(path: str | os.PathLike[str], name: str | None = None) -> RunLog:
    """Read a run folder (its ``log.csv``) or a log file. The run is named after its folder."""
    path = Path(path)
    file = path / "log.csv" if path.is_dir() else path
    if not file.is_file():
        raise BinsrError(f"no training log at {file} (expected a run folder with log.csv, or the CSV file)")
    log = RunLog(name or (file.parent.name if file.name == "log.csv" else file.stem))
    with open(file, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "step" not in reader.fieldnames:
            raise BinsrError(f"{file}: not a binsr training log (no 'step' column)")
        for line, row in enumerate(reader, start=2):
            try:
                step = int(row["step"])
                for key, series in (("loss", log.loss), ("val_psnr", log.val_psnr)):
                    if row.get(key):
                        series.append((step, float(row[key])))
            except (TypeError, ValueError):
                raise BinsrError(f"{file}, line {line}: unreadable row {row}") from None
    if not log.loss and not log.val_psnr:
        raise BinsrError(f"{file}: the log has no loss or validation rows yet")
    return log


def smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard-style exponential moving average with bias correction (weight 0: unchanged)."""
    if not 0 <= weight < 1:
        raise BinsrError(f"smoothing weight must be in [0, 1), got {weight}")
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight ** i) if weight else value)
    return out


def curves_figure(runs: list[RunLog], smoothing: float = 0.0, log_loss: bool = True) -> Figure:
    """Fig. 3 style: training loss (left) and validation PSNR (right) against the step, one colour per run.
    With ``smoothing`` > 0 the raw loss is drawn faint under its moving average; with ``log_loss`` the
    loss axis is logarithmic when the losses span more than a decade."""
    figure = new_figure(11, 4)
    loss_axes, psnr_axes = figure.subplots(1, 2)
    for index, run in enumerate(runs):
        color = f"C{index % 10}"
        if run.loss:
            steps, values = zip(*run.loss)
            if smoothing:
                loss_axes.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            loss_axes.plot(steps, smooth(list(values), smoothing), color=color, label=run.name)
        if run.val_psnr:
            steps, values = zip(*run.val_psnr)
            psnr_axes.plot(steps, values, color=color, marker="o", markersize=3, label=run.name)
    losses = [v for run in runs for _, v in run.loss if math.isfinite(v)]
    logarithmic = log_loss and losses and min(losses) > 0 and max(losses) / min(losses) > 10  # spans a decade
    loss_axes.set(xlabel="training step", ylabel="training loss" + (" (log scale)" if logarithmic else ""),
                  title="Training loss" + (f" (EMA {smoothing:g})" if smoothing else ""))
    if logarithmic:
        loss_axes.set_yscale("log")
    psnr_axes.set(xlabel="training step", ylabel="validation PSNR (dB, Y)", title="Validation PSNR")
    for axes in (loss_axes, psnr_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
        else:
            axes.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axes.transAxes, color="0.5")
    return figure


def curve_rows(runs: list[RunLog]) -> list[dict[str, object]]:
    """The plotted points as CSV rows (run, step, series, value)."""
    rows = []
    for run in runs:
        rows += [{"run": run.name, "step": s, "series": "loss", "value": v} for s, v in run.loss if math.isfinite(v)]
        rows += [{"run": run.name, "step": s, "series": "val_psnr", "value": v} for s, v in run.val_psnr]
    return rows
