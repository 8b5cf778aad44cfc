"""Loading training recipes: YAML files, or the named presets that ship in ``binsr/configs/*.yaml``.

A recipe's ``task`` names the pipeline kind it trains (``sr3``, ``resshift``, ``onestep``, or one a plugin
registers); the task's own recipe dataclass (:data:`~binsr.training.tasks.TASKS`) reads the rest, so a key
that belongs to another task is an error naming it.
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path
from typing import Any

from binsr.config import ConfigError, apply_overrides, load_yaml
from binsr.errors import BinsrWarning
from binsr.training import onestep, resshift, sr3  # noqa: F401  (the built-in tasks register themselves)
from binsr.training.recipe import BinarizeConfig, DataConfig, OptimConfig, Recipe
from binsr.training.tasks import RENAMED, TASKS

TrainConfig = Recipe  # (the name recipes had before each task had its own)
# preset recipes renamed so that no recipe shares a shipped model's name (-paper: the papers' settings)
RENAMED_RECIPES = {name: f"{name}-paper" for name in ("bidiffsr-x2", "bidiffsr-x4", "bimacosr-x4", "resshift-x4",
                                                      "sinsr-x4", "sr3-x4")}
DEFAULT_TASK = sr3.SR3Recipe.task  # (recipes without a task: the first kind binsr had)


def preset_names() -> list[str]:
    return sorted(p.stem for p in resources.files("binsr.configs").iterdir() if p.name.endswith(".yaml"))


def load_train_config(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """A recipe file or preset name, with ``key.sub=value`` overrides; unknown keys are errors."""
    path = Path(name_or_path)
    if not path.is_file() and name_or_path in RENAMED_RECIPES:
        warnings.warn(f"preset recipe {name_or_path!r} is now called {RENAMED_RECIPES[name_or_path]!r}",
                      BinsrWarning, stacklevel=2)
        name_or_path = RENAMED_RECIPES[name_or_path]
        path = Path(name_or_path)
    if not path.is_file():
        if name_or_path not in preset_names():
            raise ConfigError(f"no config file or preset {name_or_path!r} (presets: {', '.join(preset_names())})")
        path = Path(str(resources.files("binsr.configs") / f"{name_or_path}.yaml"))
    return train_config_from_dict(apply_overrides(load_yaml(path), overrides or []))


def train_config_from_dict(data: dict[str, Any]) -> Recipe:
    """The recipe of the task ``data["task"]`` names (default ``sr3``), from the rest of ``data``."""
    data = dict(data)
    task = data.pop("task", DEFAULT_TASK)
    if task in RENAMED:
        warnings.warn(f"task {task!r} is now called {RENAMED[task]!r}: rename it in the recipe", BinsrWarning,
                      stacklevel=2)
        task = RENAMED[task]
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS.names())}, got {task!r}")
    return TASKS.get(task).recipe.from_dict(data)


__all__ = ["BinarizeConfig", "DataConfig", "OptimConfig", "Recipe", "TrainConfig", "load_train_config",
           "preset_names", "train_config_from_dict"]
