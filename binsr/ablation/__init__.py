"""The papers' ablation tables, run with seeds: :mod:`~binsr.ablation.tables` (what a table is, the registry),
:mod:`~binsr.ablation.runner` (train and score every variant and seed, resumable), :mod:`~binsr.ablation.report`
(mean ± std, the paper's direction checked, a figure)."""

from binsr.ablation import papers as _papers  # noqa: F401  (registers the papers' tables)
from binsr.ablation.report import figure, markdown, summarize
from binsr.ablation.runner import read_results, results_file, run_table
from binsr.ablation.tables import TABLES, AblationTable, Variant, load_table

__all__ = ["TABLES", "AblationTable", "Variant", "figure", "load_table", "markdown", "read_results", "results_file",
           "run_table", "summarize"]
