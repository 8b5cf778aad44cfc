"""Diffusion processes and samplers. Models are black boxes: ``model(x, t) -> prediction``."""

from binsr.diffusion.distill import DistillConfig, SinSRDistillation
from binsr.diffusion.processes import PROCESSES, ProcessSpec, register_process
from binsr.diffusion.resshift import ResShift, ResShiftSchedule, from_model_range, to_model_range
from binsr.diffusion.sr3 import SR3, SR3Schedule, sample_generators

__all__ = ["PROCESSES", "SR3", "DistillConfig", "ProcessSpec", "ResShift", "ResShiftSchedule", "SR3Schedule", "SinSRDistillation",
           "from_model_range", "sample_generators", "register_process", "to_model_range"]
