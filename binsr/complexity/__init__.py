"""Params, storage and FLOPs/BOPs of any ``nn.Module``, by the papers' counting convention."""

from binsr.complexity.counter import ComplexityReport, LayerCost, count_complexity
from binsr.complexity.rules import DEFAULT_RULES

__all__ = ["DEFAULT_RULES", "ComplexityReport", "LayerCost", "count_complexity"]
