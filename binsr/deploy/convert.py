"""``pack_model(model)``: swap every simulated binary layer of a model for its bit-packed form."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from binsr.binary.branches import ThreeBranch
from binsr.binary.convert import set_submodule
from binsr.deploy.blocks import pack_blocks
from binsr.deploy.layers import PACKED_FORMS, PackedThreeBranch, _PackedBinaryLayer
from binsr.errors import BinsrError


@dataclass
class PackReport:
    """What :func:`pack_model` replaced and how many bytes the binary weights take."""

    layers: list[str] = field(default_factory=list)
    binary_weights: int = 0  # ±1 weight entries
    packed_bytes: int = 0  # their bit words plus one float32 α per output channel

    @property
    def fp32_bytes(self) -> int:
        """What the same weights take as float32."""
        return 4 * self.binary_weights

    @property
    def ratio(self) -> float:
        return self.fp32_bytes / self.packed_bytes if self.packed_bytes else float("nan")


def packed_layers(model: nn.Module) -> dict[str, _PackedBinaryLayer]:
    """The packed binary layers of ``model`` by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, _PackedBinaryLayer)}


def pack_model(model: nn.Module, fill: bool = True) -> PackReport:
    """Replace each binary layer (a module declaring a ``packed_form``) in place by its packed counterpart.

    ``fill=False`` only builds the structure (zero bits), to load a packed file into; on the meta device
    it allocates nothing. A layer that has no packed form (e.g. HORQ order 2, dilated conv) is one clear
    error naming it.
    """
    report = PackReport()
    for name, module in list(model.named_modules()):
        form = getattr(type(module), "packed_form", None)
        if form is None:
            continue
        cls = PACKED_FORMS.get(form)
        try:
            packed = cls.from_binary(module, fill)
        except BinsrError as err:
            raise BinsrError(f"layer {name!r} cannot be packed: {err}") from None
        set_submodule(model, name, packed if module.weight.is_meta else packed.to(module.weight.device))
        report.layers.append(name)
        report.binary_weights += module.weight.numel()
        report.packed_bytes += packed.weight_bits.numel() * 8 + packed.weight_scale.numel() * 4
    for name, module in list(model.named_modules()):  # BiMaCoSR's layers: all three branches in one call
        if type(module) is ThreeBranch and isinstance(module.bmb, _PackedBinaryLayer):
            set_submodule(model, name, PackedThreeBranch(module.bmb, module.lrmb, module.smb))
    pack_blocks(model)  # blocks whose norms, activations and adds fold into their packed layers' calls
    model.eval()
    model.requires_grad_(False)
    return report
