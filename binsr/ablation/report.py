"""An ablation table's report, from its results file alone: mean ± standard deviation per variant and dataset,
the paper's value, and a verdict on the paper's direction; and a figure of the same.

Verdict of a row compared with row R (its ``versus``) on the table's metric, one per dataset: our difference
d = mean(row) − mean(R), its standard error se = √(s²_row/n_row + s²_R/n_R) (sample standard deviations over
seeds). With |d| ≤ 2·se (or fewer than two seeds either side) the row is "not resolved" at this budget; else
"reproduced" where d has the sign of the paper's difference (or of the direction it states, ``expect``),
"contradicted" where it has the other.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binsr.ablation.tables import SCORES, AblationTable
from binsr.utils import format_table
from binsr.utils.fs import atomic_write


@dataclass
class Comparison:
    """A row against its reference on one dataset: difference d (metric units), its standard error, verdict."""

    difference: float | None = None
    error: float | None = None
    verdict: str = ""


@dataclass
class RowSummary:
    """One variant: its seeds' count, (mean, standard deviation) per (dataset, metric), and its comparison with
    its ``versus`` row per dataset (``difference``/``error``/``verdict``: those of the first dataset)."""

    variant: str
    count: int
    stats: dict[tuple[str, str], tuple[float, float]]
    paper: float | None
    versus: str | None
    expect: str | None = None
    comparisons: dict[str, Comparison] = field(default_factory=dict)

    @property
    def first(self) -> Comparison:
        return next(iter(self.comparisons.values()), Comparison())

    @property
    def difference(self) -> float | None:
        return self.first.difference

    @property
    def error(self) -> float | None:
        return self.first.error

    @property
    def verdict(self) -> str:
        return self.first.verdict


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def scored_metrics(results: dict[str, Any]) -> tuple[str, ...]:
    """The metrics every run of ``results`` has, in the order PSNR, SSIM, NIQE (↓)."""
    return tuple(metric for metric in SCORES
                 if all(scores.get(metric) is not None for run in results["runs"] for scores in run["scores"].values()))


def summarize(table: AblationTable, results: dict[str, Any]) -> list[RowSummary]:
    """One :class:`RowSummary` per variant with results, in the table's order, verdicts included."""
    rows: dict[str, RowSummary] = {}
    for variant in table.variants:
        runs = [run for run in results["runs"] if run["variant"] == variant.name]
        if not runs:
            continue
        stats = {(name, metric): _mean_std([run["scores"][name][metric] for run in runs])
                 for name in table.datasets for metric in scored_metrics(results)}
        rows[variant.name] = RowSummary(variant.name, len(runs), stats, variant.paper, variant.versus, variant.expect)
    for row in rows.values():
        row.comparisons = {name: _compare(row, rows.get(row.versus) if row.versus else None, (name, table.metric))
                           for name in table.datasets}
    return list(rows.values())


def _compare(row: RowSummary, reference: RowSummary | None, key: tuple[str, str]) -> Comparison:
    """``row`` against ``reference`` on one (dataset, metric), by the rule of the module's docstring."""
    if reference is None:
        return Comparison(verdict="reference" if row.versus is None else "its reference has no results")
    (mean, std), (ref_mean, ref_std) = row.stats[key], reference.stats[key]
    difference = mean - ref_mean
    if row.count < 2 or reference.count < 2:
        return Comparison(difference, None, "not resolved (fewer than 2 seeds)")
    error = math.sqrt(std**2 / row.count + ref_std**2 / reference.count)
    paper = None if row.paper is None or reference.paper is None else row.paper - reference.paper
    if paper is None and row.expect is not None:  # a direction the paper states without numbers
        paper = 1.0 if row.expect == "higher" else -1.0
    if abs(difference) <= 2 * error:
        verdict = "not resolved"
    elif paper is None or paper == 0:
        verdict = "resolved; the paper gives no direction"
    else:
        verdict = "reproduced" if (difference > 0) == (paper > 0) else "contradicted"
    return Comparison(difference, error, verdict)


def cells(table: AblationTable, results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The report's headers and one row of cells per variant, as text."""
    unit = " dB" if table.metric == "psnr" else ""
    metrics = scored_metrics(results)
    arrows = {"niqe": "↓"}
    headers = ["variant", "seeds"] + [f"{name} {metric.upper()}{arrows.get(metric, '')}" for name in table.datasets
                                      for metric in metrics]
    headers += [f"paper {table.metric.upper()}", f"Δ vs row (±2 se){unit}", "verdict"]
    lines = []
    for row in summarize(table, results):
        line = [row.variant, str(row.count)]
        for name in table.datasets:
            for metric in metrics:
                mean, std = row.stats[(name, metric)]
                digits = 4 if metric == "ssim" else 2
                line.append(f"{mean:.{digits}f} ± {std:.{digits}f}" if not math.isnan(std) else f"{mean:.{digits}f}")
        line.append(f"{row.paper:g}" if row.paper is not None else f"({row.expect})" if row.expect else "—")
        named = len(row.comparisons) > 1  # several datasets: each comparison names its dataset
        differences, verdicts = [], []
        for name, comparison in row.comparisons.items():
            prefix = f"{name} " if named else ""
            verdicts.append(prefix + comparison.verdict if comparison.difference is not None else comparison.verdict)
            if comparison.difference is not None:
                spread = "" if comparison.error is None else f" (±{2 * comparison.error:.2f})"
                differences.append(f"{prefix}{comparison.difference:+.2f}{spread}")
        line.append(f"{', '.join(differences)} vs {row.versus}" if differences else "—")
        line.append("; ".join(dict.fromkeys(verdicts)))
        lines.append(line)
    return headers, lines


def markdown(table: AblationTable, results: dict[str, Any]) -> str:
    """The report as a Markdown table (one line per variant)."""
    headers, rows = cells(table, results)
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                     + ["| " + " | ".join(row) + " |" for row in rows])


def text_table(table: AblationTable, results: dict[str, Any]) -> str:
    """The report for a terminal (the same cells, aligned)."""
    return format_table(*cells(table, results))


def figure(table: AblationTable, results: dict[str, Any], path: str | Path) -> Path:
    """Mean ± standard deviation per variant on the first dataset (each seed's run a grey dot beside it), with
    the paper's value on a second axis (the budgets differ, so the two share a direction, not a scale); written
    as PNG to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = summarize(table, results)
    key = (table.datasets[0], table.metric)
    fig = Figure(figsize=(1.4 * len(rows) + 2.5, 3.6))
    FigureCanvasAgg(fig)
    axis = fig.add_subplot()
    x = list(range(len(rows)))
    means = [row.stats[key][0] for row in rows]
    stds = [0.0 if math.isnan(row.stats[key][1]) else row.stats[key][1] for row in rows]
    for i, row in zip(x, rows):  # each seed's run, beside its mean
        values = [run["scores"][key[0]][key[1]] for run in results["runs"] if run["variant"] == row.variant]
        axis.plot([i + 0.12] * len(values), values, ".", color="0.55", markersize=5)
    axis.errorbar(x, means, yerr=stds, fmt="o", capsize=4, color="tab:blue", label="binsr (mean ± std, seeds)")
    axis.set_xlim(-0.5, len(rows) - 0.5)
    axis.set_ylabel(f"binsr {table.datasets[0]} {table.metric.upper()}", color="tab:blue")
    axis.set_xticks(x, [row.variant for row in rows], rotation=20, ha="right")
    papers = [(i, row.paper) for i, row in zip(x, rows) if row.paper is not None]
    if papers:
        paper_axis = axis.twinx()
        paper_axis.plot([i - 0.12 for i, _ in papers], [v for _, v in papers], "s", color="tab:orange",
                        label="paper (right axis)")
        paper_axis.set_ylabel(f"paper {table.metric.upper()}", color="tab:orange")
        handles = axis.get_legend_handles_labels()[0] + paper_axis.get_legend_handles_labels()[0]
        paper_axis.legend(handles=handles, fontsize=7, loc="best")
    axis.set_title(textwrap.fill(f"{table.name}: {table.summary}", width=int(14 * len(rows) + 30)), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=110)
    return path
