"""The diffusion processes a model file may name: ``{"type": "sr3" | "resshift", "config": {...}}``.

Each registered process has a config dataclass (its schedule, with bounds) and a class built from it.
Every schedule says its T (``num_timesteps``), the one source of T for the networks serving it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from binsr.config import ComponentSpec
from binsr.diffusion.resshift import ResShift, ResShiftSchedule
from binsr.diffusion.sr3 import SR3, SR3Schedule
from binsr.utils.registry import ComponentType, Registry


PROCESSES: Registry[ComponentType] = Registry("diffusion process", "binsr.processes")


def register_process(name: str, config: type, cls: Callable[[Any], Any]) -> ComponentType:
    """Make process ``cls`` (built as ``cls(config)``) available to model files as ``name``."""
    return PROCESSES.register(name, ComponentType(name, config, cls))


register_process("sr3", SR3Schedule, SR3)
register_process("resshift", ResShiftSchedule, ResShift)


class ProcessSpec(ComponentSpec):
    """A registered process and its complete schedule."""

    registry = PROCESSES
    where = "process"

    @property
    def num_timesteps(self) -> int:
        return int(self.config.num_timesteps)
