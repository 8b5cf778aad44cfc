"""Diffusion processes and samplers. Models are black boxes: ``model(x, t) -> prediction``."""

from binsr.diffusion.sr3 import SR3, SR3Schedule, sample_generators

__all__ = ["SR3", "SR3Schedule", "sample_generators"]
