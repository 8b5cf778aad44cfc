"""``binsr ablate``: run a paper's ablation table over seeds, or report it from its results file."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from binsr.ablation import AblationTable


def add_ablate(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "ablate",
        help="run a paper's ablation table over seeds (resumable), or report it",
        description="Train every variant of an ablation table (a registered name or a YAML file) over seeds with "
                    "the table's budget, score each run, and add it to RESULTS/TABLE.json as soon as it exists. "
                    "Runs with a result are never rerun; an interrupted run resumes from its checkpoints. --report "
                    "rebuilds the table (mean ± std per variant, the paper's value, whether its direction is "
                    "reproduced), its figure RESULTS/TABLE.png and its Markdown RESULTS/TABLE.md from the results "
                    "file alone.",
        epilog="example: binsr ablate bidiffsr-components; binsr ablate bidiffsr-components --report",
    )
    p.add_argument("table", nargs="?", help="table name (see --list) or YAML file")
    p.add_argument("--list", action="store_true", help="list the registered tables, then exit")
    p.add_argument("--report", action="store_true", help="print the table and write its figure from the results "
                   "file, training nothing")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 [default: the table's]")
    p.add_argument("--results", default="docs/ablations", metavar="DIR", help="folder of the results files "
                   "[default: docs/ablations]")
    p.add_argument("--out-dir", default="runs/ablate", metavar="DIR", help="folder of the training runs "
                   "[default: runs/ablate]")
    p.add_argument("--data-root", metavar="DIR", help="data root for dataset names (overrides $BINSR_DATA)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_run_ablate)


def _run_ablate(args: argparse.Namespace) -> int:
    from binsr.ablation import TABLES, figure, load_table, read_results, results_file, run_table
    from binsr.ablation.report import markdown, text_table
    from binsr.utils.fs import atomic_write
    from binsr.errors import BinsrError

    if args.list:
        for name in [args.table] if args.table is not None else TABLES.names():
            table = load_table(name)
            done = _seeds_done(table, args.results)
            print(f"{table.name}: {table.summary} ({len(table.variants)} variants x {table.seeds} seeds, "
                  f"{sum(map(len, done.values()))} done in {args.results}; {table.source})")
            if args.table is not None:  # one table: its rows, their overrides and the seeds with a result
                for variant in table.variants:
                    seeds = ", ".join(map(str, sorted(done.get(variant.name, ())))) or "none"
                    print(f"  {variant.name}: {' '.join(variant.overrides) or '(the recipe as it is)'}; "
                          f"seeds done: {seeds}")
        return 0
    if args.table is None:
        raise BinsrError("give a table name or YAML file (binsr ablate --list shows the tables)")
    if args.seeds is not None and args.seeds < 1:
        raise BinsrError(f"--seeds must be at least 1, got {args.seeds}")
    table = load_table(args.table)
    path = results_file(table, args.results)
    if args.report:
        results = read_results(table, path)
        if not results["runs"]:
            raise BinsrError(f"{path}: no results yet (run 'binsr ablate {args.table}' first)")
    else:
        results = run_table(table, args.results, args.out_dir, args.seeds, args.data_root, progress=not args.quiet)
    print(text_table(table, results))
    with atomic_write(path.with_suffix(".md"), "w") as handle:
        handle.write(markdown(table, results) + "\n")
    print(f"figure: {figure(table, results, path.with_suffix('.png'))}; Markdown table: {path.with_suffix('.md')}")
    return 0


def _seeds_done(table: AblationTable, results_dir: str) -> dict[str, set[int]]:
    """The seeds (below the table's count) with a result in ``results_dir``, per variant name."""
    from binsr.ablation import read_results, results_file
    from binsr.errors import BinsrError

    try:
        runs = read_results(table, results_file(table, results_dir))["runs"]
    except BinsrError:  # results of another budget: none of this table's
        return {}
    done: dict[str, set[int]] = {}
    for run in runs:
        if run["seed"] < table.seeds:
            done.setdefault(run["variant"], set()).add(run["seed"])
    return done
