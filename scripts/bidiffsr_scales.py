"""The scale (std) of BI-DiffSR's feature stream at initialisation, per resampler and up-path level, for the
components table's configurations (README, Ablations: why +CP-Down/Up and +CS-Fusion train slower at 400 steps).

Every binary conv of BI-DiffSR adds its input back (the identity residual). CP-Down adds its two halves, and
CS-Fusion adds its two 1x1 convs, each with its identity, so sums of channels pass on and the stream grows;
a binary conv's own output stays near std 0.5 (alpha times a sum of +-1). Usage: python scripts/bidiffsr_scales.py
"""
import torch

import binsr.ablation.papers  # noqa: F401  (registers the tables)
from binsr.ablation import TABLES
from binsr.training import load_train_config
from binsr.training.sr3 import SR3Task

table = TABLES.get("bidiffsr-components")
print("std of the stream after each resampler and up level, at init (4 random 6x64x64 inputs, 3 seeds)")
for variant in table.variants:
    scales: dict[str, list[float]] = {}
    for seed in range(3):
        torch.manual_seed(seed)
        model = SR3Task(load_train_config(table.recipe, [*table.budget, *variant.overrides])).model.eval()
        hooks = [module.register_forward_hook(lambda _m, _i, out, name=name, scales=scales: scales.setdefault(name, []).append(
            float(out.std()))) for name, module in model.named_modules()
            if name.endswith("resample") or name.startswith("mid.") and name.count(".") == 1]
        with torch.no_grad():
            model(torch.randn(4, 6, 64, 64), torch.randint(0, 2000, (4,)))
        for hook in hooks:
            hook.remove()
    cells = [f"{name.replace('_levels', '').replace('.resample', ' resample')} {sum(v) / len(v):.1f}"
             for name, v in scales.items()]
    print(f"{variant.name:12s} " + ", ".join(cells))
