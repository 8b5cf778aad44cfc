"""The diffusion processes a model file may name: ``{"type": "sr3" | "resshift", "config": {...}}``.

Each registered process has a config dataclass (its schedule, with bounds) and a class built from it.
Every schedule says its T (``num_timesteps``), the one source of T for the networks serving it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from binsr.config import exact_keys, from_dict, to_dict
from binsr.diffusion.resshift import ResShift, ResShiftSchedule
from binsr.diffusion.sr3 import SR3, SR3Schedule
from binsr.utils.registry import Registry


@dataclass(frozen=True)
class ProcessType:
    name: str
    config: type
    cls: Callable[[Any], Any]


PROCESSES: Registry[ProcessType] = Registry("diffusion process", "binsr.processes")


def register_process(name: str, config: type, cls: Callable[[Any], Any]) -> ProcessType:
    return PROCESSES.register(name, ProcessType(name, config, cls))


register_process("sr3", SR3Schedule, SR3)
register_process("resshift", ResShiftSchedule, ResShift)


@dataclass(frozen=True)
class ProcessSpec:
    """A registered process and its complete schedule."""

    type: str
    config: Any

    @classmethod
    def parse(cls, data: Any, where: str = "process") -> ProcessSpec:
        data = exact_keys(data, where, ("type", "config"))
        kind = PROCESSES.get(data["type"])
        return cls(kind.name, from_dict(kind.config, data["config"], f"{where}.config.", complete=True))

    @classmethod
    def of(cls, schedule: Any) -> ProcessSpec:
        kind = next(entry for entry in PROCESSES.values() if isinstance(schedule, entry.config))
        return cls(kind.name, schedule)

    @property
    def num_timesteps(self) -> int:
        return int(self.config.num_timesteps)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "config": to_dict(self.config)}

    def build(self) -> Any:
        return PROCESSES.get(self.type).cls(self.config)
