"""Training recipes: dataclasses loaded from YAML (``binsr/configs/*.yaml`` ship as named presets)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from binsr.config import ConfigError, apply_overrides, check_ranges, from_dict, load_yaml
from binsr.data.realesrgan import RealESRGANConfig
from binsr.diffusion.distill import DistillConfig
from binsr.diffusion.resshift import ResShiftSchedule
from binsr.diffusion.sr3 import SR3Schedule
from binsr.models.presets import RESSHIFT_PRESETS, UNET_BINARIZATION, UNET_PRESETS
from binsr.models.resshift_unet import ResShiftUNetConfig
from binsr.models.unet import UNetConfig

TASKS = ("sr3", "resshift", "distill")


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
    val_crop: int | None = 256            # validate on each image's central N×N HR pixels (None: whole images)
    degradation: str = "bicubic"          # bicubic (MATLAB) | realesrgan (two-stage, seeded per sample)
    realesrgan: RealESRGANConfig = field(default_factory=RealESRGANConfig)


@dataclass
class BinarizeConfig:
    """Binarize the trained network (after loading ``init`` weights): binsr.binary method and options."""

    method: str = "bimacosr"
    options: dict[str, Any] = field(default_factory=dict)
    keep_fp: list[str] | None = None      # None: the network's own FP parts (BiMaCoSR: first and last conv)


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
    """A training recipe. ``task``: "sr3" (SR3/BI-DiffSR, DDPM), "resshift" (a ResShift teacher) or
    "distill" (SinSR one-step distillation of ``teacher``, optionally binarized: BiMaCoSR)."""

    name: str = "run"
    task: str = "sr3"
    model: UNetConfig | ResShiftUNetConfig = field(default_factory=UNetConfig)
    diffusion: SR3Schedule | ResShiftSchedule = field(default_factory=SR3Schedule)
    autoencoder: str | dict[str, Any] | None = None  # resshift: a registered autoencoder, name or {type, config}
    teacher: str | None = None            # distill: the ResShift teacher's model file
    init: str | None = None               # distill: student weights to start from (default: the teacher)
    binarize: BinarizeConfig | None = None  # sr3: default the model preset's; distill: binarize the student
    distill: DistillConfig = field(default_factory=DistillConfig)
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
    task = data.get("task", "sr3")
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    model = dict(data.pop("model", {}) or {})
    diffusion = data.pop("diffusion", {}) or {}
    binarize_given = "binarize" in data
    config = from_dict(TrainConfig, data)
    if task == "distill":
        if model or diffusion:
            raise ConfigError("a distill recipe takes its model and diffusion from the teacher: remove "
                              "'model' and 'diffusion'")
        if not config.teacher:
            raise ConfigError("task 'distill' needs 'teacher': the model file of a ResShift teacher")
    else:
        presets, config_cls = ((UNET_PRESETS, UNetConfig) if task == "sr3" else (RESSHIFT_PRESETS, ResShiftUNetConfig))
        preset = model.pop("preset", next(iter(presets)) if task == "resshift" else "bidiffsr-small")
        if preset not in presets:
            raise ConfigError(f"unknown model preset {preset!r} for task {task} (presets: {', '.join(sorted(presets))})")
        config.model = from_dict(config_cls, {**dataclasses.asdict(presets[preset]), **model}, "model.")
        config.diffusion = from_dict(SR3Schedule if task == "sr3" else ResShiftSchedule, diffusion, "diffusion.")
        if config.autoencoder and task != "resshift":
            raise ConfigError("autoencoder belongs to task 'resshift' (distillation takes the teacher's)")
        if config.teacher or config.init:
            raise ConfigError(f"teacher and init belong to task 'distill', not {task!r}")
        if task == "resshift" and config.binarize is not None:
            raise ConfigError("a ResShift teacher trains in full precision: binarize its one-step student "
                              "(task 'distill')")
        if task == "sr3" and not binarize_given:  # the preset's own binarization (BI-DiffSR's BI-Conv)
            default = UNET_BINARIZATION[preset]
            config.binarize = from_dict(BinarizeConfig, default, "binarize.") if default else None
    if config.data.degradation not in ("bicubic", "realesrgan"):
        raise ConfigError(f"data.degradation must be 'bicubic' or 'realesrgan', got {config.data.degradation!r}")
    if config.data.degradation == "realesrgan":
        realesrgan = data.get("data", {}).get("realesrgan", {}) or {}
        if "scale" in realesrgan and realesrgan["scale"] != config.data.scale:
            raise ConfigError(f"data.realesrgan.scale {realesrgan['scale']} differs from data.scale {config.data.scale}")
        config.data.realesrgan = dataclasses.replace(config.data.realesrgan, scale=config.data.scale)
    if config.optim.name not in ("adam", "adamw"):
        raise ConfigError(f"optim.name must be 'adam' or 'adamw', got {config.optim.name!r}")
    if config.optim.schedule not in ("constant", "cosine", "multistep"):
        raise ConfigError(f"optim.schedule must be constant, cosine or multistep, got {config.optim.schedule!r}")
    if task != "distill" and config.data.patch_size % config.model.multiple:
        raise ConfigError(f"data.patch_size {config.data.patch_size} must be a multiple of "
                          f"{config.model.multiple} (the UNet's multiple)")
    if config.data.patch_size % config.data.scale:
        raise ConfigError(f"data.patch_size {config.data.patch_size} must be a multiple of the scale {config.data.scale}")
    _check_ranges(config, "", steps=(1, BIG), log_every=(1, BIG), val_every=(0, BIG), val_steps=(1, 10_000),
                  ckpt_every=(0, BIG), keep_checkpoints=(1, 10_000), seed=(0, 2**63 - 1))
    _check_ranges(config.data, "data.", scale=(1, 16), patch_size=(1, 8192), batch_size=(1, 65_536),
                  num_workers=(0, 1024), val_limit=(1, BIG), val_crop=(1, 65_536))
    _check_ranges(config.optim, "optim.", lr=(1e-12, 10.0), weight_decay=(0.0, 10.0), warmup_steps=(0, BIG),
                  gamma=(1e-12, 10.0), grad_clip=(1e-12, 1e12), ema_decay=(0.0, 0.999999999), betas=(0.0, 0.999999999))
    return config


BIG = 10**12  # "any count": bounds that only refuse negatives, zero and nonsense


def _check_ranges(section: Any, prefix: str, **ranges: tuple[float, float]) -> None:
    """Every set (non-None) field of ``section`` within its [low, high], as one ConfigError naming the key."""
    given = {name: bounds for name, bounds in ranges.items() if getattr(section, name) is not None}
    try:
        check_ranges(section, **given)
    except ValueError as err:
        raise ConfigError(f"{prefix}{err}") from None
