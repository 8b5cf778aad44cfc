"""LPIPS (Zhang et al. 2018), AlexNet trunk, v0.1 — the perceptual distance both papers report.

Why this is not simply ``lpips.LPIPS(net="alex")``: the ``lpips`` package imports torchvision at
import time only to build AlexNet, and torchvision has no CPU build for the machines binsr targets.
So binsr builds the same network here — torchvision's AlexNet ``features`` layout (so its ImageNet
checkpoint loads unchanged), lpips' input scaling, unit-normalised features, squared differences,
the calibrated 1×1 "lin" layers, spatial average, sum over 5 layers — and loads the two weight files
the original uses: the linear heads shipped *inside the lpips package* (read as a file, the package is
never imported) and torchvision's AlexNet checkpoint. ``tests/test_lpips.py`` runs the lpips
package's own forward pass against this one.

Neither file can be downloaded by binsr; when one is missing, :func:`load_lpips` raises
:class:`~binsr.errors.MetricUnavailable` with one line saying what to provide. Never a fake number.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from binsr.errors import MetricUnavailable

ALEXNET_CHECKPOINT = "alexnet-owt-7be5be79.pth"  # torchvision's file name in the torch hub cache
ALEXNET_ENV = "BINSR_LPIPS_ALEXNET"
LIN_ENV = "BINSR_LPIPS_LIN"
_LIN_IN_PACKAGE = "lpips/weights/v0.1/alex.pth"
_CHANNELS = (64, 192, 384, 256, 256)
# Indices in AlexNet.features after which LPIPS taps the (ReLU) activation.
_TAPS = (1, 4, 7, 9, 11)
# lpips v0.1 input scaling, applied to images mapped to [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def alexnet_features() -> nn.Sequential:
    """AlexNet's convolutional trunk, indexed exactly as torchvision's ``alexnet().features``."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
    )


class LPIPS(nn.Module):
    """LPIPS distance between image batches in [0, 1]: (B, 3, H, W) × 2 → (B,) (0 for equal images).

    Built with random weights; use :func:`load_lpips` for the calibrated metric.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = alexnet_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in _CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT)[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE)[None, :, None, None], persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two (B, 3, H, W) batches of equal shape, got {tuple(x.shape)}, {tuple(y.shape)}")
        feats_x, feats_y = self._taps(x), self._taps(y)
        total = x.new_zeros(x.shape[0])
        for lin, fx, fy in zip(self.lins, feats_x, feats_y):
            diff = (_unit_normalise(fx) - _unit_normalise(fy)) ** 2
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total

    def _taps(self, image: torch.Tensor) -> list[torch.Tensor]:
        h = ((image * 2 - 1) - self.shift) / self.scale
        taps = []
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in _TAPS:
                taps.append(h)
        return taps

    def load_weights(self, alexnet: dict[str, torch.Tensor], lin: dict[str, torch.Tensor]) -> None:
        """Load torchvision AlexNet (``features.N.*`` keys) and lpips lin (``linK.model.1.weight``) tensors."""
        trunk = {k.removeprefix("features."): v for k, v in alexnet.items() if k.startswith("features.")}
        # lpips names its heads "lin{i}.model.1.weight" (model.0 is a dropout)
        heads = {f"{k.split('.')[0].removeprefix('lin')}.weight": v for k, v in lin.items() if k.startswith("lin")}
        try:
            self.features.load_state_dict(trunk)
            self.lins.load_state_dict(heads)
        except RuntimeError as err:
            # torch's message: a header line, then one line per problem; show the first problem
            lines = [line.strip() for line in str(err).strip().splitlines()]
            detail = lines[1] if len(lines) > 1 else lines[0]
            raise MetricUnavailable(f"LPIPS weights do not fit AlexNet/LPIPS v0.1: {detail}") from None


def load_lpips(
    alexnet_path: str | os.PathLike[str] | None = None,
    lin_path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> LPIPS:
    """The calibrated LPIPS(AlexNet, v0.1) metric, or :class:`MetricUnavailable` naming what is missing.

    ``alexnet_path``: torchvision's ``alexnet-owt-7be5be79.pth``; default ``$BINSR_LPIPS_ALEXNET`` or
    the torch hub cache (``$TORCH_HOME/hub/checkpoints``). ``lin_path``: lpips' ``weights/v0.1/alex.pth``;
    default ``$BINSR_LPIPS_LIN`` or the file inside an installed ``lpips`` package.
    """
    alexnet_file = find_alexnet_weights(alexnet_path)
    lin_file = find_lin_weights(lin_path)
    model = LPIPS()
    model.load_weights(_read_tensors(alexnet_file), _read_tensors(lin_file))
    return model.to(device)


def find_alexnet_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """torchvision's AlexNet checkpoint: ``path``, ``$BINSR_LPIPS_ALEXNET`` or the torch hub cache."""
    candidates = [path, os.environ.get(ALEXNET_ENV), Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_CHECKPOINT]
    return _first_file(
        candidates,
        f"LPIPS unavailable: AlexNet weights not found (put torchvision's {ALEXNET_CHECKPOINT} in "
        f"{Path(torch.hub.get_dir()) / 'checkpoints'} or pass --lpips-alexnet PATH / set {ALEXNET_ENV})",
        explicit=path,
    )


def find_lin_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """lpips' v0.1 AlexNet linear weights: ``path``, ``$BINSR_LPIPS_LIN`` or the installed lpips package."""
    candidates: list[object] = [path, os.environ.get(LIN_ENV)]
    try:
        candidates.append(importlib.metadata.distribution("lpips").locate_file(_LIN_IN_PACKAGE))
    except importlib.metadata.PackageNotFoundError:
        pass
    return _first_file(
        candidates,
        "LPIPS unavailable: the lpips package's linear weights were not found "
        f"(pip install --no-deps lpips, or pass --lpips-lin PATH / set {LIN_ENV})",
        explicit=path,
    )


def _first_file(candidates: list[object], message: str, explicit: object) -> Path:
    if explicit is not None and not Path(explicit).is_file():
        raise MetricUnavailable(f"LPIPS unavailable: {explicit} is not a file")
    for candidate in candidates:
        if candidate is not None and Path(str(candidate)).is_file():
            return Path(str(candidate))
    raise MetricUnavailable(message)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any decode failure is a bad weights file
        raise MetricUnavailable(f"LPIPS unavailable: cannot read weights {path} ({type(err).__name__})") from None
    if not isinstance(state, dict):
        raise MetricUnavailable(f"LPIPS unavailable: {path} does not hold a state dict")
    return state


def _unit_normalise(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Divide each feature vector (over channels) by its L2 norm, as lpips does."""
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def lpips_distance(model: LPIPS, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """LPIPS of (3, H, W) or (B, 3, H, W) images in [0, 1]; float64 scalar or (B,)."""
    single = sr.dim() == 3
    if single:
        sr, hr = sr.unsqueeze(0), hr.unsqueeze(0)
    param = next(model.parameters())
    with torch.no_grad():
        value = model(sr.to(param), hr.to(param)).to(torch.float64)
    return value[0] if single else value


__all__ = ["LPIPS", "alexnet_features", "find_alexnet_weights", "find_lin_weights", "load_lpips", "lpips_distance"]
