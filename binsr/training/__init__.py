"""Training engine and recipes (``binsr train``)."""

from binsr.training.config import DataConfig, OptimConfig, TrainConfig, load_train_config, preset_names
from binsr.training.engine import Trainer, TrainResult

__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "TrainResult", "Trainer", "load_train_config", "preset_names"]
