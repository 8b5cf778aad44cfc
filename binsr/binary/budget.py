"""Per-layer rank r and sparse count k for BiMaCoSR under one global budget (beyond the paper).

BiMaCoSR uses r = 8 and k = 2·max(C_in, C_out) in every layer and names that uniformity as a
limitation. Here each layer's (window-averaged) weight matrix W̄ says what an extra unit buys:

* rank: the next singular value's share of the layer's energy, σ²ᵣ₊₁ / ‖W̄‖², at a cost of
  C_in + C_out parameters;
* sparse entries: an entry's share |w̄|² / ‖W̄‖², at a cost of one value.

Gains within a layer only fall (singular values and sorted magnitudes decrease), so taking the best
gain per parameter first is the optimal greedy for this separable budget.
"""

from __future__ import annotations

import heapq

import torch


def allocate_ranks(matrices: dict[str, torch.Tensor], budget: int) -> dict[str, int]:
    """Ranks per layer whose parameter cost Σ r·(C_in + C_out) stays within ``budget``."""
    ranks = {name: 0 for name in matrices}
    spectra, costs, heap = {}, {}, []
    for name, matrix in matrices.items():
        sigma = torch.linalg.svdvals(matrix.detach().double())
        energy = sigma.pow(2)
        spectra[name] = (energy / energy.sum().clamp(min=1e-300)).tolist()
        costs[name] = sum(matrix.shape)
        if spectra[name]:
            heapq.heappush(heap, (-spectra[name][0] / costs[name], name))
    remaining = budget
    while heap:
        _, name = heapq.heappop(heap)
        if costs[name] > remaining:
            continue  # this layer's next rank no longer fits; cheaper layers may
        remaining -= costs[name]
        ranks[name] += 1
        r = ranks[name]
        if r < len(spectra[name]):
            heapq.heappush(heap, (-spectra[name][r] / costs[name], name))
    return ranks


def allocate_sparse(matrices: dict[str, torch.Tensor], budget: int) -> dict[str, int]:
    """Sparse entries per layer: the ``budget`` entries with the largest share |w̄|²/‖W̄‖² overall."""
    names = list(matrices)
    shares, owners = [], []
    for i, name in enumerate(names):
        squared = matrices[name].detach().double().pow(2).flatten()
        shares.append(squared / squared.sum().clamp(min=1e-300))
        owners.append(torch.full_like(squared, i, dtype=torch.long))
    if not shares:
        return {}
    shares_all, owners_all = torch.cat(shares), torch.cat(owners)
    chosen = owners_all[torch.topk(shares_all, min(budget, shares_all.numel())).indices]
    counts = torch.bincount(chosen, minlength=len(names))
    return {name: int(counts[i]) for i, name in enumerate(names)}
