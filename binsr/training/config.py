"""Training recipes: dataclasses loaded from YAML (``binsr/configs/*.yaml`` ship as named presets)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from binsr.config import ConfigError, apply_overrides, from_dict, load_yaml
from binsr.diffusion.sr3 import SR3Schedule
from binsr.models.presets import UNET_PRESETS
from binsr.models.unet import UNetConfig


@dataclass
class DataConfig:
    train: str = "train"                  # HR folder, or a name under the data root
    val: str | None = "Set5"              # validation HR folder (None: no validation)
    scale: int = 4
    patch_size: int = 64                  # HR patch side
    batch_size: int = 4                   # per process
    num_workers: int = 0
    augment: bool = True
    val_limit: int | None = None          # validate on the first N images only


@dataclass
class OptimConfig:
    name: str = "adam"                    # adam | adamw
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    schedule: str = "constant"            # constant | cosine | multistep
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()      # multistep: steps where lr *= gamma
    gamma: float = 0.5
    grad_clip: float | None = None        # max gradient norm
    ema_decay: float | None = None        # e.g. 0.999; validation and the exported model use the EMA


@dataclass
class TrainConfig:
    name: str = "run"
    model: UNetConfig = field(default_factory=UNetConfig)
    diffusion: SR3Schedule = field(default_factory=SR3Schedule)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 1000
    seed: int = 0
    amp: bool = True                      # mixed precision on CUDA (ignored on CPU)
    log_every: int = 10
    val_every: int = 0                    # 0: validate at the end only
    val_steps: int = 20                   # DDIM steps for validation
    ckpt_every: int = 200
    keep_checkpoints: int = 2
    out_dir: str = "runs"
    device: str = "auto"


def preset_names() -> list[str]:
    return sorted(p.stem for p in resources.files("binsr.configs").iterdir() if p.name.endswith(".yaml"))


def load_train_config(name_or_path: str, overrides: list[str] | None = None) -> TrainConfig:
    """A recipe file or preset name, with ``key.sub=value`` overrides; unknown keys are errors."""
    path = Path(name_or_path)
    if not path.is_file():
        if name_or_path not in preset_names():
            raise ConfigError(f"no config file or preset {name_or_path!r} (presets: {', '.join(preset_names())})")
        path = Path(str(resources.files("binsr.configs") / f"{name_or_path}.yaml"))
    return train_config_from_dict(apply_overrides(load_yaml(path), overrides or []))


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    data = dict(data)
    model = dict(data.pop("model", {}) or {})
    preset = model.pop("preset", "bidiffsr-small")
    if preset not in UNET_PRESETS:
        raise ConfigError(f"unknown model preset {preset!r} (presets: {', '.join(sorted(UNET_PRESETS))})")
    base = dataclasses.asdict(UNET_PRESETS[preset])
    config = from_dict(TrainConfig, data)
    config.model = from_dict(UNetConfig, {**base, **model}, "model.")
    if config.optim.name not in ("adam", "adamw"):
        raise ConfigError(f"optim.name must be 'adam' or 'adamw', got {config.optim.name!r}")
    if config.optim.schedule not in ("constant", "cosine", "multistep"):
        raise ConfigError(f"optim.schedule must be constant, cosine or multistep, got {config.optim.schedule!r}")
    if config.data.patch_size % (config.data.scale * config.model.multiple):
        raise ConfigError(f"data.patch_size {config.data.patch_size} must be a multiple of scale x "
                          f"{config.model.multiple} (the UNet's multiple)")
    return config
