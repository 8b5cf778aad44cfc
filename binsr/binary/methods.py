"""Every binarization method binsr knows, as a registered recipe of parts.

A :class:`Method` turns one FP ``nn.Conv2d``/``nn.Linear`` into its binary replacement; the
converter (:func:`binsr.binary.binarize`) applies it across a model. Methods are registered by name
(:func:`register_method`; an installed plugin adds its own through the ``binsr.methods`` entry-point
group), so a model file names a method and never code. Sources: BNN (Courbariaux et al. 2016), DoReFa
(Zhou et al. 2016), XNOR-Net (Rastegari et al. 2016), IR-Net (Qin et al. 2020), ReActNet (Liu et al.
2020), BBCU (Xia et al. 2023), ReSTE (Wu et al. 2023), BiDM (Zheng et al. 2024), HORQ (Li et al. 2017),
BiMaCoSR (Liu et al. 2025, "BiMaCoSR: Binary One-Step Diffusion Model Leveraging Flexible Matrix
Compression for Real Super-Resolution") and BI-DiffSR (Chen et al. 2024, "Binarized Diffusion Model
for Image Super-Resolution", NeurIPS).

| method   | input                         | weight                  | extra                                   |
|----------|-------------------------------|-------------------------|-----------------------------------------|
| bnn      | sign, clipped STE             | sign, clipped STE       |                                         |
| dorefa   | sign, clipped STE             | sign·E|W| (layer), STE   |                                         |
| xnor     | sign, clipped STE             | α·sign (channel)        | output × K (k×k mean of mean_c|x|)      |
| irnet    | sign, EDE                     | Libra-PB, EDE           |                                         |
| reactnet | RSign sign(x−β), ApproxSign   | α·sign                  | RPReLU                                  |
| bbcu     | RSign, ApproxSign             | α·sign                  | RPReLU, identity residual               |
| reste    | sign, ReSTE                   | α·sign, ReSTE           |                                         |
| bidm     | sign(x+τ), ApproxSign         | α·sign                  | output × K, shortcut |s|·x (s = 0.3)    |
| horq     | N-term residual signs         | N-term residual signs   |                                         |
| bimacosr | 1-term per-pixel scaled sign  | α·sign                  | RPReLU; + LRMB (rank r) + SMB (k)       |
| bidiffsr | TaR → sign, ApproxSign        | α·sign                  | TaA (K RPReLU groups), identity residual|

α = mean|W| per output channel. The identity residual is added where the layer keeps its shape. BI-DiffSR's
``tar`` / ``taa`` options (both on) give its TaR/TaA ablation: off, that part has one group instead of K.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from binsr.binary.branches import build_three_branch, centre_tap_problem, explicit_padding, same_padding, window_mean
from binsr.binary.budget import allocate_ranks, allocate_sparse
from binsr.binary.estimators import EDE, ApproxSign, ClippedSTE, IdentitySTE, ReSTE
from binsr.binary.layers import (
    BinaryConv2d,
    BinaryLinear,
    GroupedBias,
    GroupedRPReLU,
    IdentityShortcut,
    ScaledShortcut,
)
from binsr.errors import BinsrError
from binsr.utils.registry import Registry
from binsr.binary.quantizers import (
    InputMagnitudeScale,
    LibraWeight,
    ResidualSignActivation,
    ResidualSignWeight,
    SignActivation,
    SignWeight,
)


@dataclass(frozen=True)
class Method:
    """A binarization method: how to replace one FP layer, and what options it takes."""

    name: str
    summary: str
    build: Callable[[nn.Module, Mapping[str, Any]], nn.Module]
    options: Mapping[str, Any] = field(default_factory=dict)  # accepted options and their defaults
    problem: Callable[[nn.Module, Mapping[str, Any]], str | None] = lambda layer, options: None
    # Per-layer options decided across all layers at once (BiMaCoSR's rank/k): {name: {option: value}}
    plan: Callable[[Mapping[str, nn.Module], Mapping[str, Any]], dict[str, dict[str, Any]]] | None = None
    words: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # words an option may take besides its kind
    # Options added after model files were first written: a file without one means its default, which builds what
    # such files always described (every other option must be stated in a file)
    added: tuple[str, ...] = ()


def keeps_shape(layer: nn.Module) -> bool:
    """True when the layer's output has its input's shape (an identity residual fits)."""
    if isinstance(layer, nn.Linear):
        return layer.in_features == layer.out_features
    same = explicit_padding(layer) == same_padding(layer)
    return (layer.in_channels == layer.out_channels and tuple(layer.stride) == (1, 1) and same
            and all(k % 2 for k in layer.kernel_size))


def binary_layer(layer: nn.Module, input_quantizer: Callable[[int, int], nn.Module] | None,
                 weight_quantizer: nn.Module | None, *, output_scale: bool = False, pre_bias: bool = False,
                 rprelu: bool = False, shortcut: str | None = None, timestep_groups: int = 1,
                 shortcut_init: float = 0.3, activation_groups: int | None = None) -> BinaryConv2d | BinaryLinear:
    """The binary counterpart of ``layer`` with the given parts; ``input_quantizer(channels, channel_dim)``;
    ``timestep_groups`` K of the pre-bias (TaR) and, unless ``activation_groups`` says otherwise, of the RPReLU
    (TaA)."""
    conv = isinstance(layer, nn.Conv2d)
    channel_dim = 1 if conv else -1
    cin, cout = (layer.in_channels, layer.out_channels) if conv else (layer.in_features, layer.out_features)
    parts: dict[str, nn.Module | None] = {
        "input_quantizer": input_quantizer(cin, channel_dim) if input_quantizer else None,
        "weight_quantizer": weight_quantizer,
    }
    if output_scale:
        parts["output_scale"] = (InputMagnitudeScale(layer.kernel_size, layer.stride, explicit_padding(layer), channel_dim)
                                 if conv else InputMagnitudeScale(channel_dim=channel_dim))
    if pre_bias:
        parts["pre_bias"] = GroupedBias(cin, timestep_groups, channel_dim)
    if rprelu:
        parts["activation"] = GroupedRPReLU(cout, activation_groups or timestep_groups, channel_dim)
    if shortcut == "identity" and keeps_shape(layer):
        parts["shortcut"] = IdentityShortcut()
    elif shortcut == "scaled":
        stride = layer.stride[0] if conv else 1
        parts["shortcut"] = ScaledShortcut(cin, cout, stride, conv, shortcut_init)
    return (BinaryConv2d if conv else BinaryLinear).from_float(layer, **parts)


def _sign(estimator: type, learnable_threshold: bool = False) -> Callable[[int, int], nn.Module]:
    def make(channels: int, channel_dim: int) -> nn.Module:
        return SignActivation(estimator(), channels if learnable_threshold else None, channel_dim)
    return make


def _no_dilation(layer: nn.Module, options: Mapping[str, Any]) -> str | None:
    if isinstance(layer, nn.Conv2d) and tuple(layer.dilation) != (1, 1):
        return f"dilation {tuple(layer.dilation)}: the k×k activation-scale window (K) has no dilated form"
    return None


def _ede_pair(options: Mapping[str, Any]) -> tuple[EDE, EDE]:
    return EDE(options["t_min"], options["t_max"]), EDE(options["t_min"], options["t_max"])


def _irnet(layer: nn.Module, o: Mapping[str, Any]) -> nn.Module:
    act_ede, weight_ede = _ede_pair(o)
    return binary_layer(layer, lambda c, d: SignActivation(act_ede, None, d), LibraWeight(weight_ede))


def _reste(layer: nn.Module, o: Mapping[str, Any]) -> nn.Module:
    def estimator() -> ReSTE:
        return ReSTE(o["order"], o["threshold"])
    return binary_layer(layer, lambda c, d: SignActivation(estimator(), None, d), SignWeight("channel", estimator()))


def _horq(layer: nn.Module, o: Mapping[str, Any]) -> nn.Module:
    order = o["order"]
    return binary_layer(layer, lambda c, d: ResidualSignActivation(order, ApproxSign(), d),
                        ResidualSignWeight(order, ClippedSTE()))


def _bimacosr_bmb(options: Mapping[str, Any]) -> Callable[[nn.Module], nn.Module]:
    def make(layer: nn.Module) -> nn.Module:
        return binary_layer(layer, lambda c, d: ResidualSignActivation(1, ApproxSign(), d),
                            ResidualSignWeight(1, ClippedSTE()), rprelu=True,
                            timestep_groups=options["timestep_groups"])
    return make


def _bimacosr(layer: nn.Module, o: Mapping[str, Any]) -> nn.Module:
    return build_three_branch(layer, _bimacosr_bmb(o), o["rank"], o["k"], o["use_lrmb"], o["use_smb"])


K_MULTIPLES = {"max": 1, "2max": 2, "4max": 4}  # BiMaCoSR's sparse count k as a multiple of max(C_in, C_out)


def _bimacosr_problem(layer: nn.Module, o: Mapping[str, Any]) -> str | None:
    return centre_tap_problem(layer)


def _bimacosr_plan(layers: Mapping[str, nn.Module], o: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Resolve rank/k per layer: an int (checked), "max" / "2max" / "4max" for k (1, 2 or 4 × max(C_in, C_out),
    capped at the matrix size; BiMaCoSR's is 2max), or "auto": spread ``budget`` × the uniform default (r = 8, k = 2max) over the layers
    by captured spectral energy / |w| mass (see :mod:`binsr.binary.budget`)."""
    shapes = {name: tuple(layer.weight.shape[:2]) for name, layer in layers.items()}
    plan: dict[str, dict[str, Any]] = {name: {} for name in layers}
    matrices = {name: window_mean(layer.weight.detach()) for name, layer in layers.items()}
    rank, k = o["rank"], o["k"]
    if rank == "auto":
        budget = int(o["budget"] * sum(8 * (cout + cin) for cout, cin in shapes.values()))
        for name, r in allocate_ranks(matrices, budget).items():
            plan[name]["rank"] = r
    elif isinstance(rank, int) and not isinstance(rank, bool):
        for name, (cout, cin) in shapes.items():
            if not 0 <= rank <= min(cout, cin):
                raise BinsrError(f"rank {rank} is larger than min(C_in, C_out) = {min(cout, cin)} of layer '{name}'")
            plan[name]["rank"] = rank
    else:
        raise BinsrError(f"rank must be an integer or 'auto', got {rank!r}")
    if k == "auto":
        budget = int(o["budget"] * sum(min(2 * max(s), s[0] * s[1]) for s in shapes.values()))
        for name, count in allocate_sparse(matrices, budget).items():
            plan[name]["k"] = count
    elif k in K_MULTIPLES:
        for name, (cout, cin) in shapes.items():
            plan[name]["k"] = min(K_MULTIPLES[k] * max(cout, cin), cout * cin)
    elif isinstance(k, int) and not isinstance(k, bool):
        for name, (cout, cin) in shapes.items():
            if not 0 <= k <= cout * cin:
                raise BinsrError(f"k = {k} is larger than the {cout}x{cin} weight of layer '{name}'")
            plan[name]["k"] = k
    else:
        raise BinsrError(f"k must be an integer, {', '.join(map(repr, K_MULTIPLES))} or 'auto', got {k!r}")
    return plan


_GROUPS = {"timestep_groups": 1}

METHODS: Registry[Method] = Registry("binarization method", "binsr.methods")


def register_method(method: Method) -> Method:
    """Make ``method`` available by its name to :func:`~binsr.binary.binarize` and to model files."""
    return METHODS.register(method.name, method)


for _method in [
    Method("bnn", "BNN: sign weights and activations, clipped STE",
           lambda layer, o: binary_layer(layer, _sign(ClippedSTE), SignWeight(None, ClippedSTE()))),
    Method("dorefa", "DoReFa 1/1: sign weights scaled by one E|W| per layer",
           lambda layer, o: binary_layer(layer, _sign(ClippedSTE), SignWeight("layer", IdentitySTE()))),
    Method("xnor", "XNOR-Net: per-channel weight scale, per-position activation scale K",
           lambda layer, o: binary_layer(layer, _sign(ClippedSTE), SignWeight("channel"), output_scale=True),
           problem=_no_dilation),
    Method("irnet", "IR-Net: Libra-PB weights, EDE backward (set_training_progress)", _irnet,
           {"t_min": 0.1, "t_max": 10.0}),
    Method("reactnet", "ReActNet: RSign with learnable thresholds, ApproxSign, RPReLU",
           lambda layer, o: binary_layer(layer, _sign(ApproxSign, True), SignWeight("channel"), rprelu=True,
                                     timestep_groups=o["timestep_groups"]), dict(_GROUPS)),
    Method("bbcu", "BBCU: RSign, RPReLU and a residual around every binary conv, no BN",
           lambda layer, o: binary_layer(layer, _sign(ApproxSign, True), SignWeight("channel"), rprelu=True,
                                     shortcut="identity", timestep_groups=o["timestep_groups"]),
           dict(_GROUPS)),
    Method("reste", "ReSTE: rectified straight-through estimator on weights and activations", _reste,
           {"order": 3.0, "threshold": 1.5}),
    Method("bidm", "BiDM: learnable thresholds, activation scale K, learnable shortcut |s|x",
           lambda layer, o: binary_layer(layer, _sign(ApproxSign, True), SignWeight("channel"), output_scale=True,
                                     shortcut="scaled", shortcut_init=o["shortcut_init"]),
           {"shortcut_init": 0.3}, _no_dilation),
    Method("horq", "HORQ: N-term residual binarization of weights and activations", _horq, {"order": 2}),
    Method("bimacosr", "BiMaCoSR: BMB (1-bit) + LRMB (rank r, SVD init) + SMB (top-k sparse)", _bimacosr,
           {"rank": 8, "k": "2max", "use_lrmb": True, "use_smb": True, "budget": 1.0, **_GROUPS},
           _bimacosr_problem, _bimacosr_plan, {"rank": ("auto",), "k": (*K_MULTIPLES, "auto")}),
    Method("bidiffsr", "BI-DiffSR BI-Conv: TaR → sign → α·sign(W) conv → TaA, + identity",
           lambda layer, o: binary_layer(layer, _sign(ApproxSign), SignWeight("channel"), pre_bias=True, rprelu=True,
                                     shortcut="identity" if o["residual"] else None,
                                     timestep_groups=o["timestep_groups"] if o["tar"] else 1,
                                     activation_groups=o["timestep_groups"] if o["taa"] else 1),
           {"timestep_groups": 5, "residual": True, "tar": True, "taa": True}, added=("tar", "taa")),
]:
    register_method(_method)
