"""Rewrite the shipped models (binsr/weights) in the current model-file format, with their cards.

The tensors stay byte for byte the same; the header and the card's architecture become the current
description (``binsr.pipelines.ModelSpec``). The card's measured metrics and training record are kept:
the weights did not change. Run from the repository root: ``python scripts/upgrade_shipped_models.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from binsr.evaluation import describe_model
from binsr.pipelines import shipped_models
from binsr.pipelines.model_file import upgrade_model_file
from binsr.utils.fs import write_json


def main() -> None:
    for name, model in shipped_models().items():
        spec = upgrade_model_file(model.path, model.path)
        card = json.loads(model.path.with_suffix(".json").read_text())
        info = describe_model(str(model.path))
        card["architecture"] = {**card["architecture"], "network": spec.network.to_dict(),
                                "process": spec.process.to_dict(),
                                "autoencoder": None if spec.autoencoder is None else spec.autoencoder.to_dict(),
                                "params": info["params"], "ops": info["ops"]}
        card["file_bytes"] = Path(model.path).stat().st_size
        write_json(model.path.with_suffix(".json"), card)
        print(f"{name}: format 2, {card['file_bytes']} bytes, {info['params']:.0f} params, {info['ops']:.4g} OPs")


if __name__ == "__main__":
    main()
