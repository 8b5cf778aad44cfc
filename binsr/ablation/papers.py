"""The papers' ablation tables, registered (``binsr ablate --list``). Values: PSNR (dB) as the papers report
them (BI-DiffSR, Chen et al. 2024, ×2 ablations with shorter training); each row is compared with the row the
paper adds its component to. Budget: the CPU-sized ×2 BI-DiffSR recipe, shortened so a table fits a few CPU-hours
on 2 cores with 3 seeds (``budget`` below), which is far from the papers' training: a table tests directions.
"""

from __future__ import annotations

from binsr.ablation.tables import TABLES, AblationTable, Variant

_BUDGET = ("steps=400", "val_every=1000000", "ckpt_every=100")
_BASELINE = ("model.resample=conv", "model.fusion=concat", "binarize.options.residual=false",
             "binarize.options.timestep_groups=1")

for _table in (
    AblationTable(
        "bidiffsr-components", "BI-DiffSR's components added one at a time", "bidiffsr-x2-cpu",
        budget=_BUDGET, source="BI-DiffSR ablation (x2): 27.66 / 29.29 / 31.08 / 31.99 / 32.66 dB",
        variants=(
            Variant("baseline", _BASELINE, 27.66),
            Variant("+identity", (*_BASELINE[:2], "binarize.options.residual=true",
                                  "binarize.options.timestep_groups=1"), 29.29, "baseline"),
            Variant("+CP-Down/Up", ("model.resample=cp", "model.fusion=concat", "binarize.options.residual=true",
                                    "binarize.options.timestep_groups=1"), 31.08, "+identity"),
            Variant("+CS-Fusion", ("model.resample=cp", "model.fusion=cs", "binarize.options.residual=true",
                                   "binarize.options.timestep_groups=1"), 31.99, "+CP-Down/Up"),
            Variant("+TaR/TaA", ("model.resample=cp", "model.fusion=cs", "binarize.options.residual=true",
                                 "binarize.options.timestep_groups=5"), 32.66, "+CS-Fusion"),
        )),
    AblationTable(
        "bidiffsr-fusion", "how the up path joins its skip (no TaR/TaA)", "bidiffsr-x2-cpu",
        budget=_BUDGET, source="BI-DiffSR fusion ablation (x2): Add 18.89, Concat 31.08, Split 29.67, CS 31.99 dB",
        variants=tuple(
            Variant(name, (f"model.fusion={fusion}", "binarize.options.timestep_groups=1"), paper,
                    None if fusion == "concat" else "concat")
            for name, fusion, paper in (("concat", "concat", 31.08), ("add", "add", 18.89), ("split", "split", 29.67),
                                        ("CS-Fusion", "cs", 31.99)))),
    AblationTable(
        "bidiffsr-tar-taa", "timestep-aware redistribution (TaR) and activation (TaA), K = 5", "bidiffsr-x2-cpu",
        budget=_BUDGET, source="BI-DiffSR TaR/TaA ablation (x2): none 31.99, TaR 29.27, TaA 29.13, both 32.66 dB",
        variants=tuple(
            Variant(name, (f"binarize.options.tar={str(tar).lower()}", f"binarize.options.taa={str(taa).lower()}"),
                    paper, None if name == "none" else "none")
            for name, tar, taa, paper in (("none", False, False, 31.99), ("TaR", True, False, 29.27),
                                          ("TaA", False, True, 29.13), ("TaR+TaA", True, True, 32.66)))),
):
    TABLES.register(_table.name, _table)
