"""The pretrained models shipped inside the package (``binsr/weights/``): bit-packed model files, each
with a model card ``NAME.json`` beside it (architecture, training, measured metrics)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binsr.errors import BinsrError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL = "bimacosr-x4"  # one network call: the fast default of ``binsr upscale``


@dataclass
class ShippedModel:
    """A packaged model: its file and its card (a dict read from ``NAME.json``)."""

    name: str
    path: Path
    card: dict[str, Any]

    @property
    def file_bytes(self) -> int:
        return self.path.stat().st_size


def shipped_models(folder: Path | None = None) -> dict[str, ShippedModel]:
    """Every ``NAME.safetensors`` with a ``NAME.json`` card in ``folder`` (default: the package's), by name."""
    folder = WEIGHTS_DIR if folder is None else folder
    models = {}
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        card_path = path.with_suffix(".json")
        if not card_path.is_file():
            continue
        try:
            card = json.loads(card_path.read_text())
        except json.JSONDecodeError as err:
            raise BinsrError(f"{card_path}: broken model card ({err})") from None
        models[path.stem] = ShippedModel(path.stem, path, card)
    return models


def shipped_path(name: str) -> Path | None:
    """The file of shipped model ``name``, or None if no such model is shipped."""
    model = shipped_models().get(name)
    return model.path if model else None
