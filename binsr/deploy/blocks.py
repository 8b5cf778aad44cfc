"""Packed blocks: what sits between two binary layers folded into their native calls.

A packed binary layer reads a float input and writes a float output; in a network block the GroupNorm,
the timestep affine, the SiLU, the residual add and the concatenation of the up path between two of them
would each read and write the whole feature map again as PyTorch ops. A packed block runs its binary
layers with those steps inside them (``InputTransform`` before a layer, an added tensor after it), so no
float map between two binary layers is written and read back (BiMaCoSR's ResShift block: see
:class:`PackedScaleShiftResBlock`).

``PACKED_BLOCKS`` maps a block type to its packed form; :func:`~binsr.deploy.convert.pack_model` swaps every
block whose binary layers it packed. A packed block has the same children and state dict as its block and
falls back to the block's own forward wherever a step cannot be fused (training, hooks on its layers, the
PyTorch backend, :func:`~binsr.deploy.kernels.using_input_fusion` off).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from binsr.deploy.kernels import input_fusion
from binsr.deploy.layers import PackedThreeBranch, _watched_inside
from binsr.models.resshift_unet import ScaleShiftResBlock
from binsr.utils.registry import Registry

PACKED_BLOCKS: Registry[type] = Registry("packed block")


@PACKED_BLOCKS.decorator("scale_shift_res_block", lambda cls: cls)
class PackedScaleShiftResBlock(ScaleShiftResBlock):
    """ResShift's residual block with packed BiMaCoSR layers, as three native calls:

        h   = conv1(SiLU(GroupNorm1(cat(x...))))                        [norm and SiLU in conv1's call]
        s   = skip(cat(x...))                                            [a packed 1x1 layer, or x itself]
        out = conv2(SiLU(GroupNorm2(h) · (1 + scale) + shift)) + s       [norm, affine, SiLU and + s in conv2's]

    The concatenated input of the up path is never built: both parts are read where they lie.
    """

    block_type = ScaleShiftResBlock

    @classmethod
    def from_block(cls, block: ScaleShiftResBlock) -> PackedScaleShiftResBlock | None:
        """The packed form of ``block`` (its children and state shared), or None if its convs are not packed
        three-branch layers."""
        if not all(isinstance(getattr(block, name), PackedThreeBranch) for name in ("conv1", "conv2")):
            return None
        if not isinstance(block.skip, (PackedThreeBranch, nn.Identity)):
            return None
        packed = cls.__new__(cls)
        packed.__dict__ = dict(block.__dict__)
        return packed

    def forward(self, x: torch.Tensor | list[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        parts = list(x) if isinstance(x, list) else [x]
        # (the fused calls skip the forward of its parts: a hook on any of them makes the block step aside)
        fuse = input_fusion() and not self.training and not _watched_inside(self)
        out = self._fused(parts, emb) if fuse else None
        return out if out is not None else super().forward(parts if len(parts) > 1 else parts[0], emb)

    def _fused(self, parts: list[torch.Tensor], emb: torch.Tensor) -> torch.Tensor | None:
        if len(parts) > 2 or (len(parts) == 2 and parts[0].shape[1] % 64):
            return None  # the kernels read a concatenation at a word boundary (64 channels)
        first, second = parts[0], parts[1] if len(parts) == 2 else None
        split = first.shape[1] if second is not None else 0
        h = self.conv1.fused(first, transform=(self.norm1, True, split), x2=second)
        if h is None:
            return None
        scale, shift = self.emb(F.silu(emb)).chunk(2, dim=1)  # (B, C) each: 1 + scale and shift of GroupNorm2
        if isinstance(self.skip, nn.Identity):
            skip = first if second is None else None
        else:
            skip = self.skip.fused(first, transform=(None, False, split), x2=second) if split else self.skip(first)
        if skip is None:
            return None
        return self.conv2.fused(h, transform=(self.norm2, True, 0), mul=(1 + scale).contiguous(),
                                shift=shift.contiguous(), add=skip)


def pack_blocks(model: nn.Module) -> list[str]:
    """Swap every block with a packed form (in place); the names of the blocks swapped."""
    from binsr.binary.convert import set_submodule

    forms = {form.block_type: form for form in PACKED_BLOCKS.values()}
    swapped = []
    for name, module in list(model.named_modules()):
        if not name:  # (the model itself cannot be swapped in place)
            continue
        form = forms.get(type(module))
        packed = form.from_block(module) if form is not None else None
        if packed is not None:
            set_submodule(model, name, packed)
            swapped.append(name)
    return swapped
