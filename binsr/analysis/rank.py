"""Rank analysis of BiMaCoSR's branches (its supplementary B.1).

Per binarized layer: the ranks of the LRMB matrix up·down, the SMB matrix S, their sum, and the 1-bit
matrix of BMB, each as r / r_max with r_max = max(C_in, C_out) as in the paper's Fig. 1. And the small
experiment behind its eq. 6: random n×n ±1 matrices are almost surely of (nearly) full rank.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from binsr.analysis.figures import BRANCH_COLORS, BRANCH_LABELS, nanmean, new_figure, save_png, shade_layers
from binsr.analysis.layers import binarized_layers, sign_matrix
from binsr.binary import ThreeBranch
from binsr.errors import BinsrError
from binsr.utils.fs import write_csv


def matrix_rank(matrix: torch.Tensor) -> int:
    """Numerical rank in float64 (tolerance σ_max · max(m, n) · ε, NumPy's default)."""
    return int(torch.linalg.matrix_rank(matrix.detach().double()))


@dataclass
class LayerRank:
    """Ranks of one layer's branch matrices; None where the layer has no such branch."""

    name: str
    kind: str
    c_in: int
    c_out: int
    bmb: int
    lrmb: int | None = None
    smb: int | None = None
    combined: int | None = None  # rank(LRMB + SMB)

    @property
    def r_max(self) -> int:
        return max(self.c_in, self.c_out)

    def to_row(self) -> dict[str, object]:
        """A CSV row: the ranks and each as a fraction of r_max."""
        row: dict[str, object] = {"layer": self.name, "type": self.kind, "c_in": self.c_in, "c_out": self.c_out,
                                  "r_max": self.r_max}
        for key in ("lrmb", "smb", "combined", "bmb"):
            value = getattr(self, key)
            row[f"rank_{key}"] = "" if value is None else value
            row[f"ratio_{key}"] = "" if value is None else f"{value / self.r_max:.6f}"
        return row


@torch.no_grad()
def layer_ranks(model: nn.Module, progress: bool = False) -> list[LayerRank]:
    """:class:`LayerRank` of every binarized layer of ``model`` (simulated or packed), in module order."""
    ranks = []
    layers = list(binarized_layers(model))
    for layer in tqdm(layers, desc="layer ranks", unit="layer", disable=not progress):
        c_in, c_out = layer.shape
        entry = LayerRank(layer.name, layer.kind, c_in, c_out, bmb=matrix_rank(sign_matrix(layer.binary)))
        if isinstance(layer.module, ThreeBranch):
            lrmb, smb = _low_rank_matrix(layer.module), _sparse_matrix(layer.module)
            entry.lrmb = None if lrmb is None else matrix_rank(lrmb)
            entry.smb = None if smb is None else matrix_rank(smb)
            present = [m for m in (lrmb, smb) if m is not None]
            entry.combined = matrix_rank(sum(present)) if present else None
        ranks.append(entry)
    return ranks


def _low_rank_matrix(layer: ThreeBranch) -> torch.Tensor | None:
    """up·down in float64 (C_out, C_in): rank ≤ r exactly, no float32 rounding to blur it."""
    if layer.lrmb is None:
        return None
    return layer.lrmb.up.weight.flatten(1).double() @ layer.lrmb.down.weight.flatten(1).double()


def _sparse_matrix(layer: ThreeBranch) -> torch.Tensor | None:
    return None if layer.smb is None else layer.smb.matrix().double()


# --- eq. 6: random ±1 matrices -------------------------------------------------------------------

@dataclass
class SignRankResult:
    """Measured rank of ``trials`` random n×n matrices with entries −1 (probability p) or +1."""

    n: int
    p: float
    trials: int
    mean_rank: float
    max_deficit: int
    singular_fraction: float

    @property
    def mean_deficit(self) -> float:
        """n − E[rank], the O(log n) term of eq. 6."""
        return self.n - self.mean_rank

    def to_row(self) -> dict[str, object]:
        return {"n": self.n, "p": self.p, "trials": self.trials, "mean_rank": f"{self.mean_rank:.6f}",
                "mean_deficit": f"{self.mean_deficit:.6f}", "max_deficit": self.max_deficit,
                "singular_fraction": f"{self.singular_fraction:.6f}"}


def random_sign_ranks(n: int, trials: int, p: float = 0.5, seed: int = 0) -> SignRankResult:
    """Draw ``trials`` random n×n ±1 matrices (P(−1) = p) and measure their ranks."""
    generator = torch.Generator().manual_seed(seed)
    ranks = []
    for start in range(0, trials, 64):  # batches bound the memory at large n
        count = min(64, trials - start)
        negative = torch.rand(count, n, n, generator=generator, dtype=torch.float64) < p
        ranks.append(torch.linalg.matrix_rank(1.0 - 2.0 * negative.double()))
    ranks = torch.cat(ranks)
    return SignRankResult(n, p, trials, float(ranks.double().mean()), int(n - ranks.min()),
                          float((ranks < n).double().mean()))


def exact_expected_rank(n: int, p: float = 0.5) -> float:
    """E[rank] of a random n×n ±1 matrix by enumerating all 2^(n²) of them (n ≤ 4): the reference
    that the sampled experiment is checked against."""
    if not 1 <= n <= 4:
        raise ValueError(f"exact enumeration is for n in 1..4 (2^(n^2) matrices), got n = {n}")
    patterns = torch.tensor(list(itertools.product((0, 1), repeat=n * n)), dtype=torch.float64)  # 1 = −1
    ranks = torch.linalg.matrix_rank((1.0 - 2.0 * patterns).view(-1, n, n)).double()
    negatives = patterns.sum(1)
    weights = p ** negatives * (1 - p) ** (n * n - negatives)
    return float((weights * ranks).sum())


# --- figures ------------------------------------------------------------------------------------

def rank_figure(ranks: list[LayerRank], title: str) -> Figure:
    """Fig. 1 style: r / r_max per binarized layer for LRMB, SMB, their sum and BMB, linear layers shaded
    (left); the mean per branch and layer type (right)."""
    figure = new_figure(max(9.0, min(18.0, 0.05 * len(ranks) + 8)), 4.2)
    axes, summary = figure.subplots(1, 2, width_ratios=[4, 1])
    index = list(range(1, len(ranks) + 1))
    series = [(key, name) for key, name in (("bmb", "bmb"), ("combined", "lrmb+smb"), ("smb", "smb"), ("lrmb", "lrmb"))
              if any(getattr(r, key) is not None for r in ranks)]
    kinds = [kind for kind in ("conv", "linear") if any(r.kind == kind for r in ranks)]
    for position, (key, name) in enumerate(series):
        values = [getattr(r, key) / r.r_max if getattr(r, key) is not None else float("nan") for r in ranks]
        axes.plot(index, values, marker="o", markersize=3, linewidth=1, color=BRANCH_COLORS[name],
                  label=BRANCH_LABELS[name])
        means = [nanmean([v for v, r in zip(values, ranks) if r.kind == kind]) for kind in kinds]
        bars = summary.bar([k + (position - (len(series) - 1) / 2) * 0.8 / len(series) for k in range(len(kinds))],
                           means, width=0.8 / len(series), color=BRANCH_COLORS[name])
        summary.bar_label(bars, [f"{m:.2f}" for m in means], fontsize=7, rotation=90, padding=2)
    shade_layers(axes, [r.kind == "linear" for r in ranks], "linear layers")
    ylabel = r"$r\,/\,r_{max}$,  $r_{max}=\max(C_{in}, C_{out})$"
    axes.set(xlim=(0.5, len(ranks) + 0.5), ylim=(0, 1.05), title=title, xlabel="binarized layer (network order)",
             ylabel=ylabel)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=5, fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    summary.set_xticks(range(len(kinds)), [f"{kind}\n({sum(r.kind == kind for r in ranks)} layers)" for kind in kinds])
    summary.set(ylim=(0, 1.15), title="Mean by layer type", ylabel=r"mean $r\,/\,r_{max}$")
    summary.grid(axis="y", alpha=0.3)
    return figure


def sign_rank_figure(results: list[SignRankResult]) -> Figure:
    """Eq. 6 experiment: the rank deficit n − E[rank] against n, with log₂ n for scale."""
    figure = new_figure(9, 3.8)
    left, right = figure.subplots(1, 2)
    for p in sorted({r.p for r in results}):
        rows = sorted((r for r in results if r.p == p), key=lambda r: r.n)
        sizes = [r.n for r in rows]
        left.plot(sizes, [r.mean_deficit for r in rows], marker="o", label=f"mean deficit, p = {p:g}")
        left.plot(sizes, [r.max_deficit for r in rows], marker="x", linestyle=":", label=f"max deficit, p = {p:g}")
        right.plot(sizes, [r.mean_rank / r.n for r in rows], marker="o", label=f"p = {p:g}")
    sizes = sorted({r.n for r in results})
    left.plot(sizes, [math.log2(n) for n in sizes], color="0.5", linestyle="--", label=r"$\log_2 n$")
    left.set(xscale="log", xlabel="matrix size n", ylabel=r"$n - \mathrm{rank}$",
             title=r"Rank deficit of random $\pm1$ matrices")
    right.set(xscale="log", xlabel="matrix size n", ylabel=r"E[rank] / n", ylim=(0, 1.05),
              title=f"Relative rank ({results[0].trials if results else 0} matrices per point)")
    for axes in (left, right):
        axes.set_xticks(sizes, [str(n) for n in sizes])
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    return figure



# --- files --------------------------------------------------------------------------------------

def write_rank_analysis(model: nn.Module, out_dir: str | os.PathLike[str], title: str,
                        sizes: list[int] | None = None, trials: int = 100, p: float = 0.5,
                        progress: bool = True) -> list[Path]:
    """rank.csv / rank.png for ``model`` and, unless ``sizes`` is empty, the eq. 6 experiment as
    sign_rank.csv / sign_rank.png. Returns the written paths."""
    out = Path(out_dir)
    ranks = layer_ranks(model, progress)
    if not ranks:
        raise BinsrError(f"{title}: no binarized layers to analyse (a full-precision model?)")
    write_csv(out / "rank.csv", [r.to_row() for r in ranks])
    save_png(rank_figure(ranks, title), out / "rank.png")
    written = [out / "rank.csv", out / "rank.png"]
    if sizes:
        results = [random_sign_ranks(n, trials, p, seed=n) for n in tqdm(sizes, desc="random ±1 ranks", unit="size",
                                                                         disable=not progress)]
        write_csv(out / "sign_rank.csv", [r.to_row() for r in results])
        save_png(sign_rank_figure(results), out / "sign_rank.png")
        written += [out / "sign_rank.csv", out / "sign_rank.png"]
    return written
