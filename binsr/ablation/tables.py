"""Ablation tables: a paper's rows as ``binsr train`` recipes, one registry, or a YAML file of the same fields.

A table trains every variant from one base recipe with the table's ``budget`` overrides (steps, patch size, …)
plus the variant's own, over several seeds, and scores each run on ``datasets``. A variant's ``versus`` names
the row the paper compares it with; the paper's values of ``metric`` (``paper``) give the direction that the
report checks (:mod:`binsr.ablation.report`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from binsr.config import ConfigError, check_ranges, from_dict, load_yaml
from binsr.utils.registry import Registry

METRICS = ("psnr", "ssim")  # a table's verdict metric (higher is better)
SCORES = ("psnr", "ssim", "niqe")  # what every run is scored with, per dataset (NIQE: lower is better)


@dataclass(frozen=True)
class Variant:
    """One row: ``name``, its recipe ``overrides`` (``key=value``, as ``binsr train --set``), the paper's value
    of the table's metric (None: not reported), the row it is compared with (``versus``; None: none), and where
    the paper states a direction without numbers, ``expect`` ``higher`` or ``lower`` than that row."""

    name: str
    overrides: tuple[str, ...] = ()
    paper: float | None = None
    versus: str | None = None
    expect: str | None = None


@dataclass(frozen=True)
class AblationTable:
    """``recipe`` (a preset or file) trained once per variant and seed with ``budget`` + the variant's
    overrides; scored with ``metric`` on ``datasets`` (dataset names under the data root) at the recipe's
    scale, sampling with ``eval_steps`` where the model takes a step count; ``source`` cites the paper's table."""

    name: str
    summary: str
    recipe: str
    variants: tuple[Variant, ...]
    budget: tuple[str, ...] = ()
    metric: str = "psnr"
    datasets: tuple[str, ...] = ("Set5", "Set14")
    eval_steps: int | None = 20
    source: str = ""
    seeds: int = 3

    def __post_init__(self) -> None:
        names = [variant.name for variant in self.variants]
        if len(names) < 2 or len({folder_name(name) for name in names}) != len(names):
            raise ConfigError(f"ablation table {self.name}: needs at least two variants with distinct names (as "
                              f"folder names: letters, digits, '.', '_', '-')")
        for variant in self.variants:
            if variant.versus is not None and variant.versus not in names:
                raise ConfigError(f"ablation table {self.name}: {variant.name} is compared with unknown row "
                                  f"{variant.versus!r}")
            if variant.expect not in (None, "higher", "lower"):
                raise ConfigError(f"ablation table {self.name}: {variant.name}'s expect must be higher or lower")
            if any("=" not in item for item in variant.overrides):
                raise ConfigError(f"ablation table {self.name}: {variant.name}'s overrides must be key=value")
        if self.metric not in METRICS:
            raise ConfigError(f"ablation table {self.name}: metric must be one of {', '.join(METRICS)}")
        check_ranges(self, seeds=(1, 100))

    def variant(self, name: str) -> Variant:
        return next(variant for variant in self.variants if variant.name == name)


def folder_name(text: str) -> str:
    """``text`` as a folder name: each run of other characters than letters, digits, '.', '_', '-' becomes '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


TABLES: Registry[AblationTable] = Registry("ablation table", "binsr.ablation_tables")


def load_table(name_or_path: str) -> AblationTable:
    """A registered table, or one read from a YAML file with :class:`AblationTable`'s fields."""
    path = Path(name_or_path)
    if name_or_path not in TABLES and path.suffix in (".yaml", ".yml"):
        return from_dict(AblationTable, load_yaml(path), f"{path}: ")
    return TABLES.get(name_or_path)
