"""Refresh the README's ablation tables from docs/ablations/*.json (binsr ablate TABLE --report for each)."""
import re
import subprocess
from pathlib import Path

import binsr.ablation.papers  # noqa: F401
from binsr.ablation import TABLES

root = Path(__file__).resolve().parents[1]
blocks = []
for path in sorted((root / "docs/ablations").glob("*.json")):
    subprocess.run(["binsr", "ablate", path.stem, "--report"], check=True, capture_output=True, cwd=root)
    table = TABLES.get(path.stem)
    blocks.append(f"Table `{table.name}`: {table.summary}. {table.source}. "
                  f"[Figure](docs/ablations/{path.stem}.png).\n\n" + path.with_suffix(".md").read_text())
readme = (root / "README.md").read_text()
start, end = "<!-- ablation tables: scripts/readme_ablations.py -->\n", "<!-- /ablation tables -->\n"
new = start + "\n".join(blocks) + end
readme = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: new, readme, flags=re.S)
(root / "README.md").write_text(readme)
