"""Everything 1-bit: quantizers, binary layers, BiMaCoSR's three branches, the method registry and
the converter. Knows nothing of diffusion; works on any ``nn.Module``.

    model, report = binarize(model, "xnor", keep_fp=["conv_first", "conv_last"])
"""

from binsr.binary.branches import LowRankBranch, SparseBranch, ThreeBranch, decompose
from binsr.binary.convert import BinarizationReport, binarize
from binsr.binary.estimators import EDE, ApproxSign, ClippedSTE, IdentitySTE, ReSTE, sign
from binsr.binary.layers import (
    BinaryConv2d,
    BinaryLinear,
    GroupedBias,
    GroupedRPReLU,
    TimestepGroups,
    set_training_progress,
    timestep_groups,
    timestep_to_group,
)
from binsr.binary.methods import METHODS, Method, register_method
from binsr.binary.quantizers import (
    InputMagnitudeScale,
    LibraWeight,
    ResidualSignActivation,
    ResidualSignWeight,
    SignActivation,
    SignWeight,
)

__all__ = [
    "EDE",
    "METHODS",
    "ApproxSign",
    "BinarizationReport",
    "BinaryConv2d",
    "BinaryLinear",
    "ClippedSTE",
    "GroupedBias",
    "GroupedRPReLU",
    "IdentitySTE",
    "InputMagnitudeScale",
    "LibraWeight",
    "LowRankBranch",
    "Method",
    "ReSTE",
    "ResidualSignActivation",
    "ResidualSignWeight",
    "SignActivation",
    "SignWeight",
    "SparseBranch",
    "ThreeBranch",
    "binarize",
    "register_method",
    "decompose",
    "set_training_progress",
    "sign",
    "timestep_groups",
    "timestep_to_group",
    "TimestepGroups",
]
