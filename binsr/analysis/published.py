"""Published numbers to print beside ours: BI-DiffSR's Table 2 (PSNR / SSIM / LPIPS; Params in M and OPs
in G for one network call at a 3×256×256 output). Source: Chen et al., "Binarized Diffusion Model for
Image Super-Resolution", NeurIPS 2024, Table 2."""

from __future__ import annotations

DATASETS = ("Set5", "B100", "Urban100", "Manga109")

# method → (Params M, OPs G); bicubic has none
BIDIFFSR_COMPLEXITY: dict[str, tuple[float, float] | None] = {
    "Bicubic": None, "SR3 (FP)": (55.41, 176.41), "BNN": (4.78, 37.93), "DoReFa": (4.78, 37.93),
    "XNOR": (4.78, 37.93), "IRNet": (4.78, 37.93), "ReActNet": (4.85, 37.93), "BBCU": (4.82, 37.75),
    "BI-DiffSR": (4.58, 36.67),
}
_BITS = {"Bicubic": None, "SR3 (FP)": 32}

# scale → method → one "PSNR/SSIM/LPIPS" per dataset of DATASETS
_TABLE_2 = {
    2: {
        "Bicubic": "33.67/0.9303/0.1274 29.55/0.8431/0.2508 26.87/0.8403/0.2064 30.82/0.9349/0.1025",
        "SR3 (FP)": "36.69/0.9513/0.0310 30.41/0.8683/0.0700 30.29/0.9060/0.0430 35.11/0.9682/0.0161",
        "BNN": "13.97/0.5210/0.4529 13.73/0.4553/0.5784 12.75/0.4236/0.5575 9.29/0.3035/0.7489",
        "DoReFa": "16.43/0.6553/0.2662 16.11/0.5912/0.3972 15.09/0.5495/0.4055 12.35/0.4609/0.5047",
        "XNOR": "32.34/0.8661/0.0782 27.94/0.7548/0.1665 27.47/0.8225/0.1153 31.99/0.9428/0.0326",
        "IRNet": "32.55/0.9340/0.0446 27.76/0.8199/0.1115 26.34/0.8452/0.0913 23.89/0.7621/0.1820",
        "ReActNet": "34.30/0.9271/0.0351 28.36/0.8158/0.0943 27.43/0.8563/0.0731 32.16/0.9441/0.0379",
        "BBCU": "34.31/0.9281/0.0393 28.39/0.8202/0.0905 28.05/0.8669/0.0620 32.88/0.9508/0.0272",
        "BI-DiffSR": "35.68/0.9414/0.0277 29.73/0.8478/0.0682 28.97/0.8815/0.0522 33.99/0.9601/0.0172",
    },
    4: {
        "Bicubic": "28.43/0.8111/0.3398 25.95/0.6678/0.5244 23.14/0.6579/0.4729 24.90/0.7876/0.3210",
        "SR3 (FP)": "31.03/0.8798/0.1127 26.11/0.6933/0.2247 25.52/0.7702/0.1438 28.77/0.8854/0.0646",
        "BNN": "12.21/0.3103/0.8310 12.30/0.2128/0.9519 11.30/0.2191/0.9592 8.96/0.1833/1.0117",
        "DoReFa": "10.40/0.2460/0.9855 9.78/0.1709/1.0793 8.79/0.1614/1.1186 7.52/0.1464/1.1169",
        "XNOR": "28.06/0.8274/0.1381 25.25/0.6552/0.3101 23.13/0.6647/0.2564 23.84/0.7839/0.1559",
        "IRNet": "15.52/0.3514/0.7548 16.38/0.3121/0.7072 15.23/0.3043/0.7068 11.82/0.2442/0.8354",
        "ReActNet": "29.23/0.8362/0.1472 23.56/0.5670/0.3339 22.32/0.6440/0.2276 25.32/0.7854/0.1721",
        "BBCU": "25.44/0.7795/0.1650 21.46/0.5472/0.3206 20.52/0.6293/0.2290 23.02/0.7966/0.1496",
        "BI-DiffSR": "29.63/0.8374/0.1109 25.84/0.6779/0.2754 24.11/0.7177/0.1823 26.95/0.8548/0.0889",
    },
}


def bidiffsr_table(scale: int) -> list[dict[str, object]]:
    """BI-DiffSR Table 2 at ``scale`` (2 or 4) as eval-like records: one per (method, dataset), with
    {"model", "dataset", "scale", "mean": {"psnr", "ssim", "lpips"}, "model_info": {...}}."""
    if scale not in _TABLE_2:
        return []
    records = []
    for method, cells in _TABLE_2[scale].items():
        complexity = BIDIFFSR_COMPLEXITY[method]
        info = {"method": method, "bits": _BITS.get(method, 1),
                "params": complexity[0] * 1e6 if complexity else (0.0 if method == "Bicubic" else None),
                "ops": complexity[1] * 1e9 if complexity else None}
        for dataset, cell in zip(DATASETS, cells.split()):
            psnr, ssim, lpips = (float(v) for v in cell.split("/"))
            records.append({"model": method, "dataset": dataset, "scale": scale, "model_info": info,
                            "mean": {"psnr": psnr, "ssim": ssim, "lpips": lpips}})
    return records
