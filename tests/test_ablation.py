"""binsr ablate: a toy two-variant table resumes after SIGKILL without rerunning a finished run, and the report's
verdicts follow their written rule on hand-made results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from binsr.ablation import AblationTable, Variant, load_table, markdown, summarize
from binsr.cli import main
from binsr.config import ConfigError
from binsr.errors import BinsrError


def toy_table(folder: Path, train_folder: Path) -> Path:
    path = folder / "toy.yaml"
    path.write_text(
        "name: toy\nsummary: concat against CS-Fusion, 3 steps\nrecipe: bidiffsr-small-x4\n"
        f"budget: [steps=3, data.train={train_folder}, data.val=null, data.patch_size=32, data.batch_size=2, "
        "optim.warmup_steps=1, ckpt_every=1, log_every=1]\n"
        f"datasets: [{train_folder}]\neval_steps: 2\nseeds: 2\nsource: a test\n"
        "variants:\n  - {name: concat, overrides: [model.fusion=concat], paper: 1.0}\n"
        "  - {name: cs, overrides: [model.fusion=cs], paper: 2.0, versus: concat}\n")
    return path


def test_a_killed_table_resumes_without_rerunning_finished_runs(tmp_path: Path, train_folder: Path) -> None:
    table = toy_table(tmp_path, train_folder)
    command = [sys.executable, "-m", "binsr", "ablate", str(table), "--results", str(tmp_path / "results"),
               "--out-dir", str(tmp_path / "runs"), "--quiet"]
    results = tmp_path / "results" / "toy.json"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (results.exists() and json.loads(results.read_text())["runs"]):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    first = json.loads(results.read_text())["runs"]
    assert 1 <= len(first) < 4, "the table finished before the kill"
    (finished,) = (tmp_path / "runs").glob(f"toy-{first[0]['variant']}-s0-*/model.safetensors")
    stamp = finished.stat().st_mtime_ns
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads(results.read_text())["runs"]
    assert runs[:len(first)] == first  # kept as they were
    assert sorted((run["variant"], run["seed"]) for run in runs) == [("concat", 0), ("concat", 1), ("cs", 0), ("cs", 1)]
    assert finished.stat().st_mtime_ns == stamp  # its training was not run again
    assert all(run["steps"] == 3 for run in runs)
    assert "verdict" in done.stdout and (tmp_path / "results" / "toy.png").stat().st_size > 1000
    report = subprocess.run([*command, "--report"], capture_output=True, text=True)
    assert report.returncode == 0 and done.stdout.endswith(report.stdout)  # from the results file alone, the same


def _results(values: dict[str, list[float]]) -> dict:
    return {"runs": [{"variant": name, "seed": seed, "scores": {"Set5": {"psnr": v, "ssim": v / 100}}}
                     for name, vs in values.items() for seed, v in enumerate(vs)]}


def test_verdicts_follow_the_paper_direction_and_the_spread() -> None:
    table = AblationTable("t", "s", "bidiffsr-small-x4", datasets=("Set5",), variants=(
        Variant("base", paper=27.66), Variant("up", paper=29.29, versus="base"),
        Variant("down", paper=31.0, versus="base"), Variant("noise", paper=30.0, versus="base")))
    rows = {row.variant: row for row in summarize(table, _results(
        {"base": [20.0, 20.2, 20.1], "up": [21.0, 21.1, 20.9], "down": [19.0, 19.1, 18.9], "noise": [19.0, 21.3, 20.1]}))}
    assert rows["base"].verdict == "reference"
    assert rows["up"].verdict == "reproduced" and rows["up"].difference == pytest.approx(0.9)
    assert rows["up"].error == pytest.approx((0.1**2 / 3 + 0.1**2 / 3) ** 0.5)
    assert rows["down"].verdict == "contradicted"
    assert rows["noise"].verdict == "not resolved"  # +0.03 dB with a spread of a dB
    stated = AblationTable("t", "s", "r", datasets=("Set5",), variants=(
        Variant("a"), Variant("b", versus="a", expect="lower"), Variant("c", versus="a")))
    rows = {row.variant: row for row in summarize(stated, _results(
        {"a": [20.0, 20.2, 20.1], "b": [21.0, 21.1, 20.9], "c": [21.0, 21.1, 20.9]}))}
    assert rows["b"].verdict == "contradicted"  # the paper said lower, without numbers
    assert rows["c"].verdict == "resolved; the paper gives no direction"
    text = markdown(table, _results({"base": [20.0, 20.2, 20.1], "up": [21.0, 21.1, 20.9]}))
    assert "| up | 3 | 21.00 ± 0.10 |" in text and "+0.90 (±0.16) vs base | reproduced |" in text
    two = AblationTable("t", "s", "r", datasets=("A", "B"), variants=(
        Variant("a"), Variant("b", versus="a", expect="higher")))
    results = {"runs": [{"variant": name, "seed": seed, "scores": {"A": {"psnr": a, "ssim": 0.5}, "B": {"psnr": b,
                                                                                                 "ssim": 0.5}}}
                        for name, values in {"a": [(20.0, 22.0), (21.0, 22.1)], "b": [(21.0, 22.5), (20.0, 22.6)]}.items()
                        for seed, (a, b) in enumerate(values)]}
    row = {row.variant: row for row in summarize(two, results)}["b"]
    assert row.comparisons["A"].verdict == "not resolved" and row.comparisons["B"].verdict == "reproduced"
    assert row.comparisons["B"].difference == pytest.approx(0.5) and row.verdict == "not resolved"  # the first
    assert "A +0.00 (±1.41), B +0.50 (±0.14) vs a | A not resolved; B reproduced |" in markdown(two, results)


def test_bad_tables_are_one_line_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="distinct names"):  # "+x" and "-x" would share a run folder
        AblationTable("t", "s", "r", variants=(Variant("+x"), Variant("-x")))
    with pytest.raises(ConfigError, match="compared with unknown row 'nope'"):
        AblationTable("t", "s", "r", variants=(Variant("a"), Variant("b", versus="nope")))
    (tmp_path / "bad.yaml").write_text("name: t\nsummary: s\nrecipe: r\nvariants: [{name: a}, {name: a}]\n")
    with pytest.raises(ConfigError, match="distinct names"):
        load_table(str(tmp_path / "bad.yaml"))
    assert main(["ablate", "nosuchtable"]) == 1
    assert "nosuchtable" in capsys.readouterr().err
    from binsr.ablation import read_results

    table = AblationTable("t", "s", "r", variants=(Variant("a"), Variant("b")))
    (tmp_path / "t.json").write_text(json.dumps({**read_results(table, tmp_path / "none.json"), "eval_steps": 50}))
    with pytest.raises(BinsrError, match="results of eval_steps 50, not this table's 20"):
        read_results(table, tmp_path / "t.json")  # scored another way: not this table's answer


def test_a_run_another_table_has_is_shared_not_trained_again(tmp_path: Path, train_folder: Path,
                                                             monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Two registered tables with one identical row (same recipe, overrides and scoring): the second table
    copies the first's result, marked with its origin, and trains its other row (another learning rate); --list
    counts each table's finished runs, and with a table names its rows and their finished seeds."""
    from binsr.ablation import TABLES, run_table

    first = load_table(str(toy_table(tmp_path, train_folder)))
    first = AblationTable(**{**first.__dict__, "name": "toy-a", "seeds": 1})
    second = AblationTable(**{**first.__dict__, "name": "toy-b", "variants": (
        Variant("same-as-concat", first.variants[0].overrides), Variant("cs", ("model.fusion=cs", "optim.lr=1e-3")))})
    for table in (first, second):
        monkeypatch.setitem(TABLES._entries, table.name, table)
    results, runs = tmp_path / "results", tmp_path / "runs"
    done, _ = run_table(first, results, runs, progress=False, report=lambda line: None)["runs"]
    said: list[str] = []
    shared, own = run_table(second, results, runs, progress=False, report=said.append)["runs"]
    assert shared == {**done, "variant": "same-as-concat", "shared": "toy-a/concat"}
    assert own["variant"] == "cs" and "shared" not in own and len(list(runs.glob("toy-b-cs-s0-*/model.safetensors"))) == 1
    assert not list(runs.glob("toy-b-same-as-concat-*"))  # not trained
    assert "the run of toy-a/concat" in said[0]
    assert main(["ablate", "--list", "--results", str(results)]) == 0
    listed = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "2 variants x 1 seeds, 2 done in" in listed["toy-a"] and "2 done in" in listed["toy-b"]
    assert "0 done in" in listed["bidiffsr-fusion"]  # no results file in this folder
    assert main(["ablate", "toy-b", "--list", "--results", str(results)]) == 0  # one table: its rows and seeds
    assert capsys.readouterr().out.splitlines()[1:] == [
        f"  same-as-concat: {' '.join(first.variants[0].overrides)}; seeds done: 0",
        "  cs: model.fusion=cs optim.lr=1e-3; seeds done: 0"]
    # results scored before NIQE was: re-scored from the run folder (toy-a) or from the run they share (toy-b)
    for name in ("toy-a", "toy-b"):
        stored = json.loads((results / f"{name}.json").read_text())
        for run in stored["runs"]:
            run["scores"] = {data: {k: v for k, v in scores.items() if k != "niqe"} for data, scores in run["scores"].items()}
        (results / f"{name}.json").write_text(json.dumps(stored))
    stamps = sorted(path.stat().st_mtime_ns for path in runs.glob("*/model.safetensors"))
    assert run_table(first, results, runs, progress=False, report=said.append)["runs"][0] == done
    assert run_table(second, results, runs, progress=False, report=said.append)["runs"][:2] == [shared, own]
    assert sorted(path.stat().st_mtime_ns for path in runs.glob("*/model.safetensors")) == stamps  # no training


def test_the_readme_tables_are_the_reports_of_the_committed_results() -> None:
    """Every committed results file's report (``binsr ablate TABLE --report``) is in the README verbatim, and
    so is its Markdown file; the README has no ablation table without its results file."""
    from binsr.ablation import TABLES, read_results

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    committed = sorted((root / "docs" / "ablations").glob("*.json"))
    assert committed, "no committed ablation results"
    for path in committed:
        table = TABLES.get(path.stem)
        report = markdown(table, read_results(table, path))
        assert report in readme, f"README: the {table.name} table is not its --report"
        assert path.with_suffix(".md").read_text() == report + "\n"
    shown = {line.split("`")[1] for line in readme.splitlines() if line.startswith("Table `")}
    assert shown == {path.stem for path in committed}


def test_a_changed_recipe_or_budget_trains_in_a_new_run_folder() -> None:
    """The run folder carries a digest of the resolved recipe: another budget never resumes old checkpoints."""
    from binsr.ablation.runner import run_name

    def table(*budget: str) -> AblationTable:
        return AblationTable("t", "s", "bidiffsr-small-x4", budget=budget,
                             variants=(Variant("a"), Variant("b", ("model.fusion=cs",))))

    short, again, longer = table("steps=3"), table("steps=3"), table("steps=4")
    assert run_name(short, short.variants[0], 0) == run_name(again, again.variants[0], 0)
    assert run_name(short, short.variants[0], 0).startswith("t-a-s0-")
    assert run_name(short, short.variants[0], 0) != run_name(longer, longer.variants[0], 0)
    assert run_name(short, short.variants[0], 0) != run_name(short, short.variants[0], 1)
    assert run_name(short, short.variants[0], 0) != run_name(short, short.variants[1], 0)


def test_real_datasets_are_scored_on_the_lr_binsr_degrade_makes_once(tmp_path: Path, train_folder: Path) -> None:
    """``NAME-real``: the LR images of ``binsr degrade NAME --seed 0`` (bit for bit), made once and kept."""
    from binsr.ablation.runner import realistic_lr
    from binsr.data.degraded_set import degrade_folder

    folder = realistic_lr(train_folder, 4, tmp_path / "lr" / "toy-real-x4-s0")
    made = {path.name: path.read_bytes() for path in folder.glob("*.png")}
    stamps = {path.name: path.stat().st_mtime_ns for path in folder.glob("*.png")}
    degrade_folder(train_folder, tmp_path / "by-hand", scale=4, seed=0)
    assert made and made == {path.name: path.read_bytes() for path in (tmp_path / "by-hand").glob("*.png")}
    assert realistic_lr(train_folder, 4, folder) == folder
    assert {path.name: path.stat().st_mtime_ns for path in folder.glob("*.png")} == stamps  # not made again
    assert not list((tmp_path / "lr").glob("*.partial"))


def test_a_distilled_run_is_shared_and_extended_only_with_the_same_teacher(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A recipe that reads a teacher and an initialisation: a finished run records their fingerprints; another
    table shares it while the files are the same, not once the teacher is trained again (new bytes), and the
    table itself refuses to add runs beside it (nor beside a run that recorded nothing) before training any."""
    from binsr.ablation import TABLES, read_results, run_table
    from binsr.ablation.runner import results_file, run_name, shared_run, variant_inputs, write_results

    teacher, init = tmp_path / "teacher.safetensors", tmp_path / "init.safetensors"
    teacher.write_bytes(b"teacher, first training")
    init.write_bytes(b"init")
    budget = (f"teacher={teacher}", f"init={init}", "steps=2")
    rows = (Variant("r8", ("binarize.options.rank=8",)), Variant("r4", ("binarize.options.rank=4",)))
    first = AblationTable("toy-t1", "s", "bimacosr-real-x4-cpu", budget=budget, seeds=1, variants=rows)
    second = AblationTable("toy-t2", "s", "bimacosr-real-x4-cpu", budget=budget, seeds=1,
                           variants=(Variant("rank 8", rows[0].overrides), Variant("rank 16", ("binarize.options.rank=16",))))
    for table in (first, second):
        monkeypatch.setitem(TABLES._entries, table.name, table)
    results, runs = tmp_path / "results", tmp_path / "runs"
    results.mkdir()
    inputs = variant_inputs(first, rows[0])
    assert set(inputs) == {"teacher", "init"} and inputs["teacher"].startswith(f"{teacher}:")
    done = {"variant": "r8", "seed": 0, "steps": 2, "hours": 0.1, "inputs": inputs,
            "scores": {name: {"psnr": 20.0, "ssim": 0.5, "niqe": 7.0} for name in first.datasets}}
    path = results_file(first, results)
    write_results(path, {**read_results(first, path), "runs": [done]})
    assert shared_run(second, second.variants[0], 0, results) == {**done, "variant": "rank 8", "shared": "toy-t1/r8"}
    folder = run_name(second, second.variants[0], 0)
    cached = AblationTable(**{**second.__dict__, "budget": (*budget, f"distill.cache_dir={tmp_path / 'cache'}")})
    assert run_name(cached, cached.variants[0], 0) == folder  # where the teacher's outputs are kept: the same run

    teacher.write_bytes(b"teacher, trained again")
    assert shared_run(second, second.variants[0], 0, results) is None  # another teacher: not the same run
    assert run_name(second, second.variants[0], 0) != folder  # nor the same checkpoints
    with pytest.raises(BinsrError, match=r"toy-t1.json: r8 seed 0 \(teacher, init\) read other models"):
        run_table(first, results, runs, progress=False, report=lambda line: None)  # r4 would mix teachers
    teacher.write_bytes(b"teacher, first training")
    write_results(path, {**read_results(first, path), "runs": [{k: v for k, v in done.items() if k != "inputs"}]})
    with pytest.raises(BinsrError, match="or did not record them"):
        run_table(first, results, runs, progress=False, report=lambda line: None)
    assert not runs.exists()  # refused before any training
