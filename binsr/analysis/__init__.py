"""Analyses, figures and tables made from binsr models, runs and results: BiMaCoSR's rank and frequency
analyses, training curves, visual comparisons and the papers' comparison tables.

    from binsr.analysis import layer_ranks, rank_figure, save_png
    save_png(rank_figure(layer_ranks(model), "bimacosr"), "rank.png")
"""

from binsr.analysis.figures import save_png
from binsr.analysis.frequency import BranchRecorder, FrequencyResult, band_energy, frequency_analysis, frequency_figure
from binsr.analysis.layers import binarized_layers, sign_matrix
from binsr.analysis.rank import (
    LayerRank,
    exact_expected_rank,
    layer_ranks,
    random_sign_ranks,
    rank_figure,
    sign_rank_figure,
)

__all__ = [
    "BranchRecorder",
    "FrequencyResult",
    "LayerRank",
    "band_energy",
    "binarized_layers",
    "exact_expected_rank",
    "frequency_analysis",
    "frequency_figure",
    "layer_ranks",
    "random_sign_ranks",
    "rank_figure",
    "save_png",
    "sign_matrix",
    "sign_rank_figure",
]
