"""Running an ablation table: every (variant, seed) trained with ``binsr train``'s engine and scored, one results
file per table, resumable.

The results file (JSON, small, meant to be committed) holds one entry per finished run: variant, seed, steps,
hours and the scores per dataset. A run with an entry is never run again; a run without one resumes from its
checkpoints (``Trainer(resume="auto")``), so after a kill the table continues where it stopped, also from the
committed results in a fresh clone. Seeds are the outer loop: every variant gets seed 0 before any gets seed 1.

A run whose recipe and scoring equal a run that another registered table has in the same results folder (the
fusion table's CS-Fusion row is the components table's +CS-Fusion row) is not trained again: its result is
copied, marked ``shared``. A recipe that reads models (a distillation's teacher and initialisation) records
their fingerprints with each run (``inputs``): a run is shared only with the same files, and a table whose
finished runs read other files (a teacher trained again) is an error before anything is trained, since its
rows would not compare like with like.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from binsr.ablation.tables import SCORES, TABLES, AblationTable, Variant, folder_name
from binsr.data import SREvalDataset
from binsr.data.degraded_set import MANIFEST, degrade_folder
from binsr.data.paths import resolve_data_dir
from binsr.errors import BinsrError
from binsr.evaluation import evaluate
from binsr.metrics.niqe import niqe_fits
from binsr.pipelines import load
from binsr.training import Trainer, load_train_config
from binsr.training.imitation import teacher_fingerprint
from binsr.training.recipe import Recipe
from binsr.utils.fs import atomic_write

RESULTS_FORMAT = 1


def results_file(table: AblationTable, folder: str | Path) -> Path:
    return Path(folder) / f"{table.name}.json"


def read_results(table: AblationTable, path: str | Path) -> dict[str, Any]:
    """The table's results so far (none: an empty list of runs). A file of another table, budget or scoring is
    an error: its runs do not answer this table's question."""
    path = Path(path)
    fresh = {"format": RESULTS_FORMAT, "table": table.name, "recipe": table.recipe, "budget": list(table.budget),
             "datasets": list(table.datasets), "eval_steps": table.eval_steps, "runs": []}
    if not path.exists():
        return fresh
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BinsrError(f"{path}: cannot read these ablation results ({err})") from None
    for key in ("table", "recipe", "budget", "datasets", "eval_steps"):
        if data.get(key) != fresh[key]:
            raise BinsrError(f"{path}: results of {key} {data.get(key)!r}, not this table's {fresh[key]!r}; move the "
                             f"file away to start over")
    return data


def run_name(table: AblationTable, variant: Variant, seed: int) -> str:
    """The training run's folder name: the table, the variant (letters, digits, '.', '_', '-'), the seed and the
    first 8 hex digits of :func:`run_key`, so that a run of a changed recipe or budget never resumes another's
    checkpoints."""
    return folder_name(f"{table.name}-{variant.name}-s{seed}").strip("-") + f"-{run_key(table, variant, seed)[:8]}"


def run_key(table: AblationTable, variant: Variant, seed: int) -> str:
    """A digest of what decides a run's result: its resolved recipe (less its run name and folder), the
    fingerprints of the models it reads (:func:`input_fingerprints`) and the table's scoring."""
    config = load_train_config(table.recipe, [*table.budget, *variant.overrides, f"seed={seed}"])
    recipe = {key: value for key, value in dataclasses.asdict(config).items() if key not in ("name", "out_dir")}
    if "distill" in recipe:  # where the teacher's outputs are kept does not change them
        recipe["distill"] = {key: value for key, value in recipe["distill"].items()
                             if key not in ("cache_size", "cache_dir")}
    inputs = input_fingerprints(config)
    text = json.dumps([recipe, list(table.datasets), table.eval_steps, *([inputs] if inputs else [])],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def input_fingerprints(config: Recipe) -> dict[str, str | None]:
    """Role → fingerprint (name and digest of its files) of each model ``config`` reads; None for one that
    does not exist yet (training it is the user's next step, and ``binsr train`` says so)."""
    fingerprints: dict[str, str | None] = {}
    for role, ref in config.input_models().items():
        try:
            fingerprints[role] = _fingerprint(ref, *_stamp(ref))
        except (BinsrError, OSError):
            fingerprints[role] = None
    return fingerprints


def variant_inputs(table: AblationTable, variant: Variant) -> dict[str, str | None]:
    """:func:`input_fingerprints` of ``variant``'s recipe (seeds do not change what it reads)."""
    return input_fingerprints(load_train_config(table.recipe, [*table.budget, *variant.overrides]))


def _stamp(ref: str) -> tuple[int, int]:
    """(size, mtime in ns) of the file ``ref`` names, (0, 0) for a name without one (a peer, bicubic)."""
    try:
        info = Path(ref).stat()
    except OSError:
        return 0, 0
    return info.st_size, info.st_mtime_ns


@functools.lru_cache(maxsize=32)
def _fingerprint(ref: str, size: int, mtime_ns: int) -> str:
    """:func:`teacher_fingerprint`, read once per file version (a table's keys ask for it once per run)."""
    return teacher_fingerprint(ref)


def _recorded_inputs(run: dict[str, Any]) -> dict[str, str | None]:
    return run.get("inputs", {})


def shared_run(table: AblationTable, variant: Variant, seed: int, results_dir: str | Path) -> dict[str, Any] | None:
    """The result of the same run in another registered table's results file in ``results_dir``, renamed to
    ``variant`` and marked ``shared`` with where it came from; None where there is none."""
    key, inputs = None, None
    for name in TABLES.names():
        other = TABLES.get(name)
        path = results_file(other, results_dir)
        if other.name == table.name or other.recipe != table.recipe or not path.exists():
            continue
        try:
            runs = read_results(other, path)["runs"]
        except BinsrError:  # another budget or scoring: not the same runs
            continue
        for run in runs:
            if run["seed"] != seed or run["variant"] not in {v.name for v in other.variants}:
                continue
            key = key or run_key(table, variant, seed)
            if inputs is None:
                inputs = variant_inputs(table, variant)
            if _recorded_inputs(run) == inputs and run_key(other, other.variant(run["variant"]), seed) == key:
                return {**run, "variant": variant.name, "shared": run.get("shared", f"{other.name}/{run['variant']}")}
    return None


def train_and_score(table: AblationTable, variant: Variant, seed: int, out_dir: str | Path,
                    data_root: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train one (variant, seed) (resuming its checkpoints if any) and score its model file on the datasets.
    A SinSR distillation keeps its teacher's outputs in ``out_dir/teacher-cache`` (unless its recipe names a
    cache): a table's variants see the same batches for one seed, so only the first pays for the teacher's
    T network calls, and the others read the same outputs back bit for bit."""
    overrides = [*table.budget, *variant.overrides, f"seed={seed}", f"name={run_name(table, variant, seed)}",
                 f"out_dir={out_dir}"]
    config = load_train_config(table.recipe, overrides)
    if getattr(config, "distill", None) is not None and not config.distill.cache_dir:
        config.distill = dataclasses.replace(config.distill, cache_dir=str(Path(out_dir) / "teacher-cache"))
    inputs = input_fingerprints(config)  # the files it trains with
    result = Trainer(config, resume="auto", data_root=data_root, progress=progress).train()
    return {"variant": variant.name, "seed": seed, "steps": result.steps,
            "hours": round(training_seconds(result.model_file.parent, result.seconds) / 3600, 4),
            "scores": score(table, result.model_file, config.data.scale, data_root, Path(out_dir) / "lr"),
            **({"inputs": inputs} if inputs else {})}


def score(table: AblationTable, model_file: Path, scale: int, data_root: str | None = None,
          lr_root: str | Path = "runs/ablate/lr") -> dict[str, Any]:
    """PSNR and SSIM (Y) and NIQE of ``model_file``'s outputs on each of the table's datasets: the papers report
    a perceptual metric beside PSNR (LPIPS, whose AlexNet weights binsr cannot download; NIQE needs none).
    NIQE is None on a dataset with an image too small for it. A dataset ``NAME-real`` is NAME's HR images with
    realistic LR (:func:`realistic_lr`) instead of bicubic."""
    options = {"steps": table.eval_steps} if table.eval_steps else {}  # pipelines without a step count drop it
    upscaler = load(str(model_file), seed=0, **options)
    scores = {}
    for name in table.datasets:
        hr_name = name.removesuffix(REAL)
        hr_dir = resolve_data_dir(hr_name, data_root)
        lr_dir = realistic_lr(hr_dir, scale, Path(lr_root) / f"{hr_name}{REAL}-x{scale}-s0") if name != hr_name else None
        dataset = SREvalDataset(hr_dir, scale, lr_dir)
        with_niqe = all(niqe_fits(*dataset[i]["hr"].shape[-2:], crop_border=scale) for i in range(len(dataset)))
        mean = evaluate(upscaler, dataset, name, progress=False, with_niqe=with_niqe).mean()
        scores[name] = {metric: round(float(mean[metric]), 4) if metric in mean else None for metric in SCORES}
    return scores


REAL = "-real"  # a dataset name's suffix: realistic LR


def realistic_lr(hr_dir: Path, scale: int, folder: Path) -> Path:
    """``folder`` holding the LR images of ``hr_dir`` that ``binsr degrade --seed 0`` makes (the Real-ESRGAN
    degradation, the same files bit for bit on every machine), made once and kept."""
    if not (folder / MANIFEST).exists():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        degrade_folder(hr_dir, partial, scale=scale, seed=0)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return folder


def training_seconds(run_dir: Path, fallback: float) -> float:
    """The run's training time over all its resumes: the last ``seconds`` of its log.csv (``fallback`` without)."""
    try:
        rows = list(csv.DictReader((run_dir / "log.csv").open()))
    except OSError:
        return fallback
    seconds = [float(row["seconds"]) for row in rows if row.get("seconds")]
    return seconds[-1] if seconds else fallback


def fully_scored(run: dict[str, Any]) -> bool:
    """Whether ``run`` has every score of :data:`SCORES` on every dataset (None where one cannot be had)."""
    return all(metric in scores for scores in run["scores"].values() for metric in SCORES)


def write_results(path: Path, results: dict[str, Any]) -> None:
    """The results file, written atomically (a kill leaves the old one or the new one)."""
    with atomic_write(path, "w") as handle:
        handle.write(json.dumps(results, indent=1) + "\n")


def rescore_missing(table: AblationTable, results: dict[str, Any], path: Path, results_dir: str | Path,
                    out_dir: str | Path, data_root: str | None = None) -> None:
    """Results scored before a score was added (NIQE) get it from their run folder's model file, or from the
    table they share a run with; each written as soon as it exists. Runs whose folder is gone keep their
    scores (the report shows the scores all runs have)."""
    for index, run in enumerate(results["runs"]):
        if fully_scored(run):
            continue
        variant = table.variant(run["variant"])
        model_file = Path(out_dir) / run_name(table, variant, run["seed"]) / "model.safetensors"
        if "shared" in run:
            fresh = shared_run(table, variant, run["seed"], results_dir)
            if fresh is None or not fully_scored(fresh):
                continue
            results["runs"][index] = fresh
        elif model_file.exists():
            scale = load_train_config(table.recipe, list(table.budget)).data.scale
            results["runs"][index] = {**run, "scores": score(table, model_file, scale, data_root, Path(out_dir) / "lr")}
        else:
            continue
        write_results(path, results)


def run_table(table: AblationTable, results_dir: str | Path, out_dir: str | Path, seeds: int | None = None,
              data_root: str | None = None, progress: bool = True,
              report: Callable[[str], None] = print) -> dict[str, Any]:
    """Every (variant, seed) of ``table`` without a result yet, seeds 0 … ``seeds``−1 (default: the table's),
    each result written to the results file as soon as it exists (atomically). Returns the results."""
    path = results_file(table, results_dir)
    results = read_results(table, path)
    rescore_missing(table, results, path, results_dir, out_dir, data_root)
    done = {(run["variant"], run["seed"]) for run in results["runs"]}
    todo = [(seed, variant) for seed in range(table.seeds if seeds is None else seeds) for variant in table.variants
            if (variant.name, seed) not in done]
    if todo:
        check_same_inputs(table, results, path)
    for seed, variant in todo:
        run = shared_run(table, variant, seed, results_dir) or train_and_score(table, variant, seed, out_dir,
                                                                              data_root, progress)
        results["runs"].append(run)
        write_results(path, results)
        scores = ", ".join(f"{name} {s['psnr']:.2f} dB" for name, s in run["scores"].items())
        origin = f", the run of {run['shared']}" if "shared" in run else ""
        report(f"{table.name}: {variant.name}, seed {seed}: {scores} ({run['hours']:.2f} h{origin})")
    return results


def check_same_inputs(table: AblationTable, results: dict[str, Any], path: Path) -> None:
    """A BinsrError when a finished run of ``results`` read other models than its variant's recipe names now
    (or did not record them): new runs would be compared with runs of another teacher. Models not made yet
    pass (training says how to make them)."""
    other = []
    for run in results["runs"]:
        inputs = variant_inputs(table, table.variant(run["variant"]))
        if inputs and None not in inputs.values() and _recorded_inputs(run) != inputs:
            other.append(f"{run['variant']} seed {run['seed']} ({', '.join(inputs)})")
    if other:
        raise BinsrError(f"{path}: {'; '.join(other)} read other models than the files there now, or did not record"
                         f" them (one was trained again?); move the results file away to start the table over "
                         f"with the new models, or put the old ones back")
