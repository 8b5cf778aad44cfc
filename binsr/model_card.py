"""Model cards for shipped models: what a model is, how it was trained, and what it measured.

A card is a small JSON dict written beside a packed file (``binsr export ... --card``): architecture
(the model file's own network, process and autoencoder descriptions, Params, OPs), training (recipe,
data, steps, wall-clock hours from the run's log, the hardware; for a distilled student also the teacher and
the initialisation it was made from, with their own steps and hours) and the mean metrics of ``binsr eval --json``
results of that model.
"""

from __future__ import annotations

import csv
import os
import platform
from pathlib import Path
from typing import Any

import torch

from binsr import __version__
from binsr.errors import BinsrError
from binsr.evaluation import describe_model
from binsr.pipelines import available, read_model_spec


def training_hours(log_path: str | os.PathLike[str]) -> float | None:
    """Wall-clock hours of a run from its ``log.csv``: the ``seconds`` column restarts at 0 in every
    resumed process, so the total is the sum of each segment's last value."""
    path = Path(log_path)
    if not path.is_file():
        return None
    total, last = 0.0, 0.0
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if not row.get("seconds"):
                continue
            seconds = float(row["seconds"])
            if seconds < last:  # a new process (resume) started counting again
                total += last
            last = seconds
    return (total + last) / 3600


def _card_hours(run_dir: str | os.PathLike[str]) -> float | None:
    """A run's training hours (from its ``log.csv``) to 0.01 h, as a card states them."""
    hours = training_hours(Path(run_dir) / "log.csv")
    return None if hours is None else round(hours, 2)


def earlier_stages(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """What a distilled student was made from (``teacher``, ``init``): for a model file still where its recipe
    names it, its recipe, training data, steps and hours (from ``log.csv`` beside it); for an upscaler named
    by the recipe (a peer, a shipped model), that name."""
    stages = []
    for role in ("teacher", "init"):
        path = recipe.get(role)
        if not path or not Path(path).is_file():
            if path in available():
                stages.append({"role": role, "model": path})
            continue
        spec = read_model_spec(path)
        stage = spec.recipe or {}
        stages.append({"role": role, "recipe": stage.get("name"), "task": stage.get("task"),
                       "degradation": stage.get("data", {}).get("degradation"), "steps": spec.trained_steps,
                       "hours": _card_hours(Path(path).parent)})
    return stages


def this_machine() -> str:
    """'<CPU model>, N logical CPUs' (+ the CUDA device when there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical CPUs"
    if torch.cuda.is_available():
        text += f"; {torch.cuda.get_device_name(0)}"
    return text


def model_card(model_path: str | os.PathLike[str], name: str, results: list[dict[str, Any]],
               run_dir: str | os.PathLike[str] | None = None, hardware: str | None = None,
               steps: int | None = None) -> dict[str, Any]:
    """The card of the trained model file ``model_path`` shipped as ``name``. ``results`` are its
    ``binsr eval --json`` records (their scale must be the model's); ``run_dir`` holds its ``log.csv``."""
    spec = read_model_spec(model_path)
    info = describe_model(str(model_path), steps=steps)
    recipe = spec.recipe or {}
    data = recipe.get("data", {})
    metrics = {}
    for result in results:
        if result["model"] != (spec.name or Path(model_path).stem):
            raise BinsrError(f"{result.get('source_file', 'a result')} scores model {result['model']!r}, not "
                             f"{spec.name!r}")
        if int(result["scale"]) != spec.scale:
            raise BinsrError(f"a x{result['scale']} result ({result.get('dataset')}) does not belong to this "
                             f"x{spec.scale} model")
        sampled = (result.get("model_info") or {}).get("sampling")
        if sampled and sampled != info["sampling"]:
            raise BinsrError(f"the {result['dataset']} result was sampled with {sampled}, not {info['sampling']} "
                             f"(pass the same --steps)")
        metrics[result["dataset"]] = result["mean"]
    hours = _card_hours(run_dir) if run_dir else None
    return {
        "name": name,
        "scale": spec.scale,
        "kind": spec.kind,
        "method": info["method"],
        "bits": info["bits"],
        "sampling": info["sampling"],
        "architecture": {"network": spec.network.to_dict(), "process": spec.process.to_dict(),
                         "autoencoder": None if spec.autoencoder is None else spec.autoencoder.to_dict(),
                         "params": info["params"], "ops": info["ops"],
                         "ops_output_size": info["ops_output_size"]},
        "training": {"recipe": recipe.get("name"), "task": recipe.get("task"),
                     "data": {k: data.get(k) for k in ("train", "val", "degradation", "patch_size", "batch_size")},
                     "steps": spec.trained_steps, "hours": hours,
                     "hardware": hardware or this_machine(), "made_from": earlier_stages(recipe)},
        "metrics": metrics,
        "source": Path(model_path).name,
        "binsr_version": __version__,
    }
