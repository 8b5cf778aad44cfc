"""Real 1-bit inference: bit-packed weights, XNOR-popcount CPU kernels, packed model files.

    from binsr.deploy import export_packed, pack_model
    export_packed("run/model.safetensors", "model.packed.safetensors")
    upscaler = binsr.load("model.packed.safetensors")      # runs the packed kernels

Sits above ``binary`` and ``models`` (it packs their layers) and below ``pipelines``.
"""

from binsr.deploy.convert import PackReport, pack_model, packed_layers
from binsr.deploy.files import ExportReport, export_packed, load_packed_network, packed_skeleton
from binsr.deploy.blocks import PACKED_BLOCKS, PackedScaleShiftResBlock
from binsr.deploy.kernels import (
    InputTransform,
    PackedWeight,
    backend,
    binary_conv2d,
    binary_linear,
    instruction_sets,
    native_available,
    pack_signs,
    set_backend,
    input_fusion,
    profiling,
    unpack_signs,
    using_backend,
    using_fusion,
    using_input_fusion,
)
from binsr.deploy.layers import PackedBinaryConv2d, PackedBinaryLinear

__all__ = [
    "PACKED_BLOCKS",
    "ExportReport",
    "InputTransform",
    "PackReport",
    "PackedBinaryConv2d",
    "PackedBinaryLinear",
    "PackedScaleShiftResBlock",
    "PackedWeight",
    "backend",
    "binary_conv2d",
    "binary_linear",
    "export_packed",
    "input_fusion",
    "instruction_sets",
    "load_packed_network",
    "native_available",
    "pack_model",
    "pack_signs",
    "packed_skeleton",
    "packed_layers",
    "profiling",
    "set_backend",
    "unpack_signs",
    "using_backend",
    "using_fusion",
    "using_input_fusion",
]
