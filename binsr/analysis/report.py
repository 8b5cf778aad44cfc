"""Comparison tables from ``binsr eval --json`` results, as in BI-DiffSR's Table 2: one table per
scale, rows = models, columns = Bits, Params, OPs and PSNR↑ / SSIM↑ / LPIPS↓ / NIQE↓ per dataset; the best value
of each column is marked; published rows can be printed beside ours."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binsr.errors import BinsrError
from binsr.utils.text import human_count

# (key, header, higher is better, decimals)
METRICS = (("psnr", "PSNR↑", True, 2), ("ssim", "SSIM↑", True, 4), ("lpips", "LPIPS↓", False, 4),
           ("niqe", "NIQE↓", False, 2))
DATASET_ORDER = ("Set5", "Set14", "B100", "BSD100", "Urban100", "Manga109", "DIV2K", "RealSR")


@dataclass
class Row:
    label: str
    published: bool
    bits: int | None
    params: float | None
    ops: float | None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # dataset → metric → value


@dataclass
class Table:
    """The rows of one scale; ``best`` holds the marked cells as (row label, column key)."""

    scale: int
    datasets: list[str]
    rows: list[Row]

    def columns(self) -> list[tuple[str, str, bool, int]]:
        """(column key, header, higher is better, decimals): params, ops, then dataset/metric."""
        columns = [("params", "Params", False, 2), ("ops", "OPs", False, 2)]
        for dataset in self.datasets:
            for key, header, higher, decimals in METRICS:
                if any(key in row.scores.get(dataset, {}) for row in self.rows):
                    columns.append((f"{dataset}/{key}", f"{dataset} {header}", higher, decimals))
        return columns

    def value(self, row: Row, column: str) -> float | None:
        if column in ("params", "ops"):
            return getattr(row, column)
        dataset, metric = column.split("/")
        return row.scores.get(dataset, {}).get(metric)

    def best(self) -> set[tuple[str, str]]:
        """Cells holding the best value of their column among our 1-bit models (among all our models
        when none is 1-bit); equal displayed values are all marked. Published rows are not ranked;
        neither are zero Params (bicubic)."""
        ours = [row for row in self.rows if not row.published]
        candidates = [row for row in ours if row.bits == 1] or ours
        marked = set()
        for column, _, higher, decimals in self.columns():
            values = {row.label: self.value(row, column) for row in candidates}
            values = {k: round(v, decimals if column not in ("params", "ops") else 12) for k, v in values.items()
                      if v is not None and not math.isnan(v) and not (column == "params" and v == 0)}
            if values:
                target = (max if higher else min)(values.values())
                marked |= {(label, column) for label, v in values.items() if v == target}
        return marked

    def markdown(self) -> str:
        columns, marked = self.columns(), self.best()
        header = ["Method", "Bits"] + [c[1] for c in columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * len(columns)]
        for row in self.rows:
            cells = [row.label + (" †" if row.published else ""), "—" if row.bits is None else str(row.bits)]
            for column, _, _, decimals in columns:
                text = _format(self.value(row, column), column, decimals)
                cells.append(f"**{text}**" if (row.label, column) in marked and not row.published else text)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def records(self) -> list[dict[str, Any]]:
        """Long-form CSV rows: one per (model, dataset)."""
        out = []
        for row in self.rows:
            for dataset in self.datasets:
                scores = row.scores.get(dataset)
                if scores is None:
                    continue
                out.append({"scale": self.scale, "method": row.label, "source": "paper" if row.published else "binsr",
                            "bits": "" if row.bits is None else row.bits, "params": _plain(row.params),
                            "ops": _plain(row.ops), "dataset": dataset,
                            **{key: _plain(scores.get(key)) for key, *_ in METRICS}})
        return out


def load_results(paths: list[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """The records of ``binsr eval --json`` files (each an object, or a list of them)."""
    records = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise BinsrError(f"no such file: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BinsrError(f"{path}: not JSON ({err})") from None
        for record in data if isinstance(data, list) else [data]:
            missing = [k for k in ("model", "dataset", "scale", "mean") if not isinstance(record, dict) or k not in record]
            if missing or not ({"psnr", "ssim"} <= set(record["mean"]) or "niqe" in record["mean"]):
                raise BinsrError(f"{path}: not a 'binsr eval --json' result (missing "
                                 f"{', '.join(missing) or 'mean psnr/ssim or niqe'})")
            records.append({**record, "source_file": str(path)})
    return records


def build_tables(results: list[dict[str, Any]], published: list[dict[str, Any]] = (),
                 labels: dict[str, str] | None = None) -> list[Table]:
    """One :class:`Table` per scale of ``results`` (ours), with ``published`` records of the same scales
    appended on the datasets we have. ``labels`` maps a model name or a result file (as given) to a row label."""
    labels = labels or {}
    tables = []
    for scale in sorted({int(r["scale"]) for r in results}):
        ours = [r for r in results if int(r["scale"]) == scale]
        datasets = sorted({r["dataset"] for r in ours}, key=dataset_key)
        rows = _rows(ours, labels, published=False)
        rows += _rows([r for r in published if r["scale"] == scale and r["dataset"] in datasets], {}, published=True)
        tables.append(Table(scale, datasets, rows))
    return tables


def report_markdown(tables: list[Table], sources: list[str], paper: str | None) -> str:
    """The whole report: a table per scale and how to read it."""
    parts = ["# binsr results", ""]
    for table in tables:
        parts += [f"## ×{table.scale}", "", table.markdown(), ""]
    parts.append("PSNR (dB) and SSIM on the Y channel with a border of `scale` pixels cropped; LPIPS (AlexNet); "
                 "NIQE (no reference, BasicSR's, Y channel, same border). "
                 "Params = FP parameters + binary weights / 32; OPs = FLOPs + binary ops / 64, for one network "
                 "call with a 256×256 output. **Bold**: best of the column among our 1-bit models (↑ higher is "
                 "better, ↓ lower).")
    if paper and any(row.published for table in tables for row in table.rows):
        parts.append(f"† Published in the {paper} paper (not ranked).")
    parts += ["", "Sources: " + ", ".join(f"`{s}`" for s in sources), ""]
    return "\n".join(parts)


def _rows(records: list[dict[str, Any]], labels: dict[str, str], published: bool) -> list[Row]:
    rows: dict[str, Row] = {}
    for record in records:
        label = labels.get(record.get("source_file", ""), labels.get(record["model"], record["model"]))
        info = record.get("model_info") or {}
        row = rows.setdefault(label, Row(label, published, info.get("bits"), info.get("params"), info.get("ops")))
        if record["dataset"] in row.scores:
            where = record.get("source_file", "the results")
            raise BinsrError(f"{label} on {record['dataset']} x{record['scale']} appears twice (again in {where}); "
                             f"name the rows apart with --label FILE=LABEL")
        row.scores[record["dataset"]] = {k: float(v) for k, v in record["mean"].items()}
    return list(rows.values())


def dataset_key(name: str) -> tuple[int, str]:
    """Sort key of benchmark names in the papers' order (Set5, Set14, B100, ...; a set's variants such as
    "Set14-real (seed 0)" beside it), others after by name."""
    base = name.split("-")[0].split(" ")[0]
    return (DATASET_ORDER.index(base) if base in DATASET_ORDER else len(DATASET_ORDER), name)


def _format(value: float | None, column: str, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if column in ("params", "ops"):
        return human_count(value) if value else "0"
    return f"{value:.{decimals}f}"


def _plain(value: float | None) -> str | float:
    return "" if value is None else value
