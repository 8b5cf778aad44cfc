"""What every training recipe shares: the data, optimizer and run sections, and their checks.

A task's recipe (:data:`binsr.training.tasks.TASKS`) is a dataclass deriving from :class:`Recipe` that adds
its own sections (the network, the process, a teacher, ...); recipes load from YAML
(:func:`binsr.training.config.load_train_config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from binsr.config import ConfigError, check_ranges, from_dict
from binsr.data.realesrgan import RealESRGANConfig
from binsr.errors import BinsrError
from binsr.models.presets import NetworkPreset, network_preset, presets_of
from binsr.training.optim import OPTIMIZERS, SCHEDULES

BIG = 10**12  # "any count": bounds that only refuse negatives, zero and nonsense
DEGRADATIONS = ("bicubic", "realesrgan")


@dataclass
class DataConfig:
    """Training and validation data.

    Fields: ``train`` HR folder, or a name under the data root (default ``train``); ``val`` validation HR
    folder, None for no validation (``Set5``); ``scale`` SR factor (4); ``patch_size`` HR patch side in
    pixels (64); ``batch_size`` patches per process and step (4); ``num_workers`` DataLoader workers (0);
    ``augment`` random flips and 90° rotations (True); ``val_limit`` validate on the first N images only
    (None: all); ``val_crop`` validate on each image's central N×N HR pixels (256; None: whole images);
    ``degradation`` ``bicubic`` (MATLAB) or ``realesrgan`` (two-stage, seeded per sample); ``realesrgan`` its
    settings (:class:`~binsr.data.realesrgan.RealESRGANConfig`).
    """

    train: str = "train"
    val: str | None = "Set5"
    scale: int = 4
    patch_size: int = 64
    batch_size: int = 4
    num_workers: int = 0
    augment: bool = True
    val_limit: int | None = None
    val_crop: int | None = 256
    degradation: str = "bicubic"
    realesrgan: RealESRGANConfig = field(default_factory=RealESRGANConfig)


@dataclass
class BinarizeConfig:
    """Binarize the trained network (after loading any initial weights).

    Fields: ``method`` a registered binarization method (default ``bimacosr``); ``options`` its options
    (default: the method's own); ``keep_fp`` module-name globs kept full precision (None: the network's own
    FP parts, for BiMaCoSR the first and last conv).
    """

    method: str = "bimacosr"
    options: dict[str, Any] = field(default_factory=dict)
    keep_fp: list[str] | None = None


@dataclass
class OptimConfig:
    """Optimizer, learning-rate schedule, gradient clipping and EMA.

    Fields: ``name`` a registered optimizer (:data:`~binsr.training.optim.OPTIMIZERS`: adam, adamw; default
    adam); ``lr`` peak learning rate (1e-4); ``betas`` Adam's (0.9, 0.99); ``weight_decay`` (0);
    ``schedule`` a registered schedule (:data:`~binsr.training.optim.SCHEDULES`: constant, cosine, multistep;
    default constant); ``warmup_steps`` linear warm-up, steps (0); ``milestones`` multistep's steps where the
    rate is multiplied by ``gamma`` (none; 0.5); ``grad_clip`` max gradient norm (None: no clipping);
    ``ema_decay`` e.g. 0.999, validation and the saved model then use the EMA (None: no EMA);
    ``ema_warmup`` the decay at step t is min(``ema_decay``, (1 + t)/(10 + t)), as diffusers' EMAModel does
    (True). Without it the EMA after t steps still holds ``ema_decay``^t of the initial weights: 45% after 400
    steps at 0.998, which scored a 400-step BI-DiffSR model 10 dB below its own trained weights.
    """

    name: str = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.5
    grad_clip: float | None = None
    ema_decay: float | None = None
    ema_warmup: bool = True


@dataclass
class Recipe:
    """The sections every task's recipe has.

    Fields: ``name`` the run's name, its folder under ``out_dir`` (default ``run``); ``task`` the training
    task, which is the pipeline kind it trains (set by the loader); ``data`` :class:`DataConfig`;
    ``optim`` :class:`OptimConfig`; ``steps`` optimizer steps (1000); ``seed`` (0); ``amp`` mixed precision on
    CUDA, ignored on CPU (True); ``log_every`` steps between log lines (10); ``val_every`` steps between
    validations, 0 for the end only (0); ``ckpt_every`` steps between checkpoints, 0 for the end only (200);
    ``keep_checkpoints`` how many to keep (2); ``out_dir`` where runs go (``runs``); ``device`` ``auto``,
    ``cpu`` or ``cuda[:N]`` (``auto``).
    """

    task: ClassVar[str] = ""  # (the class's; set by register_task)

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 1000
    seed: int = 0
    amp: bool = True
    log_every: int = 10
    val_every: int = 0
    ckpt_every: int = 200
    keep_checkpoints: int = 2
    out_dir: str = "runs"
    device: str = "auto"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """The recipe from a YAML mapping (without ``task``), checked. Tasks with presets or sections that
        depend on each other override this and call :meth:`check`."""
        recipe = from_dict(cls, data)
        recipe.check(data)
        return recipe

    def input_models(self) -> dict[str, str]:
        """The models the run reads besides its data, by role (``teacher``, ``init``): names or model files,
        whose contents decide its result as much as the recipe does (none here)."""
        return {}

    def patch_multiple(self) -> int | None:
        """What HR patch sides must be a multiple of for the network (None: known only when the task is made)."""
        return None

    def check(self, data: dict[str, Any]) -> None:
        """Raise a ConfigError naming the first key out of range (``data``: the mapping it came from)."""
        d, o = self.data, self.optim
        if d.degradation not in DEGRADATIONS:
            raise ConfigError(f"data.degradation must be {' or '.join(repr(x) for x in DEGRADATIONS)}, "
                              f"got {d.degradation!r}")
        if d.degradation == "realesrgan":
            given = (data.get("data") or {}).get("realesrgan") or {}
            if "scale" in given and given["scale"] != d.scale:
                raise ConfigError(f"data.realesrgan.scale {given['scale']} differs from data.scale {d.scale}")
            d.realesrgan = dataclasses.replace(d.realesrgan, scale=d.scale)
        if o.name not in OPTIMIZERS:
            raise ConfigError(f"optim.name must be one of {', '.join(OPTIMIZERS.names())}, got {o.name!r}")
        if o.schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule must be one of {', '.join(SCHEDULES.names())}, got {o.schedule!r}")
        multiple = self.patch_multiple()
        if multiple and d.patch_size % multiple:
            raise ConfigError(f"data.patch_size {d.patch_size} must be a multiple of {multiple} (the network's multiple)")
        if d.patch_size % d.scale:
            raise ConfigError(f"data.patch_size {d.patch_size} must be a multiple of the scale {d.scale}")
        check_fields(self, "", steps=(1, BIG), log_every=(1, BIG), val_every=(0, BIG), ckpt_every=(0, BIG),
                     keep_checkpoints=(1, 10_000), seed=(0, 2**63 - 1))
        check_fields(d, "data.", scale=(1, 16), patch_size=(1, 8192), batch_size=(1, 65_536),
                     num_workers=(0, 1024), val_limit=(1, BIG), val_crop=(1, 65_536))
        check_fields(o, "optim.", lr=(1e-12, 10.0), weight_decay=(0.0, 10.0), warmup_steps=(0, BIG),
                     gamma=(1e-12, 10.0), grad_clip=(1e-12, 1e12), ema_decay=(0.0, 0.999999999),
                     betas=(0.0, 0.999999999))


def check_fields(section: Any, prefix: str, **ranges: tuple[float, float]) -> None:
    """Every set (non-None) field of ``section`` within its [low, high], as one ConfigError naming the key."""
    given = {name: bounds for name, bounds in ranges.items() if getattr(section, name) is not None}
    try:
        check_ranges(section, **given)
    except ValueError as err:
        raise ConfigError(f"{prefix}{err}") from None


def split_sections(data: dict[str, Any], *names: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``data`` without the sections ``names``, and those sections (empty mappings where not given)."""
    rest = dict(data)
    return rest, [dict(rest.pop(name, None) or {}) for name in names]


def network_from_preset(section: dict[str, Any], config_cls: type, default: str,
                        where: str = "model.") -> tuple[NetworkPreset, Any]:
    """(preset, config) for a recipe section ``{preset: NAME, key: value, ...}``: the network preset's config
    with the given keys over it; the preset must describe a network of ``config_cls``."""
    section = dict(section)
    name = section.pop("preset", default)
    try:
        preset = network_preset(name)
    except BinsrError as err:
        raise ConfigError(f"{where}preset: {err}") from None
    if not isinstance(preset.config, config_cls):
        raise ConfigError(f"{where}preset {name!r} is a {preset.type} network; this task trains "
                          f"{config_cls.__name__} networks: {', '.join(presets_of(config_cls))}")
    return preset, from_dict(config_cls, {**dataclasses.asdict(preset.config), **section}, where)
