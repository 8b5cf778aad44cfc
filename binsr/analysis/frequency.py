"""Frequency analysis of BiMaCoSR's branches (its supplementary B.2).

For each three-branch layer, on real inputs: the outputs of BMB, LRMB and SMB (and their sum, the
layer's output) are transformed with a 2-D FFT over their spatial axes and shifted so that the zero
frequency is central; the central ¼ of the spectrum (a centred block of half the height and half the
width) is "low frequency", the remaining ¾ "high". A branch's share of a band is its spectral energy
Σ|F|² in that band over the sum of the three branches' energies in it. Linear layers are analysed
where their tokens have a spatial layout: (B, H, W, C) maps and (B', N, C) windows with N a square.
"""

from __future__ import annotations

import functools
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from binsr.analysis.figures import BRANCH_COLORS, BRANCH_LABELS, nanmean, new_figure, save_png, shade_layers
from binsr.analysis.layers import binarized_layers
from binsr.binary import ThreeBranch
from binsr.errors import BinsrError
from binsr.utils.fs import write_csv

BRANCHES = ("bmb", "lrmb", "smb")


def low_frequency_mask(height: int, width: int) -> torch.Tensor:
    """(height, width) bool: True on the centred block of ⌈H/2⌉ × ⌈W/2⌉ frequencies of an fftshift-ed
    spectrum (the zero frequency sits at (H//2, W//2))."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    rows, cols = (height + 1) // 2, (width + 1) // 2
    top, left = height // 2 - rows // 2, width // 2 - cols // 2
    mask[top: top + rows, left: left + cols] = True
    return mask


def band_energy(maps: torch.Tensor) -> tuple[float, float]:
    """(low, high) spectral energy Σ|F|² of ``maps`` (..., H, W), F the full 2-D DFT, summed over all
    leading axes. By Parseval, low + high = H·W·Σ maps²."""
    return spectrum_energy(torch.fft.rfft2(maps.detach()), maps.shape[-1])


def spectrum_energy(half_spectrum: torch.Tensor, width: int) -> tuple[float, float]:
    """(low, high) energy of a real signal's full spectrum from its ``rfft2`` half (…, H, W//2 + 1).

    A real signal's spectrum is conjugate-symmetric, F(−u, −v) = conj F(u, v), so each bin of the half
    spectrum stands for itself and, except the v = 0 and Nyquist columns, its mirror: the weights below
    count the low band exactly as the centred mask on the full spectrum does (half the FFT work)."""
    low_weights, all_weights = _band_weights(half_spectrum.shape[-2], width, half_spectrum.device)
    power = half_spectrum.real.square() + half_spectrum.imag.square()
    power = power.sum(dim=tuple(range(power.dim() - 2)), dtype=torch.float64) if power.dim() > 2 else power.double()
    low = float((power * low_weights).sum())
    return low, float((power * all_weights).sum()) - low


@functools.lru_cache(maxsize=64)
def _band_weights(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per half-spectrum bin: how many low-band bins / full-spectrum bins it stands for (float64)."""
    mask = torch.fft.ifftshift(low_frequency_mask(height, width)).double()  # unshifted full-spectrum mask
    columns = torch.arange(width // 2 + 1)
    mirrored = ((columns != 0) & ~((width % 2 == 0) & (columns == width // 2))).double()
    mirror = mask[(-torch.arange(height)) % height][:, (-columns) % width]
    low = mask[:, : width // 2 + 1] + mirrored * mirror
    return low.to(device), (1 + mirrored).expand(height, -1).to(device)


def spatial_maps(output: torch.Tensor, kind: str) -> torch.Tensor | None:
    """A layer output as (B, C, H, W) maps, or None when it has no spatial layout (e.g. a time MLP)."""
    if kind == "conv":
        return output
    if output.dim() == 4:  # (B, H, W, C) tokens
        return output.permute(0, 3, 1, 2)
    if output.dim() == 3:  # (B', N, C) windows of N = w² tokens in raster order
        side = math.isqrt(output.shape[1])
        if side * side == output.shape[1] and side > 1:
            return output.reshape(output.shape[0], side, side, output.shape[2]).permute(0, 3, 1, 2)
    return None


@dataclass
class LayerSpectrum:
    """Accumulated (low, high) energies of one layer's branches and of their sum."""

    name: str
    kind: str
    energy: dict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0.0, 0.0]))
    calls: int = 0

    def share(self, branch: str, band: int) -> float:
        """Share (0..1) of ``branch`` in band 0 (low) or 1 (high) among the three branches."""
        total = sum(self.energy[b][band] for b in BRANCHES if b in self.energy)
        return self.energy[branch][band] / total if branch in self.energy and total > 0 else float("nan")

    def to_rows(self) -> list[dict[str, object]]:
        rows = []
        for branch in [b for b in BRANCHES if b in self.energy] + ["sum"]:
            low, high = self.energy[branch]
            row = {"layer": self.name, "type": self.kind, "branch": branch, "low_energy": f"{low:.6e}",
                   "high_energy": f"{high:.6e}", "low_fraction": f"{low / (low + high):.6f}" if low + high else ""}
            if branch != "sum":
                row["share_of_low"], row["share_of_high"] = f"{self.share(branch, 0):.6f}", f"{self.share(branch, 1):.6f}"
            rows.append(row)
        return rows


@dataclass
class FrequencyResult:
    layers: list[LayerSpectrum]
    skipped: list[str]  # three-branch layers whose outputs have no spatial layout
    images: int

    def group_shares(self) -> dict[str, dict[str, tuple[float, float]]]:
        """{kind: {branch: (low share, high share)}}: per-layer shares averaged over the layers of a kind,
        each layer counting once (the bars of the paper's Fig. 2)."""
        groups: dict[str, dict[str, tuple[float, float]]] = {}
        for kind in ("conv", "linear"):
            members = [layer for layer in self.layers if layer.kind == kind]
            if members:
                groups[kind] = {b: tuple(nanmean([m.share(b, band) for m in members]) for band in (0, 1))
                                for b in BRANCHES}
        return groups

    def rows(self) -> list[dict[str, object]]:
        return [row for layer in self.layers for row in layer.to_rows()]


class BranchRecorder:
    """Forward hooks on every ThreeBranch of a model that accumulate the band energies of its branch
    outputs and their sum. Use as a context manager; hooks are removed on exit."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [layer for layer in binarized_layers(model) if isinstance(layer.module, ThreeBranch)]
        if not self.layers:
            raise BinsrError("the model has no three-branch (BiMaCoSR) layers: frequency analysis needs BMB, LRMB "
                             "and SMB branches")
        self.spectra = {layer.name: LayerSpectrum(layer.name, layer.kind) for layer in self.layers}
        self.skipped: set[str] = set()
        self._outputs: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
        self._handles: list = []

    def __enter__(self) -> BranchRecorder:
        for layer in self.layers:
            for branch in BRANCHES:
                module = getattr(layer.module, branch)
                if module is not None:
                    self._handles.append(module.register_forward_hook(self._keep(layer.name, branch)))
            self._handles.append(layer.module.register_forward_hook(self._measure(layer.name, layer.kind)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _keep(self, name: str, branch: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            self._outputs[name][branch] = output
        return hook

    def _measure(self, name: str, kind: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            outputs = self._outputs.pop(name, {})
            outputs["sum"] = output
            maps = {branch: spatial_maps(value, kind) for branch, value in outputs.items()}
            if any(m is None for m in maps.values()):
                self.skipped.add(name)
                return
            spectrum = self.spectra[name]
            halves = {branch: torch.fft.rfft2(m.detach()) for branch, m in maps.items() if branch != "sum"}
            halves["sum"] = sum(halves.values())  # linearity: the FFT of the sum, without another FFT
            for branch, half in halves.items():
                low, high = spectrum_energy(half, maps["sum"].shape[-1])
                spectrum.energy[branch][0] += low
                spectrum.energy[branch][1] += high
            spectrum.calls += 1
        return hook

    def result(self, images: int) -> FrequencyResult:
        layers = [s for s in self.spectra.values() if s.calls and s.name not in self.skipped]
        return FrequencyResult(layers, sorted(self.skipped), images)


@torch.no_grad()
def frequency_analysis(model: nn.Module, run: Callable[[torch.Tensor], object], inputs: Iterable[torch.Tensor],
                       progress: bool = True, total: int | None = None) -> FrequencyResult:
    """Call ``run(x)`` (e.g. an upscaler's ``upscale``, which calls ``model``) for every input and return
    the band energies of the branches of ``model``'s three-branch layers over all calls."""
    count = 0
    with BranchRecorder(model) as recorder:
        for x in tqdm(inputs, desc="frequency analysis", unit="img", total=total, disable=not progress):
            run(x)
            count += 1
    return recorder.result(count)


def frequency_figure(result: FrequencyResult, title: str) -> Figure:
    """Fig. 2 style: stacked branch shares of low and high frequency energy for conv and linear layers
    (left), and BMB's share per layer (right)."""
    figure = new_figure(12, 4.2)
    left, right = figure.subplots(1, 2, width_ratios=[1, 2])
    groups = result.group_shares()
    labels, bottoms = [], []
    for kind, shares in groups.items():
        for band, band_name in ((0, "low"), (1, "high")):
            labels.append(f"{kind}\n{band_name} freq.")
            bottoms.append({b: shares[b][band] for b in BRANCHES})
    positions = range(len(labels))
    base = [0.0] * len(labels)
    for branch in BRANCHES:
        heights = [0.0 if math.isnan(s[branch]) else s[branch] for s in bottoms]
        bars = left.bar(positions, heights, bottom=base, color=BRANCH_COLORS[branch], label=BRANCH_LABELS[branch])
        left.bar_label(bars, [f"{h:.0%}" if h >= 0.06 else "" for h in heights], label_type="center", fontsize=8)
        base = [b + h for b, h in zip(base, heights)]
    left.set_xticks(list(positions), labels)
    left.set(ylim=(0, 1), ylabel="share of spectral energy", title="Branch shares by layer type")
    left.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    index = list(range(1, len(result.layers) + 1))
    for band, style in ((1, "-"), (0, "--")):
        right.plot(index, [layer.share("bmb", band) for layer in result.layers], style, marker="o", markersize=3,
                   color=BRANCH_COLORS["bmb"], label=f"BMB share, {'high' if band else 'low'} frequencies")
    shade_layers(right, [layer.kind == "linear" for layer in result.layers])
    right.set(ylim=(0, 1.02), xlim=(0.5, len(index) + 0.5), xlabel="three-branch layer (network order; grey: linear)",
              ylabel="BMB share", title=f"{title} — {result.images} image(s)")
    right.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    right.grid(axis="y", alpha=0.3)
    return figure


def write_frequency_analysis(result: FrequencyResult, out_dir: str | os.PathLike[str], title: str) -> list[Path]:
    """frequency.csv (per layer and branch), frequency_groups.csv (Fig. 2's bars) and frequency.png."""
    out = Path(out_dir)
    if not result.layers:
        raise BinsrError("no three-branch layer produced spatial activations to analyse")
    write_csv(out / "frequency.csv", result.rows())
    groups = [{"type": kind, "branch": branch, "share_of_low": f"{low:.6f}", "share_of_high": f"{high:.6f}",
               "layers": sum(layer.kind == kind for layer in result.layers)}
              for kind, shares in result.group_shares().items() for branch, (low, high) in shares.items()]
    write_csv(out / "frequency_groups.csv", groups)
    save_png(frequency_figure(result, title), out / "frequency.png")
    return [out / "frequency.csv", out / "frequency_groups.csv", out / "frequency.png"]
