"""Diffusion processes and samplers. Models are black boxes: ``model(x, t) -> prediction``."""

from binsr.diffusion.distill import DistillConfig, SinSRDistillation
from binsr.diffusion.resshift import ResShift, ResShiftSchedule, from_model_range, to_model_range
from binsr.diffusion.sr3 import SR3, SR3Schedule, sample_generators

__all__ = ["SR3", "DistillConfig", "ResShift", "ResShiftSchedule", "SR3Schedule", "SinSRDistillation",
           "from_model_range", "sample_generators", "to_model_range"]
