"""Project rules that code review would otherwise have to remember."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

# Layer of each top-level part of the package; a module may import only from strictly lower layers
# (or from inside its own part). New parts must be placed here.
LAYERS = {
    "errors": 0,
    "utils": 1,
    "config": 2,
    "configs": 0,
    "image": 2,
    "complexity": 2,
    "binary": 3,
    "models": 4,
    "diffusion": 5,
    "metrics": 3,
    "data": 3,
    "deploy": 5,
    "pipelines": 6,
    "evaluation": 7,
    "bench": 7,
    "analysis": 8,
    "training": 8,
    "model_card": 9,
    "ablation": 9,
    "demo": 10,
    "cli": 11,
    "__main__": 12,
    "__init__": 12,
}


def _part(path: Path) -> str:
    rel = path.relative_to(REPO / "binsr")
    return rel.parts[0].removesuffix(".py")


def test_imports_flow_downward():
    violations = []
    for path in sorted((REPO / "binsr").rglob("*.py")):
        part = _part(path)
        assert part in LAYERS, f"{path}: place '{part}' in LAYERS"
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                pieces = name.split(".")
                if pieces[0] != "binsr" or len(pieces) < 2:
                    continue
                target = pieces[1]
                if target != part and not LAYERS[target] < LAYERS[part]:
                    violations.append(f"{path.relative_to(REPO)} ({part}) imports binsr.{target}")
    assert not violations, "\n".join(violations)


def test_the_package_docstring_lists_every_layer():
    """binsr/__init__.py names each part of the package under its layer number."""
    doc = ast.get_docstring(ast.parse((REPO / "binsr" / "__init__.py").read_text()))
    markers = list(re.finditer(r"(\d+)\. ``", doc))
    listed = {}
    for marker, following in zip(markers, markers[1:] + [None]):
        segment = doc[marker.start():following.start() if following else len(doc)]
        for part in re.findall(r"``(\w+)``", segment):
            listed.setdefault(part, int(marker.group(1)))
    for part, layer in LAYERS.items():
        if part != "__init__":
            assert listed.get(part) == layer, f"binsr/__init__.py lists '{part}' at {listed.get(part)}, not {layer}"


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README must start with a code block holding the two set-up commands"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2
    main_job, tests = commands
    assert "pip install" in main_job and "binsr " in main_job
    assert "pip install" in tests and "pytest" in tests
    assert "-c constraints.txt" in main_job and "-c constraints.txt" in tests  # never the CUDA torch wheels
    ci = (REPO / ".ci" / "run").read_text()
    assert tests in ci.splitlines(), ".ci/run must run the README's test command verbatim"


def test_every_config_dataclass_documents_each_of_its_fields():
    """A config dataclass's docstring names every field it declares (with its unit and default)."""
    import dataclasses

    from binsr.data.realesrgan import RealESRGANConfig
    from binsr.diffusion import PROCESSES, DistillConfig
    from binsr.models import AUTOENCODERS, NETWORKS, NetworkPreset
    from binsr.training import TASKS
    from binsr.training.recipe import BinarizeConfig, DataConfig, OptimConfig, Recipe

    classes = {DistillConfig, RealESRGANConfig, DataConfig, OptimConfig, BinarizeConfig, Recipe, NetworkPreset}
    classes |= {entry.config for registry in (NETWORKS, AUTOENCODERS, PROCESSES) for entry in registry.values()}
    classes |= {task.recipe for task in TASKS.values()}
    missing = []
    for cls in (c for c in classes if c.__module__.startswith("binsr.")):  # (other tests register their own)
        doc = cls.__doc__ or ""
        own = cls.__dict__.get("__annotations__", {})
        missing += [f"{cls.__name__}.{f.name}" for f in dataclasses.fields(cls) if f.name in own
                    and f"``{f.name}``" not in doc]
    assert not missing, f"fields without a word in their class's docstring: {missing}"
