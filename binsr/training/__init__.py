"""Training engine and recipes (``binsr train``)."""

from binsr.training.config import (BinarizeConfig, DataConfig, OptimConfig, Recipe, TrainConfig, load_train_config,
                                   preset_names)
from binsr.training.engine import Trainer, TrainResult
from binsr.training.tasks import TASKS, register_task

__all__ = ["TASKS", "BinarizeConfig", "DataConfig", "OptimConfig", "Recipe", "TrainConfig", "TrainResult", "Trainer",
           "load_train_config", "preset_names", "register_task"]
